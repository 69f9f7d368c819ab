"""Executor.execute end to end: code forms, console, errors, the codemode proxy, argument
checking, conversions both ways, host-call concurrency and capabilities. Real V8 isolates."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import enum
import threading
import time
import uuid
from pathlib import Path
from typing import TypedDict

import pydantic
import pytest

from codemode import (
    EnvCapability,
    ErrorDetails,
    Executor,
    FsCapability,
    LogLine,
    RunCompleted,
    RunFailed,
    inline,
)

MiB = 1024 * 1024


def ok(result: RunCompleted | RunFailed) -> RunCompleted:
    assert isinstance(result, RunCompleted), getattr(result, "error", result)
    return result


def catch_message(call: str) -> str:
    """JS that awaits ``call`` and returns the message it throws (or "called")."""
    return f"try {{ await {call}; return 'called' }} catch (e) {{ return e.message }}"


def failed(result: RunCompleted | RunFailed) -> RunFailed:
    assert isinstance(result, RunFailed), f"expected a failure, got {result!r}"
    assert isinstance(result.details, ErrorDetails)
    return result


# ------------------------------------------------------------------------------ construction


def test_defaults() -> None:
    executor = Executor()
    assert executor.timeout_s == 60
    assert executor.max_heap_bytes == 16 * MiB
    assert executor.capabilities == []
    executor.close()


def test_capabilities_are_kept(tmp_path: Path) -> None:
    env = EnvCapability(allowed_keys=["CM_TEST"])
    fs = FsCapability([tmp_path])
    executor = Executor(timeout_s=2, max_heap_bytes=16 * MiB, capabilities=[env, fs])
    assert executor.capabilities == [env, fs]
    assert executor.timeout_s == 2
    executor.close()


async def test_execute_returns_run_completed(executor: Executor) -> None:
    result = await executor.execute("return 40 + 2", fns={})
    assert isinstance(result, RunCompleted)
    assert result.ok is True
    assert result.result == 42
    assert result.logs == []


async def test_execute_returns_run_failed(executor: Executor) -> None:
    result = await executor.execute("console.log('before'); throw new Error('nope')")
    result = failed(result)
    assert result.ok is False
    assert "nope" in result.error
    assert result.logs == ["before"]


async def test_known_functions_are_called_directly(executor: Executor) -> None:
    seen: list[int] = []

    def add(*, a: int, b: int) -> int:
        seen.append(a + b)
        return a + b

    result = ok(await executor.execute("return await codemode.add({a: 2, b: 3})", fns={"add": add}))
    assert result.result == 5
    assert seen == [5]
    assert [c.name for c in result.calls] == ["add"]


def test_execute_sync_without_event_loop(executor: Executor) -> None:
    code = "return await codemode.f({x: 20}) * 2"
    result = executor.execute_sync(code, fns={"f": lambda *, x: x + 1})
    assert ok(result).result == 42


async def test_execute_sync_inside_running_loop(executor: Executor) -> None:
    async def twice(*, x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    result = executor.execute_sync("await codemode.twice({x: 21})", fns={"twice": twice})
    assert ok(result).result == 42


async def test_closed_executor_refuses_runs() -> None:
    executor = Executor(timeout_s=2)
    executor.close()
    with pytest.raises(RuntimeError):
        await executor.execute("1")


# ------------------------------------------------------------------------------ code forms


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("async () => { const x = await Promise.resolve(20); return x + 1 }", 21),
        ("() => 1", 1),
        ("async function main() { return [1, 2] }", [1, 2]),
        ("function main() { return 'sync fn' }", "sync fn"),
        ("const a = await Promise.resolve(3);\nconst b = 4;\nreturn a * b;", 12),
        ("1+1", 2),
        ("'str' + 'ing'", "string"),
        ("({a: 1})", {"a": 1}),
        ("await codemode.f()", 7),
        ("return await codemode.f() // trailing comment", 7),
        ("1+1 // trailing comment", 2),
        ("async () => {\n  return 5\n} // comment", 5),
        ("const x = 1;\nreturn x // comment", 1),
        ("// leading comment\nreturn 9", 9),
        ("let s = 0;\nfor (let i = 0; i < 4; i++) { s += i }\nreturn s", 6),
        ("", None),
    ],
)
async def test_code_forms(executor: Executor, code: str, expected: object) -> None:
    result = await executor.execute(code, fns={"f": lambda: 7})
    assert ok(result).result == expected


async def test_statements_without_return_give_none(executor: Executor) -> None:
    seen: list[int] = []
    result = await executor.execute(
        "await codemode.f({x: 1});\nconst y = 2;", fns={"f": lambda *, x: seen.append(x)}
    )
    assert ok(result).result is None
    assert seen == [1]


async def test_async_function_main_is_invoked(executor: Executor) -> None:
    seen: list[str] = []
    code = "async function main() {\n  await codemode.mark({s: 'called'});\n  return 1;\n}"
    result = ok(await executor.execute(code, fns={"mark": lambda *, s: seen.append(s)}))
    assert result.result == 1
    assert seen == ["called"]


# ------------------------------------------------------------------------------ console


async def test_console_levels_and_times(executor: Executor) -> None:
    code = """
    console.log('a'); console.info('b'); console.warn('c'); console.error('d'); console.debug('e');
    const t = Date.now(); while (Date.now() - t < 20) {}
    console.log('f');
    """
    result = ok(await executor.execute(code))
    assert result.logs == ["a", "b", "c", "d", "e", "f"]
    assert all(isinstance(line, LogLine) for line in result.logs)
    assert [line.level for line in result.logs] == ["log", "info", "warn", "error", "debug", "log"]
    times = [line.time for line in result.logs]
    assert times == sorted(times)
    assert times[-1] - times[0] >= 0.015
    assert 0 <= times[0] <= result.duration


async def test_console_multiple_args_joined(executor: Executor) -> None:
    result = ok(await executor.execute("console.log('n =', 3, true, null, undefined)"))
    assert result.logs == ["n = 3 true null undefined"]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("{a: [1, 2]}", "{ a: [1, 2] }"),
        ("[1, 'two', {x: null}]", '[1, "two", { x: null }]'),
        ("{nested: {deep: {k: 'v'}}}", '{ nested: { deep: { k: "v" } } }'),
        ("{}", "{}"),
        ("[]", "[]"),
        ("12n", "12n"),
    ],
)
async def test_console_objects_are_readable(executor: Executor, expr: str, expected: str) -> None:
    result = ok(await executor.execute(f"console.log({expr})"))
    assert result.logs == [expected]


async def test_console_map_set_error_cycle(executor: Executor) -> None:
    code = """
    console.log(new Map([['k', 1], ['j', {z: 2}]]));
    console.log(new Set([1, 2, 3]));
    console.log('err:', new RangeError('bad range'));
    const o = {name: 'loop'}; o.self = o;
    console.log(o);
    console.log(new Date(0));
    """
    logs = ok(await executor.execute(code)).logs
    assert len(logs) == 5
    assert "[object" not in "".join(logs)
    assert logs[0].startswith("Map") and '"k" => 1' in logs[0] and "z: 2" in logs[0]
    assert logs[1].startswith("Set") and "1, 2, 3" in logs[1]
    assert "RangeError: bad range" in logs[2]
    assert "Circular" in logs[3] and 'name: "loop"' in logs[3]
    assert logs[4] == "1970-01-01T00:00:00.000Z"


async def test_console_error_stack_shows_only_user_frames(executor: Executor) -> None:
    code = "const a = 1;\nconst e = new Error('boom');\nconsole.log(e);"
    logs = ok(await executor.execute(code)).logs
    assert len(logs) == 1
    assert logs[0].startswith("Error: boom")
    assert "codemode.js:2:" in logs[0]
    assert "harness" not in logs[0]
    assert "<eval_async>" not in logs[0]


@pytest.mark.parametrize(
    "ending",
    [
        "throw new Error('late failure')",
        "while (true) {}",
        "const a = []; while (true) a.push({pad: new Array(1000).fill(1)})",
        "await new Promise(() => {})",
    ],
    ids=["throw", "busy-loop", "heap", "never-resolves"],
)
async def test_console_survives_failures(executor: Executor, ending: str) -> None:
    code = f"console.log('first');\nconsole.warn({{k: [1]}});\n{ending}"
    result = failed(await executor.execute(code, timeout_s=0.5))
    assert result.logs == ["first", "{ k: [1] }"]
    assert [line.level for line in result.logs] == ["log", "warn"]


async def test_console_flood_bounded_by_lines(make_executor) -> None:
    executor = make_executor(max_log_lines=10)
    code = "for (let i = 0; i < 50; i++) console.log('line', i); return 1"
    result = ok(await executor.execute(code))
    assert result.result == 1
    assert result.logs == [f"line {i}" for i in range(10)]
    assert result.dropped_logs == 40


async def test_console_flood_bounded_by_bytes(make_executor) -> None:
    executor = make_executor(max_log_bytes=1000)
    result = ok(await executor.execute("for (let i = 0; i < 50; i++) console.log('x'.repeat(100))"))
    assert 0 < len(result.logs) < 50
    assert sum(len(line) for line in result.logs) <= 1000
    assert result.dropped_logs == 50 - len(result.logs)


async def test_console_flood_default_limits(executor: Executor) -> None:
    code = "for (let i = 0; i < 200000; i++) console.log('flood', i);\nreturn 7"
    result = ok(await executor.execute(code))
    assert result.result == 7
    assert len(result.logs) == executor.max_log_lines == 10_000
    assert result.logs[-1] == "flood 9999"
    assert result.dropped_logs == 190_000


async def test_console_flood_count_survives_timeout(make_executor) -> None:
    executor = make_executor(max_log_lines=10)
    code = "for (let i = 0; i < 50; i++) console.log('line', i);\nwhile (true) {}"
    result = failed(await executor.execute(code, timeout_s=0.5))
    assert result.details.kind == "timeout"
    assert len(result.logs) == 10
    assert result.dropped_logs == 40


# ------------------------------------------------------------------------------ JS errors


@pytest.mark.parametrize(
    "code",
    [
        "const a = 1;\nconst b = 2;\nnull.x;\n",
        "async () => {\n  const a = 1;\n  null.x;\n}",
        "async function main() {\n  const a = 1;\n  null.x;\n}",
        "function inner() {\n  const o = null;\n  return o.x;\n}\ninner();",
    ],
    ids=["statements", "arrow", "main", "nested-function"],
)
async def test_js_error_stack_points_into_user_code(executor: Executor, code: str) -> None:
    result = failed(await executor.execute(code))
    details = result.details
    assert details.kind == "error"
    assert details.name == "TypeError"
    assert "null" in details.message
    assert details.line == 3
    assert details.stack is not None
    assert "codemode.js:3:" in details.stack
    assert "harness" not in details.stack
    assert "<eval_async>" not in details.stack
    assert "codemode.js:3:" in result.error


async def test_js_error_call_chain_frames_are_user_lines(executor: Executor) -> None:
    code = "function f() {\n  throw new RangeError('deep');\n}\nfunction g() { f(); }\ng();"
    details = failed(await executor.execute(code)).details
    assert details.name == "RangeError"
    assert details.message == "deep"
    frames = [line.strip() for line in details.stack.splitlines()[1:]]
    assert frames, details.stack
    assert all("codemode.js:" in frame for frame in frames), frames
    assert "codemode.js:2:" in frames[0]
    assert any("codemode.js:4:" in frame for frame in frames)
    assert any("codemode.js:5:" in frame for frame in frames)


async def test_js_error_first_line_column_is_the_users(executor: Executor) -> None:
    first = failed(await executor.execute("null.x")).details
    second = failed(await executor.execute("\nnull.x")).details
    assert (first.line, second.line) == (1, 2)
    assert first.column == second.column
    assert f"codemode.js:1:{second.column}" in first.stack


async def test_custom_filename_in_stack(make_executor) -> None:
    executor = make_executor(filename="cell.js")
    details = failed(await executor.execute("\nthrow new Error('x')")).details
    assert "cell.js:2:" in details.stack


async def test_thrown_non_error_value(executor: Executor) -> None:
    details = failed(await executor.execute("throw 42")).details
    assert details.kind == "error"
    assert "42" in details.message


async def test_syntax_error_is_reported(executor: Executor) -> None:
    details = failed(await executor.execute("const a = 1;\nconst b = ;\n")).details
    assert details.kind == "syntax"
    assert details.name == "SyntaxError"
    assert (details.line, details.column) == (2, 11)
    assert "codemode.js:2:11" in (details.stack or "")


# ------------------------------------------------------------------------------ Python errors


async def test_python_exception_is_catchable_tool_error(executor: Executor) -> None:
    def explode(*, x: int) -> int:
        raise ValueError(f"bad value {x}")

    code = """
    try {
      await codemode.explode({x: 7});
      return 'not thrown';
    } catch (e) {
      return {name: e.name, py: e.pythonType, tool: e.tool, msg: e.message,
              isError: e instanceof Error};
    }
    """
    result = ok(await executor.execute(code, fns={"explode": explode}))
    caught = result.result
    assert caught["name"] == "ToolError"
    assert caught["py"] == "ValueError"
    assert caught["tool"] == "explode"
    assert "bad value 7" in caught["msg"]
    assert caught["isError"] is True
    assert result.calls[0].error_type == "ValueError"


async def test_async_python_exception_is_catchable(executor: Executor) -> None:
    async def explode() -> None:
        await asyncio.sleep(0)
        raise KeyError("missing-thing")

    code = "try { await codemode.explode() } catch (e) { return [e.name, e.pythonType, e.message] }"
    name, py, msg = ok(await executor.execute(code, fns={"explode": explode})).result
    assert (name, py) == ("ToolError", "KeyError")
    assert "missing-thing" in msg


async def test_uncaught_python_exception_names_the_tool(executor: Executor) -> None:
    def lookup(*, key: str) -> str:
        raise LookupError(f"no record {key}")

    code = "const a = 1;\nawait codemode.crm_lookup({key: 'k9'});\nreturn 'unreachable'"
    result = failed(await executor.execute(code, fns={"crm_lookup": lookup}))
    assert result.details.tool == "crm_lookup"
    assert result.details.python_type == "LookupError"
    assert result.details.name == "ToolError"
    assert "crm_lookup" in result.error
    assert "no record k9" in result.error
    assert result.details.line == 2


# ------------------------------------------------------------------------------ codemode proxy


async def test_unknown_tool_fails_at_once_listing_tools(executor: Executor) -> None:
    fns = {"add": lambda *, a, b: a + b, "mul": lambda *, a, b: a * b}
    result = await asyncio.wait_for(
        executor.execute("await codemode.unknown({a: 1})", fns=fns, timeout_s=30), 5
    )
    details = failed(result).details
    assert details.kind == "error"
    assert "unknown" in details.message
    assert "add" in details.message and "mul" in details.message
    assert result.calls == []


async def test_unknown_tool_is_catchable(executor: Executor) -> None:
    code = "try { await codemode.nope() } catch (e) { return e.message }"
    message = ok(await executor.execute(code, fns={"real": lambda: 1})).result
    assert "nope" in message and "real" in message


async def test_unknown_namespaced_tool_lists_tools(make_executor) -> None:
    executor = make_executor(capabilities=[EnvCapability(allowed_keys=["CM_TEST"])])
    message = failed(await executor.execute("await codemode.env.nope()")).details.message
    assert "env.nope" in message
    assert "env.get" in message


async def test_codemode_then_undefined_and_await_harmless(executor: Executor) -> None:
    code = """
    const c = await codemode;
    return [typeof codemode.then, c === codemode, await codemode.f()];
    """
    assert ok(await executor.execute(code, fns={"f": lambda: "ok"})).result == [
        "undefined",
        True,
        "ok",
    ]


async def test_object_keys_lists_tools(make_executor) -> None:
    executor = make_executor(capabilities=[EnvCapability(allowed_keys=["CM_TEST"])])
    code = """[Object.keys(codemode), Object.keys(codemode.env),
               'beta' in codemode, 'zzz' in codemode]"""
    result = ok(await executor.execute(code, fns={"beta": lambda: 1, "alpha": lambda: 2}))
    keys, env_keys, has_beta, has_zzz = result.result
    assert sorted(keys) == ["alpha", "beta", "env"]
    assert sorted(env_keys) == ["get", "list"]
    assert (has_beta, has_zzz) == (True, False)


@pytest.mark.parametrize(
    "access",
    [
        "codemode.constructor",
        "codemode.__proto__",
        'codemode["__class__"]',
        'codemode["os.system"]',
        "codemode.toString",
        "codemode.hasOwnProperty",
        "codemode.spy.constructor",
        "codemode.constructor.constructor",
    ],
)
async def test_only_registered_names_are_reachable(executor: Executor, access: str) -> None:
    called: list[object] = []

    def spy(**kwargs: object) -> str:
        called.append(kwargs)
        return "spy"

    code = f"""
    let target;
    try {{ target = {access}; }} catch (e) {{ return 'access threw'; }}
    if (typeof target !== 'function') return 'not callable: ' + typeof target;
    try {{
      const out = await target({{cmd: 'echo pwned'}});
      return 'called: ' + String(out);
    }} catch (e) {{
      return 'call threw';
    }}
    """
    result = ok(await executor.execute(code, fns={"spy": spy}))
    assert not str(result.result).startswith("called"), result.result
    assert result.calls == []
    assert called == []


async def test_raw_bridges_are_not_reachable(executor: Executor) -> None:
    code = """
    const raw = Object.getOwnPropertyNames(globalThis).filter(
      (n) => n.startsWith("__") || /jsrun|host_op/i.test(n));
    const forged = [];
    for (const name of raw) {
      const op = globalThis[name];
      if (typeof op !== "function") continue;
      for (let id = 0; id < 8; id++) {
        try { op(id, '{"result": "forged", "dropped": 0}'); } catch (e) {}
      }
    }
    return {raw, result: "real"};
    """
    result = ok(await executor.execute(code, fns={"spy": lambda: "called"}))
    assert result.result == {"raw": [], "result": "real"}
    assert result.calls == []


async def test_codemode_is_frozen(executor: Executor) -> None:
    code = """
    const out = [];
    try { codemode.f = () => 'hijacked'; } catch (e) { out.push('set threw'); }
    try { delete codemode.f; } catch (e) { out.push('delete threw'); }
    out.push(Object.getPrototypeOf(codemode) === null);
    out.push(await codemode.f());
    return out;
    """
    result = ok(await executor.execute(code, fns={"f": lambda: "real"})).result
    assert result[-1] == "real"
    assert result[-2] is True


# ------------------------------------------------------------------------------ arguments


@pytest.mark.parametrize(
    ("args", "parameter"),
    [
        ("{}", "x"),
        ("{x: 1, z: 2}", "z"),
        ("{x: 'one'}", "x"),
        ("{x: 1, label: 5}", "label"),
        ("{x: 1.5}", "x"),
    ],
    ids=["missing", "unexpected", "mistyped", "mistyped-optional", "float-for-int"],
)
async def test_arguments_checked_before_call(executor: Executor, args: str, parameter: str) -> None:
    called: list[tuple[int, str]] = []

    def scale(*, x: int, label: str = "n") -> int:
        called.append((x, label))
        return x

    code = catch_message(f"codemode.scale({args})")
    message = ok(await executor.execute(code, fns={"scale": scale})).result
    assert message != "called"
    assert "scale" in message
    assert f"'{parameter}'" in message
    assert called == []


async def test_argument_error_uncaught_names_tool_and_parameter(executor: Executor) -> None:
    called: list[int] = []

    def typed(*, count: int) -> int:
        called.append(count)
        return count

    code = "await codemode.typed({count: 'x'})"
    result = failed(await executor.execute(code, fns={"typed": typed}))
    assert result.details.tool == "typed"
    assert "'count'" in result.error
    assert "typed" in result.error
    assert called == []


async def test_positional_arguments_are_rejected(executor: Executor) -> None:
    called: list[int] = []

    def add(*, a: int, b: int) -> int:
        called.append(a + b)
        return a + b

    code = catch_message("codemode.add(1, 2)")
    message = ok(await executor.execute(code, fns={"add": add})).result
    assert "add" in message and message != "called"
    assert called == []


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Options(TypedDict):
    verbose: bool
    depth: int


class Person(pydantic.BaseModel):
    name: str
    age: int


async def test_structured_parameters_are_constructed(executor: Executor) -> None:
    received: list[object] = []

    def place(*, where: Point, opts: Options, who: Person) -> str:
        received.extend([where, opts, who])
        return f"{who.name}@{where.x},{where.y}"

    code = (
        "await codemode.place({where: {x: 1, y: 2}, opts: {verbose: true, depth: 3}, "
        "who: {name: 'ada', age: 36}})"
    )
    result = ok(await executor.execute(code, fns={"place": place}))
    assert result.result == "ada@1,2"
    where, opts, who = received
    assert isinstance(where, Point) and where == Point(1, 2)
    assert isinstance(opts, dict) and opts == {"verbose": True, "depth": 3}
    assert isinstance(who, Person) and who == Person(name="ada", age=36)


@pytest.mark.parametrize(
    ("args", "path"),
    [
        (
            "{where: {x: 'a', y: 2}, opts: {verbose: true, depth: 3}, who: {name: 'a', age: 1}}",
            "where.x",
        ),
        ("{where: {x: 1}, opts: {verbose: true, depth: 3}, who: {name: 'a', age: 1}}", "y"),
        (
            "{where: {x: 1, y: 2}, opts: {verbose: 'yes', depth: 3}, who: {name: 'a', age: 1}}",
            "opts.verbose",
        ),
        (
            "{where: {x: 1, y: 2}, opts: {verbose: true, depth: 3}, who: {name: 'a', age: 'old'}}",
            "who.age",
        ),
    ],
    ids=["dataclass", "dataclass-missing", "typeddict", "pydantic"],
)
async def test_structured_parameters_are_validated(
    executor: Executor, args: str, path: str
) -> None:
    called: list[object] = []

    def place(*, where: Point, opts: Options, who: Person) -> None:
        called.append(where)

    code = catch_message(f"codemode.place({args})")
    message = ok(await executor.execute(code, fns={"place": place})).result
    assert message != "called"
    assert "place" in message
    assert path in message
    assert called == []


async def test_null_arguments_arrive_as_none(executor: Executor) -> None:
    received: list[object] = []

    def take(*, a: object = "default", b: object = None) -> str:
        received.append((a, b))
        return "ok"

    code = "await codemode.take({a: null, b: {c: null, d: [null, 1, {e: null}]}})"
    ok(await executor.execute(code, fns={"take": take}))
    assert received == [(None, {"c": None, "d": [None, 1, {"e": None}]})]
    a, b = received[0]
    assert a is None
    assert b["c"] is None and b["d"][0] is None and b["d"][2]["e"] is None


async def test_undefined_argument_fields_are_omitted(executor: Executor) -> None:
    received: list[object] = []

    def take(*, a: int = 5) -> int:
        received.append(a)
        return a

    result = await executor.execute("await codemode.take({a: undefined})", fns={"take": take})
    assert ok(result).result == 5
    assert received == [5]


async def test_function_argument_is_refused_with_path(executor: Executor) -> None:
    called: list[object] = []
    code = catch_message("codemode.take({cb: () => 1})")
    message = ok(await executor.execute(code, fns={"take": lambda **kw: called.append(kw)})).result
    assert message != "called"
    assert "cb" in message and "function" in message
    assert called == []


async def test_promise_argument_is_refused(executor: Executor) -> None:
    called: list[object] = []
    code = catch_message("codemode.take({p: Promise.resolve(1)})")
    message = ok(await executor.execute(code, fns={"take": lambda **kw: called.append(kw)})).result
    assert "Promise" in message
    assert called == []


async def test_bigint_argument_is_exact(executor: Executor) -> None:
    received: list[int] = []
    code = "await codemode.take({n: 2n ** 70n})"
    ok(await executor.execute(code, fns={"take": lambda *, n: received.append(n)}))
    assert received == [2**70]


# -------------------------------------------------------------------------- results (Python -> JS)


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Box:
    label: str
    size: tuple[int, int]


class Item(pydantic.BaseModel):
    name: str
    when: datetime.date


async def test_python_results_made_json_safe_in_js(executor: Executor) -> None:
    def produce() -> dict[str, object]:
        return {
            "box": Box("b", (2, 3)),
            "item": Item(name="i", when=datetime.date(2024, 5, 6)),
            "tuple": (1, "two", None),
            "when": datetime.datetime(2024, 1, 2, 3, 4, 5),
            "color": Color.RED,
            "ints": {1: "one", 2: "two"},
            "set": {3, 1, 2},
            "dec": decimal.Decimal("1.5"),
            "uid": uuid.UUID(int=1),
        }

    code = """
    const r = await codemode.produce();
    return {
      box: [r.box.label, Array.isArray(r.box.size), r.box.size[1]],
      item: [r.item.name, r.item.when],
      tupleIsArray: Array.isArray(r.tuple), tuple: r.tuple,
      when: r.when, color: r.color,
      intKeys: Object.keys(r.ints), one: r.ints[1], two: r.ints['2'],
      set: r.set, dec: r.dec * 2, uid: typeof r.uid,
    };
    """
    result = ok(await executor.execute(code, fns={"produce": produce})).result
    assert result["box"] == ["b", True, 3]
    assert result["item"] == ["i", "2024-05-06"]
    assert result["tupleIsArray"] is True and result["tuple"] == [1, "two", None]
    assert result["when"] == "2024-01-02T03:04:05"
    assert result["color"] == "red"
    assert result["intKeys"] == ["1", "2"] and result["one"] == "one" and result["two"] == "two"
    assert result["set"] == [1, 2, 3]
    assert result["dec"] == 3
    assert result["uid"] == "string"


async def test_tuple_result_returned_directly(executor: Executor) -> None:
    code = "const t = await codemode.pair(); return [Array.isArray(t), t.length, t[0] + t[1]]"
    assert ok(await executor.execute(code, fns={"pair": lambda: (40, 2)})).result == [True, 2, 42]


async def test_unconvertible_return_gives_clear_error(executor: Executor) -> None:
    class Opaque:
        pass

    code = "try { await codemode.opaque(); return 'called' }"
    code += "catch (e) { return [e.name, e.message] }"
    fns = {"opaque": lambda: {"k": [Opaque()]}}
    name, message = ok(await executor.execute(code, fns=fns)).result
    assert name == "ToolError"
    assert "opaque" in message
    assert "Opaque" in message
    assert "k" in message  # the path inside the result


async def test_unconvertible_return_uncaught(executor: Executor) -> None:
    result = failed(await executor.execute("await codemode.gen()", fns={"gen": lambda: object()}))
    assert result.details.tool == "gen"
    assert "gen" in result.error
    assert "object" in result.error


# -------------------------------------------------------------------------- results (JS -> Python)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("undefined", None),
        ("return", None),
        ("null", None),
        ("2n ** 70n", 2**70),
        ("({big: [-(2n ** 70n)]})", {"big": [-(2**70)]}),
        ("new Date(0)", "1970-01-01T00:00:00.000Z"),
        ("({when: new Date(Date.UTC(2024, 0, 2))})", {"when": "2024-01-02T00:00:00.000Z"}),
        ("({a: 1, skip: undefined})", {"a": 1}),
        ("[1, undefined, 3]", [1, None, 3]),
        ("new Map([['a', 1]])", {"a": 1}),
        ("new Set([1, 2])", [1, 2]),
        ("'ünïcødé ✓'", "ünïcødé ✓"),
        ("1.5", 1.5),
        ("true", True),
    ],
)
async def test_js_results_converted(executor: Executor, code: str, expected: object) -> None:
    result = ok(await executor.execute(code))
    assert result.result == expected
    assert type(result.result) is type(expected)


async def test_bigint_result_is_exact_int(executor: Executor) -> None:
    value = ok(await executor.execute("2n ** 70n + 1n")).result
    assert type(value) is int
    assert value == 2**70 + 1


@pytest.mark.parametrize(
    ("code", "path", "what"),
    [
        ("({a: {b: () => 1}})", "result.a.b", "function"),
        ("({a: {b: Symbol('s')}})", "result.a.b", "symbol"),
        ("(() => { const o = {}; o.a = {b: o}; return o })()", "result.a.b", "cycle"),
        ("[1, [2, function named() {}]]", "result[1][1]", "function"),
        ("({a: Promise.resolve(1)})", "result.a", "Promise"),
    ],
)
async def test_unsendable_js_results(executor: Executor, code: str, path: str, what: str) -> None:
    details = failed(await executor.execute(code)).details
    assert details.kind == "result"
    assert path in details.message
    assert what in details.message


# ------------------------------------------------------------------------------ concurrency


async def test_promise_all_async_host_functions_overlap(executor: Executor) -> None:
    active = 0
    peak = 0

    async def nap(*, i: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.2)
        active -= 1
        return i

    code = "return await Promise.all(Array.from({length: 10}, (_, i) => codemode.nap({i})))"
    started = time.perf_counter()
    result = ok(await executor.execute(code, fns={"nap": nap}))
    elapsed = time.perf_counter() - started
    assert result.result == list(range(10))
    assert peak == 10
    assert elapsed < 1.0  # serial would be 2 s


async def test_promise_all_sync_host_functions_overlap(executor: Executor) -> None:
    lock = threading.Lock()
    active = 0
    peak = 0
    threads: set[str] = set()

    def nap(*, i: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            threads.add(threading.current_thread().name)
        time.sleep(0.2)
        with lock:
            active -= 1
        return i

    code = "return await Promise.all(Array.from({length: 10}, (_, i) => codemode.nap({i})))"
    started = time.perf_counter()
    result = ok(await executor.execute(code, fns={"nap": nap}))
    elapsed = time.perf_counter() - started
    assert result.result == list(range(10))
    assert peak >= 5
    assert all(name.startswith("codemode-host") for name in threads), threads
    assert elapsed < 1.0  # serial would be 2 s


def _thread_comm() -> str:
    """The OS-level name of the current thread (jsrun names its isolate thread)."""
    path = f"/proc/self/task/{threading.get_native_id()}/comm"
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


async def test_inline_decorator_runs_on_isolate_thread(executor: Executor) -> None:
    where: list[tuple[str, str, int]] = []

    @inline
    def fast(*, x: int) -> int:
        where.append((threading.current_thread().name, _thread_comm(), threading.get_ident()))
        return x * 2

    def default(*, x: int) -> str:
        return threading.current_thread().name

    code = """
    const a = await Promise.all([codemode.fast({x: 1}), codemode.fast({x: 2})]);
    return [a, await codemode.default({x: 0})];
    """
    result = ok(await executor.execute(code, fns={"fast": fast, "default": default}))
    doubled, default_thread = result.result
    assert doubled == [2, 4]
    assert default_thread.startswith("codemode-host")
    assert len(where) == 2
    for name, comm, ident in where:
        assert not name.startswith("codemode-host")
        assert name != "codemode-engine"
        assert ident != threading.get_ident()
        if comm:
            assert comm.startswith("jsrun"), comm


async def test_inline_sync_executor_option(make_executor) -> None:
    executor = make_executor(inline_sync=True)
    names: list[str] = []

    def where() -> str:
        names.append(threading.current_thread().name)
        return _thread_comm()

    result = ok(
        await executor.execute(
            "[await codemode.where(), await codemode.where()]", fns={"where": where}
        )
    )
    assert len(names) == 2
    assert not any(name.startswith("codemode-host") for name in names), names
    assert all(comm == "" or comm.startswith("jsrun") for comm in result.result), result.result


async def test_inline_function_errors_are_catchable(executor: Executor) -> None:
    @inline
    def bad() -> None:
        raise ValueError("inline boom")

    code = "try { await codemode.bad() } catch (e) { return [e.name, e.pythonType, e.message] }"
    name, py, msg = ok(await executor.execute(code, fns={"bad": bad})).result
    assert (name, py) == ("ToolError", "ValueError")
    assert "inline boom" in msg


# ------------------------------------------------------------------------------ capabilities


async def test_env_capability_through_executor(make_executor, monkeypatch) -> None:
    monkeypatch.setenv("CM_TEST", "hello-env")
    monkeypatch.setenv("CM_SECRET", "s3cret")
    executor = make_executor(capabilities=[EnvCapability(allowed_keys=["CM_TEST"])])
    code = """
    const v = await codemode.env.get({key: "CM_TEST"});
    let denied;
    try { await codemode.env.get({key: "CM_SECRET"}); denied = 'allowed!'; }
    catch (e) { denied = [e.name, e.pythonType, e.message]; }
    return [v, denied];
    """
    value, denied = ok(await executor.execute(code)).result
    assert value == "hello-env"
    assert denied[0] == "ToolError"
    assert denied[1] == "CapabilityDenied"
    assert "CM_SECRET" in denied[2]
    assert "s3cret" not in denied[2]


async def test_fs_capability_read_through_executor(make_executor, tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("line one\nzwei ü\n", encoding="utf-8")
    executor = make_executor(capabilities=[FsCapability([tmp_path])])
    code = f"""
    const text = await codemode.fs.read({{path: {str(target)!r}}});
    const rel = await codemode.fs.read({{path: 'notes.txt'}});
    let outside;
    try {{ await codemode.fs.read({{path: '/etc/hostname'}}); outside = 'read!'; }}
    catch (e) {{ outside = e.pythonType; }}
    return [text, rel === text, outside];
    """
    text, same, outside = ok(await executor.execute(code)).result
    assert text == "line one\nzwei ü\n"
    assert same is True
    assert outside == "CapabilityDenied"


async def test_capabilities_and_fns_together(make_executor, monkeypatch) -> None:
    monkeypatch.setenv("CM_TEST", "v")
    executor = make_executor(capabilities=[EnvCapability(allowed_keys=["CM_TEST"])])
    code = "(await codemode.env.get({key: 'CM_TEST'})) + (await codemode.suffix())"
    assert ok(await executor.execute(code, fns={"suffix": lambda: "!"})).result == "v!"
