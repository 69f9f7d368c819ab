"""The panel ``%codemode_serve`` displays: the server, its tools and every agent request, live.

Updates come from server threads, so they only set traits (batched in ``hold_sync``) or send comm
messages; nothing here prints. A request that starts or finishes resends the bounded list of rows
(the trait a saved notebook keeps); progress of running requests travels as one custom message
carrying just their rows. The complete records stay in Python (``NotebookServer.requests``).
Viewers without widgets get the ``text/plain`` and ``text/html`` renderings of the bundle.
"""

from __future__ import annotations

import importlib.resources
import json
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets as t

if TYPE_CHECKING:
    from codemode_jupyter.serving import NotebookServer, RequestRecord

MAX_ROWS = 50
"""Requests shown in the panel (the newest); all of them stay in Python."""
CODE_CHARS = 4000
VALUE_CHARS = 4000
PREVIEW_CHARS = 200
LOG_LINES = 100
LOG_CHARS = 500
CALL_ROWS = 100


def _asset(name: str) -> str:
    return importlib.resources.files("codemode_jupyter").joinpath(name).read_text("utf-8")


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def _json(value: Any, limit: int) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return _cap(text, limit)


def request_row(record: RequestRecord) -> dict[str, Any]:
    """The bounded, JSON-safe view of one request that the front end draws."""
    logs = record.logs[-LOG_LINES:]
    calls = record.calls[-CALL_ROWS:]
    row: dict[str, Any] = {
        "id": record.id,
        "kind": record.kind,
        "status": record.status,
        "started": record.started_at,
        "elapsed": round(record.elapsed(), 4),
        "code": _cap(record.code, CODE_CHARS),
        "logs": [[getattr(line, "level", "log"), _cap(str(line), LOG_CHARS)] for line in logs],
        "logs_omitted": len(record.logs) - len(logs) + record.dropped_logs,
        "calls": [
            {
                "name": call.name,
                "args": _json(call.arguments, PREVIEW_CHARS),
                "duration": None if call.duration is None else round(call.duration, 4),
                "result": None
                if call.error or call.duration is None
                else _json(call.result, PREVIEW_CHARS),
                "error": None if call.error is None else _cap(call.error, VALUE_CHARS),
            }
            for call in calls
        ],
        "calls_omitted": len(record.calls) - len(calls) + record.dropped_calls,
        "result": _json(record.result, VALUE_CHARS) if record.status == "ok" else None,
        "error": None if record.error is None else _cap(record.error, VALUE_CHARS),
        "error_kind": record.error_kind,
    }
    return row


class ServerPanel(anywidget.AnyWidget):
    """Live view of one :class:`~codemode_jupyter.serving.NotebookServer`."""

    _esm = _asset("server_panel.js")
    _css = _asset("server_panel.css")

    name = t.Unicode("").tag(sync=True)
    url = t.Unicode("").tag(sync=True)
    status = t.Unicode("starting").tag(sync=True)
    tools = t.List(t.Unicode()).tag(sync=True)
    requests = t.List().tag(sync=True)
    total = t.Int(0).tag(sync=True)
    ok_count = t.Int(0).tag(sync=True)
    failed_count = t.Int(0).tag(sync=True)
    busy_count = t.Int(0).tag(sync=True)
    running_count = t.Int(0).tag(sync=True)
    limits = t.Unicode("").tag(sync=True)

    def __init__(self, server: NotebookServer, **kwargs: Any) -> None:
        super().__init__(
            name=server.name,
            url=server.url,
            status=server.state,
            tools=server.tool_names,
            limits=(
                f"{server.timeout_s:g} s per program, {server.max_heap_bytes / 2**20:g} MiB heap, "
                f"{server.max_concurrent_runs} at once, "
                f"bodies up to {server.max_body_bytes / 2**20:g} MiB"
            ),
            **kwargs,
        )
        self._server = weakref.ref(server)
        self.messages_sent = 0
        # hold_sync keeps its pending states on the instance, not per thread: the pump thread and
        # the kernel's main thread (tool refreshes) must not be inside it at the same time
        self._sync_lock = threading.Lock()

    def set_state(self, **traits: Any) -> None:
        """Set several traits in one update message (from any thread)."""
        with self._sync_lock:
            with self.hold_sync():
                for key, value in traits.items():
                    setattr(self, key, value)
            self.messages_sent += 1

    def show_records(self, records: Sequence[RequestRecord], dropped: int = 0) -> None:
        """Structural change (a request began or ended): resend the newest rows and counts."""
        counts = {"ok": 0, "failed": 0, "busy": 0, "running": 0}
        for record in records:
            counts[record.status] = counts.get(record.status, 0) + 1
        self.set_state(
            requests=[request_row(r) for r in records[-MAX_ROWS:]],
            total=len(records) + dropped,
            ok_count=counts["ok"],
            failed_count=counts["failed"],
            busy_count=counts["busy"],
            running_count=counts["running"],
        )

    def send_progress(self, records: Sequence[RequestRecord]) -> None:
        """Progress of running requests: one comm message with just their rows."""
        if records:
            self.send({"type": "rows", "rows": [request_row(r) for r in records]})
            self.messages_sent += 1

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget view plus text and HTML renderings for viewers without widgets."""
        bundle = super()._repr_mimebundle_(**kwargs)
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle or {}, {})
        data = dict(data)
        server = self._server()
        if server is not None:
            data["text/plain"] = server.summary()
            data["text/html"] = server.records_html()
        else:
            data["text/plain"] = f"codemode MCP server {self.name!r} ({self.status})"
        return data, metadata
