"""The one composite widget a ``%%codemode`` cell shows: status, result, console, trace, stubs.

Live updates travel as batched custom messages (deltas); the final state is set as traits in a
single ``hold_sync`` so that saved notebooks and re-rendered views show everything. The front end
is a real ES module and stylesheet shipped in this package (``widget.js``, ``widget.css``).
Where widgets cannot render, the bundle carries ``text/plain`` and ``text/html`` renderings.
"""

from __future__ import annotations

import importlib.resources
import uuid
from typing import Any

import anywidget
import traitlets as t

from codemode_jupyter.record import RunRecord
from codemode_jupyter.render import render_html, render_text
from codemode_jupyter.rows import call_row, log_entry, result_json


def _asset(name: str) -> str:
    return importlib.resources.files("codemode_jupyter").joinpath(name).read_text("utf-8")


class RunWidget(anywidget.AnyWidget):
    """A run's live view. Construct with the record it shows; ``finish`` it once the run ends."""

    _esm = _asset("widget.js")
    _css = _asset("widget.css")

    key = t.Unicode("").tag(sync=True)
    status = t.Unicode("running").tag(sync=True)
    title = t.Unicode("codemode").tag(sync=True)
    duration = t.Float(0.0).tag(sync=True)
    call_count = t.Int(0).tag(sync=True)
    failed_count = t.Int(0).tag(sync=True)
    result = t.Unicode("").tag(sync=True)
    has_result = t.Bool(False).tag(sync=True)
    result_truncated = t.Bool(False).tag(sync=True)
    error = t.Dict().tag(sync=True)
    logs = t.List().tag(sync=True)
    logs_omitted = t.Int(0).tag(sync=True)
    calls = t.List().tag(sync=True)
    calls_omitted = t.Int(0).tag(sync=True)
    stubs = t.Unicode("").tag(sync=True)
    tools = t.List(t.Unicode()).tag(sync=True)
    max_rows = t.Int(200).tag(sync=True)
    max_logs = t.Int(1000).tag(sync=True)

    def __init__(
        self, record: RunRecord, *, max_rows: int = 200, max_logs: int = 1000, **kwargs: Any
    ) -> None:
        title = "codemode" if record.cell is None else f"codemode · cell [{record.cell}]"
        super().__init__(
            key=uuid.uuid4().hex,
            title=title,
            stubs=record.stubs,
            tools=list(record.tools),
            max_rows=max_rows,
            max_logs=max_logs,
            **kwargs,
        )
        self.record: RunRecord | None = record
        self._fallback: tuple[str, str] | None = None
        self.messages_sent = 0

    def push(self, delta: dict[str, Any]) -> None:
        """Send one batched delta to the front ends (a custom comm message)."""
        self.send(delta)
        self.messages_sent += 1

    def finish(self, record: RunRecord) -> None:
        """Store the final, bounded state as traits: one update message.

        The static renderings are kept and the record let go, so that old cells' widgets do not
        pin every run's complete trace in memory (``last_run()`` has the latest one).
        """
        rows = [call_row(call) for call in record.calls[: self.max_rows]]
        logs = record.logs[-self.max_logs :] if self.max_logs else []
        text, truncated = result_json(record.result)
        error: dict[str, Any] = {}
        if record.error is not None:
            e = record.error
            error = {"kind": e.kind, "name": e.name, "message": e.message, "stack": e.stack,
                     "line": e.line, "column": e.column, "tool": e.tool}
        with self.hold_sync():
            self.duration = round(record.duration, 6)
            self.call_count = record.call_count
            self.failed_count = record.failed_count
            self.result = text
            self.has_result = record.status == "done" and record.result is not None
            self.result_truncated = truncated
            self.error = error
            self.logs = [log_entry(line) for line in logs]
            self.logs_omitted = len(record.logs) - len(logs) + record.dropped_logs
            self.calls = rows
            self.calls_omitted = record.call_count - len(rows)
            self.stubs = record.stubs
            self.tools = list(record.tools)
            self.status = record.status
        self.messages_sent += 1
        self._fallback = (render_text(record), render_html(record))
        self.record = None

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget view plus text and HTML renderings for viewers without widgets."""
        bundle = super()._repr_mimebundle_(**kwargs)
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle or {}, {})
        data = dict(data)
        if self._fallback is not None:
            data["text/plain"], data["text/html"] = self._fallback
        elif self.record is not None:
            data["text/plain"] = render_text(self.record)
            data["text/html"] = render_html(self.record)
        return data, metadata
