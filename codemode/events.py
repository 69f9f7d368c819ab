"""What a run reports: its outcome types and the event stream observers receive.

Observers (``on_event`` callbacks) are called synchronously from engine threads, so they must be
quick and thread-safe: append to a list, set a flag, hand off to a queue. The notebook widgets
and the MCP server's traces are built on these events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class LogLine(str):
    """One line of console output: a ``str`` (so logs join and print naturally) with its level
    (log/info/warn/error/debug) and the time since the run started, in seconds."""

    level: str
    time: float

    def __new__(cls, text: str, level: str = "log", time: float = 0.0) -> LogLine:
        line = super().__new__(cls, text)
        line.level = level
        line.time = time
        return line

    def __reduce__(self) -> tuple[Any, ...]:
        return (LogLine, (str(self), self.level, self.time))


@dataclass(slots=True)
class HostCall:
    """One call from JavaScript to a host function, as recorded in a run's trace."""

    call_id: int
    name: str
    arguments: Any
    started: float
    """Seconds since the run started."""
    duration: float | None = None
    result: Any = None
    error: str | None = None
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.duration is not None


@dataclass
class ErrorDetails:
    """Why a run failed, in parts a tool can display or map (e.g. to a notebook cell's lines).

    ``kind`` is one of: ``error`` (the program threw), ``syntax``, ``result`` (the result could
    not be sent back), ``timeout``, ``memory`` (heap or buffer limit), ``cancelled``, ``internal``.
    """

    kind: str
    name: str
    message: str
    stack: str | None = None
    line: int | None = None
    column: int | None = None
    tool: str | None = None
    python_type: str | None = None

    def __str__(self) -> str:
        return self.stack or f"{self.name}: {self.message}"


@dataclass
class RunCompleted:
    """The program finished and returned ``result`` (JSON-compatible Python data)."""

    result: Any = None
    logs: list[LogLine] = field(default_factory=list)
    calls: list[HostCall] = field(default_factory=list)
    duration: float = 0.0
    dropped_logs: int = 0
    dropped_calls: int = 0

    @property
    def ok(self) -> bool:
        return True


@dataclass
class RunFailed:
    """The program did not finish; ``error`` is a readable one-piece message, ``details`` its
    parts. Console output up to the failure is kept in ``logs``."""

    error: str
    logs: list[LogLine] = field(default_factory=list)
    details: ErrorDetails | None = None
    calls: list[HostCall] = field(default_factory=list)
    duration: float = 0.0
    dropped_logs: int = 0
    dropped_calls: int = 0

    @property
    def ok(self) -> bool:
        return False


RunResult = RunCompleted | RunFailed


@dataclass
class HostCallRequest:
    """A call to a target with no registered function: the session's driver answers it with
    ``submit_result`` or ``submit_error``."""

    call_id: str
    target: str
    input: dict[str, Any]


RunEvent = HostCallRequest | RunCompleted | RunFailed


# ---------------------------------------------------------------- observer events


@dataclass
class RunStarted:
    run_id: str
    code: str
    tools: list[str]
    wall_time: float = field(default_factory=time.time)


@dataclass
class ConsoleEvent:
    run_id: str
    line: LogLine


@dataclass
class CallStarted:
    run_id: str
    call: HostCall


@dataclass
class CallFinished:
    run_id: str
    call: HostCall


@dataclass
class RunFinished:
    run_id: str
    outcome: RunResult
    heap_used: int | None = None


Event = RunStarted | ConsoleEvent | CallStarted | CallFinished | RunFinished
Observer = Callable[[Event], None]
