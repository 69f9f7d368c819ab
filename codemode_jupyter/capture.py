"""Route ``print()`` from host functions into the run's record instead of losing it in a thread.

Host functions run on worker threads, the engine loop or the isolate thread, each in a copy of
the context the run was started from. While a run is in progress ``sys.stdout``/``sys.stderr``
are wrapped; a write whose context carries a run's sink (a context variable bound only in the
context the run starts from) goes to that run, as ``stdout``/``stderr`` lines in order with the
console; any other write (the kernel's own, other threads, other cells) passes straight through.
"""

from __future__ import annotations

import contextvars
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class StreamSink(Protocol):
    def write_stream(self, stream: str, text: str) -> None: ...


_sink: contextvars.ContextVar[StreamSink | None] = contextvars.ContextVar(
    "codemode_jupyter_stream_sink", default=None
)
_lock = threading.Lock()
_depth = 0


class RoutedStream:
    """A stand-in for ``sys.stdout``/``sys.stderr`` that diverts writes made for a run."""

    def __init__(self, name: str, original: Any) -> None:
        self._name = name
        self._original = original

    @property
    def original(self) -> Any:
        return self._original

    def write(self, text: str) -> int:
        sink = _sink.get()
        if sink is None:
            return self._original.write(text)
        sink.write_stream(self._name, str(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if _sink.get() is None:
            self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


def _install() -> None:
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        if not isinstance(current, RoutedStream):
            setattr(sys, name, RoutedStream(name, current))


def _uninstall() -> None:
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        if isinstance(current, RoutedStream):  # else someone replaced it since: leave theirs
            setattr(sys, name, current.original)


@contextmanager
def routing() -> Iterator[None]:
    """Wrap the standard streams for the duration of a run (nested runs share one wrapper)."""
    global _depth
    with _lock:
        if _depth == 0:
            _install()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _uninstall()


def bind(sink: StreamSink | None) -> contextvars.Token[StreamSink | None]:
    """Make writes from this context (and copies of it taken from now on) go to ``sink``."""
    return _sink.set(sink)


def unbind(token: contextvars.Token[StreamSink | None]) -> None:
    _sink.reset(token)
