"""Limits and jsrun's sharp edges: timeouts, heap and buffer caps, cancellation, many runs at
once, many threads at once, deep values, and a clean process exit. Real isolates throughout."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from codemode import Executor, RunCompleted, RunFailed, inline
from codemode.engine import get_engine

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[1]


def ok(result: RunCompleted | RunFailed) -> RunCompleted:
    assert isinstance(result, RunCompleted), getattr(result, "error", result)
    return result


def failed(result: RunCompleted | RunFailed) -> RunFailed:
    assert isinstance(result, RunFailed), f"expected a failure, got {result!r}"
    assert result.details is not None
    return result


async def assert_next_run_works(executor: Executor) -> None:
    result = await executor.execute(
        "return (await codemode.f({x: 20})) + 1", fns={"f": lambda *, x: x * 2}
    )
    assert ok(result).result == 41


# ------------------------------------------------------------------------------ timeouts


async def test_busy_loop_stopped_at_timeout(executor: Executor) -> None:
    started = time.perf_counter()
    result = failed(await executor.execute("console.log('spin');\nwhile (true) {}", timeout_s=0.5))
    elapsed = time.perf_counter() - started
    assert result.details.kind == "timeout"
    assert "0.5" in result.error
    assert result.logs == ["spin"]
    assert elapsed < 5  # stopped by the 0.5 s limit, not by anything slower
    await assert_next_run_works(executor)


async def test_executor_timeout_applies(make_executor) -> None:
    executor = make_executor(timeout_s=0.5)
    result = failed(await executor.execute("for (;;) { Math.random(); }"))
    assert result.details.kind == "timeout"
    await assert_next_run_works(executor)


async def test_never_resolving_promise_times_out(executor: Executor) -> None:
    result = failed(
        await executor.execute("console.log('wait');\nawait new Promise(() => {})", timeout_s=0.5)
    )
    assert result.details.kind == "timeout"
    assert result.logs == ["wait"]
    await assert_next_run_works(executor)


async def test_timeout_during_pending_async_host_call(executor: Executor) -> None:
    cancelled = threading.Event()

    async def slow() -> int:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    result = failed(
        await executor.execute("await codemode.slow()", fns={"slow": slow}, timeout_s=0.5)
    )
    assert result.details.kind == "timeout"
    assert cancelled.wait(2), "the pending host call was not cancelled"
    await assert_next_run_works(executor)


async def test_timeout_during_blocking_sync_host_call(executor: Executor) -> None:
    def blocking() -> int:
        time.sleep(2)
        return 1

    started = time.perf_counter()
    result = failed(
        await executor.execute(
            "await codemode.blocking()", fns={"blocking": blocking}, timeout_s=0.5
        )
    )
    assert result.details.kind == "timeout"
    assert time.perf_counter() - started < 1.8  # did not wait for the 2 s host call
    await assert_next_run_works(executor)


async def test_timer_loop_times_out(executor: Executor) -> None:
    code = "console.log('tick');\nsetInterval(() => {}, 10);\nawait new Promise(() => {});"
    result = failed(await executor.execute(code, timeout_s=0.5))
    assert result.details.kind == "timeout"
    await assert_next_run_works(executor)


# ------------------------------------------------------------------------------ memory


async def test_heap_blowup_is_memory_error(executor: Executor) -> None:
    code = "console.log('grow');\nconst a = [];\nwhile (true) a.push({p: new Array(1000).fill(7)});"
    result = failed(await executor.execute(code))
    assert result.details.kind == "memory"
    message = result.error.lower()
    assert "memory" in message or "heap" in message
    assert "16 mib" in message
    assert result.logs == ["grow"]
    await assert_next_run_works(executor)


async def test_string_blowup_is_contained(executor: Executor) -> None:
    code = "let s = 'x';\nconst keep = [];\nwhile (true) { s = s + s; keep.push(s + '!'); }"
    result = failed(await executor.execute(code))
    assert result.details.kind in ("memory", "error")
    await assert_next_run_works(executor)


@pytest.mark.parametrize(
    "code",
    [
        "new ArrayBuffer(1 << 30)",
        "const keep = [];\nfor (let i = 0; i < 200; i++) keep.push(new Uint8Array(1 << 20));",
        "const keep = [];\nfor (let i = 0; i < 40; i++) keep.push(new Float64Array(1 << 17));",
        "const a = new Uint8Array(1 << 23);\nconst b = a.slice();\nconst c = a.slice();",
        "const b = new ArrayBuffer(0, {maxByteLength: 1 << 30});\nb.resize(1 << 29);",
        "const k = [];\nfor (let i = 0; i < 40; i++) k.push(Uint8Array.from({length: 1 << 20}));",
        "const k = [];\nfor (let i = 0; i < 40; i++) k.push(new DataView(new ArrayBuffer(1e6)));",
    ],
    ids=["one-GiB", "many-uint8", "many-float64", "slices", "resize", "from", "dataview"],
)
async def test_binary_buffers_are_capped(executor: Executor, code: str) -> None:
    result = failed(await executor.execute(code))
    assert result.details.kind in ("memory", "error")
    assert result.details.kind != "timeout"
    assert "buffer" in result.error.lower() or "memory" in result.error.lower()
    await assert_next_run_works(executor)


async def test_buffer_refusal_is_catchable_and_small_buffers_work(executor: Executor) -> None:
    code = """
    let refused;
    try { new ArrayBuffer(1 << 30); refused = 'allocated'; } catch (e) { refused = e.name; }
    const small = new Uint8Array(1024);
    small[5] = 9;
    return [refused, small.length, small[5]];
    """
    assert ok(await executor.execute(code)).result == ["RangeError", 1024, 9]


async def test_buffer_limit_is_configurable(make_executor) -> None:
    executor = make_executor(max_buffer_bytes=1 << 20)
    assert ok(await executor.execute("new Uint8Array(1 << 19).length")).result == 1 << 19
    result = failed(await executor.execute("new Uint8Array(2 << 20).length"))
    assert "buffer" in result.error.lower()


# ------------------------------------------------------------------------------ cancellation


async def test_cancelling_execute_task_raises_and_engine_recovers(executor: Executor) -> None:
    task = asyncio.create_task(executor.execute("console.log('go');\nwhile (true) {}"))
    await asyncio.sleep(0.3)
    started = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - started < 1.0
    await assert_next_run_works(executor)


async def test_wait_for_around_execute_stops_busy_program(executor: Executor) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(executor.execute("for (;;) {}", timeout_s=30), 0.3)
    await assert_next_run_works(executor)


async def _cpu_used(seconds: float) -> float:
    before = time.process_time()
    await asyncio.sleep(seconds)
    return time.process_time() - before


async def test_cancelled_busy_loop_stops_burning_cpu(executor: Executor) -> None:
    """Seen without host calls (see the scenarios below for why): a spinning program uses a
    core; once its execute() task is cancelled the process goes quiet."""
    task = asyncio.create_task(executor.execute("while (true) {}", timeout_s=30))
    await asyncio.sleep(0.2)
    assert await _cpu_used(0.4) > 0.02  # it is really spinning
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.3)
    used = await _cpu_used(0.5)
    assert used < 0.2, f"{used:.2f} s of CPU in 0.5 s after cancel: the loop still runs"


async def test_cancelled_session_stops_burning_cpu(executor: Executor) -> None:
    session = await executor.start("while (true) {}")
    await asyncio.sleep(0.2)
    assert await _cpu_used(0.4) > 0.02
    await session.cancel()
    final = await asyncio.wait_for(session.next_event(), 5)
    assert isinstance(final, RunFailed) and final.details.kind == "cancelled"
    await asyncio.sleep(0.3)
    used = await _cpu_used(0.5)
    assert used < 0.2, f"{used:.2f} s of CPU in 0.5 s after cancel: the loop still runs"


@pytest.mark.parametrize(
    ("code", "timeout_s", "kind"),
    [
        # The program returns, but leaves a timer that spins once it is gone.
        ("setTimeout(() => { while (true) {} }, 0); return 1", 30, "completed"),
        # jsrun lifts its own termination once a timed-out evaluation has failed: the
        # program's pending callbacks then run (here a timer that spins).
        ("setTimeout(() => { while (true) {} }, 400); await new Promise(() => {})", 0.3, "timeout"),
        # Timed out inside a loop of host calls whose answers are still pending (closing that
        # runtime used to hang the process).
        ("while (true) { codemode.tick(); }", 0.3, "timeout"),
    ],
    ids=["spinning-timer-after-return", "spinning-timer-after-timeout", "timeout-mid-calls"],
)
async def test_isolate_left_running_after_its_run_is_stopped(
    executor: Executor, code: str, timeout_s: float, kind: str
) -> None:
    result = await executor.execute(code, fns={"tick": lambda: None}, timeout_s=timeout_s)
    assert (result.details.kind if isinstance(result, RunFailed) else "completed") == kind
    await asyncio.sleep(0.6)
    # Measured per thread (the machine may be busy): no V8 isolate thread runs all the time.
    assert await _spinning_isolate_threads(0.5) == 0, "the finished run's isolate still spins"
    assert ok(await executor.execute("6 * 7")).result == 42


async def test_isolate_held_by_a_slow_inline_tool_is_stopped_once_it_returns(
    executor: Executor,
) -> None:
    @inline
    def slow() -> int:
        time.sleep(2.5)
        return 1

    code = "codemode.slow(); while (true) {}"
    result = await executor.execute(code, fns={"slow": slow}, timeout_s=0.3)
    assert isinstance(result, RunFailed) and result.details.kind == "timeout"
    await asyncio.sleep(3.0)  # the tool has returned by now
    assert await _spinning_isolate_threads(0.5) == 0, "the timed-out run's isolate still spins"
    assert ok(await executor.execute("6 * 7")).result == 42


async def _wait_for(condition: Callable[[], bool], seconds: float = 5) -> None:
    """Wait until ``condition()`` holds or ``seconds`` pass (the caller asserts what it needs)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def test_finished_run_is_terminated_only_after_its_evaluation_returned(
    executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """jsrun's terminate() holds the GIL until the isolate thread reads it, which it does only
    once the evaluation has wound down (jsrun joins its timeout watchdog there, up to 10 ms):
    a finished run's isolate is terminated after its evaluation returned, not while it
    returns (that stalled every thread of the process, the next run's caller included)."""
    import codemode.executor as executor_module
    from codemode.events import RunStarted

    ours: set[str] = set()
    seen: dict[str, bool] = {}
    real = executor_module._terminate

    def spy(prepared: Any) -> None:
        run = prepared.slot.run
        if run is not None:  # runs of earlier tests may be retired meanwhile: keep them apart
            seen[run.run_id] = run.evaluation is not None and run.evaluation.done()
        real(prepared)

    def started(event: object) -> None:
        if isinstance(event, RunStarted):
            ours.add(event.run_id)

    monkeypatch.setattr(executor_module, "_terminate", spy)
    for _ in range(10):
        assert ok(await executor.execute("() => 1", on_event=started)).result == 1
    assert len(ours) == 10
    await _wait_for(lambda: ours <= seen.keys())
    assert [seen.get(run_id) for run_id in sorted(ours)] == [True] * 10


async def test_outcome_reaches_the_caller_without_the_engine_loop(executor: Executor) -> None:
    """With nobody observing the run, its outcome goes from the isolate thread straight to the
    caller's loop: a caller is answered even while the engine's loop is busy elsewhere."""
    released = threading.Event()

    @inline
    def hold_engine() -> bool:
        get_engine().call_soon(released.wait, 30)
        return True

    try:
        result = await asyncio.wait_for(
            executor.execute(
                "return await codemode.hold_engine()", fns={"hold_engine": hold_engine}
            ),
            timeout=10,
        )
        assert ok(result).result is True
        assert not released.is_set()
    finally:
        released.set()
    assert ok(await executor.execute("() => 2")).result == 2


async def test_a_runtime_handed_its_job_before_it_parks_takes_it_at_once(
    executor: Executor,
) -> None:
    """A run may take a prepared runtime still on its way to its gate, and hands its job over
    there and then: the runtime takes it as it arrives, without rehearsing or parking first,
    and runs it as usual."""
    engine = get_engine()
    run, spec = executor._prepare("() => 6 * 7", None, None, None, None)

    async def scenario() -> tuple[str, str, str | None]:
        prepared = engine._construct(executor.max_heap_bytes)
        prepared.slot.run = run
        try:
            prepared.hand(spec.job)
            arrival = await prepared.runtime.eval_async("__codemode_serve()", timeout=10)
            envelope = await prepared.runtime.eval_async("__codemode_run_job()", timeout=10)
        finally:
            prepared.slot.run = None
            engine._close_runtime(prepared.runtime)
        return arrival, envelope, run.envelope

    arrival, envelope, reported = await engine.run(scenario())
    assert arrival == "taken"
    assert json.loads(envelope)["result"] == 42
    assert reported == envelope


@pytest.mark.parametrize(
    "envelope",
    [
        "1",
        "[]",
        "nul",
        '"text"',
        '{"error": 1}',
        '{"error": {"kind": ["x"], "name": 2, "line": "3", "column": true}}',
        '{"result": 1, "dropped": "many", "heap": 1.5}',
        "[" * 100_000,
    ],
    ids=[
        "number",
        "list",
        "not-json",
        "string",
        "error-not-an-object",
        "error-fields-mistyped",
        "result-fields-mistyped",
        "nested-too-deep",
    ],
)
def test_any_envelope_decodes_to_a_result(executor: Executor, envelope: str) -> None:
    """An envelope the engine cannot read must still give a result: an exception there kept a
    run from ever being retired (its slot and runtime leaked, and after eight such runs every
    later run waited for ever)."""
    run, _ = executor._prepare("1", None, None, None, None)
    result = executor._decode(run, envelope)
    assert isinstance(result, (RunCompleted, RunFailed))
    if isinstance(result, RunFailed):
        assert result.details is not None
        assert isinstance(result.details.kind, str) and isinstance(result.details.name, str)
        assert result.details.line is None and result.details.column is None
    else:
        assert (result.result, result.dropped_logs) == (1, 0)


async def test_finished_runs_are_freed_without_the_garbage_collector(
    executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run, its logs and its result are freed as soon as nothing uses them: no reference
    cycle keeps them (with large results, memory grew by hundreds of megabytes between two
    collections)."""
    import weakref

    import codemode.executor as executor_module
    from codemode.run import RunState

    runs: list[weakref.ref[RunState]] = []

    class Tracked(RunState):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            runs.append(weakref.ref(self))

    monkeypatch.setattr(executor_module, "RunState", Tracked)
    gc.collect()
    gc.disable()
    try:
        for code in ["return 'x'.repeat(1000)", "throw new Error('e')", "syntax error here"]:
            await executor.execute(code)
        await _wait_for(lambda: all(ref() is None for ref in runs))
        assert [ref() for ref in runs] == [None] * 3
    finally:
        gc.enable()


def _count_thread_states() -> int:
    """How many Python thread states the interpreter holds (one per thread that has one). Call
    it on the engine thread (see :func:`_thread_states`)."""
    api = ctypes.PyDLL(None)
    api.PyInterpreterState_Get.restype = ctypes.c_void_p
    api.PyInterpreterState_ThreadHead.restype = ctypes.c_void_p
    api.PyInterpreterState_ThreadHead.argtypes = [ctypes.c_void_p]
    api.PyThreadState_Next.restype = ctypes.c_void_p
    api.PyThreadState_Next.argtypes = [ctypes.c_void_p]
    count, state = 0, api.PyInterpreterState_ThreadHead(api.PyInterpreterState_Get())
    while state:
        count, state = count + 1, api.PyThreadState_Next(state)
    return count


async def _thread_states() -> int:
    """Counted on the engine thread, where thread states are deleted: the walk, one ctypes call
    per step, could otherwise meet a deletion between two steps."""

    async def count() -> int:
        return _count_thread_states()

    return await get_engine().run(count())


async def _settle(baseline: int) -> int:
    """Wait (up to 5 s) for the thread-state count to come back to ``baseline``."""
    deadline = time.monotonic() + 5
    while (count := await _thread_states()) > baseline and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return count


async def test_isolate_thread_states_are_deleted_once_their_threads_exit(
    executor: Executor,
) -> None:
    """Each isolate thread keeps one Python thread state for its host calls (creating one per
    call cost most of a call); it is deleted once the thread has exited, whichever way its run
    ended, so thousands of runs do not pile them up."""
    fns = {"fast": inline(lambda: 1), "slow": lambda: 2}
    assert ok(await executor.execute("codemode.fast(); return await codemode.slow()", fns))
    await asyncio.sleep(0.3)  # the engine has prepared its runtimes again
    baseline = await _settle(await _thread_states())
    for _ in range(10):
        ok(await executor.execute("console.log('x'); codemode.fast(); return 1", fns))
        failed = await executor.execute("codemode.fast(); while (true) {}", fns, timeout_s=0.1)
        assert isinstance(failed, RunFailed) and failed.details.kind == "timeout"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(executor.execute("codemode.fast(); while (true) {}", fns), 0.05)
    assert await _settle(baseline) <= baseline

    async def engine_thread_state() -> tuple[int, int]:
        api = ctypes.PyDLL(None)
        api.PyGILState_Check.restype = ctypes.c_int
        api.PyGILState_GetThisThreadState.restype = ctypes.c_void_p
        api.PyThreadState_Get.restype = ctypes.c_void_p
        own = api.PyGILState_GetThisThreadState() == api.PyThreadState_Get()
        return api.PyGILState_Check(), int(own)

    # Deleting those states never unbinds the engine thread's own (CPython 3.12 would).
    assert await get_engine().run(engine_thread_state()) == (1, 1)


async def test_thread_local_values_of_inline_tools_are_freed_off_the_isolate_thread(
    executor: Executor,
) -> None:
    """A ``threading.local`` an inline tool fills belongs to the isolate thread: its values
    are freed when that thread's Python state is deleted, by the engine once the thread has
    exited, never on the isolate thread after its last host call (where a ``__del__`` needing
    the GIL could meet the engine stopping that isolate)."""
    freed_on: list[int] = []
    tool_threads: list[int] = []
    locals_kept: list[threading.local] = []

    class Tracked:
        def __del__(self) -> None:
            freed_on.append(threading.get_native_id())

    @inline
    def remember() -> int:
        local = threading.local()
        local.value = Tracked()
        locals_kept.append(local)
        tool_threads.append(threading.get_native_id())
        return 1

    for _ in range(5):
        assert ok(await executor.execute("return codemode.remember()", {"remember": remember}))
    await _wait_for(lambda: len(freed_on) >= 5)
    assert len(freed_on) == 5
    assert not set(freed_on) & set(tool_threads)


async def _spinning_isolate_threads(seconds: float) -> int:
    """How many of this process's jsrun isolate threads were running (state R) at every one of
    a dozen looks over ``seconds`` (a parked or finished isolate sleeps)."""
    tasks = Path("/proc/self/task")
    always: set[str] | None = None
    for _ in range(12):
        running = set()
        for task in tasks.iterdir():
            try:
                if (task / "comm").read_text().startswith("jsrun"):
                    stat = (task / "stat").read_text()
                    if stat[stat.rindex(")") + 2] == "R":
                        running.add(task.name)
            except (OSError, ValueError):
                continue
        always = running if always is None else always & running
        await asyncio.sleep(seconds / 12)
    return len(always or ())


# ------------------------------------------------------------------------------ many runs


async def test_fifty_concurrent_runs_all_succeed(executor: Executor) -> None:
    async def double(*, i: int) -> int:
        await asyncio.sleep(0)
        return i * 2

    code = "console.log('run', {i});\nreturn await codemode.double({{i: {i}}})"
    # Each trivial run has the executor's 5 s limit; the outer bound only keeps a broken engine
    # from stalling the suite.
    results = await asyncio.wait_for(
        asyncio.gather(
            *(executor.execute(code.format(i=i), fns={"double": double}) for i in range(50))
        ),
        10,
    )
    assert [ok(r).result for r in results] == [i * 2 for i in range(50)]
    assert [r.logs for r in results] == [[f"run {i}"] for i in range(50)]


def test_many_threads_each_with_own_loop_never_panic(executor: Executor) -> None:
    errors: list[BaseException] = []
    results: dict[str, list[object]] = {}
    lock = threading.Lock()

    async def async_add(*, a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    def sync_mul(*, a: int, b: int) -> int:
        return a * b

    fns = {"add": async_add, "mul": sync_mul}

    def loop_worker(k: int) -> None:
        async def go() -> list[object]:
            out = []
            for i in range(10):
                code = (
                    f"return (await codemode.add({{a: {i}, b: {k}}})) + "
                    f"(await codemode.mul({{a: {i}, b: 2}}))"
                )
                out.append(ok(await executor.execute(code, fns=fns)).result)
            return out

        try:
            value = asyncio.run(go())
            with lock:
                results[f"loop-{k}"] = value
        except BaseException as exc:  # PanicException is a BaseException
            with lock:
                errors.append(exc)

    def sync_worker(k: int) -> None:
        try:
            out = []
            for i in range(10):
                code = f"return await codemode.mul({{a: {i}, b: {k}}})"
                out.append(ok(executor.execute_sync(code, fns=fns)).result)
            with lock:
                results[f"sync-{k}"] = out
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=loop_worker, args=(k,)) for k in range(4)]
    threads += [threading.Thread(target=sync_worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    assert errors == []
    for k in range(4):
        assert results[f"loop-{k}"] == [3 * i + k for i in range(10)]
    for k in range(2):
        assert results[f"sync-{k}"] == [i * k for i in range(10)]


async def test_stopped_runtimes_are_not_dropped_on_other_threads(
    executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """jsrun runtimes are unsendable: if the last reference to one dies on another thread,
    PyO3 reports "Runtime is unsendable, but is being dropped on another thread" (and leaks it).
    After a stopped run nothing may keep a runtime alive in a garbage cycle that any thread's
    collection could end up freeing."""
    unraisable: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(str(u.exc_value)))
    gc.collect()
    gc.disable()
    try:
        assert failed(await executor.execute("while (true) {}", timeout_s=0.3)).details.kind == (
            "timeout"
        )
        heap = "const a = [];\nwhile (true) a.push({p: new Array(1000).fill(1)});"
        assert failed(await executor.execute(heap)).details.kind == "memory"
        task = asyncio.create_task(executor.execute("while (true) {}"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.3)  # let the engine dispose of the runtimes
        gc.collect()  # on this (non-engine) thread
    finally:
        gc.enable()
    assert [u for u in unraisable if "unsendable" in u] == []


# ------------------------------------------------------------------------------ deep values


async def test_result_deeper_than_jsrun_limit_works(executor: Executor) -> None:
    code = "let x = 'leaf';\nfor (let i = 0; i < 150; i++) x = [x];\nreturn x;"
    value = ok(await executor.execute(code)).result
    depth = 0
    while isinstance(value, list):
        assert len(value) == 1
        value = value[0]
        depth += 1
    assert (depth, value) == (150, "leaf")


async def test_result_far_too_deep_gives_clear_error(executor: Executor) -> None:
    code = "let x = 1;\nfor (let i = 0; i < 1000; i++) x = {x};\nreturn x;"
    result = failed(await executor.execute(code))
    assert result.details.kind == "result"
    assert "deep" in result.details.message or "nested" in result.details.message
    assert "result" in result.details.message


async def test_deep_values_cross_host_calls_both_ways(executor: Executor) -> None:
    received: list[object] = []

    def echo_depth(*, value: object) -> object:
        received.append(value)
        out: object = "py-leaf"
        for _ in range(150):
            out = [out]
        return out

    code = """
    let x = 'js-leaf';
    for (let i = 0; i < 150; i++) x = {x};
    let back = await codemode.echo({value: x});
    let depth = 0;
    while (Array.isArray(back)) { back = back[0]; depth++; }
    return [depth, back];
    """
    assert ok(await executor.execute(code, fns={"echo": echo_depth})).result == [150, "py-leaf"]
    value, depth = received[0], 0
    while isinstance(value, dict):
        value = value["x"]
        depth += 1
    assert (depth, value) == (150, "js-leaf")


# ------------------------------------------------------------------------------ process


EXIT_SCRIPT = textwrap.dedent(
    """
    import asyncio
    from codemode import Executor

    async def twice(*, x):
        await asyncio.sleep(0)
        return 2 * x

    async def main():
        executor = Executor(timeout_s=5)
        total = 0
        for i in range(3):
            r = await executor.execute(
                "console.log('hi'); return (await codemode.twice({x: %d})) + await codemode.one()"
                % i,
                fns={"twice": twice, "one": lambda: 1},
            )
            assert r.ok, r
            total += r.result
        r = await executor.execute("while (true) {}", timeout_s=0.2)
        assert r.details.kind == "timeout", r
        print("total", total)

    asyncio.run(main())
    """
)


EXIT_NOISE = (
    "Traceback",
    "panicked",
    "unsendable",
    "Task was destroyed",
    "Fatal",
    "Segmentation",
    "never retrieved",
)


def _run_child(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter that imports this checkout; its output as text."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=_child_env(),
    )


def test_process_exits_cleanly_after_runs() -> None:
    """Exit code 0 and nothing alarming on stderr, ten times (the exit crash was ~1 in 10)."""
    failures = []
    for attempt in range(10):
        proc = _run_child(EXIT_SCRIPT)
        noisy = [m for m in EXIT_NOISE if m in proc.stderr]
        if proc.returncode != 0 or "total 9" not in proc.stdout or noisy:
            failures.append((attempt, proc.returncode, proc.stdout[-300:], proc.stderr[-1000:]))
    assert failures == []


QUICK_EXIT_SCRIPT = textwrap.dedent(
    """
    import asyncio
    from codemode import Executor

    async def main():
        r = await Executor(timeout_s=5).execute("return await codemode.one() + 1",
                                                 fns={"one": lambda: 1})
        print("result", r.result)

    asyncio.run(main())
    """
)


def test_process_exits_quietly_right_after_a_run() -> None:
    failures = []
    for attempt in range(5):
        proc = _run_child(QUICK_EXIT_SCRIPT)
        noisy = [m for m in EXIT_NOISE if m in proc.stderr]
        if proc.returncode != 0 or "result 2" not in proc.stdout or noisy:
            failures.append((attempt, proc.returncode, proc.stdout[-200:], proc.stderr[-600:]))
    assert failures == []


EXIT_DURING_RUN_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    from codemode import Executor

    code = {"spin": "while (true) {}", "host": "for (;;) { await codemode.tick() }"}[sys.argv[1]]
    fns = {"tick": lambda: time.sleep(0.01)}
    runner = lambda: Executor(timeout_s=60).execute_sync(code, fns=fns)
    threading.Thread(target=runner, daemon=True).start()
    time.sleep(0.5)
    print("leaving", flush=True)
    """
)


@pytest.mark.parametrize("program", ["spin", "host"])
def test_process_exits_while_a_run_is_still_going(program: str) -> None:
    # close() on a runtime still running JavaScript never returns (GIL held): the engine stops
    # the run first at exit, or lets the runtime go.
    proc = _run_child(EXIT_DURING_RUN_SCRIPT, program, timeout=30)
    assert proc.returncode == 0 and "leaving" in proc.stdout, (proc.returncode, proc.stderr[-600:])


HUNG_TOOL_SCRIPT = textwrap.dedent(
    """
    import asyncio, threading

    never = threading.Event()

    def hang() -> int:
        never.wait()  # a network call without a timeout, say
        return 1

    async def main():
        from codemode import Executor

        program = "return await codemode.hang()"
        r = await Executor(timeout_s=0.5).execute(program, fns={"hang": hang})
        print("kind", r.details.kind)

    asyncio.run(main())
    """
)


def test_a_tool_that_never_returns_does_not_hold_up_exit() -> None:
    proc = _run_child(HUNG_TOOL_SCRIPT)
    assert proc.returncode == 0, proc.stderr[-600:]
    assert "kind timeout" in proc.stdout


FORK_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys
    from codemode import Executor

    executor = Executor(timeout_s=5)
    print("parent", asyncio.run(executor.execute("return 1")).result, flush=True)
    pid = os.fork()
    if pid == 0:
        answers = []
        for attempt in (lambda: Executor(), lambda: asyncio.run(executor.execute("return 2"))):
            try:
                attempt()
                answers.append("ran")
            except RuntimeError as exc:
                answers.append("refused" if "fork" in str(exc) else repr(exc))
        print("child", *answers, flush=True)
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    print("child exit", os.waitstatus_to_exitcode(status), flush=True)
    print("parent", asyncio.run(executor.execute("return 3")).result, flush=True)
    """
)


def test_a_forked_child_is_refused_clearly_and_the_parent_goes_on() -> None:
    """V8's threads do not survive os.fork() (a runtime made in the child crashes it, and the
    engine's thread is gone, so a run would wait for ever): the child gets a clear error."""
    proc = _run_child(FORK_SCRIPT, timeout=60)
    assert proc.returncode == 0, proc.stderr[-600:]
    lines = proc.stdout.splitlines()
    assert lines == ["parent 1", "child refused refused", "child exit 0", "parent 3"], lines


# ------------------------------------------------------------------------------ idle cost


async def test_idle_engine_does_not_burn_cpu(executor: Executor) -> None:
    ok(await executor.execute("return 1"))
    await asyncio.sleep(0.3)  # let the engine settle (prepare/close runtimes)
    before = time.process_time()
    await asyncio.sleep(0.6)
    used = time.process_time() - before
    # An idle jsrun runtime busy-polls one core; the engine must not keep such runtimes around.
    assert used < 0.3, f"idle process used {used:.2f} s of CPU in 0.6 s"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_waiting_on_a_slow_host_call_does_not_burn_cpu(executor: Executor, kind: str) -> None:
    def slow_sync() -> int:
        time.sleep(1.0)
        return 1

    async def slow_async() -> int:
        await asyncio.sleep(1.0)
        return 1

    fn = slow_sync if kind == "sync" else slow_async
    ok(await executor.execute("return 1"))
    before = time.process_time()
    result = ok(await executor.execute("return await codemode.slow()", fns={"slow": fn}))
    used = time.process_time() - before
    assert result.result == 1
    # The isolate thread sleeps in the host while the call runs: a jsrun runtime awaiting a
    # host promise instead would poll a core for the whole second.
    assert used < 0.2, f"a 1 s host call cost {used:.2f} s of CPU"


# ----------------------------------------------------------------- stopping, seen from outside


# Whether a stopped program really stopped is seen from the host functions it keeps calling.
# Those checks run in child processes: stopping a program that calls host functions is where
# jsrun's terminate() and close() (which hold the GIL while they wait for the isolate thread)
# can deadlock the whole interpreter, which would hang this test process beyond what
# pytest-timeout can interrupt.

SCENARIO_PRELUDE = textwrap.dedent(
    """
    import asyncio, faulthandler, json, signal, threading, time
    from codemode import Executor, RunFailed, inline

    # A scenario that hangs shows where: the test asks for every thread's stack before killing it.
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    ticks = [0]

    def start_busy_threads():
        # Other Python threads keeping the GIL busy, as in a kernel with a busy thread.
        def busy():
            n = 0
            while True:
                n += 1

        for _ in range(3):
            threading.Thread(target=busy, daemon=True).start()

    def tick():
        ticks[0] += 1

    async def still_running():
        await asyncio.sleep(0.2)
        before = ticks[0]
        await asyncio.sleep(0.3)
        return ticks[0] != before

    async def started():
        for _ in range(300):
            if ticks[0]:
                return True
            await asyncio.sleep(0.01)
        return False

    async def cancel_task_then_session(ex, code, fns, *, session_as_context):
        # Cancel the task awaiting execute(), then a session (leaving its `async with`, or by
        # session.cancel()); report whether each started, stopped and how the session ended.
        out = {}
        ticks[0] = 0
        task = asyncio.create_task(ex.execute(code, fns=fns))
        out["task_started"] = await started()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            out["task_raised"] = True
        out["task_still_running"] = await still_running()
        ticks[0] = 0
        if session_as_context:
            async with await ex.start(code, fns) as session:
                out["session_started"] = await started()
        else:
            session = await ex.start(code, fns)
            out["session_started"] = await started()
            await session.cancel()
        final = await session.next_event()
        out["session_kind"] = final.details.kind if isinstance(final, RunFailed) else "completed"
        out["session_still_running"] = await still_running()
        return out
    """
)

SCENARIOS = {
    # A program that waits on timers between (awaited) host calls: cancelling the task that
    # awaits execute(), or the session, must stop it; four times over, while other Python
    # threads keep the GIL busy (as in a kernel with a busy thread).
    "cancel-stops-program": """
    start_busy_threads()

    async def main():
        outs = []
        ex = Executor(timeout_s=30)
        code = "while (true) { await new Promise(r => setTimeout(r, 20)); await codemode.tick(); }"
        for _ in range(4):
            out = await cancel_task_then_session(
                ex, code, {"tick": tick}, session_as_context=True
            )
            out["next"] = (await ex.execute("6 * 7")).result
            outs.append(out)
        print("RESULT " + json.dumps(outs))

    asyncio.run(main())
    """,
    # Cancelling programs that call no host function: nothing may be left for asyncio to
    # complain about on stderr.
    "cancel-quietly": """
    async def main():
        ex = Executor(timeout_s=30)
        kinds = []
        for _ in range(2):
            task = asyncio.create_task(ex.execute("while (true) {}"))
            await asyncio.sleep(0.1)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                kinds.append("cancelled")
            session = await ex.start("while (true) {}")
            await asyncio.sleep(0.1)
            await session.cancel()
            kinds.append((await session.next_event()).details.kind)
            kinds.append((await ex.execute("1 + 1")).result)
        import gc
        gc.collect()
        await asyncio.sleep(0.2)
        print("RESULT " + json.dumps(kinds))

    asyncio.run(main())
    """,
    # Busy loops that keep calling host functions must still stop at the timeout.
    "timeout-host-call-loops": """
    async def main():
        out = []
        ex = Executor(timeout_s=0.5)
        fns = {"tick": tick, "quick": inline(lambda: None)}
        for code in ["while (true) { codemode.tick(); }", "while (true) { codemode.quick(); }"] * 3:
            r = await ex.execute(code, fns=fns)
            out.append(r.details.kind if isinstance(r, RunFailed) else "completed")
        print("RESULT " + json.dumps(out))

    asyncio.run(main())
    """,
    # Cancelling a busy loop of inline host calls (task and session) must stop it.
    # A program flooding the console once the log is full only reports how many lines it
    # dropped: that report must honour the stop answer too, or the program keeps calling the
    # host while its isolate is being terminated.
    "cancel-full-log": """
    async def main():
        ex = Executor(timeout_s=30, max_log_lines=1)
        kinds = []
        for _ in range(15):
            try:
                await asyncio.wait_for(ex.execute("for (;;) console.log('x')"), 0.05)
            except asyncio.TimeoutError:
                kinds.append("cancelled")
            await asyncio.sleep(0.05)
        kinds.append((await ex.execute("6 * 7")).result)
        print("RESULT " + json.dumps(kinds))

    asyncio.run(main())
    """,
    # Runs cancelled within moments of being submitted, back to back (so the engine's
    # prepared runtimes run out and runs get runtimes still on their way to the gate).
    "cancel-right-away": """
    async def main():
        ex = Executor(timeout_s=30)
        for i in range(40):
            try:
                await asyncio.wait_for(ex.execute("return 1"), (i % 8) * 0.003)
            except asyncio.TimeoutError:
                pass
        print("RESULT " + json.dumps((await ex.execute("6 * 7")).result))

    asyncio.run(main())
    """,
    # ... also while other Python threads keep the GIL busy (a kernel with a busy thread): the
    # isolate thread then waits for the GIL on its way into a host function.
    "cancel-inline-loop": """
    start_busy_threads()

    async def main():
        outs = []
        ex = Executor(timeout_s=30)
        code = "while (true) { codemode.tick(); }"
        fns = {"tick": inline(tick)}
        for _ in range(3):
            outs.append(
                await cancel_task_then_session(ex, code, fns, session_as_context=False)
            )
        print("RESULT " + json.dumps(outs))

    asyncio.run(main())
    """,
}
# Shared by the scenarios, which start together with this module and keep both cores busy.
SCENARIO_DEADLINE_S = 45


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module", autouse=True)
def scenarios():
    """Start every scenario in its own child process when this module starts (so they overlap
    with the other tests); each scenario test collects its own."""
    started = time.monotonic()
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", SCENARIO_PRELUDE + textwrap.dedent(body)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=_child_env(),
        )
        for name, body in SCENARIOS.items()
    }

    done: dict[str, tuple[object, str]] = {}

    def collect(name: str, *, with_stderr: bool = False) -> object:
        if name not in done:
            done[name] = run(name)
        result, stderr = done[name]
        return (result, stderr) if with_stderr else result

    def run(name: str) -> tuple[object, str]:
        proc = procs[name]
        remaining = max(0.1, SCENARIO_DEADLINE_S - (time.monotonic() - started))
        try:
            stdout, stderr = proc.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(1)
            proc.kill()
            stdout, stderr = proc.communicate()
            pytest.fail(
                f"scenario {name!r} hung (killed after {SCENARIO_DEADLINE_S} s); its threads:\n"
                # Idle worker threads left out: the engine's, the isolates' and the main one count.
                + "\n\n".join(block for block in stderr.split("\n\n") if "workers.py" not in block)[
                    -20000:
                ]
            )
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, (proc.returncode, stdout[-500:], stderr[-2000:])
        return json.loads(lines[-1][len("RESULT ") :]), stderr

    yield collect
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# What cancel_task_then_session() reports when both cancels stop the program.
STOPPED_BOTH_WAYS = {
    "task_started": True,
    "task_raised": True,
    "task_still_running": False,
    "session_started": True,
    "session_kind": "cancelled",
    "session_still_running": False,
}


def test_cancel_really_stops_the_program(scenarios) -> None:
    assert scenarios("cancel-stops-program") == [{**STOPPED_BOTH_WAYS, "next": 42}] * 4


def test_timeout_stops_busy_loops_of_host_calls(scenarios) -> None:
    assert scenarios("timeout-host-call-loops") == ["timeout"] * 6


def test_cancel_stops_busy_loop_of_inline_calls(scenarios) -> None:
    assert scenarios("cancel-inline-loop") == [STOPPED_BOTH_WAYS] * 3


def test_cancel_while_the_log_is_full(scenarios) -> None:
    assert scenarios("cancel-full-log") == ["cancelled"] * 15 + [42]


def test_cancel_right_after_submitting(scenarios) -> None:
    assert scenarios("cancel-right-away") == 42


def test_cancel_leaves_no_asyncio_noise(scenarios) -> None:
    result, stderr = scenarios("cancel-quietly", with_stderr=True)
    assert result == ["cancelled", "cancelled", 2] * 2
    assert [marker for marker in EXIT_NOISE if marker in stderr] == [], stderr[-2000:]
