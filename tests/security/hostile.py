"""Helpers for the hostile-input suites: outcome checks and a health probe.

Every attack ends with :func:`assert_healthy`, so a case that leaves the engine broken (a stuck
runtime, a poisoned pool, a dead engine thread) fails where it happened, not in a later test.
"""

from __future__ import annotations

import time

from codemode import ErrorDetails, Executor, RunCompleted, RunFailed

HEALTH_CHECK = """
const x = await codemode.ping({ n: 20 });
console.log("healthy", x);
return { x, globals: Object.getOwnPropertyNames(globalThis).filter((n) => n.startsWith("__")) };
"""


def ok(result: RunCompleted | RunFailed) -> RunCompleted:
    """The run completed (the failure's message is shown otherwise)."""
    assert isinstance(result, RunCompleted), getattr(result, "error", result)
    return result


def failed(result: RunCompleted | RunFailed, kind: str | None = None) -> ErrorDetails:
    """The run failed, with ``kind`` when given; returns its details."""
    assert isinstance(result, RunFailed), f"expected a failure, got {result!r}"
    assert isinstance(result.details, ErrorDetails)
    if kind is not None:
        assert result.details.kind == kind, result.error
    return result.details


def ping(n: int) -> int:
    """The health probe's host function."""
    return n + 1


async def assert_healthy(executor: Executor, within_s: float = 10.0) -> None:
    """A normal run right after an attack: host call, console and a sealed global scope."""
    started = time.monotonic()
    result = ok(await executor.execute(HEALTH_CHECK, fns={"ping": ping}, timeout_s=within_s))
    assert result.result == {"x": 21, "globals": []}
    assert list(result.logs) == ["healthy 21"]
    assert [call.name for call in result.calls] == ["ping"]
    assert time.monotonic() - started < within_s
