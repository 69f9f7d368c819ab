"""Bounded, JSON-safe views of a run for the widget: call rows, log entries, value previews.

The Python record keeps every value as it was; what goes to the browser (and into the saved
notebook) is cut to a short preview plus, when that is not the whole value, a longer capped copy
the front end shows when a row is expanded.
"""

from __future__ import annotations

import json
from typing import Any

from codemode.convert import dumps
from codemode.events import HostCall, LogLine

PREVIEW_CHARS = 120
FULL_CHARS = 20_000
LOG_CHARS = 10_000
RESULT_CHARS = 200_000


def to_json(value: Any) -> str:
    """Compact JSON as the program would see it; ``repr`` for what cannot cross the bridge."""
    try:
        return dumps(value, where="value")
    except Exception:  # noqa: BLE001 - a display must never fail
        return json.dumps(repr(value))


def cap(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def pretty(text: str, limit: int = FULL_CHARS) -> str:
    """Indented JSON for the expanded view (only for values small enough to re-parse)."""
    if len(text) <= limit:
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return cap(text, limit)


def preview(value: Any, limit: int = PREVIEW_CHARS) -> tuple[str, str | None]:
    """A one-line preview and, when it is cut, the (capped, indented) full value."""
    text = to_json(value)
    if len(text) <= limit:
        return text, None
    return text[: limit - 1] + "…", pretty(text)


def call_row(call: HostCall) -> dict[str, Any]:
    """One row of the trace table."""
    args, args_full = preview(call.arguments)
    row: dict[str, Any] = {
        "n": call.call_id,
        "name": call.name,
        "args": args,
        "start": round(call.started, 6),
        "duration": None if call.duration is None else round(call.duration, 6),
    }
    if args_full is not None:
        row["args_full"] = args_full
    if call.error is not None:
        row["error"] = cap(call.error, FULL_CHARS)
        row["error_type"] = call.error_type
    elif call.duration is not None:
        result, result_full = preview(call.result)
        row["result"] = result
        if result_full is not None:
            row["result_full"] = result_full
    return row


def log_entry(line: LogLine) -> list[Any]:
    """``[seconds, level, text]`` for one console line."""
    return [round(float(getattr(line, "time", 0.0)), 6), getattr(line, "level", "log"),
            cap(str(line), LOG_CHARS)]


def result_json(value: Any) -> tuple[str, bool]:
    """The run's result as JSON text for the widget, and whether it had to be cut."""
    text = to_json(value)
    if len(text) <= RESULT_CHARS:
        return text, False
    return text[:RESULT_CHARS], True
