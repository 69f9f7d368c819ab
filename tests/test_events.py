"""Observability: the on_event stream (RunStarted, ConsoleEvent, CallStarted, CallFinished,
RunFinished), its order, its totals, and what each event carries at the moment it is emitted."""

from __future__ import annotations

import asyncio
import copy
import threading

import pytest

from codemode import HostCallRequest, RunCompleted, RunFailed
from codemode.events import (
    CallFinished,
    CallStarted,
    ConsoleEvent,
    HostCall,
    LogLine,
    RunFinished,
    RunStarted,
)


class Snapshotter:
    """Records events together with a deep copy taken while the observer runs, because the
    engine may keep mutating the objects it hands out (a HostCall gains its result later)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[object] = []
        self.snapshots: list[object] = []

    def __call__(self, event: object) -> None:
        with self.lock:
            self.events.append(event)
            if isinstance(event, (CallStarted, CallFinished)):
                self.snapshots.append(copy.deepcopy(event.call))
            else:
                self.snapshots.append(None)

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.events]

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


async def test_event_sequence_for_one_run(make_executor) -> None:
    rec = Snapshotter()
    executor = make_executor(on_event=rec)

    def add(*, a: int, b: int) -> int:
        return a + b

    def fail() -> None:
        raise ValueError("nope")

    code = """
    console.log('start');
    const x = await codemode.add({a: 1, b: 2});
    console.warn('sum', x);
    try { await codemode.fail(); } catch (e) { console.error('caught', e.pythonType); }
    return x;
    """
    result = await executor.execute(code, fns={"add": add, "fail": fail})
    assert isinstance(result, RunCompleted) and result.result == 3
    assert rec.kinds() == [
        "RunStarted",
        "ConsoleEvent",
        "CallStarted",
        "CallFinished",
        "ConsoleEvent",
        "CallStarted",
        "CallFinished",
        "ConsoleEvent",
        "RunFinished",
    ]
    started = rec.events[0]
    assert isinstance(started, RunStarted)
    assert started.code == code
    assert sorted(started.tools) == ["add", "fail"]
    assert len({e.run_id for e in rec.events}) == 1

    consoles = rec.of(ConsoleEvent)
    assert [e.line for e in consoles] == ["start", "sum 3", "caught ValueError"]
    assert [e.line.level for e in consoles] == ["log", "warn", "error"]
    assert all(isinstance(e.line, LogLine) for e in consoles)

    calls = [(e, snap) for e, snap in zip(rec.events, rec.snapshots, strict=True) if snap]
    (s1, add_start), (f1, add_end), (s2, fail_start), (f2, fail_end) = calls
    assert isinstance(s1, CallStarted) and isinstance(f1, CallFinished)
    assert (add_start.call_id, add_start.name, add_start.arguments) == (
        add_end.call_id,
        "add",
        {"a": 1, "b": 2},
    )
    assert add_start.duration is None and add_start.result is None
    assert add_end.result == 3 and add_end.error is None
    assert add_end.duration is not None and add_end.duration >= 0
    assert fail_start.name == "fail" and fail_start.duration is None
    assert fail_end.error is not None and "nope" in fail_end.error
    assert fail_end.error_type == "ValueError"
    assert fail_start.call_id != add_start.call_id

    finished = rec.events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.outcome is result
    assert finished.outcome.duration > 0
    assert isinstance(finished.heap_used, int) and finished.heap_used > 0


async def test_executor_and_execute_observers_both_receive(make_executor) -> None:
    global_rec, local_rec, other_rec = Snapshotter(), Snapshotter(), Snapshotter()
    executor = make_executor(on_event=global_rec)
    code = "console.log('a'); return await codemode.f()"
    await executor.execute(code, fns={"f": lambda: 1}, on_event=local_rec)
    await executor.execute("return 2", on_event=other_rec)
    assert local_rec.kinds() == [
        "RunStarted",
        "ConsoleEvent",
        "CallStarted",
        "CallFinished",
        "RunFinished",
    ]
    assert global_rec.events[: len(local_rec.events)] == local_rec.events
    assert global_rec.kinds()[len(local_rec.events):] == ["RunStarted", "RunFinished"]
    assert other_rec.kinds() == ["RunStarted", "RunFinished"]
    run_ids = {e.run_id for e in global_rec.events}
    assert len(run_ids) == 2


async def test_concurrent_calls_each_started_then_finished(make_executor) -> None:
    rec = Snapshotter()
    executor = make_executor(on_event=rec)

    async def nap(*, i: int) -> int:
        await asyncio.sleep(0.05 * (3 - i))
        return i

    code = "return await Promise.all([0, 1, 2].map((i) => codemode.nap({i})))"
    result = await executor.execute(code, fns={"nap": nap})
    assert result.result == [0, 1, 2]
    kinds = rec.kinds()
    assert kinds[:4] == ["RunStarted", "CallStarted", "CallStarted", "CallStarted"]
    assert kinds[4:] == ["CallFinished"] * 3 + ["RunFinished"]
    position = {}
    for index, (event, snap) in enumerate(zip(rec.events, rec.snapshots, strict=True)):
        if snap is not None:
            position.setdefault(snap.call_id, []).append((index, type(event).__name__))
    assert len(position) == 3
    for entries in position.values():
        assert [kind for _, kind in entries] == ["CallStarted", "CallFinished"]
        assert entries[0][0] < entries[1][0]
    finished_args = [snap.arguments["i"] for e, snap in zip(rec.events, rec.snapshots, strict=True)
                     if isinstance(e, CallFinished)]
    assert finished_args == [2, 1, 0]  # shortest nap first


async def test_totals_match_the_result(make_executor) -> None:
    rec = Snapshotter()
    executor = make_executor(on_event=rec)
    code = """
    for (let i = 0; i < 7; i++) console.log('line', i);
    let s = 0;
    for (let i = 0; i < 5; i++) s += await codemode.inc({i});
    return s;
    """
    result = await executor.execute(code, fns={"inc": lambda *, i: i + 1})
    assert result.result == 15
    assert len(rec.of(ConsoleEvent)) == len(result.logs) == 7
    assert len(rec.of(CallStarted)) == len(rec.of(CallFinished)) == len(result.calls) == 5
    assert len(rec.of(RunStarted)) == len(rec.of(RunFinished)) == 1
    assert [e.call.call_id for e in rec.of(CallFinished)] == [c.call_id for c in result.calls]
    assert all(isinstance(c, HostCall) and c.ok for c in result.calls)


async def test_failed_runs_emit_run_finished(make_executor) -> None:
    rec = Snapshotter()
    executor = make_executor(on_event=rec)
    await executor.execute("console.log('a');\nthrow new Error('x')")
    await executor.execute("console.log('b');\nwhile (true) {}", timeout_s=0.5)
    finished = rec.of(RunFinished)
    assert len(finished) == 2
    assert all(isinstance(e.outcome, RunFailed) for e in finished)
    assert [e.outcome.details.kind for e in finished] == ["error", "timeout"]
    assert [e.line for e in rec.of(ConsoleEvent)] == ["a", "b"]
    assert rec.kinds() == ["RunStarted", "ConsoleEvent", "RunFinished"] * 2


async def test_heap_used_reported_when_program_throws(make_executor) -> None:
    """A program that throws still ends normally in a healthy isolate: its heap use is known."""
    rec = Snapshotter()
    executor = make_executor(on_event=rec)
    await executor.execute("const big = new Array(10000).fill('x');\nthrow new Error('x')")
    (finished,) = rec.of(RunFinished)
    assert isinstance(finished.outcome, RunFailed)
    assert isinstance(finished.heap_used, int) and finished.heap_used > 0


async def test_session_runs_are_observed(make_executor) -> None:
    rec = Snapshotter()
    executor = make_executor(on_event=rec)
    session = await executor.start("return (await codemode.remote({q: 1})) + await codemode.f()",
                                   {"f": lambda: 1})
    async with session:
        request = await asyncio.wait_for(session.next_event(), 5)
        assert isinstance(request, HostCallRequest)
        await session.submit_result(request.call_id, 41)
        outcome = await asyncio.wait_for(session.next_event(), 5)
    assert isinstance(outcome, RunCompleted) and outcome.result == 42
    assert rec.kinds() == [
        "RunStarted",
        "CallStarted",
        "CallFinished",
        "CallStarted",
        "CallFinished",
        "RunFinished",
    ]
    names = [snap.name for snap in rec.snapshots if snap is not None]
    assert names == ["remote", "remote", "f", "f"]
    assert rec.events[-1].outcome is outcome


async def test_broken_observer_does_not_break_runs(make_executor) -> None:
    seen: list[str] = []

    def broken(event: object) -> None:
        seen.append(type(event).__name__)
        raise RuntimeError("observer bug")

    executor = make_executor(on_event=broken)
    result = await executor.execute("console.log('x'); return await codemode.f()",
                                    fns={"f": lambda: 5})
    assert isinstance(result, RunCompleted) and result.result == 5
    assert result.logs == ["x"]
    assert seen[0] == "RunStarted" and seen[-1] == "RunFinished"


async def test_console_events_arrive_while_running(make_executor) -> None:
    """Console lines are streamed: seen by the observer before the run is over."""
    lines: list[str] = []
    seen_during_call: list[list[str]] = []

    def observer(event: object) -> None:
        if isinstance(event, ConsoleEvent):
            lines.append(str(event.line))

    def probe() -> int:
        seen_during_call.append(list(lines))
        return 1

    executor = make_executor(on_event=observer)
    await executor.execute("console.log('before');\nawait codemode.probe();\nconsole.log('after')",
                           fns={"probe": probe})
    assert seen_during_call == [["before"]]
    assert lines == ["before", "after"]


async def test_cancelled_execute_still_emits_run_finished(make_executor) -> None:
    rec = Snapshotter()
    executor = make_executor(on_event=rec)
    task = asyncio.create_task(executor.execute("console.log('go');\nwhile (true) {}"))
    for _ in range(200):
        if rec.of(ConsoleEvent):
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if rec.of(RunFinished):
            break
        await asyncio.sleep(0.01)
    assert rec.kinds() == ["RunStarted", "ConsoleEvent", "RunFinished"]
    outcome = rec.events[-1].outcome
    assert isinstance(outcome, RunFailed)
    assert outcome.details.kind == "cancelled"


async def test_cancelled_session_emits_run_finished(make_executor) -> None:
    rec = Snapshotter()
    executor = make_executor(on_event=rec)
    session = await executor.start("while (true) {}")
    await asyncio.sleep(0.1)
    await session.cancel()
    final = await asyncio.wait_for(session.next_event(), 5)
    assert isinstance(final, RunFailed) and final.details.kind == "cancelled"
    for _ in range(100):
        if rec.of(RunFinished):
            break
        await asyncio.sleep(0.01)
    assert rec.kinds() == ["RunStarted", "RunFinished"]
    assert rec.events[-1].outcome.details.kind == "cancelled"
