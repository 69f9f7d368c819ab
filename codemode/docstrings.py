"""A small, forgiving docstring parser for Google, NumPy and reST styles.

The stub generator turns docstrings into JSDoc, so it needs the summary, the per-parameter text and
the return description, nothing more. It never raises: text it cannot place in a section stays in
``description`` so no documentation is silently lost.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

__all__ = ["Docstring", "parse_docstring"]


@dataclass
class Docstring:
    """The parts of a docstring that matter for generated declarations."""

    summary: str = ""
    description: str = ""
    params: dict[str, str] = field(default_factory=dict)
    returns: str = ""


# Section names (lower-cased) and what they hold. Anything else recognised as a section header is
# skipped, so e.g. ``Raises:`` content does not leak into a parameter's text.
_PARAM_SECTIONS = {
    "args",
    "arguments",
    "parameters",
    "params",
    "keyword args",
    "keyword arguments",
    "other parameters",
    "other params",
    "kwargs",
}
_RETURN_SECTIONS = {"returns", "return", "yields", "yield"}
_OTHER_SECTIONS = {
    "raises",
    "raise",
    "except",
    "exceptions",
    "warns",
    "warnings",
    "warning",
    "example",
    "examples",
    "note",
    "notes",
    "see also",
    "references",
    "attributes",
    "methods",
    "todo",
    "receives",
}
_ALL_SECTIONS = _PARAM_SECTIONS | _RETURN_SECTIONS | _OTHER_SECTIONS

_GOOGLE_HEADER = re.compile(r"^([A-Za-z][A-Za-z ]*?)\s*:\s*(.*)$")
_NUMPY_UNDERLINE = re.compile(r"^\s*-{3,}\s*$")
# ``name (type): text`` or ``name: text``; a leading ``*``/``**`` is tolerated and dropped.
_GOOGLE_PARAM = re.compile(r"^\*{0,2}([A-Za-z_][\w.]*)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
# ``name : type`` or a bare ``name`` (or ``x, y : float``).
_NUMPY_PARAM = re.compile(r"^(\*{0,2}[A-Za-z_]\w*(?:\s*,\s*\*{0,2}[A-Za-z_]\w*)*)\s*(?::\s*(.*))?$")
# A leading ``type:`` in a Google ``Returns:`` section, e.g. ``int: The sum.``.
_RETURN_TYPE_PREFIX = re.compile(
    r"^[A-Za-z_][\w.]*(?:\[[^\]]*\])?(?:\s*\|\s*[A-Za-z_][\w.]*(?:\[[^\]]*\])?)*\s*:\s+"
)
_REST_FIELD = re.compile(r"^:(\w+)(?:\s+([^:]*?))?\s*:\s*(.*)$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _join(lines: list[str]) -> str:
    """Collapse wrapped lines into one line of text."""
    return " ".join(part.strip() for part in lines if part.strip())


def _paragraphs(lines: list[str]) -> list[list[str]]:
    paras: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        if line.strip():
            current.append(line)
        elif current:
            paras.append(current)
            current = []
    if current:
        paras.append(current)
    return paras


def _section_header(lines: list[str], i: int) -> tuple[str, str, int] | None:
    """Recognise a section header at ``lines[i]``: (name, inline text, lines consumed)."""
    line = lines[i]
    if _indent(line) != 0:
        return None
    stripped = line.strip()
    # NumPy: a bare name underlined with dashes.
    if i + 1 < len(lines) and _NUMPY_UNDERLINE.match(lines[i + 1]):
        name = stripped.rstrip(":").strip().lower()
        if name in _ALL_SECTIONS:
            return name, "", 2
    match = _GOOGLE_HEADER.match(stripped)
    if match and match.group(1).lower() in _ALL_SECTIONS:
        return match.group(1).lower(), match.group(2).strip(), 1
    return None


def _parse_params(body: list[str], numpy: bool, into: dict[str, str]) -> None:
    """Parse the entries of a parameter section (Google or NumPy layout)."""
    content = [ln for ln in body if ln.strip()]
    if not content:
        return
    base = min(_indent(ln) for ln in content)
    names: list[str] = []
    text: list[str] = []

    def flush() -> None:
        joined = _join(text)
        for name in names:
            if name and name not in into:
                into[name] = joined

    for line in body:
        if not line.strip():
            continue
        if _indent(line) == base:
            stripped = line.strip()
            if numpy:
                match = _NUMPY_PARAM.match(stripped)
                if match:
                    flush()
                    names = [n.strip().lstrip("*") for n in match.group(1).split(",")]
                    text = []
                    continue
            else:
                match = _GOOGLE_PARAM.match(stripped)
                if match:
                    flush()
                    names = [match.group(1)]
                    text = [match.group(3)]
                    continue
                # ``name`` alone on a line (text on the following, deeper lines) is also seen.
                bare = re.match(r"^\*{0,2}([A-Za-z_]\w*)\s*(?:\(([^)]*)\))?$", stripped)
                if bare:
                    flush()
                    names = [bare.group(1)]
                    text = []
                    continue
        text.append(line)
    flush()


def _parse_returns(body: list[str], numpy: bool) -> str:
    content = [ln for ln in body if ln.strip()]
    if not content:
        return ""
    if numpy:
        # Lines at the base indentation name a type (``int`` or ``total : int``); the indented
        # lines under them describe it. Keep descriptions; fall back to the type lines.
        base = min(_indent(ln) for ln in content)
        described = [ln for ln in content if _indent(ln) > base]
        return _join(described) if described else _join(content)
    text = _join(content)
    return _RETURN_TYPE_PREFIX.sub("", text, count=1)


def _parse_rest(lines: list[str], doc: Docstring) -> list[str]:
    """Pull ``:param x:``/``:returns:`` fields out; return the remaining lines."""
    rest: list[str] = []
    current: tuple[str, str] | None = None
    buffer: list[str] = []

    def flush() -> None:
        if current is None:
            return
        kind, name = current
        text = _join(buffer)
        if kind == "param" and name and name not in doc.params:
            doc.params[name] = text
        elif kind == "returns" and not doc.returns:
            doc.returns = text

    for line in lines:
        match = _REST_FIELD.match(line.strip()) if _indent(line) == 0 else None
        if match:
            flush()
            tag, arg, text = match.group(1).lower(), (match.group(2) or "").strip(), match.group(3)
            buffer = [text]
            if tag in {"param", "parameter", "arg", "argument", "key", "keyword"}:
                # ``:param int x:`` carries a type before the name.
                current = ("param", arg.split()[-1].lstrip("*") if arg else "")
            elif tag in {"returns", "return"}:
                current = ("returns", "")
            else:
                current = ("other", "")
            continue
        if current is not None and line.strip() and _indent(line) > 0:
            buffer.append(line)
            continue
        flush()
        current = None
        buffer = []
        rest.append(line)
    flush()
    return rest


def parse_docstring(doc: str | None) -> Docstring:
    """Split a docstring into summary, free text, parameter docs and return docs.

    Accepts raw ``__doc__`` values (indentation is normalised first) and ``None``.
    """
    result = Docstring()
    if not doc or not isinstance(doc, str):
        return result
    lines = inspect.cleandoc(doc).expandtabs().splitlines()
    if any(_REST_FIELD.match(ln.strip()) for ln in lines if _indent(ln) == 0):
        lines = _parse_rest(lines, result)

    free: list[str] = []
    i = 0
    while i < len(lines):
        header = _section_header(lines, i)
        if header is None:
            free.append(lines[i])
            i += 1
            continue
        name, inline, consumed = header
        numpy = consumed == 2
        i += consumed
        body: list[str] = []
        if inline:
            body.append("    " + inline)
        while i < len(lines):
            line = lines[i]
            if line.strip() and _section_header(lines, i) is not None:
                break
            # A Google section ends at the first non-indented text; NumPy sections are flush left.
            if not numpy and line.strip() and _indent(line) == 0:
                break
            body.append(line)
            i += 1
        if name in _PARAM_SECTIONS:
            _parse_params(body, numpy, result.params)
        elif name in _RETURN_SECTIONS:
            if not result.returns:
                result.returns = _parse_returns(body, numpy)

    paras = _paragraphs(free)
    if paras:
        result.summary = _join(paras[0])
        result.description = "\n\n".join("\n".join(ln.rstrip() for ln in p) for p in paras[1:])
    return result
