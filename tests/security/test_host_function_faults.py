"""Host functions that misbehave: every kind of exception (BaseException subclasses included),
functions that never return, unsendable results and calls with the wrong arguments.

The engine must turn each into a clear, catchable error for the program, keep the console and
the trace, and stay usable: every case ends with a normal run.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hostile import assert_healthy, failed, ok

from codemode import Executor, inline


class CustomError(Exception):
    """A project's own exception type."""


class BadStr(Exception):
    """An exception whose ``__str__`` itself raises."""

    def __str__(self) -> str:
        raise RuntimeError("str failed")


def raiser(exc: BaseException) -> Callable[[], None]:
    def tool() -> None:
        raise exc

    return tool


CATCH = """
console.log("pre");
try { await codemode.tool(); return "no throw"; }
catch (e) { return [e.name, e.tool, e.pythonType, e.message]; }
"""


@pytest.mark.parametrize("mode", ["worker", "inline", "async"])
@pytest.mark.parametrize(
    ("exc", "type_name", "text"),
    [
        (ValueError("bad value"), "ValueError", "bad value"),
        (KeyError("k"), "KeyError", "'k'"),
        (CustomError("mine"), "CustomError", "mine"),
        (RecursionError("deep"), "RecursionError", "deep"),
        (MemoryError(), "MemoryError", ""),
        (SystemExit(3), "SystemExit", "3"),
        (KeyboardInterrupt(), "KeyboardInterrupt", ""),
        (GeneratorExit(), "GeneratorExit", ""),
        (StopIteration(), "StopIteration", ""),
        (BadStr(), "BadStr", None),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
async def test_exceptions_become_tool_errors(
    executor: Executor, mode: str, exc: BaseException, type_name: str, text: str | None
) -> None:
    fn = raiser(exc)
    if mode == "inline":
        fn = inline(fn)
    elif mode == "async":
        sync = fn

        async def fn() -> None:  # type: ignore[misc]
            sync()

    if mode == "async" and type_name == "StopIteration":
        type_name, text = "RuntimeError", "coroutine raised StopIteration"  # Python's own rule
    result = ok(await executor.execute(CATCH, fns={"tool": fn}))
    name, tool, python_type, message = result.result
    assert (name, tool, python_type) == ("ToolError", "tool", type_name)
    prefix = f"codemode.tool() raised {type_name}"
    if text is None:
        assert message.startswith(prefix), message
    else:
        assert message == (f"{prefix}: {text}" if text else prefix)
    assert list(result.logs) == ["pre"]
    assert [c.error_type for c in result.calls] == [type_name]
    assert threading.main_thread().is_alive()
    await assert_healthy(executor)


async def test_uncaught_base_exception_fails_the_run_only(executor: Executor) -> None:
    result = await executor.execute(
        "console.log('pre'); await codemode.tool();", fns={"tool": raiser(SystemExit(1))}
    )
    details = failed(result, "error")
    assert (details.name, details.tool, details.python_type) == ("ToolError", "tool", "SystemExit")
    assert list(result.logs) == ["pre"]
    await assert_healthy(executor)


@pytest.mark.parametrize("mode", ["worker", "async"])
async def test_tool_that_never_returns_times_out(
    make_executor: Callable[..., Executor], mode: str
) -> None:
    executor = make_executor(timeout_s=1)
    release = threading.Event()

    def hang() -> None:
        release.wait(30)

    async def hang_async() -> None:
        await asyncio.sleep(3600)

    fn = hang if mode == "worker" else hang_async
    started = time.monotonic()
    try:
        result = await executor.execute(
            "console.log('pre'); await codemode.hang();", fns={"hang": fn}
        )
    finally:
        release.set()
    details = failed(result, "timeout")
    assert details.message == "the program did not finish within 1 s and was stopped"
    assert list(result.logs) == ["pre"]
    assert time.monotonic() - started < 5
    await assert_healthy(executor)


async def test_inline_tool_that_never_returns_times_out(
    make_executor: Callable[..., Executor],
) -> None:
    """Documented limit: the isolate is left behind, but the caller gets its answer."""
    executor = make_executor(timeout_s=1)
    release = threading.Event()

    @inline
    def hang() -> None:
        release.wait(10)

    started = time.monotonic()
    try:
        result = await executor.execute("await codemode.hang();", fns={"hang": hang})
        assert time.monotonic() - started < 5
    finally:
        release.set()
    failed(result, "timeout")
    await assert_healthy(executor)


class Cyclic:
    """An object graph with a cycle through a ``to_dict`` hook."""

    def to_dict(self) -> dict[str, Any]:
        return {"self": self}


def _cycle() -> list[Any]:
    a: list[Any] = []
    a.append(a)
    return a


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: socket.socket(), "object of type 'socket' is not JSON-serialisable"),
        (lambda: (i for i in range(3)), "(convert it to a list first)"),
        (_cycle, "cycle at"),
        (lambda: {"a": Cyclic()}, "cannot send the result of codemode.tool() to JavaScript"),
        (lambda: {1j: 1}, "is not a string"),
        (lambda: object(), "object of type 'object' is not JSON-serialisable"),
    ],
    ids=["socket", "generator", "cycle", "hook-cycle", "complex-key", "object"],
)
async def test_unsendable_results_are_tool_errors(
    executor: Executor, make: Callable[[], Any], fragment: str
) -> None:
    made: list[Any] = []

    def tool() -> Any:
        value = make()
        made.append(value)
        return value

    try:
        result = ok(await executor.execute(CATCH, fns={"tool": tool}))
    finally:
        for value in made:
            if isinstance(value, socket.socket):
                value.close()
    name, _, python_type, message = result.result
    assert (name, python_type) == ("ToolError", "ConversionError")
    assert fragment in message, message
    await assert_healthy(executor)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (math.nan, None),
        (math.inf, None),
        ([-math.inf, 1.5], [None, 1.5]),
        (2**53 + 1, float(2**53)),
        (10**400, None),
    ],
    ids=["nan", "inf", "list-inf", "above-safe", "huge-int"],
)
async def test_odd_numbers_cross_as_json(executor: Executor, value: Any, expected: Any) -> None:
    result = await executor.execute(
        "const v = await codemode.tool(); return [v, typeof v]", fns={"tool": lambda: value}
    )
    if isinstance(value, int) and value > 2**64:
        # Beyond a double's range: a clear conversion failure or Infinity-as-null, never a crash.
        assert result.ok or "ToolError" in result.error
    else:
        got, kind = ok(result).result
        assert got == expected and kind in ("number", "object")
    await assert_healthy(executor)


def typed(n: int, s: str, flag: bool = False) -> list[Any]:
    """A tool with a checked signature."""
    return [n, s, flag]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ("{ n: 'one', s: 'x' }", "parameter 'n' expected number, got string \"one\""),
        ("{ n: 1, s: 2 }", "parameter 's' expected string, got number 2"),
        ("{ n: 1.5, s: 'x' }", "parameter 'n' expected integer, got number 1.5"),
        ("{ n: 1, s: 'x', flag: 'yes' }", "parameter 'flag' expected boolean"),
        ("{ n: 1, s: 'x', extra: 2 }", "unexpected parameter 'extra'"),
        ("{ s: 'x' }", "missing required parameter 'n'"),
        ("{}", "missing required parameters 'n', 's'"),
        ("1, 2, 3", "takes one object argument"),
        ("null", "missing required parameters 'n', 's'"),
        ("[1, 'x']", "takes one object argument"),
        ("'text'", "takes one object argument"),
        ("{ n: 1, s: 'x', __proto__: { extra: 1 } }", None),
        ("Object.assign(Object.create({ n: 2 }), { s: 'x' })", "missing required parameter 'n'"),
    ],
)
async def test_wrong_arguments_are_refused_before_the_call(
    executor: Executor, args: str, fragment: str | None
) -> None:
    calls: list[Any] = []

    def tool(n: int, s: str, flag: bool = False) -> list[Any]:
        calls.append((n, s, flag))
        return [n, s, flag]

    code = f"""
    try {{ return ["ok", await codemode.tool({args})]; }}
    catch (e) {{ return [e.name, e.pythonType, e.message]; }}
    """
    result = ok(await executor.execute(code, fns={"tool": tool})).result
    if fragment is None:
        assert result == ["ok", [1, "x", False]]
        assert calls == [(1, "x", False)]
    else:
        assert result[:2] == ["ToolError", "ArgumentError"], result
        assert fragment in result[2], result[2]
        assert calls == []


async def test_ten_megabyte_argument(make_executor: Callable[..., Executor]) -> None:
    executor = make_executor(max_heap_bytes=64 * 1024 * 1024)
    sizes: list[int] = []

    def measure(text: str) -> int:
        sizes.append(len(text))
        return len(text)

    code = """
    const n = await codemode.measure({ text: "é".repeat(5 * 1024 * 1024) });
    let refused = "";
    try { await codemode.measure({ text: "x".repeat(11 * 1024 * 1024) }); }
    catch (e) { refused = e.message; }
    return [n, refused];
    """
    result = ok(await executor.execute(code, fns={"measure": measure})).result
    assert result[0] == 5 * 1024 * 1024
    assert result[1].startswith("codemode.measure(): arguments is too large to send")
    assert sizes == [5 * 1024 * 1024]
    await assert_healthy(executor)
