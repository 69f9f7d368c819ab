"""Static renderings of a run: ``text/plain`` and ``text/html`` for where widgets cannot render.

nbconvert, GitHub and terminal IPython show these instead of the widget; ``%codemode_last`` and
``--quiet`` use them too. Everything is bounded (the full record stays in Python) and the HTML
is self-contained, escaped, and uses only tags that survive sanitising viewers.
"""

from __future__ import annotations

import html
from collections import Counter
from typing import TYPE_CHECKING

from codemode.events import HostCall, LogLine
from codemode_jupyter.rows import cap, pretty, preview, to_json

if TYPE_CHECKING:
    from codemode_jupyter.record import RunRecord

TEXT_CALLS = 20
TEXT_LOGS = 200
HTML_CALLS = 100
HTML_LOGS = 500
RESULT_TEXT = 5_000

_ICONS = {"running": "…", "done": "✓", "failed": "✗", "interrupted": "■"}


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def headline(record: RunRecord) -> str:
    """``codemode ✓ done in 12.3 ms · 3 calls (1 failed) · 2 log lines``."""
    parts = [f"codemode {_ICONS.get(record.status, '')} {record.status}"]
    if record.status != "running":
        parts[0] += f" in {fmt_seconds(record.duration)}"
    calls = f"{record.call_count:,} call{'' if record.call_count == 1 else 's'}"
    if record.failed_count:
        calls += f" ({record.failed_count:,} failed)"
    parts.append(calls)
    parts.append(f"{len(record.logs):,} log line{'' if len(record.logs) == 1 else 's'}")
    return " · ".join(parts)


def log_text(line: LogLine) -> str:
    level = getattr(line, "level", "log")
    return str(line) if level == "log" else f"[{level}] {line}"


def call_text(call: HostCall) -> str:
    args, _ = preview(call.arguments, 80)
    head = f"#{call.call_id} {call.name}({args})"
    if call.error is not None:
        outcome = f" !! {cap(call.error, 200)}"
    elif call.duration is None:
        outcome = " … (running)"
    else:
        outcome = f" -> {preview(call.result, 80)[0]}"
    timing = f"  [at {fmt_seconds(call.started)}, took {fmt_seconds(call.duration)}]"
    return head + outcome + timing


def call_summary(calls: list[HostCall]) -> list[str]:
    """Per-function counts, for traces too long to list."""
    counts = Counter(call.name for call in calls)
    failed = Counter(call.name for call in calls if call.error is not None)
    out = []
    for name, count in counts.most_common(10):
        bad = f", {failed[name]:,} failed" if failed[name] else ""
        out.append(f"{name} × {count:,}{bad}")
    return out


def render_text(record: RunRecord, *, console: bool = True, trace: bool = True) -> str:
    """The plain-text rendering (``text/plain``, terminal, ``%codemode_last``)."""
    lines = [headline(record)]
    if record.status == "done" and record.result is not None:
        lines.append("Result:")
        lines.extend("  " + ln for ln in pretty(to_json(record.result), RESULT_TEXT).splitlines())
    if record.error is not None:
        lines.append(f"Error: {record.error.name}: {record.error.message}")
    if console and record.logs:
        lines.append("Console:")
        shown = record.logs[-TEXT_LOGS:]
        if len(record.logs) > len(shown):
            lines.append(f"  … {len(record.logs) - len(shown):,} earlier lines")
        lines.extend("  " + log_text(line) for line in shown)
    if trace and record.calls:
        lines.append("Calls:")
        lines.extend("  " + call_text(call) for call in record.calls[:TEXT_CALLS])
        more = record.call_count - min(len(record.calls), TEXT_CALLS)
        if more > 0:
            lines.append(f"  … {more:,} more calls: " + "; ".join(call_summary(record.calls)))
    return "\n".join(lines)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def render_html(record: RunRecord) -> str:
    """The static HTML rendering (nbconvert, GitHub, classic viewers)."""
    colour = {"done": "#1a7f37", "failed": "#cf222e", "interrupted": "#9a6700"}.get(
        record.status, "#57606a"
    )
    out = [
        '<div class="codemode-run" style="font-family:monospace;font-size:12px">',
        f'<div style="font-weight:bold;color:{colour}">{_e(headline(record))}</div>',
    ]
    if record.error is not None:
        out.append(
            f'<pre style="color:#cf222e;white-space:pre-wrap">'
            f"{_e(record.error.stack or f'{record.error.name}: {record.error.message}')}</pre>"
        )
    if record.status == "done" and record.result is not None:
        out.append("<details open><summary>Result</summary>")
        out.append(f"<pre>{_e(pretty(to_json(record.result), RESULT_TEXT))}</pre></details>")
    if record.logs:
        shown = record.logs[-HTML_LOGS:]
        out.append(f"<details open><summary>Console ({len(record.logs):,} lines)</summary><pre>")
        if len(record.logs) > len(shown):
            out.append(_e(f"… {len(record.logs) - len(shown):,} earlier lines\n"))
        for line in shown:
            level = getattr(line, "level", "log")
            style = {"error": "color:#cf222e", "warn": "color:#9a6700", "stderr": "color:#cf222e"}
            text = _e(log_text(line))
            out.append(f'<span style="{style[level]}">{text}</span>\n' if level in style else
                       f"{text}\n")
        out.append("</pre></details>")
    if record.calls:
        out.append(f"<details open><summary>Calls ({record.call_count:,})</summary>")
        out.append("<table><thead><tr><th>#</th><th>function</th><th>arguments</th>"
                   "<th>result / error</th><th>start</th><th>duration</th></tr></thead><tbody>")
        for call in record.calls[:HTML_CALLS]:
            args, _ = preview(call.arguments, 80)
            if call.error is not None:
                outcome = f'<span style="color:#cf222e">{_e(cap(call.error, 300))}</span>'
            else:
                outcome = _e(preview(call.result, 80)[0]) if call.duration is not None else "…"
            out.append(
                f"<tr><td>{call.call_id}</td><td>{_e(call.name)}</td><td><code>{_e(args)}"
                f"</code></td><td><code>{outcome}</code></td><td>{fmt_seconds(call.started)}"
                f"</td><td>{fmt_seconds(call.duration)}</td></tr>"
            )
        out.append("</tbody></table>")
        more = record.call_count - min(len(record.calls), HTML_CALLS)
        if more > 0:
            out.append(f"<div>… {more:,} more calls: {_e('; '.join(call_summary(record.calls)))}"
                       "</div>")
        out.append("</details>")
    if record.stubs:
        out.append(f"<details><summary>Callable API</summary><pre>{_e(record.stubs)}</pre>"
                   "</details>")
    out.append("</div>")
    return "".join(out)
