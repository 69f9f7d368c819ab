"""RunSession: a program whose calls to unregistered targets are answered by its driver."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from codemode import Executor, HostCallRequest, RunCompleted, RunFailed, RunSession

pytestmark = pytest.mark.timeout(60)


async def next_request(session: RunSession) -> HostCallRequest:
    event = await asyncio.wait_for(session.next_event(), 5)
    assert isinstance(event, HostCallRequest), event
    return event


async def final(session: RunSession) -> RunCompleted | RunFailed:
    event = await asyncio.wait_for(session.next_event(), 5)
    assert isinstance(event, (RunCompleted, RunFailed)), event
    return event


async def test_readme_advanced_session_example() -> None:
    # The seed README's "Advanced" example, verbatim except asyncio.run(main()) -> this test.
    executor = Executor(timeout_s=5)
    session = await executor.start("""
        async () => {
          const a = await codemode.double({ n: 3 });
          const b = await codemode.double({ n: a });
          return b;
        }
    """)

    while True:
        event = await session.next_event()
        if isinstance(event, HostCallRequest):
            result = event.input["n"] * 2
            await session.submit_result(event.call_id, result)
        elif isinstance(event, (RunCompleted, RunFailed)):
            break

    await session.cancel()
    executor.close()

    assert isinstance(event, RunCompleted), event
    assert event.result == 12
    assert [call.name for call in event.calls] == ["double", "double"]


async def test_unknown_targets_become_requests_known_fns_run_directly(executor: Executor) -> None:
    local: list[int] = []

    def known(*, x: int) -> int:
        local.append(x)
        return x + 1

    code = """
    const k = await codemode.known({x: 1});
    const r = await codemode.remote({q: 'hello', k});
    const d = await codemode.crm.contacts.find({id: 7});
    return [k, r, d];
    """
    session = await executor.start(code, {"known": known})
    async with session:
        first = await next_request(session)
        assert first.target == "remote"
        assert first.input == {"q": "hello", "k": 2}
        assert isinstance(first.call_id, str) and first.call_id
        assert local == [1]
        await session.submit_result(first.call_id, "R")
        second = await next_request(session)
        assert second.target == "crm.contacts.find"
        assert second.input == {"id": 7}
        assert second.call_id != first.call_id
        await session.submit_result(second.call_id, {"name": "Ada"})
        outcome = await final(session)
    assert isinstance(outcome, RunCompleted), outcome
    assert outcome.result == [2, "R", {"name": "Ada"}]
    assert [c.name for c in outcome.calls] == ["known", "remote", "crm.contacts.find"]


async def test_request_input_is_always_a_dict(executor: Executor) -> None:
    session = await executor.start("return await codemode.ask(1, 'two')")
    async with session:
        request = await next_request(session)
        assert request.target == "ask"
        assert isinstance(request.input, dict)
        assert [1, "two"] in request.input.values()
        await session.submit_result(request.call_id, 3)
        outcome = await final(session)
    assert isinstance(outcome, RunCompleted) and outcome.result == 3


async def test_submit_error_is_catchable(executor: Executor) -> None:
    code = """
    try { await codemode.approve({action: 'delete'}); return 'approved'; }
    catch (e) { return [e.name, e.message, e instanceof Error]; }
    """
    session = await executor.start(code)
    async with session:
        request = await next_request(session)
        await session.submit_error(request.call_id, "denied by reviewer")
        outcome = await final(session)
    assert isinstance(outcome, RunCompleted), outcome
    name, message, is_error = outcome.result
    assert name == "ToolError"
    assert "denied by reviewer" in message
    assert is_error is True


async def test_submit_error_uncaught_fails_the_run(executor: Executor) -> None:
    session = await executor.start("console.log('asking');\nawait codemode.approve({x: 1});")
    async with session:
        request = await next_request(session)
        await session.submit_error(request.call_id, "denied")
        outcome = await final(session)
    assert isinstance(outcome, RunFailed), outcome
    assert "denied" in outcome.error
    assert outcome.details.tool == "approve"
    assert outcome.details.line == 2
    assert outcome.logs == ["asking"]


@dataclasses.dataclass
class Answer:
    pair: tuple[int, int]
    by_id: dict[int, str]


async def test_submitted_values_are_made_json_safe(executor: Executor) -> None:
    code = """
    const a = await codemode.lookup();
    return [Array.isArray(a.pair), a.pair[0] + a.pair[1], Object.keys(a.by_id), a.by_id[7]];
    """
    session = await executor.start(code)
    async with session:
        request = await next_request(session)
        await session.submit_result(request.call_id, Answer((40, 2), {7: "seven"}))
        outcome = await final(session)
    assert isinstance(outcome, RunCompleted), outcome
    assert outcome.result == [True, 42, ["7"], "seven"]


async def test_concurrent_requests_answered_out_of_order(executor: Executor) -> None:
    code = "return await Promise.all([1, 2, 3].map((n) => codemode.slow({n})))"
    session = await executor.start(code)
    async with session:
        requests = [await next_request(session) for _ in range(3)]
        assert sorted(r.input["n"] for r in requests) == [1, 2, 3]
        assert len({r.call_id for r in requests}) == 3
        for request in reversed(requests):
            await session.submit_result(request.call_id, request.input["n"] * 10)
        outcome = await final(session)
    assert isinstance(outcome, RunCompleted), outcome
    assert outcome.result == [10, 20, 30]


async def test_final_event_repeats(executor: Executor) -> None:
    session = await executor.start("return 5")
    first = await final(session)
    again = await final(session)
    assert isinstance(first, RunCompleted) and first.result == 5
    assert again is first
    assert session.done


async def test_submit_unknown_call_id_raises(executor: Executor) -> None:
    session = await executor.start("return await codemode.ask()")
    async with session:
        request = await next_request(session)
        with pytest.raises(KeyError):
            await session.submit_result("no-such-call", 1)
        await session.submit_result(request.call_id, "fine")
        with pytest.raises(KeyError):
            await session.submit_result(request.call_id, "twice")
        outcome = await final(session)
    assert isinstance(outcome, RunCompleted) and outcome.result == "fine"


async def test_session_cancel_stops_busy_loop_promptly(executor: Executor) -> None:
    session = await executor.start("console.log('spinning');\nwhile (true) {}")
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    await session.cancel()
    outcome = await final(session)
    latency = time.perf_counter() - started
    assert isinstance(outcome, RunFailed), outcome
    assert outcome.details.kind == "cancelled"
    assert outcome.logs == ["spinning"]
    # The spec asks for 100 ms; this is a noisy shared machine, so only bound it at 1 s.
    assert latency < 1.0


async def test_session_cancel_while_waiting_for_driver(executor: Executor) -> None:
    session = await executor.start("await codemode.never_answered()")
    await next_request(session)
    started = time.perf_counter()
    await session.cancel()
    outcome = await final(session)
    assert isinstance(outcome, RunFailed)
    assert outcome.details.kind == "cancelled"
    assert time.perf_counter() - started < 1.0  # spec: 100 ms; loose bound for a noisy machine


async def test_session_context_manager_cancels_on_exit(executor: Executor) -> None:
    # Whether the program really stopped is checked with a ticking program in
    # test_engine_limits.py::test_cancel_really_stops_the_program (in a child process).
    async with await executor.start("console.log('in');\nwhile (true) {}") as session:
        await asyncio.sleep(0.1)
        assert not session.done
    outcome = await final(session)
    assert isinstance(outcome, RunFailed)
    assert outcome.details.kind == "cancelled"
    assert outcome.logs == ["in"]


async def test_session_obeys_executor_timeout(make_executor) -> None:
    executor = make_executor(timeout_s=0.5)
    session = await executor.start("console.log('waiting');\nawait codemode.ask();")
    await next_request(session)
    outcome = await final(session)
    assert isinstance(outcome, RunFailed)
    assert outcome.details.kind == "timeout"
    assert outcome.logs == ["waiting"]


async def test_session_program_error(executor: Executor) -> None:
    session = await executor.start("const a = 1;\nthrow new TypeError('bad');")
    outcome = await final(session)
    assert isinstance(outcome, RunFailed)
    assert outcome.details.name == "TypeError"
    assert outcome.details.line == 2


async def test_executor_works_after_cancelled_session(executor: Executor) -> None:
    session = await executor.start("while (true) {}")
    await asyncio.sleep(0.05)
    await session.cancel()
    assert (await final(session)).details.kind == "cancelled"
    result = await executor.execute("return 6 * 7")
    assert isinstance(result, RunCompleted) and result.result == 42


async def test_sessions_run_concurrently(executor: Executor) -> None:
    code = "return (await codemode.ask({{i: {i}}})) + 1"
    sessions = [await executor.start(code.format(i=i)) for i in range(5)]
    requests = [await next_request(s) for s in sessions]
    assert [r.input["i"] for r in requests] == list(range(5))
    for session, request in zip(sessions, requests, strict=True):
        await session.submit_result(request.call_id, request.input["i"] * 100)
    outcomes = [await final(s) for s in sessions]
    assert [o.result for o in outcomes] == [1, 101, 201, 301, 401]
