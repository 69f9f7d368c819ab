"""The exception a failed ``%%codemode`` cell raises, rendered like a native traceback.

Raising (rather than printing) is what marks the cell failed, stops "Run All" and makes
nbclient raise ``CellExecutionError``. ``_render_traceback_`` is IPython's hook for showing a
custom traceback: the JavaScript error, its stack and the offending line of the cell body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from codemode.events import ErrorDetails

if TYPE_CHECKING:
    from codemode_jupyter.record import RunRecord

_RED = "\x1b[0;31m"
_BOLD_RED = "\x1b[1;31m"
_GREEN = "\x1b[0;32m"
_CYAN = "\x1b[0;36m"
_RESET = "\x1b[0m"

_HINTS = {
    "timeout": "Give it more time with --timeout S, or %config CodeMode.timeout_s = S.",
    "memory": "Give it more memory with --heap MB, or %config CodeMode.max_heap_mb = MB.",
}


class CodeModeError(Exception):
    """A ``%%codemode`` program failed: it threw, did not compile, timed out or ran out of memory.

    ``record`` is the complete run (console output and host calls up to the failure included).
    """

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self.details: ErrorDetails = record.error or ErrorDetails("internal", "Error", "failed")
        super().__init__(self._summary())

    def _summary(self) -> str:
        d = self.details
        where = f" (line {d.line})" if d.line else ""
        return f"{d.name}: {d.message}{where}"

    def _render_traceback_(self) -> list[str]:
        """IPython calls this instead of formatting a Python traceback."""
        d = self.details
        lines = [f"{_BOLD_RED}CodeModeError{_RESET}: {_RED}{d.name}{_RESET}: {d.message}"]
        frames = [ln.strip() for ln in (d.stack or "").splitlines() if ln.strip().startswith("at ")]
        if frames:
            lines.append("JavaScript stack (lines of the cell body, after the %%codemode line):")
            lines.extend(f"    {_CYAN}{frame}{_RESET}" for frame in frames)
        if d.tool:
            origin = f" ({d.python_type})" if d.python_type else ""
            lines.append(f"raised by the Python host function codemode.{d.tool}{origin}")
        excerpt = source_excerpt(self.record.code, d.line, d.column)
        if excerpt:
            lines.append("")
            lines.extend(excerpt)
        hint = _HINTS.get(d.kind)
        if hint:
            lines.append(hint)
        return lines


def source_excerpt(code: str, line: int | None, column: int | None, context: int = 2) -> list[str]:
    """The failing line of the cell body with a little context and a caret under the column."""
    if not line:
        return []
    source = code.splitlines()
    if not 1 <= line <= len(source):
        return []
    first, last = max(1, line - context), min(len(source), line + context)
    width = len(str(last))
    out: list[str] = []
    for number in range(first, last + 1):
        marker = "--> " if number == line else "    "
        text = source[number - 1]
        if number == line:
            out.append(f"{_GREEN}{marker}{number:>{width}}{_RESET} | {text}")
            if column and column >= 1:
                out.append(f"    {' ' * width} | {' ' * (column - 1)}{_RED}^{_RESET}")
        else:
            out.append(f"{marker}{number:>{width}} | {text}")
    return out
