"""The complete record of one ``%%codemode`` run, and the thread-safe intake that fills it.

Engine events arrive on engine threads and ``print()`` output on host-function threads, while
the widget is fed from the kernel's main thread. The :class:`Recorder` takes everything under one
lock, keeps the whole story in a :class:`RunRecord` (what ``last_run()`` returns) and hands out
bounded deltas: only what changed since the last flush, at most ``widget_rows`` call rows and
``widget_logs`` console lines, however many calls the program makes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from codemode.events import (
    CallFinished,
    CallStarted,
    ConsoleEvent,
    ErrorDetails,
    HostCall,
    LogLine,
    RunCompleted,
    RunFailed,
    RunStarted,
)
from codemode_jupyter.rows import call_row, log_entry

RUNNING, DONE, FAILED, INTERRUPTED = "running", "done", "failed", "interrupted"


@dataclass
class RunRecord:
    """One run as Python sees it, complete: the widget only ever shows a bounded view of it."""

    code: str
    stubs: str = ""
    tools: list[str] = field(default_factory=list)
    cell: int | None = None
    status: str = RUNNING
    result: Any = None
    error: ErrorDetails | None = None
    logs: list[LogLine] = field(default_factory=list)
    calls: list[HostCall] = field(default_factory=list)
    call_count: int = 0
    failed_count: int = 0
    duration: float = 0.0
    dropped_logs: int = 0
    dropped_calls: int = 0
    outcome: RunCompleted | RunFailed | None = None

    @property
    def ok(self) -> bool:
        return self.status == DONE

    @property
    def failed_calls(self) -> list[HostCall]:
        """The recorded calls that raised (or could not send their result back)."""
        return [call for call in self.calls if call.error is not None]

    def __repr__(self) -> str:
        what = f"error={self.error.name}: {self.error.message!r}" if self.error else ""
        if self.status == DONE:
            what = f"result={_short(self.result)}"
        calls = f"{self.call_count} call{'' if self.call_count == 1 else 's'}"
        logs = f"{len(self.logs)} log line{'' if len(self.logs) == 1 else 's'}"
        return (
            f"<RunRecord {self.status} in {self.duration * 1000:.1f} ms, {calls}, {logs}"
            f"{', ' + what if what else ''}>"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        from codemode_jupyter.render import render_text

        printer.text(repr(self) if cycle else render_text(self))

    def _repr_html_(self) -> str:
        from codemode_jupyter.render import render_html

        return render_html(self)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


class Recorder:
    """Collects one run's events from any thread and serves bounded deltas to the widget."""

    def __init__(
        self,
        record: RunRecord,
        *,
        widget_rows: int = 200,
        widget_logs: int = 1000,
        max_calls: int = 100_000,
        max_log_lines: int = 20_000,
    ) -> None:
        self.record = record
        self.widget_rows = max(0, widget_rows)
        self.widget_logs = max(0, widget_logs)
        self.max_calls = max_calls
        self.max_log_lines = max_log_lines
        self._lock = threading.Lock()
        self._t0 = time.perf_counter()
        self._index: dict[int, int] = {}
        self._dirty: set[int] = set()
        self._sent_logs = 0
        self._changed = False
        self._partial: dict[tuple[str, int], str] = {}

    # ------------------------------------------------------------ intake (any thread)

    def on_event(self, event: object) -> None:
        """Engine observer: must be quick, never raise, and is called from engine threads."""
        with self._lock:
            if isinstance(event, ConsoleEvent):
                self._add_log(event.line)
            elif isinstance(event, CallStarted):
                self._start_call(event.call)
            elif isinstance(event, CallFinished):
                index = self._index.get(id(event.call))
                if index is not None and index < self.widget_rows:
                    self._dirty.add(index)
                if event.call.error is not None:
                    self.record.failed_count += 1
                self._changed = True
            elif isinstance(event, RunStarted):
                self._t0 = time.perf_counter()

    def write_stream(self, stream: str, text: str) -> None:
        """``print()`` from a host function: whole lines become log lines of level ``stream``."""
        if not text:
            return
        key = (stream, threading.get_ident())
        with self._lock:
            pending = self._partial.pop(key, "") + text
            *lines, rest = pending.split("\n")
            for line in lines:
                self._add_log(LogLine(line, stream, self._now()))
            if rest:
                self._partial[key] = rest

    def flush_streams(self) -> None:
        """Keep output that did not end with a newline (called when the run ends)."""
        with self._lock:
            for (stream, _), rest in sorted(self._partial.items()):
                self._add_log(LogLine(rest, stream, self._now()))
            self._partial.clear()

    def _now(self) -> float:
        return time.perf_counter() - self._t0

    def _add_log(self, line: LogLine) -> None:
        if len(self.record.logs) >= self.max_log_lines:
            self.record.dropped_logs += 1
            return
        self.record.logs.append(line)
        self._changed = True

    def _start_call(self, call: HostCall) -> None:
        self.record.call_count += 1
        self._changed = True
        if len(self.record.calls) >= self.max_calls:
            self.record.dropped_calls += 1
            return
        index = len(self.record.calls)
        self.record.calls.append(call)
        self._index[id(call)] = index
        if index < self.widget_rows:
            self._dirty.add(index)

    # ------------------------------------------------------------ output (main thread)

    def elapsed(self) -> float:
        return self._now()

    def take_delta(self) -> dict[str, Any] | None:
        """What changed since the last call, bounded; None when nothing did."""
        with self._lock:
            if not self._changed:
                return None
            self._changed = False
            logs = self.record.logs
            new = len(logs) - self._sent_logs
            skipped = max(0, new - self.widget_logs)
            fresh = logs[self._sent_logs + skipped :]
            self._sent_logs = len(logs)
            rows = [call_row(self.record.calls[i]) for i in sorted(self._dirty)]
            self._dirty.clear()
            return {
                "type": "delta",
                "elapsed": round(self._now(), 6),
                "logs": [log_entry(line) for line in fresh],
                "logs_skipped": skipped,
                "rows": rows,
                "call_count": self.record.call_count,
                "failed_count": self.record.failed_count,
            }

    def logs_since(self, start: int) -> list[LogLine]:
        """Every console line from ``start`` on (for plain-text output, which shows them all)."""
        with self._lock:
            return list(self.record.logs[start:])

    # ------------------------------------------------------------ the end

    def finish(self, outcome: RunCompleted | RunFailed) -> RunRecord:
        """Fold the engine's outcome into the record."""
        self.flush_streams()
        record = self.record
        with self._lock:
            record.outcome = outcome
            record.duration = outcome.duration or self._now()
            record.dropped_logs += int(getattr(outcome, "dropped_logs", 0) or 0)
            if isinstance(outcome, RunCompleted):
                record.status = DONE
                record.result = outcome.result
            else:
                record.status = FAILED
                record.error = outcome.details or ErrorDetails(
                    "internal", "Error", outcome.error or "the run failed"
                )
            self._changed = True
        return record

    def interrupt(self) -> RunRecord:
        """The user interrupted the kernel: the program was stopped, keep what happened."""
        self.flush_streams()
        with self._lock:
            self.record.status = INTERRUPTED
            self.record.duration = self._now()
            self.record.error = ErrorDetails(
                "cancelled", "KeyboardInterrupt", "the run was interrupted and stopped"
            )
            self._changed = True
        return self.record
