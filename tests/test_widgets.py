"""The run widget: bounded deltas, final traits, text/HTML fallback, the front-end module, and the
number of comm messages a 10,000-call cell sends through a real kernel.
"""

from __future__ import annotations

import importlib.resources
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from codemode.events import CallFinished, CallStarted, ConsoleEvent, HostCall, LogLine
from codemode_jupyter.presenters import WidgetPresenter
from codemode_jupyter.record import Recorder, RunRecord
from codemode_jupyter.runner import run_program
from codemode_jupyter.toolset import Toolset
from codemode_jupyter.widget import RunWidget

REPO = Path(__file__).resolve().parents[1]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


# ---------------------------------------------------------------- Python side


def test_assets_ship_in_the_package() -> None:
    files = importlib.resources.files("codemode_jupyter")
    esm = files.joinpath("widget.js").read_text("utf-8")
    css = files.joinpath("widget.css").read_text("utf-8")
    assert "export default" in esm and "msg:custom" in esm
    assert ".cmj-root" in css
    widget = RunWidget(RunRecord(code="1"))
    assert widget._esm == esm and widget._css == css


def test_recorder_deltas_are_bounded_and_the_record_complete() -> None:
    record = RunRecord(code="x")
    recorder = Recorder(record, widget_rows=50, widget_logs=100)
    deltas: list[dict[str, Any]] = []

    def engine() -> None:
        for i in range(10_000):
            call = HostCall(i + 1, "add", {"a": i}, started=i * 1e-4)
            recorder.on_event(CallStarted("run", call))
            call.duration, call.result = 1e-5, i
            if i % 1000 == 0:
                call.error, call.error_type = "boom", "ValueError"
            recorder.on_event(CallFinished("run", call))
            if i % 2 == 0:
                recorder.on_event(ConsoleEvent("run", LogLine(f"line {i}", "log", i * 1e-4)))

    thread = threading.Thread(target=engine)
    thread.start()
    while thread.is_alive():
        delta = recorder.take_delta()
        if delta:
            deltas.append(delta)
        time.sleep(0.005)
    thread.join()
    final = recorder.take_delta()
    if final:
        deltas.append(final)
    assert record.call_count == 10_000 and len(record.calls) == 10_000
    assert record.failed_count == 10 and len(record.logs) == 5_000
    for delta in deltas:
        assert len(delta["rows"]) <= 50 and len(delta["logs"]) <= 100
        json.dumps(delta)  # what goes to the front end is plain JSON
    rows = {row["n"] for delta in deltas for row in delta["rows"]}
    assert rows == set(range(1, 51))
    assert deltas[-1]["call_count"] == 10_000 and deltas[-1]["failed_count"] == 10
    assert deltas[-1]["logs"][-1][2] == "line 9998"
    assert recorder.take_delta() is None


def test_print_lines_are_split_per_thread() -> None:
    recorder = Recorder(RunRecord(code="x"))
    recorder.write_stream("stdout", "a")
    recorder.write_stream("stdout", "b\nc")
    recorder.write_stream("stderr", "oops\n")
    recorder.flush_streams()
    assert [(line.level, str(line)) for line in recorder.record.logs] == [
        ("stdout", "ab"), ("stderr", "oops"), ("stdout", "c"),
    ]


class Sent:
    """Stands in for IPython's display(): keeps the widget and counts its messages."""

    def __init__(self) -> None:
        self.displayed: list[Any] = []
        self.updates = 0

    def __call__(self, obj: Any, **kwargs: Any) -> Any:
        self.displayed.append(obj)
        sent = self

        class Handle:
            def update(self, obj: Any) -> None:
                sent.updates += 1

        return Handle()


def slow_add(a: int, b: int) -> int:
    """Add, slowly enough that a run spans several flushes."""
    time.sleep(0.0005)
    print(f"adding {a} {b}")
    return a + b


def fails(x: int) -> int:
    raise ValueError(f"bad {x}")


def test_widget_streams_a_bounded_number_of_messages_and_ends_with_full_state() -> None:
    sent = Sent()
    presenter = WidgetPresenter(max_rows=20, max_logs=50, display=sent)
    messages: list[dict[str, Any]] = []
    code = (
        "console.log('start');\n"
        "for (let i = 0; i < 600; i++) await codemode.add({a: i, b: 1});\n"
        "try { await codemode.fails({x: 1}); } catch (e) { console.error(e.message); }\n"
        "return {n: 600, items: [1, 'two', null, {deep: true}]};"
    )
    original_push = RunWidget.push

    def push(self: RunWidget, delta: dict[str, Any]) -> None:
        messages.append(delta)
        original_push(self, delta)

    RunWidget.push = push  # type: ignore[method-assign]
    try:
        record = run_program(
            code, Toolset({"add": slow_add, "fails": fails}), presenter, timeout_s=30,
            max_heap_bytes=16 * 1024 * 1024, widget_rows=20, widget_logs=50, cell=7,
        )
    finally:
        RunWidget.push = original_push  # type: ignore[method-assign]
    widget = presenter.widget
    assert sent.displayed == [widget] and sent.updates == 1
    assert record.call_count == 601 and len(record.calls) == 601
    assert 1 <= len(messages) <= 60  # about one per 100 ms, never one per call
    assert all(len(m["rows"]) <= 20 and len(m["logs"]) <= 50 for m in messages)
    assert widget.status == "done" and widget.call_count == 601 and widget.failed_count == 1
    assert len(widget.calls) == 20 and widget.calls_omitted == 581
    assert widget.calls[0] == {"n": 1, "name": "add", "args": '{"a":0,"b":1}',
                               "start": widget.calls[0]["start"],
                               "duration": widget.calls[0]["duration"], "result": "1"}
    assert len(widget.logs) == 50 and widget.logs_omitted == len(record.logs) - 50
    assert widget.logs[-1][1:] == ["error", "codemode.fails() raised ValueError: bad 1"]
    assert json.loads(widget.result) == {"n": 600, "items": [1, "two", None, {"deep": True}]}
    assert "function add(args: { a: number; b: number }): Promise<number>;" in widget.stubs
    assert widget.tools == ["add", "fails"] and widget.title == "codemode · cell [7]"
    state = widget.get_state()
    assert state["status"] == "done" and state["calls"] == widget.calls

    data, _ = widget._repr_mimebundle_()
    assert data[WIDGET_MIME]["model_id"] == widget.model_id
    assert "codemode ✓ done" in data["text/plain"] and "601 calls (1 failed)" in data["text/plain"]
    assert "Console (" in data["text/html"] and "<table>" in data["text/html"]
    assert "codemode.fails() raised ValueError: bad 1" in data["text/html"]


def test_failed_run_state_and_long_values_are_capped() -> None:
    presenter = WidgetPresenter(max_rows=5, max_logs=5, display=Sent())
    record = run_program(
        "const big = 'x'.repeat(50000);\nawait codemode.echo({text: big});\nthrow new Error('no');",
        Toolset({"echo": lambda text: text}), presenter, timeout_s=30,
        max_heap_bytes=16 * 1024 * 1024,
    )
    widget = presenter.widget
    assert record.status == "failed" and widget.status == "failed"
    assert widget.error["name"] == "Error" and widget.error["line"] == 3
    assert widget.has_result is False
    row = widget.calls[0]
    assert len(row["args"]) <= 120 and len(row["result"]) <= 120
    assert "more characters" in row["result_full"] and len(row["result_full"]) < 21_000
    assert len(record.calls[0].result) == 50_000  # Python keeps the whole value


# ---------------------------------------------------------------- front-end module

FAKE_DOM = r"""
class Node {
  constructor(tag) { this.tagName = tag; this.children = []; this.parent = null;
    this.style = {}; this.dataset = {}; this._text = ""; this.className = "";
    this.listeners = {}; this.open = false; this.scrollTop = 0; this.scrollHeight = 0;
    const node = this;
    this.classList = { add(c) { node.className += " " + c; },
      toggle(c, on) { if (on) node.className += " " + c; } }; }
  set textContent(v) { this._text = String(v); this.children = []; }
  get textContent() { return this._text + this.children.map((c) => c.textContent).join(""); }
  append(...nodes) { for (const n of nodes) { this._adopt(n); } }
  _adopt(n) { if (n.isFragment) { for (const c of [...n.children]) this._adopt(c); return; }
    if (n.parent) n.remove(); n.parent = this; this.children.push(n); }
  replaceChildren() { this.children = []; }
  remove() { if (!this.parent) return; const s = this.parent.children;
    s.splice(s.indexOf(this), 1); this.parent = null; }
  before(...nodes) { const p = this.parent; for (const n of nodes) {
    if (n.parent) n.remove(); n.parent = p; p.children.splice(p.children.indexOf(this), 0, n); } }
  addEventListener(name, fn) { this.listeners[name] = fn; }
}
globalThis.document = {
  createElement: (tag) => new Node(tag),
  createTextNode: (text) => { const n = new Node("#text"); n.textContent = text; return n; },
  createDocumentFragment: () => { const n = new Node("#fragment"); n.isFragment = true; return n; },
};
globalThis.performance = globalThis.performance || { now: () => Date.now() };
class Model {
  constructor(state) { this.state = state; this.handlers = {}; }
  get(k) { return this.state[k]; }
  on(name, fn) { (this.handlers[name] ||= []).push(fn); }
  off(name, fn) { this.handlers[name] = (this.handlers[name] || []).filter((f) => f !== fn); }
  emit(name, arg) { for (const fn of this.handlers[name] || []) fn(arg); }
  setFinal(state) { Object.assign(this.state, state);
    for (const k of Object.keys(state)) this.emit(`change:${k}`); }
}
"""

DRIVE = r"""
const { default: widget } = await import(process.argv[2]);
// Like anywidget, give initialize and render different proxies of one model.
const proxy = (m) => ({
  get: (k) => m.get(k), on: (n, f) => m.on(n, f), off: (n, f) => m.off(n, f) });
const model = new Model({ key: "run-1", status: "running", title: "codemode · cell [1]",
  logs: [], calls: [],
  call_count: 0, failed_count: 0, duration: 0, result: "", has_result: false,
  result_truncated: false, error: {}, logs_omitted: 0, stubs: "declare namespace codemode {}",
  tools: ["add"], max_logs: 3, max_rows: 2 });
const cleanupInit = widget.initialize({ model: proxy(model) });
const el = new Node("div");
const cleanup = widget.render({ model: proxy(model), el });
model.emit("msg:custom", { type: "delta", elapsed: 0.1, logs: [[0.01, "log", "one"],
  [0.02, "stdout", "two"]], logs_skipped: 0, rows: [{ n: 1, name: "add", args: "{}",
  start: 0.01, duration: null }], call_count: 1, failed_count: 0 });
const live = el.textContent;
model.emit("msg:custom", { type: "delta", elapsed: 0.2, logs: [[0.1, "warn", "three"],
  [0.15, "log", "four"]], logs_skipped: 0, rows: [{ n: 1, name: "add", args: "{}", start: 0.01,
  duration: 0.02, result: "3" }, { n: 2, name: "add", args: "{}", start: 0.05, duration: 0.01,
  error: "boom", error_type: "ValueError" }], call_count: 5, failed_count: 1 });
const later = el.textContent;
model.setFinal({ status: "done", duration: 0.25, call_count: 5, failed_count: 1,
  result: JSON.stringify({ answer: [1, 2, { deep: "yes" }] }), has_result: true,
  logs: [[0.1, "warn", "three"], [0.15, "log", "four"]], logs_omitted: 2,
  calls: [{ n: 1, name: "add", args: "{}", start: 0.01, duration: 0.02, result: "3" }] });
const final = el.textContent;
cleanup(); cleanupInit();
console.log(JSON.stringify({ live, later, final }));
"""


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not installed")
    return found


def test_front_end_module_renders_deltas_and_final_state(node: str, tmp_path: Path) -> None:
    esm = importlib.resources.files("codemode_jupyter").joinpath("widget.js")
    check = subprocess.run(
        [node, "--input-type=module", "--check"], input=esm.read_text("utf-8"),
        capture_output=True, text=True, timeout=30,
    )
    assert check.returncode == 0, check.stderr
    driver = tmp_path / "drive.mjs"
    driver.write_text(FAKE_DOM + DRIVE)
    module = tmp_path / "widget.mjs"
    module.write_text(esm.read_text("utf-8"))
    done = subprocess.run(
        [node, str(driver), module.as_uri()], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert "running" in seen["live"] and "one" in seen["live"] and "two" in seen["live"]
    assert "running…" in seen["live"] and "1 call" in seen["live"]
    assert "boom" in seen["later"] and "5 calls" in seen["later"] and "1 failed" in seen["later"]
    assert "3 more calls not shown" in seen["later"]
    assert "1 earlier lines not shown" in seen["later"]  # max_logs 3 of 4 lines
    assert "done" in seen["final"] and "answer: Array(3)" in seen["final"]  # the JSON tree
    assert "2 earlier lines not shown" in seen["final"] and "Callable API" in seen["final"]


# ---------------------------------------------------------------- through a real kernel




@pytest.mark.kernel
@pytest.mark.timeout(120)
def test_ten_thousand_calls_send_a_bounded_number_of_comm_messages(kernel_env: None) -> None:
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=60)
    try:
        setup = (
            "%load_ext codemode\n"
            "def add(a: int, b: int) -> int:\n"
            "    print('adding', a, b)\n"
            "    return a + b\n"
        )
        assert _execute(kc, setup)[0]["status"] == "ok"
        cell = (
            "%%codemode\n"
            "for (let i = 0; i < 100; i++) {\n"
            "  const batch = Array.from({length: 100}, (_, j) => codemode.add({a: i, b: j}));\n"
            "  await Promise.all(batch);\n"
            "  console.log('batch', i);\n"
            "}\n"
            "return 'ok';"
        )
        reply, messages = _execute(kc, cell, timeout=90)
        assert reply["status"] == "ok"
        comm = [m for m in messages if m["msg_type"] in ("comm_open", "comm_msg")]
        assert 2 <= len(comm) < 200, len(comm)
        customs = [m for m in comm if m["content"]["data"].get("method") == "custom"]
        assert all(len(m["content"]["data"]["content"]["rows"]) <= 200 for m in customs)
        updates = [m["content"]["data"]["state"] for m in comm
                   if m["content"]["data"].get("method") == "update"]
        final = updates[-1]
        assert final["status"] == "done" and final["call_count"] == 10_000
        assert len(final["calls"]) == 200 and final["calls_omitted"] == 9_800
        assert len(final["logs"]) == 1000
        check = "import codemode_jupyter as c; r = c.last_run(); print(len(r.calls), len(r.logs))"
        _, out = _execute(kc, check)
        text = "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")
        assert text.strip() == "10000 10100"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _execute(kc: Any, code: str, timeout: float = 30) -> tuple[dict[str, Any], list[Any]]:
    msg_id = kc.execute(code)
    messages = []
    deadline = time.monotonic() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    return reply["content"], messages
