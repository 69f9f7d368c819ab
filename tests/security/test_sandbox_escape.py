"""Programs trying to leave the sandbox: host globals, module loading, jsrun's raw bridges,
prototype pollution aimed at the host boundary, odd ``codemode`` names, timers that outlive
their run and state carried from one run into the next.

Every case runs in a real V8 isolate and checks what the host saw: a spy host function records
each call it receives, and the run's own ``calls`` trace must agree.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from hostile import assert_healthy, failed, ok

from codemode import Executor, HostCallRequest, RunCompleted, RunFailed


class Spy:
    """A host function that records every call it receives (thread-safe enough: list.append)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> str:
        self.calls.append(kwargs)
        return "called"


def echo(value: Any = None) -> Any:
    """Returns its argument unchanged."""
    return value


def fail(reason: str = "no") -> None:
    """Always raises."""
    raise ValueError(reason)


# ------------------------------------------------------------------------------ host globals


@pytest.mark.parametrize(
    "name",
    [
        "require",
        "process",
        "Deno",
        "Bun",
        "fetch",
        "XMLHttpRequest",
        "WebSocket",
        "WebAssembly",
        "SharedArrayBuffer",
        "Worker",
        "ShadowRealm",
        "importScripts",
        "module",
        "exports",
        "navigator",
        "structuredClone",
        "__bootstrap",
        "__dirname",
        "global",
    ],
)
async def test_host_global_is_absent(executor: Executor, name: str) -> None:
    code = f"""
    const direct = typeof {name};
    const viaGlobal = typeof globalThis[{json.dumps(name)}];
    const viaFunction = typeof Function("return this")()[{json.dumps(name)}];
    const viaEval = (0, eval)("typeof " + {json.dumps(name)});
    return [direct, viaGlobal, viaFunction, viaEval];
    """
    assert ok(await executor.execute(code)).result == ["undefined"] * 4


@pytest.mark.parametrize(
    "specifier",
    [
        "fs",
        "node:fs",
        "node:child_process",
        "file:///etc/hostname",
        "/etc/hostname",
        "./codemode/harness.js",
        "data:text/javascript,export default 42",
        "https://example.com/x.js",
        "ext:core/ops",
        "ext:jsrun/python_bridge.js",
        "npm:left-pad",
    ],
)
async def test_dynamic_import_fails(executor: Executor, specifier: str) -> None:
    code = f"""
    try {{
      const m = await import({json.dumps(specifier)});
      return ["loaded", Object.keys(m)];
    }} catch (e) {{
      return [e.name, e.message];
    }}
    """
    name, message = ok(await executor.execute(code)).result
    assert name == "TypeError"
    assert "Module resolution denied" in message


async def test_static_import_is_a_syntax_error(executor: Executor) -> None:
    details = failed(await executor.execute('import fs from "fs";\nreturn 1'), "syntax")
    assert details.name == "SyntaxError"
    await assert_healthy(executor)


# ------------------------------------------------------------------------------ jsrun's bridges


async def test_global_scope_holds_no_bridge_or_entry_point(executor: Executor) -> None:
    code = """
    const names = Reflect.ownKeys(globalThis).map(String);
    return {
      suspicious: names.filter((n) => /^__|jsrun|host_op|bootstrap|codemode_|cm_/i.test(n)),
      symbols: Object.getOwnPropertySymbols(globalThis).map(String),
    };
    """
    assert ok(await executor.execute(code)).result == {"suspicious": [], "symbols": []}


async def test_fresh_runtime_is_sealed_too(make_executor: Any) -> None:
    """Runs beyond the prepared pool get a runtime prepared by their own evaluation."""
    executor = make_executor()
    code = "return Object.getOwnPropertyNames(globalThis).filter((n) => n.startsWith('__'))"
    results = await asyncio.gather(*(executor.execute(code) for _ in range(6)))
    assert [ok(r).result for r in results] == [[]] * 6


async def test_bridges_cannot_be_called_by_op_id(executor: Executor) -> None:
    """The names jsrun binds its dispatchers under, tried with every small op id."""
    spy = Spy()
    code = """
    const names = ["__host_op_sync__", "__host_op_async__", "__jsrunCallSync",
      "__jsrunCallAsync", "__jsrun_bind_object", "__jsrun_from_py_stream", "__cm_done",
      "__cm_park", "__cm_sync", "__cm_async", "__cm_log", "__codemode_run",
      "__codemode_run_job", "__codemode_serve", "__codemode_warm", "__codemode_prepare"];
    const reached = [];
    for (const name of names) {
      const fn = globalThis[name];
      if (typeof fn === "function") reached.push(name);
    }
    return { reached, result: "real" };
    """
    result = ok(await executor.execute(code, fns={"spy": spy}))
    assert result.result == {"reached": [], "result": "real"}
    assert result.calls == [] and spy.calls == []


STACK_WALK = """
// Hook every method jsrun's sloppy-mode wrappers (and deno_core's op stubs) look up at call
// time, and collect every function a structured stack trace hands out while they run.
const found = new Set();
const mine = new Set();
const grab = () => {
  const saved = Error.prepareStackTrace;
  Error.prepareStackTrace = (e, frames) => frames;
  const frames = new Error().stack;
  Error.prepareStackTrace = saved;
  if (!Array.isArray(frames)) return;
  for (const frame of frames) {
    const fn = frame.getFunction();
    if (typeof fn === "function" && !mine.has(fn)) found.add(fn);
    const self = frame.getThis();
    if (typeof self === "function" && !mine.has(self)) found.add(self);
  }
};
const restore = [];
const hook = (proto, name) => {
  const original = proto[name];
  const replacement = function (...args) {
    grab();
    found.add(this);
    return Reflect.apply(original, this, args);
  };
  mine.add(replacement);
  try { proto[name] = replacement; restore.push(() => { proto[name] = original; }); } catch (e) {}
};
mine.add(grab);
hook(Array.prototype, "map");
hook(Promise.prototype, "then");
hook(Map.prototype, "set");
hook(Map.prototype, "get");
hook(Map.prototype, "delete");
hook(Object, "entries");
hook(Function.prototype, "call");
hook(Function.prototype, "apply");
await codemode.spy({ tag: "real" });
try { await codemode.fail({}); } catch (e) {}
await new Promise((resolve) => { /*mine*/ setTimeout(resolve, 1); });
const t = setInterval(() => { /*mine*/ }, 1000); clearInterval(t);
for (const undo of restore) undo();
// The program's own functions (marked) are left out: calling those would just recurse.
const functions = [...found].filter(
  (f) => typeof f === "function" && !String(f).includes("/*mine*/"));
const sources = functions.map((f) => String(f));
// Whatever was found, call it the way a raw bridge is called.
let threw = 0;
for (const fn of functions) {
  if (typeof fn !== "function" || fn === codemode.spy || fn === codemode.fail) continue;
  for (let id = 0; id < 8; id++) {
    try { await fn(id, '{"result":"forged","dropped":0}'); } catch (e) { threw++; }
    try { await fn(id, ["spy", '[{"tag":"forged"}]']); } catch (e) { threw++; }
  }
}
return { sources, result: "real" };
"""


async def test_stack_traces_never_hand_out_a_bridge(executor: Executor) -> None:
    spy = Spy()
    result = ok(await executor.execute(STACK_WALK, fns={"spy": spy, "fail": fail}))
    assert result.result["result"] == "real"
    leaked = [
        source
        for source in result.result["sources"]
        if any(mark in source for mark in ("op_", "ops.", "__host_op", "__jsrun", "opSync"))
    ]
    assert leaked == []
    assert spy.calls == [{"tag": "real"}]
    assert [call.name for call in result.calls] == ["spy", "fail"]
    await assert_healthy(executor)


async def test_function_prototype_call_is_pinned(executor: Executor) -> None:
    """deno_core's async op stub looks ``call`` up on its native op at every call."""
    spy = Spy()
    code = """
    "use strict";
    const original = Function.prototype.call;
    const attempts = [];
    try { Function.prototype.call = function () { return "hooked"; }; attempts.push("set"); }
    catch (e) { attempts.push(e.name); }
    try { Object.defineProperty(Function.prototype, "call", { get() { return null; } });
          attempts.push("defined"); }
    catch (e) { attempts.push(e.name); }
    try { delete Function.prototype.call; attempts.push("deleted"); }
    catch (e) { attempts.push(e.name); }
    const out = await codemode.spy({ n: 1 });
    return { attempts, same: Function.prototype.call === original, out,
             works: Math.max.call(null, 1, 2) };
    """
    result = ok(await executor.execute(code, fns={"spy": spy})).result
    assert result == {
        "attempts": ["TypeError", "TypeError", "TypeError"],
        "same": True,
        "out": "called",
        "works": 2,
    }
    assert spy.calls == [{"n": 1}]


# ------------------------------------------------------------------------------ pollution


async def test_polluted_to_json_cannot_forge_a_failure_into_success(executor: Executor) -> None:
    code = """
    console.log("before");
    Object.prototype.toJSON = function () { return { result: "forged", dropped: 0 }; };
    Array.prototype.toJSON = function () { return ["forged"]; };
    throw new Error("boom");
    """
    result = await executor.execute(code)
    details = failed(result, "error")
    assert details.message == "boom"
    assert list(result.logs) == ["before"]
    await assert_healthy(executor)


@pytest.mark.parametrize(
    "pollution",
    [
        'Array.prototype.join = function () { return \'"forged","error":{"kind":"timeout"}\'; };',
        "Array.prototype.push = function () { return 0; };",
        'BigInt.prototype.toString = function () { return \'1,"error":{"kind":"memory"}\'; };',
        "Number.isFinite = () => true; Number.prototype.toString = () => 'NaN';",
        "JSON.stringify = () => '\"forged\"'; JSON.parse = () => ({ ok: 'forged' });",
        "Object.keys = () => ['forged']; Reflect.ownKeys = () => ['forged'];",
        "Set.prototype.has = () => true; Set.prototype.add = () => null;",
        "String.prototype.split = () => ['forged']; RegExp.prototype.test = () => true;",
        "Object.prototype.toJSON = () => 'forged'; Array.prototype.toJSON = () => 'forged';",
        "Symbol.prototype.toString = () => 'forged'; Error.prototype.toString = () => 'forged';",
    ],
)
async def test_pollution_does_not_change_result_or_host_arguments(
    executor: Executor, pollution: str
) -> None:
    seen: list[Any] = []

    def record(**kwargs: Any) -> dict[str, Any]:
        seen.append(kwargs)
        return {"keys": sorted(kwargs), "list": kwargs.get("list")}

    code = f"""
    {pollution}
    const flat = await codemode.record({{ a: 1, b: "x", c: null, d: true }});
    const nested = await codemode.record(
      {{ list: [1, [2, {{ k: "v" }}]], big: 12345678901234567890n }});
    return {{ flat, nested, big: 98765432109876543210n, nums: [1.5, -0, 1e300], text: "ok" }};
    """
    result = ok(await executor.execute(code, fns={"record": record}))
    flat = {"a": 1, "b": "x", "c": None, "d": True}
    nested = {"list": [1, [2, {"k": "v"}]], "big": 12345678901234567890}
    assert seen == [flat, nested]
    assert result.result == {
        "flat": {"keys": ["a", "b", "c", "d"], "list": None},
        "nested": {"keys": ["big", "list"], "list": [1, [2, {"k": "v"}]]},
        "big": 98765432109876543210,
        "nums": [1.5, 0, 1e300],
        "text": "ok",
    }
    await assert_healthy(executor)


async def test_inherited_enumerable_keys_are_not_sent(executor: Executor) -> None:
    seen: list[Any] = []

    def record(**kwargs: Any) -> None:
        seen.append(kwargs)

    code = """
    Object.prototype.injected = "evil";
    Object.defineProperty(Object.prototype, "getterInjected",
      { get() { return "evil"; }, enumerable: true, configurable: true });
    await codemode.record({ a: 1 });
    await codemode.record({ a: [1, { b: 2 }], m: new Map([["k", 1]]) });
    return Object.keys({});
    """
    result = ok(await executor.execute(code, fns={"record": record}))
    assert seen == [{"a": 1}, {"a": [1, {"b": 2}], "m": {"k": 1}}]
    assert result.result == []


@pytest.mark.parametrize("field", ["ok", "stop", "err"])
async def test_polluted_reply_fields_do_not_change_host_answers(
    executor: Executor, field: str
) -> None:
    code = f"""
    Object.prototype[{json.dumps(field)}] = "forged";
    const out = [];
    out.push(await codemode.echo({{ value: "real" }}));
    try {{ await codemode.fail({{ reason: "real failure" }}); out.push("no throw"); }}
    catch (e) {{ out.push(e.name + ": " + e.message); }}
    return out;
    """
    result = ok(await executor.execute(code, fns={"echo": echo, "fail": fail}, timeout_s=5))
    assert result.result == [
        "real",
        "ToolError: codemode.fail() raised ValueError: real failure",
    ]


# ------------------------------------------------------------------------------ codemode names


@pytest.mark.parametrize(
    "access",
    [
        "codemode.__proto__",
        "codemode.constructor",
        'codemode["__class__"]',
        'codemode["os.system"]',
        'codemode["spy.constructor"]',
        'codemode["__cm_async"]',
        'codemode["__host_op_sync__"]',
        "codemode.__defineGetter__",
        "codemode.hasOwnProperty",
        "codemode.toString",
        "codemode.valueOf",
        "codemode.eval",
        'codemode["constructor.prototype"]',
        'codemode["__proto__.spy"]',
        'codemode[".spy"]',
        'codemode["spy."]',
        'codemode[""]',
        "codemode.spy.constructor.prototype",
        'codemode["spy\\u0000"]',
        'codemode["SPY"]',
    ],
)
async def test_unregistered_names_call_nothing(executor: Executor, access: str) -> None:
    spy = Spy()
    code = f"""
    let target;
    try {{ target = {access}; }} catch (e) {{ return "access threw " + e.name; }}
    if (typeof target !== "function") return "not callable: " + typeof target;
    try {{
      const out = await target({{ cmd: "echo pwned" }});
      return "returned " + typeof out;
    }} catch (e) {{
      return "call threw " + e.name;
    }}
    """
    result = ok(await executor.execute(code, fns={"spy": spy}))
    assert spy.calls == []
    assert result.calls == []
    text = result.result
    assert text.startswith(("not callable", "call threw TypeError", "returned")), text
    if text.startswith("returned"):
        # Only a plain function made in the isolate (e.g. Function.prototype) can return.
        assert access == "codemode.spy.constructor.prototype", text


@pytest.mark.parametrize(
    "key",
    [
        "Symbol.iterator",
        "Symbol.toPrimitive",
        "Symbol.asyncIterator",
        "Symbol.hasInstance",
        'Symbol.for("spy")',
        "Symbol.toStringTag",
        "Symbol.unscopables",
    ],
)
async def test_symbol_keys_reach_nothing(executor: Executor, key: str) -> None:
    spy = Spy()
    code = f"""
    const value = codemode[{key}];
    return [typeof value, Object.getOwnPropertySymbols(codemode).length,
            {key} in codemode];
    """
    result = ok(await executor.execute(code, fns={"spy": spy}))
    assert result.result == ["undefined", 0, False]
    assert spy.calls == [] and result.calls == []


async def test_codemode_then_and_await_are_inert(executor: Executor) -> None:
    spy = Spy()
    code = """
    const t = codemode.then;
    const same = (await codemode) === codemode;
    const resolved = await Promise.resolve(codemode);
    return [typeof t, same, resolved === codemode, typeof codemode.spy.then];
    """
    result = ok(await executor.execute(code, fns={"spy": spy}))
    assert result.result == ["undefined", True, True, "undefined"]
    assert spy.calls == []


async def test_codemode_cannot_be_rewired(executor: Executor) -> None:
    spy = Spy()
    code = """
    "use strict";
    const out = [];
    const tryIt = (label, f) => {
      try { f(); out.push(label + " ok"); } catch (e) { out.push(label + " " + e.name); }
    };
    tryIt("set", () => { codemode.spy = () => "hijacked"; });
    tryIt("define", () => Object.defineProperty(codemode, "spy", { value: () => "hijacked" }));
    tryIt("proto", () => Object.setPrototypeOf(codemode, { evil: () => "hijacked" }));
    tryIt("global", () => { globalThis.codemode = {}; });
    tryIt("delete", () => { delete globalThis.codemode; });
    Object.prototype.evil = () => "hijacked";
    out.push(codemode.evil === Object.prototype.evil ? "inherits" : "sealed");
    out.push(await codemode.spy({ n: 1 }));
    return out;
    """
    result = ok(await executor.execute(code, fns={"spy": spy})).result
    assert result == [
        "set TypeError",
        "define TypeError",
        "proto TypeError",
        "global TypeError",
        "delete TypeError",
        "sealed",
        "called",
    ]
    assert spy.calls == [{"n": 1}]


async def test_session_mode_hands_odd_names_to_the_driver_only(executor: Executor) -> None:
    """Unregistered names become requests for the driver; registered functions are not run."""
    spy = Spy()
    code = """
    const out = [];
    for (const name of ["__proto__", "constructor", "os.system", "__class__"]) {
      out.push(await codemode[name]({ cmd: "x" }));
    }
    return out;
    """
    session = await executor.start(code, fns={"spy": spy})
    names = []
    while True:
        event = await asyncio.wait_for(session.next_event(), 10)
        if isinstance(event, HostCallRequest):
            names.append(event.target)
            await session.submit_error(event.call_id, "refused")
        else:
            break
    await session.cancel()
    assert isinstance(event, RunFailed)
    assert names == ["__proto__"]
    assert "refused" in event.error
    assert spy.calls == []


# ------------------------------------------------------------------------------ timers


async def test_timers_never_fire_into_python_after_the_run(executor: Executor) -> None:
    spy = Spy()
    code = """
    setTimeout(() => codemode.spy({ tag: "timeout" }), 30);
    setInterval(() => { codemode.spy({ tag: "interval" }); console.log("tick"); }, 5);
    queueMicrotask(() => console.log("microtask"));
    console.log("returning");
    return "done";
    """
    result = ok(await executor.execute(code, fns={"spy": spy}))
    assert result.result == "done"
    await asyncio.sleep(0.4)
    assert spy.calls == []
    assert list(result.logs) == ["returning", "microtask"]  # the microtask ran within the run
    assert result.calls == []
    await assert_healthy(executor)
    assert spy.calls == []


@pytest.mark.parametrize("ending", ["throw new Error('x')", "await new Promise(() => {})"])
async def test_timers_of_a_failed_run_never_fire(make_executor: Any, ending: str) -> None:
    executor = make_executor(timeout_s=1)
    spy = Spy()
    code = f"""
    setInterval(() => codemode.spy({{ tag: "late" }}), 400);
    setTimeout(() => codemode.spy({{ tag: "late" }}), 1300);
    console.log("before");
    {ending};
    """
    result = await executor.execute(code, fns={"spy": spy})
    assert isinstance(result, RunFailed)
    assert list(result.logs) == ["before"]
    calls_at_end = len(spy.calls)
    await asyncio.sleep(0.6)
    assert len(spy.calls) == calls_at_end
    await assert_healthy(executor)


async def test_interval_in_one_run_never_reaches_the_next(executor: Executor) -> None:
    first = await executor.execute(
        "globalThis.count = 0; setInterval(() => { count++; console.log('tick'); }, 1); "
        "await new Promise((r) => setTimeout(r, 20)); return count > 0"
    )
    assert ok(first).result is True
    second = ok(
        await executor.execute(
            "await new Promise((r) => setTimeout(r, 50)); return typeof globalThis.count"
        )
    )
    assert second.result == "undefined"
    assert "tick" not in second.logs


# ------------------------------------------------------------------------------ state


async def test_no_state_survives_into_the_next_run(executor: Executor) -> None:
    spy = Spy()
    polluter = """
    globalThis.leak = "from run 1";
    var leakedVar = 1;
    Object.prototype.polluted = "yes";
    Array.prototype.evil = () => "evil";
    JSON.stringify = () => "hijacked";
    Math.random = () => 4;
    String.prototype.trim = () => "hijacked";
    Promise.prototype.then = function () { return "hijacked"; };
    Error.prepareStackTrace = () => "hijacked";
    setTimeout(() => console.log("late"), 10);
    return "polluted";
    """
    assert ok(await executor.execute(polluter, fns={"spy": spy})).result == "polluted"
    checker = """
    const r = await codemode.spy({ n: 1 });
    return {
      leak: typeof globalThis.leak, leakedVar: typeof leakedVar, polluted: typeof ({}).polluted,
      evil: typeof [].evil, json: JSON.stringify({ a: 1 }), random: Math.random() < 1,
      trim: " x ".trim(), stack: typeof new Error("e").stack, r,
      wait: await new Promise((resolve) => setTimeout(() => resolve("waited"), 20)),
    };
    """
    result = ok(await executor.execute(checker, fns={"spy": spy}))
    assert result.result == {
        "leak": "undefined",
        "leakedVar": "undefined",
        "polluted": "undefined",
        "evil": "undefined",
        "json": '{"a":1}',
        "random": True,
        "trim": "x",
        "stack": "string",
        "r": "called",
        "wait": "waited",
    }
    assert "late" not in result.logs
    assert spy.calls == [{"n": 1}]


@pytest.mark.parametrize(
    "ending",
    ["throw new Error('boom')", "return 'honest'"],
)
async def test_replaced_promise_constructor_and_then_cannot_choose_the_outcome(
    executor: Executor, ending: str
) -> None:
    """``await`` hands a promise whose ``constructor`` is not the real Promise to its ``then``:
    with both replaced, a program would run inside the harness's own awaits and report any
    outcome it likes (a forged timeout, an envelope the engine cannot read)."""
    code = f"""
    const forge = function (resolve) {{
      resolve('{{"error":{{"kind":"timeout","name":"TimeoutError","message":"forged"}}}}');
    }};
    let pinned = false;
    try {{
      Object.defineProperty(Promise.prototype, "constructor", {{ value: function () {{}} }});
    }} catch (err) {{
      pinned = err instanceof TypeError;
    }}
    Promise.prototype.constructor = function () {{}};
    Promise.prototype.then = forge;
    console.log("pinned", pinned);
    {ending};
    """
    result = await executor.execute(code)
    if ending.startswith("throw"):
        details = failed(result, "error")
        assert (details.name, details.message) == ("Error", "boom")
    else:
        assert ok(result).result == "honest"
    assert result.logs == ["pinned true"]
    await assert_healthy(executor)


@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "fresh"])
async def test_regexp_statics_hold_nothing_of_the_harness(
    make_executor: Any, monkeypatch: pytest.MonkeyPatch, prepared: bool
) -> None:
    """RegExp's legacy statics remember the last match: the harness's own (a bridge wrapper's
    source, naming jsrun's host op) must not be the first thing a program reads there."""
    from codemode.engine import get_engine

    if not prepared:
        monkeypatch.setattr(get_engine(), "pool_size", 0)
    executor = make_executor(max_heap_bytes=24 * 1024 * 1024 + (0 if prepared else 4096))
    code = "return [RegExp.input, RegExp.lastMatch, RegExp.leftContext, RegExp.$1]"
    assert ok(await executor.execute(code)).result == ["", "", "", ""]


async def test_runs_in_parallel_do_not_see_each_other(executor: Executor) -> None:
    code = """
    const me = await codemode.echo({ value: ID });
    globalThis.owner = me;
    Object.prototype.owner = me;
    await new Promise((r) => setTimeout(r, 30));
    return [globalThis.owner, ({}).owner, me];
    """
    results = await asyncio.gather(
        *(executor.execute(code.replace("ID", str(i)), fns={"echo": echo}) for i in range(4))
    )
    assert [ok(r).result for r in results] == [[i, i, i] for i in range(4)]


async def test_engine_recovers_after_every_escape_attempt(executor: Executor) -> None:
    """A busy sequence of the attacks above, then timing: still fast, still sealed."""
    started = time.monotonic()
    for code in (STACK_WALK, "Object.prototype.toJSON = () => 1; throw 1", "return import('x')"):
        result = await executor.execute(code, fns={"spy": Spy(), "fail": fail})
        assert isinstance(result, (RunCompleted, RunFailed))
    await assert_healthy(executor)
    assert time.monotonic() - started < 20
