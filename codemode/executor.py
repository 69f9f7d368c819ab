"""Run JavaScript programs that call Python host functions, one fresh V8 isolate per run.

``Executor.execute`` runs a program to the end; ``Executor.start`` returns a :class:`RunSession`
that hands calls to unregistered targets to its driver (for approvals, logging, routing).
Both can be awaited from any event loop: the isolates themselves live on the engine thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import itertools
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from jsrun import JavaScriptError, RuntimeTerminated

from codemode.capabilities.base import Capability, HostFn
from codemode.engine import Engine, Prepared, get_engine
from codemode.events import (
    ErrorDetails,
    HostCallRequest,
    Observer,
    RunCompleted,
    RunEvent,
    RunFailed,
    RunFinished,
    RunResult,
    RunStarted,
)
from codemode.run import RunState, Tool, binder_for, is_inline, set_result_once
from codemode.workers import DaemonPool

MiB = 1024 * 1024
_run_ids = itertools.count(1)
_pool: DaemonPool | None = None


def _worker_pool() -> DaemonPool:
    """Shared threads for sync host functions, so slow ones overlap under ``Promise.all``.

    Sized for I/O (a tool waiting on a network call holds a thread, not a core): 100 slow calls
    at once overlap fully. Threads start only when needed, and never hold up interpreter exit
    (see :mod:`codemode.workers`)."""
    global _pool
    if _pool is None:
        _pool = DaemonPool(
            max_workers=max(128, (os.cpu_count() or 1) * 8), thread_name_prefix="codemode-host"
        )
    return _pool


def inline(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a quick sync host function to run on the isolate's own thread (no thread hop).

    Inline calls cost about a fifth of a default call but run one at a time and block the
    program while they run: use it for fast, pure functions.
    """
    fn.__codemode_inline__ = True  # type: ignore[attr-defined]
    return fn


class Executor:
    """Runs programs with a fixed set of limits and capabilities.

    Args:
        timeout_s: Wall-clock limit for one run; synchronous loops are stopped too.
        max_heap_bytes: V8 heap limit for one run.
        capabilities: Namespaced host functions (``codemode.fs``, ...) available to every run.
        inline_sync: Run every sync host function inline (see :func:`inline`).
        max_log_lines: Console lines kept per run; later ones are counted as dropped.
        max_log_bytes: Console characters kept per run.
        max_result_bytes: Largest result (as JSON) a program may return.
        max_buffer_bytes: ArrayBuffer/TypedArray memory a run may allocate (outside the heap).
        max_depth: Deepest nesting of a value crossing the bridge.
        max_trace_calls: Host calls kept in a run's trace; later ones are only counted.
        filename: The name the program has in stack traces.
        on_event: Observer called with every :mod:`codemode.events` event of every run.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 60.0,
        max_heap_bytes: int = 16 * MiB,
        capabilities: Sequence[Capability] | None = None,
        inline_sync: bool = False,
        max_log_lines: int = 10_000,
        max_log_bytes: int = 1 * MiB,
        max_result_bytes: int = 10 * MiB,
        max_arg_bytes: int = 10 * MiB,
        max_buffer_bytes: int | None = None,
        max_depth: int = 200,
        max_trace_calls: int = 100_000,
        filename: str = "codemode.js",
        on_event: Observer | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if max_heap_bytes < 4 * MiB:
            raise ValueError("max_heap_bytes must be at least 4 MiB")
        self.timeout_s = float(timeout_s)
        self.max_heap_bytes = int(max_heap_bytes)
        self.capabilities: list[Capability] = list(capabilities or [])
        self.inline_sync = inline_sync
        self.max_log_lines = max_log_lines
        self.max_log_bytes = max_log_bytes
        self.max_result_bytes = max_result_bytes
        self.max_arg_bytes = max_arg_bytes
        self.max_buffer_bytes = max_buffer_bytes if max_buffer_bytes is not None else max_heap_bytes
        self.max_depth = max_depth
        self.max_trace_calls = max_trace_calls
        self.filename = filename
        self.observers: list[Observer] = [on_event] if on_event else []
        self._closed = False
        self._engine.prewarm(self.max_heap_bytes)

    @property
    def _engine(self) -> Engine:
        # Looked up on each use: a forked child gets an engine of its own.
        return get_engine()

    # ---------------------------------------------------------------- public API

    def host_functions(self, fns: Mapping[str, HostFn] | None = None) -> dict[str, HostFn]:
        """Every callable name a run sees: capability functions (``ns.fn``) and flat ones."""
        table: dict[str, HostFn] = {}
        for cap in self.capabilities:
            for name, fn in cap.exports().items():
                table[f"{cap.namespace}.{name}"] = fn
        for name, fn in (fns or {}).items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"host function names must be non-empty strings, not {name!r}")
            if not callable(fn):
                raise TypeError(f"host function {name!r} is not callable")
            table[name] = fn
        namespaces = {
            ".".join(parts[:i])
            for parts in (name.split(".") for name in table)
            for i in range(1, len(parts))
        }
        for name in sorted(namespaces & set(table)):
            raise ValueError(
                f"host function {name!r} has the name of a namespace ({name}.*): a name "
                "cannot be both a function and a namespace"
            )
        return table

    async def execute(
        self,
        code: str,
        fns: Mapping[str, HostFn] | None = None,
        *,
        timeout_s: float | None = None,
        on_event: Observer | None = None,
    ) -> RunResult:
        """Run ``code`` to the end. Calls to names that are not registered fail at once."""
        run, spec = self._prepare(code, fns, timeout_s, on_event, None)
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[RunResult] = loop.create_future()
        if not run.observers:
            # Nobody waits for RunFinished: the outcome comes from the isolate thread straight
            # to this loop, one thread hop instead of two through the engine's.
            run.deliver = lambda envelope: self._deliver(run, envelope, loop, outcome)
        future = self._engine.submit(self._drive(run, spec))
        future.add_done_callback(lambda done: _call_in(loop, _settle_from, outcome, done))
        try:
            return await outcome
        except asyncio.CancelledError:
            future.cancel()
            self._engine.call_soon(_stop, run)
            raise

    def execute_sync(
        self,
        code: str,
        fns: Mapping[str, HostFn] | None = None,
        *,
        timeout_s: float | None = None,
        on_event: Observer | None = None,
    ) -> RunResult:
        """Blocking :meth:`execute`, for callers without an event loop (or inside a busy one)."""
        if self._engine.on_engine_thread():
            raise RuntimeError("execute_sync cannot be called from a host function; await execute")
        run, spec = self._prepare(code, fns, timeout_s, on_event, None)
        future = self._engine.submit(self._drive(run, spec))
        try:
            return future.result()
        except BaseException:
            self._engine.call_soon(_stop, run)
            raise

    async def start(self, code: str, fns: Mapping[str, HostFn] | None = None) -> RunSession:
        """Start ``code`` and return a session whose driver answers unregistered calls."""
        loop = asyncio.get_running_loop()
        session = RunSession(self._engine, loop)
        run, spec = self._prepare(code, fns, None, None, session._push_threadsafe)
        session._attach(run, self._engine.submit(self._drive(run, spec)))
        return session

    def close(self) -> None:
        """Refuse new runs. The engine thread itself is shared and closes at exit."""
        self._closed = True

    async def __aenter__(self) -> Executor:
        return self

    async def __aexit__(self, *_: object) -> None:
        self.close()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---------------------------------------------------------------- internals

    def _prepare(
        self,
        code: str,
        fns: Mapping[str, HostFn] | None,
        timeout_s: float | None,
        on_event: Observer | None,
        request_sink: Callable[[HostCallRequest], None] | None,
    ) -> tuple[RunState, _Spec]:
        if self._closed:
            raise RuntimeError("Executor is closed")
        if not isinstance(code, str):
            raise TypeError(f"code must be a string, not {type(code).__name__}")
        tools: dict[str, Tool] = {}
        for name, fn in self.host_functions(fns).items():
            binder = binder_for(name, fn)
            inline_call = not binder.is_async and (self.inline_sync or is_inline(fn))
            tools[name] = Tool(name, fn, binder, inline_call)
        observers = self.observers + ([on_event] if on_event else [])
        run = RunState(
            run_id=f"run-{next(_run_ids)}",
            tools=tools,
            observers=observers,
            context=contextvars.copy_context(),
            pool=_worker_pool(),
            max_log_lines=self.max_log_lines,
            max_log_bytes=self.max_log_bytes,
            max_calls=self.max_trace_calls,
            request_sink=request_sink,
        )
        config = {
            "tools": sorted(tools),
            "inline": sorted(name for name, tool in tools.items() if tool.inline),
            "openTargets": request_sink is not None,
            "filename": self.filename,
            "maxResultBytes": self.max_result_bytes,
            "maxArgBytes": self.max_arg_bytes,
            "maxBufferBytes": self.max_buffer_bytes,
            "maxDepth": self.max_depth,
        }
        config_json, code_json = json.dumps(config), json.dumps(code)
        spec = _Spec(
            code=code,
            script=f"__codemode_run({config_json},{code_json})",
            job=f'{{"config":{config_json},"code":{code_json}}}',
            timeout=timeout_s or self.timeout_s,
            heap=self.max_heap_bytes,
            filename=self.filename,
        )
        return run, spec

    async def _drive(self, run: RunState, spec: _Spec) -> RunResult:
        """Engine thread: run one program on a fresh runtime and turn the outcome into a result.

        The time limit is jsrun's own (its watchdog thread stops even ``while(true){}`` and
        never needs the GIL). The outcome arrives through the ``done`` bridge as soon as the
        program ends, so the caller never waits for jsrun to wind its evaluation down; the
        runtime is disposed of once that evaluation has returned.
        """
        engine = self._engine
        if run.cancelled:
            return _failed(run, ErrorDetails("cancelled", "Cancelled", "the run was cancelled"))
        await engine.acquire_slot()
        try:
            prepared = await engine.lease(spec.heap)
        except BaseException:
            engine.release_slot()
            raise
        run.has_slot = True
        loop = engine.loop
        prepared.slot.run = run
        prepared.slot.stop = lambda: _stop(run)
        run.prepared = prepared
        run.loop = loop
        run.done = loop.create_future()
        run.retired = loop.create_future()
        if run.cancelled:  # cancelled while a runtime was being found
            _retire(run)
            return _failed(run, ErrorDetails("cancelled", "Cancelled", "the run was cancelled"))
        if run.observers:
            run.emit(RunStarted(run.run_id, spec.code, sorted(run.tools)))
        outcome: RunResult | None = None
        try:
            script = spec.script if prepared.parked is None else "__codemode_run_job()"
            at_gate = prepared.parked is not None and prepared.slot.in_park
            if prepared.parked is not None and not at_gate:
                # Its evaluation has not reached the gate yet: the job's evaluation could
                # overtake it (jsrun sends each one through its own task). Wait for it,
                # shielded: cancelling this run must not cancel the parked evaluation's future,
                # whose completion says the isolate thread has left the gate.
                prepared.hand(spec.job)
                await asyncio.shield(prepared.parked)
            if run.stopping:
                raise _Cancelled
            evaluation = asyncio.ensure_future(
                prepared.runtime.eval_async(script, timeout=spec.timeout)
            )
            if at_gate:
                # The isolate thread waits at the gate, inside its first evaluation: the job's
                # evaluation, queued now, cannot start before that one returns. Saves a round
                # trip through this loop.
                prepared.hand(spec.job)
            run.evaluation = evaluation
            evaluation.add_done_callback(_retrieve)
            # A host function blocking the isolate thread keeps jsrun from noticing its own
            # deadline: the caller gets its answer a second later all the same.
            await asyncio.wait(
                {run.done, evaluation},
                timeout=spec.timeout + 1.0,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except asyncio.CancelledError:
            _stop(run)
            if run.observers:
                cancelled = _failed(
                    run, ErrorDetails("cancelled", "Cancelled", "the run was cancelled")
                )
                run.emit(RunFinished(run.run_id, cancelled, None))
            raise
        except _Cancelled:
            outcome = _failed(run, ErrorDetails("cancelled", "Cancelled", "the run was cancelled"))
        except Exception as exc:  # noqa: BLE001 - the parked evaluation itself failed
            outcome = self._limit_failure(run, spec, exc)
        if outcome is None:
            try:
                outcome = await self._outcome(run, prepared, spec)
            except Exception as exc:  # noqa: BLE001 - whatever happens, the run is retired
                outcome = _failed(run, ErrorDetails("internal", type(exc).__name__, str(exc)))
        if run.cancelled:
            outcome = _failed(run, ErrorDetails("cancelled", "Cancelled", "the run was cancelled"))
        _retire(run)
        if run.observers:
            run.emit(RunFinished(run.run_id, outcome, run.heap_used))
        return outcome

    async def _outcome(self, run: RunState, prepared: Prepared, spec: _Spec) -> RunResult:
        """What the run came to: the harness's report, or how its evaluation ended."""
        assert run.done is not None
        if run.done.done():
            outcome = run.outcome
            if outcome is None:
                outcome = self._decode(run, run.done.result())
            if _needs_location(outcome):
                await _locate_syntax_error(run, prepared, spec, outcome)
            return outcome
        if run.evaluation is not None and run.evaluation.done():
            return self._evaluation_outcome(run, spec, run.evaluation)
        run.timed_out = True
        return _failed(run, _timeout_details(spec))

    def _evaluation_outcome(
        self, run: RunState, spec: _Spec, evaluation: asyncio.Future[Any]
    ) -> RunResult:
        """The evaluation ended without the harness reporting: a limit or a termination."""
        if evaluation.cancelled():
            return _failed(run, ErrorDetails("cancelled", "Cancelled", "the run was cancelled"))
        exc = evaluation.exception()
        if exc is None:
            return self._decode(run, evaluation.result())
        if isinstance(exc, JavaScriptError) and not isinstance(exc, RuntimeTerminated):
            return _failed(run, ErrorDetails("internal", exc.name or "Error", str(exc)))
        return self._limit_failure(run, spec, exc)

    def _deliver(
        self,
        run: RunState,
        envelope: str,
        loop: asyncio.AbstractEventLoop,
        outcome: asyncio.Future[RunResult],
    ) -> None:
        """Isolate thread, as the program reports its outcome: hand it to the caller at once,
        unless the engine has more to say (where a syntax error really is)."""
        result = run.outcome = self._decode(run, envelope)
        if not _needs_location(result):
            _call_in(loop, set_result_once, outcome, result)

    def _decode(self, run: RunState, envelope: Any) -> RunResult:
        """The harness's envelope as a result. Total: whatever a program managed to make the
        envelope (it can reach the harness's promises), the answer is a result, never an
        exception that would keep the run from being retired."""
        try:
            data = json.loads(envelope)
        except (TypeError, ValueError, RecursionError):
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("error", {}), dict):
            return _failed(run, ErrorDetails("internal", "InternalError", repr(envelope)[:200]))
        heap = data.get("heap")
        run.heap_used = heap if _is_int(heap) else None
        dropped = data.get("dropped")
        dropped = dropped if _is_int(dropped) and dropped > 0 else 0
        if "error" in data:
            e = data["error"]
            details = ErrorDetails(
                kind=_text(e.get("kind")) or "error",
                name=_text(e.get("name")) or "Error",
                message=_text(e.get("message")) or "",
                stack=_text(e.get("stack")),
                line=e.get("line") if _is_int(e.get("line")) else None,
                column=e.get("column") if _is_int(e.get("column")) else None,
                tool=_text(e.get("tool")),
                python_type=_text(e.get("pythonType")),
            )
            return _failed(run, details, dropped)
        return RunCompleted(
            result=data.get("result"),
            logs=run.logs,
            calls=run.calls,
            duration=run.now(),
            dropped_logs=dropped,
            dropped_calls=run.dropped_calls,
        )

    def _limit_failure(self, run: RunState, spec: _Spec, exc: BaseException) -> RunFailed:
        text = str(exc)
        if run.cancelled:
            details = ErrorDetails("cancelled", "Cancelled", "the run was cancelled")
        elif run.timed_out or "timed out" in text:
            details = _timeout_details(spec)
        elif "Heap limit" in text or "heap" in text.lower():
            details = ErrorDetails(
                "memory",
                "MemoryError",
                f"the program ran out of memory: it exceeded the heap limit of "
                f"{_size(spec.heap)} and was stopped",
            )
        else:
            details = ErrorDetails("internal", type(exc).__name__, text)
        return _failed(run, details)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _call_in(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn`` on ``loop`` from any thread; nothing if that loop is gone (its caller too)."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # closed
        pass


def _needs_location(result: RunResult) -> TypeGuard[RunFailed]:
    """A syntax error, which only the engine can place in the program (see
    :func:`_locate_syntax_error`)."""
    return (
        isinstance(result, RunFailed)
        and result.details is not None
        and result.details.kind == "syntax"
    )


def _settle_from(
    outcome: asyncio.Future[RunResult], done: concurrent.futures.Future[RunResult]
) -> None:
    """The engine's own outcome, unless the caller already has one (or left)."""
    if done.cancelled():
        if not outcome.done():
            outcome.cancel()
        return
    exc = done.exception()
    if outcome.done():
        return
    if exc is not None:
        outcome.set_exception(exc)
    else:
        outcome.set_result(done.result())


class _Cancelled(Exception):
    """The run was cancelled before its program started."""


@dataclass(slots=True, kw_only=True)
class _Spec:
    """One run's program as the engine needs it: a script for a fresh runtime, a job for a
    parked one."""

    code: str
    script: str
    job: str
    timeout: float
    heap: int
    filename: str


def _failed(run: RunState, details: ErrorDetails, dropped: int = 0) -> RunFailed:
    dropped = max(dropped, run.dropped_logs)
    return RunFailed(
        error=str(details),
        logs=run.logs,
        details=details,
        calls=run.calls,
        duration=run.now(),
        dropped_logs=dropped,
        dropped_calls=run.dropped_calls,
    )


def _size(n: int) -> str:
    return f"{n / MiB:g} MiB" if n >= MiB else f"{n} bytes"


def _terminate(prepared: Prepared) -> None:
    try:
        prepared.runtime.terminate()
    except Exception:  # noqa: BLE001 - already closed or finished
        pass


def _retire(run: RunState) -> None:
    """Engine thread: stop the run's isolate (if still running) and close it, safely, soon."""
    if run.retiring or run.prepared is None:
        return
    run.retiring = True
    run.stopping = True
    run.deliver = None  # it refers to the run: no cycle left behind
    run.abandon()
    get_engine().track(asyncio.ensure_future(_retire_when_quiet(run, run.prepared)))


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark an evaluation's failure as seen (the run's outcome already reports it)."""
    if not future.cancelled():
        future.exception()


async def _retire_when_quiet(run: RunState, prepared: Prepared) -> None:
    """Stop the run's isolate for good, then close it, without ever deadlocking.

    jsrun's ``terminate()`` and ``close()`` hold the GIL while they wait for the isolate thread,
    so they deadlock if that thread wants the GIL to enter (or leave) a host function. And a
    runtime may still run JavaScript after its run: a timer the program left spinning, or, after
    jsrun's own timeout (which lifts the termination once the evaluation has failed), the
    program's pending callbacks; ``close()`` on a runtime that is running JavaScript never
    returns. So every runtime is terminated before it is closed (then ``close()`` only lets go):
    at once when the run is silent (the harness was told to stop, or reported its outcome, and
    that bridge call has returned, see :meth:`RunState.silent`); otherwise, a run stopped while
    it calls no host function, once no bridge has been entered for a moment and its thread is
    seen running JavaScript, which leaves a window (short, but up to a few milliseconds while
    other threads keep the GIL busy) for a host call starting just then. An isolate a host function
    keeps blocked lets its caller go after about 2 s; it is terminated if the function ever
    returns, and only let go at shutdown otherwise."""
    engine = get_engine()
    # Let the run's outcome reach its caller first: this task was created before the run's
    # own task finished, so it would otherwise run (and terminate) ahead of the delivery.
    await asyncio.sleep(0)
    evaluation = run.evaluation
    if run.envelope is not None and evaluation is not None and not evaluation.done():
        # The program reported its outcome and its evaluation is returning. terminate() now
        # would hold the GIL while the isolate thread winds that evaluation down (up to ~10 ms
        # here); once it has returned, terminate() takes microseconds. A timer the program
        # left spinning keeps the evaluation going: it is terminated after the grace period.
        await asyncio.wait({evaluation}, timeout=_FINISH_GRACE_S)
    waited = 0
    distrusted = False
    # The run's last bridge call and the isolate thread's CPU time when it was first seen quiet.
    quiet_since: tuple[float, int] | None = None
    while True:
        evaluation = run.evaluation
        if not distrusted and evaluation is not None and evaluation.done() and run.envelope is None:
            # The evaluation ended without an outcome (jsrun's timeout, a heap limit): V8's
            # termination may have cut the program off between a stop answer and its halt, and
            # jsrun lifts it afterwards. Only a stop answered from now on counts.
            distrusted = True
            run.silenced = False
        if evaluation is None:
            # The job never started: unpark the runtime (it quits) and close it once it has.
            parked = prepared.parked
            if parked is None:
                break
            if not parked.done():
                prepared.hand("")
            elif not prepared.slot.in_park:
                break
        elif run.silent():
            break
        elif run.quiet(0.02) and _isolate_running(prepared.slot.tid):
            # Stopped while calling no host function (a CPU loop, cancelled). An isolate thread
            # waiting for the GIL on its way into a host function would look just as quiet, but
            # it sleeps: this one runs (or waits for a core: /proc says "R" for both). So it
            # must also have spent a while of its own CPU time without calling the host: wall
            # time alone let a starved program that calls the host every millisecond of its own
            # look quiet, and be terminated as it called. Sleeping first lets a thread that was
            # about to enter in; its state is read once more right before terminating.
            cpu = _cpu_time_ns(prepared.slot.pthread)
            if quiet_since is None or quiet_since[0] != run.last_bridge:
                quiet_since = (run.last_bridge, cpu)
            if cpu - quiet_since[1] >= _QUIET_CPU_NS:
                time.sleep(0.001)
                if run.silent() or (
                    _isolate_running(prepared.slot.tid, looks=1) and run.quiet(0.001)
                ):
                    break
        waited += 1
        if waited == 400:  # about 2 s: let the caller go; keep watching, less often
            engine.abandon()
            _resolve_retired(run)
        await asyncio.sleep(0.005 if waited < 400 else 0.1)
    _terminate(prepared)
    run.prepared = None  # runtimes never leave this thread
    engine.dispose(prepared)
    _resolve_retired(run)


# How long a program that reported its outcome gets for its evaluation to return by itself
# (normally well under 10 ms; generous for a loaded machine: only a timer the program left
# spinning, which burns a core meanwhile, waits it out).
_FINISH_GRACE_S = 0.2


# How much of its own CPU time a stopped isolate thread spends without calling the host before
# the engine takes it for a loop that calls none (and terminates it).
_QUIET_CPU_NS = 20_000_000


def _cpu_time_ns(pthread: int) -> int:
    """The CPU time a thread has used. Where it cannot be read (no per-thread CPU clocks, or
    the thread is gone), the wall clock stands in: the check then counts wall time."""
    try:
        return time.clock_gettime_ns(time.pthread_getcpuclockid(pthread))
    except (AttributeError, OSError, OverflowError):
        return time.monotonic_ns()


def _isolate_running(tid: int, looks: int = 5) -> bool:
    """Whether the isolate thread is running (JavaScript), as opposed to asleep: waiting for
    the GIL, or blocked. Read from Linux's per-thread state; elsewhere (or before the thread
    is known) assume it runs."""
    if not tid:
        return True
    try:
        for look in range(looks):
            if look:
                time.sleep(0.0002)
            with open(f"/proc/self/task/{tid}/stat", "rb") as fh:
                stat = fh.read()
            state = stat.rindex(b")") + 2  # the state letter follows "(name) "
            if stat[state : state + 1] != b"R":
                return False
    except (OSError, ValueError):
        return True
    return True


def _resolve_retired(run: RunState) -> None:
    if run.retired is not None:
        set_result_once(run.retired, None)
    if run.has_slot:
        run.has_slot = False
        get_engine().release_slot()


async def _locate_syntax_error(
    run: RunState, prepared: Prepared, spec: _Spec, outcome: RunFailed
) -> None:
    """V8 tells where a syntax error is only when the faulty code is a script of its own, so
    compile the program once more that way and read the position. The script starts with
    ``throw``: if it compiles after all, nothing of it runs. So it needs no jsrun time limit,
    which would cost up to 10 ms more (a timed evaluation ends by joining jsrun's watchdog
    thread, which sleeps in 10 ms steps); the wait for it is bounded here instead."""
    evaluation = run.evaluation
    if evaluation is not None and not evaluation.done():
        await asyncio.wait({evaluation}, timeout=1.0)
    prefix = "throw 0;(async () => {"
    try:
        await asyncio.wait_for(
            prepared.runtime.eval_async(f"{prefix}{spec.code}\n}})"), timeout=1.0
        )
    except JavaScriptError as exc:
        # Its traceback runs through the future that raised it (which holds it) and this frame:
        # a cycle that would keep the run alive until the next garbage collection.
        exc.__traceback__ = None
        frames = [f for f in (exc.frames or []) if f.get("line_number")]
        if exc.name != "SyntaxError" or not frames:
            return
        line = int(frames[0]["line_number"])
        column = int(frames[0].get("column_number") or 0)
        if line == 1:
            column = max(1, column - len(prefix))
        details = outcome.details
        assert details is not None
        details.line, details.column = line, column
        details.stack = f"{details.name}: {details.message}\n    at {spec.filename}:{line}:{column}"
        outcome.error = str(details)
    except Exception:  # noqa: BLE001 - the location is a nicety
        return


def _timeout_details(spec: _Spec) -> ErrorDetails:
    return ErrorDetails(
        "timeout",
        "TimeoutError",
        f"the program did not finish within {spec.timeout:g} s and was stopped",
    )


def _stop(run: RunState) -> None:
    """Engine thread: stop a run's program now (cancel, interrupt)."""
    run.cancelled = True
    _retire(run)


class RunSession:
    """A program in progress whose unregistered host calls are answered by its driver.

    ``next_event()`` yields :class:`HostCallRequest` events, then one :class:`RunCompleted` or
    :class:`RunFailed` (repeated on later calls). Use as ``async with`` to cancel on exit.
    """

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
        self._engine = engine
        self._loop = loop
        self._queue: asyncio.Queue[RunEvent] = asyncio.Queue()
        self._final: RunResult | None = None
        self._run: RunState | None = None
        self._future: Any = None

    def _attach(self, run: RunState, future: Any) -> None:
        self._run = run
        self._future = future
        future.add_done_callback(self._on_done)

    def _push_threadsafe(self, event: RunEvent) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, event)

    def _on_done(self, future: Any) -> None:
        if future.cancelled():
            assert self._run is not None
            outcome: RunEvent = _failed(
                self._run, ErrorDetails("cancelled", "Cancelled", "the run was cancelled")
            )
        elif future.exception() is not None:
            exc = future.exception()
            outcome = RunFailed(error=f"{type(exc).__name__}: {exc}")
        else:
            outcome = future.result()
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, outcome)
        except RuntimeError:  # the driver's loop is gone
            pass

    @property
    def done(self) -> bool:
        return self._final is not None

    async def next_event(self) -> RunEvent:
        if self._final is not None:
            return self._final
        event = await self._queue.get()
        if isinstance(event, (RunCompleted, RunFailed)):
            self._final = event
        return event

    async def wait(self) -> RunResult:
        """Wait for the end of the run (pending requests must be answered meanwhile)."""
        while True:
            event = await self.next_event()
            if isinstance(event, (RunCompleted, RunFailed)):
                return event

    async def submit_result(self, call_id: str, value: Any) -> None:
        await self._resolve(call_id, value, None)

    async def submit_error(self, call_id: str, message: str) -> None:
        await self._resolve(call_id, None, str(message))

    async def _resolve(self, call_id: str, value: Any, error: str | None) -> None:
        run = self._run
        assert run is not None

        async def resolve() -> None:
            run.resolve(call_id, value, error)

        await self._engine.run(resolve())

    async def cancel(self) -> None:
        """Stop the program if it is still running (a busy loop included) and wait for it."""
        run = self._run
        if run is None or self._future is None:
            return
        if not self._future.done():
            self._engine.call_soon(_stop, run)
            await asyncio.wrap_future(self._future)

    async def __aenter__(self) -> RunSession:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.cancel()


__all__ = ["Executor", "RunSession", "inline", "MiB"]
