"""The host side of one run: answers the bridges, records the trace, emits events.

Bridge replies are JSON envelopes, ``{"ok": value}`` or ``{"err": {...}}``, so that a Python
exception reaches JavaScript as a real, catchable ``ToolError`` with its type and message, and
JSON ``null``/tuples/int keys never meet jsrun's own value conversion.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import json
import queue
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, TypeVar

from codemode.convert import Binder, dumps
from codemode.events import (
    CallFinished,
    CallStarted,
    ConsoleEvent,
    Event,
    HostCall,
    HostCallRequest,
    LogLine,
    Observer,
)

T = TypeVar("T")
_binders: dict[Any, Binder] = {}
_BINDER_CACHE_SIZE = 4096


def binder_for(name: str, fn: Callable[..., Any]) -> Binder:
    """A cached :class:`Binder`: signatures and type hints are read once per function object."""
    try:
        key = (name, fn)
        cached = _binders.get(key)
    except TypeError:  # unhashable callable
        return Binder(name, fn)
    if cached is None:
        if len(_binders) >= _BINDER_CACHE_SIZE:
            _binders.pop(next(iter(_binders)))
        cached = _binders[key] = Binder(name, fn)
    return cached


def is_inline(fn: Callable[..., Any]) -> bool:
    """Whether a function was marked with :func:`codemode.inline`."""
    return bool(getattr(fn, "__codemode_inline__", False))


@dataclass(slots=True)
class Tool:
    """A host function as one run sees it."""

    name: str
    fn: Callable[..., Any]
    binder: Binder
    inline: bool


def error_envelope(message: str, type_name: str) -> str:
    return json.dumps({"err": {"message": message, "type": type_name}})


def describe_exception(name: str, exc: BaseException) -> tuple[str, str]:
    """The message JavaScript sees for a failed host call, and the Python type's name."""
    type_name = type(exc).__name__
    if type_name in ("ArgumentError", "ConversionError"):
        return str(exc), type_name
    if isinstance(exc, _SubmittedError):
        return str(exc), "Error"
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose __str__ raises still has a type
        text = f"<{type_name} object: its message could not be read>"
    return f"codemode.{name}() raised {type_name}{': ' + text if text else ''}", type_name


class RunState:
    """Everything Python knows about one running program."""

    def __init__(
        self,
        *,
        run_id: str,
        tools: Mapping[str, Tool],
        observers: list[Observer],
        context: contextvars.Context,
        pool: Executor,
        max_log_lines: int,
        max_log_bytes: int,
        max_calls: int = 100_000,
        request_sink: Callable[[HostCallRequest], None] | None = None,
    ) -> None:
        self.run_id = run_id
        self.tools = tools
        self.observers = observers
        self.context = context
        self.pool = pool
        self.max_log_lines = max_log_lines
        self.max_log_bytes = max_log_bytes
        self.max_calls = max_calls
        self.dropped_calls = 0
        self.request_sink = request_sink
        self.logs: list[LogLine] = []
        self.calls: list[HostCall] = []
        self.log_bytes = 0
        self.log_full = False
        self.dropped_logs = 0
        self.started = time.perf_counter()
        self.tasks: set[asyncio.Future[Any]] = set()
        self.pending: dict[str, asyncio.Future[Any]] = {}
        # Call numbers come from two threads (isolate and engine loop): next() is atomic.
        self._numbers = itertools.count(1)
        self.cancelled = False
        self.timed_out = False
        self.prepared: Any = None
        # Stopping: every bridge answers STOP, after which the program never calls the host
        # again (it spins until terminated). jsrun's terminate() holds the GIL while it waits
        # for the isolate thread, so it is safe only once that thread will never want the GIL
        # again: ``silenced`` (a STOP answered, or the outcome reported) with no bridge
        # running (``in_sync``, kept by the bridge dispatcher, see ``engine._bind_bridges``).
        # Default host calls: started from the isolate thread, answered through this queue,
        # which the program's pump blocks on (``wait``): a jsrun runtime awaiting a host promise
        # would keep a core busy polling, one blocked in a host function sleeps.
        self.completed: queue.SimpleQueue[tuple[int, str] | None] = queue.SimpleQueue()
        self.workers: set[Future[Any]] = set()
        self._started = 0
        self._stopping = False
        self.heap_used: int | None = None
        self.retiring = False
        self.has_slot = False
        self.retired: asyncio.Future[None] | None = None
        self.in_sync = 0
        self.silenced = False
        self.last_bridge = 0.0
        self.envelope: str | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.done: asyncio.Future[str] | None = None
        self.evaluation: asyncio.Future[Any] | None = None
        # Set when the caller takes the outcome straight from the isolate thread (see
        # Executor.execute); ``outcome`` is then what it was given, for the engine to reuse.
        self.deliver: Callable[[str], None] | None = None
        self.outcome: Any = None

    @property
    def stopping(self) -> bool:
        return self._stopping

    @stopping.setter
    def stopping(self, value: bool) -> None:
        self._stopping = value
        if value:
            self.completed.put(None)  # wake a pump blocked in ``wait``: it answers STOP

    # ---------------------------------------------------------------- events

    def emit(self, event: Event) -> None:
        for observer in self.observers:
            try:
                observer(event)
            except Exception:  # noqa: BLE001 - an observer must never break a run
                pass

    def now(self) -> float:
        return time.perf_counter() - self.started

    # ---------------------------------------------------------------- console

    def log(self, level: str, text: str) -> int:
        """Record one console line. Answers 1 (kept), 0 (the log is full) or -1 (stop)."""
        if self.stopping:
            self.silenced = True
            return STOP_LOG
        if level == "dropped":
            # The harness reports how many lines it has dropped since the log filled up.
            try:
                self.dropped_logs = max(self.dropped_logs, int(text))
            except ValueError:
                pass
            return 0
        if self.log_full:
            return 0
        size = len(text)
        if len(self.logs) >= self.max_log_lines or self.log_bytes + size > self.max_log_bytes:
            self.log_full = True
            return 0
        self.log_bytes += size
        line = LogLine(text, level if level in _LEVELS else "log", self.now())
        self.logs.append(line)
        if self.observers:
            self.emit(ConsoleEvent(self.run_id, line))
        return 1

    # ---------------------------------------------------------------- host calls

    def _begin(self, name: str, payload: str) -> tuple[HostCall, Any]:
        try:
            args = json.loads(payload)
        except (TypeError, ValueError):
            args = None
        if not isinstance(args, list):
            args = [None]
        shown = args[0] if len(args) == 1 else ({} if not args else args)
        call = HostCall(next(self._numbers), name, shown, self.now())
        self._record(call)
        return call, args

    def _record(self, call: HostCall) -> None:
        # The trace is bounded so that a million calls cannot exhaust memory; counts stay exact.
        if len(self.calls) < self.max_calls:
            self.calls.append(call)
        else:
            self.dropped_calls += 1
        if self.observers:
            self.emit(CallStarted(self.run_id, call))

    def _end(self, call: HostCall, value: Any = None, exc: BaseException | None = None) -> str:
        call.duration = self.now() - call.started
        if exc is None:
            try:
                text = dumps(value, where=f"the result of codemode.{call.name}()")
            except Exception as conversion:  # noqa: BLE001
                exc = conversion
            else:
                call.result = value
                if self.observers:
                    self.emit(CallFinished(self.run_id, call))
                return '{"ok":' + text + "}"
        message, type_name = describe_exception(call.name, exc)
        call.error, call.error_type = message, type_name
        if self.observers:
            self.emit(CallFinished(self.run_id, call))
        return error_envelope(message, type_name)

    def finish(self, envelope: str) -> None:
        """The harness's outcome, reported the moment the program ends (isolate thread). From
        here on the run is stopping, and the harness never calls the host again."""
        self.silenced = True
        self.stopping = True
        if self.envelope is None:
            self.envelope = envelope
            # Taken once, and dropped: it refers to this run (a cycle would keep the run, its
            # logs and its result alive until the next garbage collection).
            deliver, self.deliver = self.deliver, None
            if deliver is not None:
                try:
                    deliver(envelope)
                except Exception:  # noqa: BLE001 - the engine's own delivery still follows
                    self.outcome = None
            if self.loop is not None and self.done is not None:
                self.loop.call_soon_threadsafe(set_result_once, self.done, envelope)

    def call_sync(self, name: str, payload: str) -> str:
        """Inline bridge: runs on jsrun's isolate thread, for speed."""
        if self.stopping:
            self.silenced = True
            return STOP_ENVELOPE
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            return error_envelope(f"no tool named {name!r}", "LookupError")
        call, args = self._begin(name, payload)
        try:
            positional, keywords = tool.binder.bind(args)
            value = self.context.copy().run(tool.fn, *positional, **keywords)
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a tool included
            envelope = self._end(call, exc=exc)
        else:
            envelope = self._end(call, value)
        if self.stopping:  # stopped (timeout, cancel) while the tool ran: the program halts now
            self.silenced = True
            return STOP_ENVELOPE
        return envelope

    def start(self, name: str, payload: str) -> int:
        """Default bridge, first half (isolate thread): start a host call and answer its id at
        once; its envelope arrives later through :meth:`wait`. Sync tools go straight to a
        worker thread, async ones (and session requests) to the engine loop."""
        if self.stopping or self.loop is None:
            self.silenced = True
            return STOP_ID
        self._started += 1
        ident = self._started
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is not None and not tool.binder.is_async:
            self._start_on_worker(ident, tool, name, payload)
        else:
            self.loop.call_soon_threadsafe(self._launch, ident, name, payload)
        return ident

    def wait(self, timeout_ms: float) -> str:
        """Default bridge, second half (isolate thread): block, without the GIL, until started
        calls finish or ``timeout_ms`` passes; answer ``[[id, envelope], ...]`` (maybe empty)
        or STOP."""
        if self.stopping:
            self.silenced = True
            return STOP_ENVELOPE
        try:
            first = self.completed.get(timeout=max(0.0, min(float(timeout_ms), 1000.0)) / 1e3)
        except queue.Empty:
            return "[]"
        items: list[tuple[int, str]] = []
        while first is not None:  # None: the run is stopping
            items.append(first)
            try:
                first = self.completed.get_nowait()
            except queue.Empty:
                break
        if first is None or self.stopping:
            self.silenced = True
            return STOP_ENVELOPE
        return "[" + ",".join(f"[{ident},{envelope}]" for ident, envelope in items) + "]"

    def _start_on_worker(self, ident: int, tool: Tool, name: str, payload: str) -> None:
        call, args = self._begin(name, payload)
        try:
            positional, keywords = tool.binder.bind(args)
        except BaseException as exc:  # noqa: BLE001 - a bad argument is the call's failure
            self.completed.put((ident, self._end(call, exc=exc)))
            return
        # Any exception the tool raises (SystemExit and StopIteration included) lands on this
        # concurrent future, never on the engine's event loop.
        future = self.pool.submit(self.context.copy().run, tool.fn, *positional, **keywords)
        self.workers.add(future)

        def finished(done: Future[Any]) -> None:
            self.workers.discard(done)
            if done.cancelled():
                envelope = self._end(call, exc=RuntimeError("the run was stopped"))
            elif (exc := done.exception()) is not None:
                envelope = self._end(call, exc=exc)
            else:
                envelope = self._end(call, done.result())
            self.completed.put((ident, envelope))

        future.add_done_callback(finished)

    def _launch(self, ident: int, name: str, payload: str) -> None:
        """Engine loop: run an async tool (or a session request) for :meth:`start`."""
        task = asyncio.ensure_future(self._answer(ident, name, payload))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, ident: int, name: str, payload: str) -> None:
        # The answer is queued from the task itself: no further loop iteration on the way.
        try:
            envelope = await self.call_async(name, payload)
        except asyncio.CancelledError:
            envelope = error_envelope("the run was stopped", "RuntimeError")
        except Exception as exc:  # noqa: BLE001 - call_async answers failures itself
            envelope = error_envelope(str(exc), "RuntimeError")
        self.completed.put((ident, envelope))

    async def call_async(self, name: str, payload: str) -> str:
        """Engine loop: an async tool's call, or a session request (sync tools never come here:
        :meth:`start` hands them to a worker thread)."""
        if self.stopping:
            return await self._park()
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            if self.request_sink is not None and isinstance(name, str):
                return await self._request(name, payload)
            return error_envelope(f"no tool named {name!r}", "LookupError")
        call, args = self._begin(name, payload)
        try:
            positional, keywords = tool.binder.bind(args)
            # Each call already runs in a task of its own: give it the caller's context
            # variables and await in place (cheaper than another task).
            for var, value in self.context.items():
                var.set(value)
            value = await tool.fn(*positional, **keywords)
        except asyncio.CancelledError:
            if self.stopping:
                return await self._park()
            return self._end(call, exc=RuntimeError("the run was stopped"))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to JS
            # SystemExit, KeyboardInterrupt or GeneratorExit raised by a tool are its failure:
            # let through, they would stop the engine's event loop (and every run with it).
            if self.stopping:
                return await self._park()
            return self._end(call, exc=exc)
        if self.stopping:
            return await self._park()
        self.last_bridge = time.perf_counter()
        return self._end(call, value)

    async def _park(self) -> str:
        """Once a run is stopping, async calls never answer while its isolate lives: an answer
        would make the isolate thread take the GIL at a moment the engine may be blocked in
        jsrun's terminate()/close() holding it. They return once the runtime is closed."""
        retired = self.retired
        if retired is not None and not retired.done():
            try:
                await asyncio.shield(retired)
            except asyncio.CancelledError:
                pass
        return STOP_ENVELOPE

    def quiet(self, seconds: float = 0.01) -> bool:
        """No host function running on the isolate thread, none left in the last moment."""
        return self.in_sync == 0 and time.perf_counter() - self.last_bridge >= seconds

    def silent(self) -> bool:
        """The isolate thread will never enter Python again for this run: the harness has been
        told to stop (or has reported its outcome) and that bridge call has returned. The
        dispatcher's last statement before returning is the ``in_sync`` decrement, and no
        thread switch can happen between the two, so this is exact, not a guess."""
        return self.silenced and self.in_sync == 0

    async def _request(self, name: str, payload: str) -> str:
        """Session mode: hand an unknown target to the driver and wait for its answer."""
        try:
            args = json.loads(payload)
        except (TypeError, ValueError):
            args = []
        if not isinstance(args, list):
            args = []
        number = next(self._numbers)
        call_id = f"call-{number}"
        data = args[0] if len(args) == 1 and isinstance(args[0], dict) else {"args": args}
        future = asyncio.get_running_loop().create_future()
        self.pending[call_id] = future
        call = HostCall(number, name, data, self.now())
        self._record(call)
        assert self.request_sink is not None
        self.request_sink(HostCallRequest(call_id, name, data))
        try:
            value = await future
        except _SubmittedError as exc:
            if self.stopping:
                return await self._park()
            return self._end(call, exc=exc)
        except asyncio.CancelledError:
            if self.stopping:
                return await self._park()
            return self._end(call, exc=RuntimeError("the run was stopped"))
        finally:
            self.pending.pop(call_id, None)
        if self.stopping:
            return await self._park()
        return self._end(call, value)

    def resolve(self, call_id: str, value: Any = None, error: str | None = None) -> None:
        """Answer a pending request (engine thread)."""
        future = self.pending.get(call_id)
        if future is None or future.done():
            raise KeyError(f"no pending host call with id {call_id!r}")
        if error is not None:
            future.set_exception(_SubmittedError(error))
        else:
            future.set_result(value)

    def abandon(self) -> None:
        """Cancel host work still in flight once the program is gone."""
        for future in list(self.tasks) + list(self.pending.values()):
            future.cancel()
        for worker in list(self.workers):
            worker.cancel()


def set_result_once(future: asyncio.Future[T], value: T) -> None:
    """Settle a future unless it already is (cancelled, or settled by another path)."""
    if not future.done():
        future.set_result(value)


STOP_ENVELOPE = '{"stop":1}'
STOP_LOG = -1
STOP_ID = -1  # what start() answers once the run is stopping


class _SubmittedError(Exception):
    """An error given by a session's driver through ``submit_error``."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "error"


_LEVELS = frozenset({"log", "info", "warn", "error", "debug"})
