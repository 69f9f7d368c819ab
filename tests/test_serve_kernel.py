"""``%codemode_serve`` in a real ipykernel, driven by the MCP SDK's real client over HTTP.

One kernel serves for the whole module (functions defined in cells, ``%codemode_serve``), and the
tests talk to it as an agent would: list tools, run programs calling sync and async notebook
functions, see a function defined later, get refused without the right token, a foreign Host or
an oversized body; a runaway program does not hold up another one; the panel's record is read
back from the kernel; ``--stop`` frees the port; a kernel restart stops the server too.
The MCP Inspector CLI (npm) checks the server independently of the Python SDK.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp.types as types
import pytest
from jupyter_client.manager import KernelManager, start_new_kernel
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[1]
STEP = 20.0  # seconds: the bound on any single wait
WIDGET = "application/vnd.jupyter.widget-view+json"
INSPECTOR = REPO / "node_modules" / ".bin" / "mcp-inspector"


# ------------------------------------------------------------------------------ kernel driver


@dataclass
class Reply:
    status: str
    stdout: str = ""
    stderr: str = ""
    error: dict[str, Any] | None = None
    displays: list[dict[str, Any]] = field(default_factory=list)


class Kernel:
    """A blocking kernel client plus a thread that keeps every iopub message (with the time it
    arrived), so tests can send a cell, do other things, and look at its output later."""

    def __init__(self, km: KernelManager, kc: Any) -> None:
        self.km = km
        self.kc = kc
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.replies: dict[str, dict[str, Any]] = {}
        self.resume()

    def resume(self) -> None:
        """Read IOPub in a thread (again, after :meth:`close`)."""
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.kc.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                continue
            except Exception:  # noqa: BLE001 - channels closed at teardown
                return
            with self.lock:
                self.messages.append((time.monotonic(), msg))

    def close(self) -> None:
        self._stop.set()
        self._reader.join(5)

    def send(self, code: str) -> str:
        # An error reply otherwise makes ipykernel abort the requests that reach it meanwhile,
        # a window a loaded machine stretches: the next cell would come back "aborted".
        return str(self.kc.execute(code, allow_stdin=False, stop_on_error=False))

    def wait(self, msg_id: str, timeout: float = STEP) -> Reply:
        deadline = time.monotonic() + timeout
        while msg_id not in self.replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no execute_reply from the kernel")
            try:
                reply = self.kc.get_shell_msg(timeout=remaining)
            except queue.Empty:
                continue
            self.replies[reply["parent_header"].get("msg_id", "")] = reply
        while not self._idle(msg_id):
            if time.monotonic() > deadline:
                raise TimeoutError("the kernel never went idle")
            time.sleep(0.01)
        reply = self.replies.pop(msg_id)
        result = Reply(status=reply["content"]["status"])
        if result.status == "error":
            result.error = reply["content"]
        for _, msg in self.of(msg_id):
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    result.stdout += content["text"]
                else:
                    result.stderr += content["text"]
            elif kind in ("display_data", "execute_result"):
                result.displays.append(content["data"])
            elif kind == "error":
                result.error = content
        return result

    def run(self, code: str, timeout: float = STEP) -> Reply:
        return self.wait(self.send(code), timeout)

    def ok(self, code: str, timeout: float = STEP) -> Reply:
        reply = self.run(code, timeout)
        assert reply.status == "ok", (reply.error, reply.stderr)
        return reply

    def value(self, expression: str) -> Any:
        """Evaluate ``expression`` in the kernel and return it (through JSON)."""
        code = f"import json as _j; print('@@' + _j.dumps({expression}, default=repr))"
        out = self.ok(code).stdout
        line = next(line for line in out.splitlines() if line.startswith("@@"))
        return json.loads(line[2:])

    def of(self, msg_id: str) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return [(t, m) for t, m in self.messages if m["parent_header"].get("msg_id") == msg_id]

    def _idle(self, msg_id: str) -> bool:
        return any(
            m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
            for _, m in self.of(msg_id)
        )

    def comm_messages(self, comm_id: str, since: float = 0.0) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return [
                (t, m)
                for t, m in self.messages
                if t >= since
                and m["msg_type"] == "comm_msg"
                and m["content"].get("comm_id") == comm_id
            ]


@pytest.fixture(scope="module")
def kernel(kernel_env: None) -> Iterator[Kernel]:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=60, env=env, cwd=str(REPO))
    k = Kernel(km, kc)
    try:
        yield k
    finally:
        try:
            k.run("from codemode_jupyter import serving as _s; _s.stop_all()", timeout=10)
        except Exception:  # noqa: BLE001 - the kernel may be gone already
            pass
        k.close()
        kc.stop_channels()
        km.shutdown_kernel(now=False)


NOTEBOOK = '''
import asyncio

SCALE = 10

def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b

async def slow_double(n: int) -> int:
    """Double a number, after a short sleep."""
    await asyncio.sleep(0.01)
    return 2 * n

def scaled(x: float) -> float:
    """Multiply by the notebook's SCALE."""
    return x * SCALE

def _private_helper() -> None:
    """Not a tool: private."""
'''


@dataclass
class Served:
    url: str
    token: str
    port: int
    panel_comm: str
    serve_output: Reply


@pytest.fixture(scope="module")
def served(kernel: Kernel) -> Served:
    kernel.ok(NOTEBOOK)
    kernel.ok(
        "from codemode_jupyter.serve_magics import ServeMagics\n"
        "import codemode_jupyter.serving as cms\n"
        "get_ipython().register_magics(ServeMagics)"
    )
    reply = kernel.ok("%codemode_serve --timeout 2 --name nb")
    info = kernel.value(
        "{'url': cms.current().url, 'token': cms.current().token, 'port': cms.current().port}"
    )
    widget = next(d for d in reply.displays if WIDGET in d)
    return Served(info["url"], info["token"], info["port"], widget[WIDGET]["model_id"], reply)


def client(served: Served, token: str | None = None, **options: Any) -> Any:
    headers = {"Authorization": f"Bearer {token or served.token}"}
    http = httpx2.AsyncClient(headers=headers, timeout=STEP)
    return http, Client(
        streamable_http_client(served.url, http_client=http), read_timeout_seconds=STEP, **options
    )


def description(tools: types.ListToolsResult) -> str:
    return next(t.description or "" for t in tools.tools if t.name == "execute")


async def execute(c: Client, code: str) -> dict[str, Any]:
    result = await c.call_tool("execute", {"code": code})
    assert result.structured_content is not None
    return dict(result.structured_content)


def assert_port_free(port: int) -> None:
    """Nothing listens on ``port``: connecting is refused, and a listener can bind it (with
    SO_REUSEADDR, as servers do: connections just closed linger in TIME_WAIT)."""
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.settimeout(2)
        probe.connect(("127.0.0.1", port))
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()


# ------------------------------------------------------------------------------ tests


def test_serve_prints_url_token_and_client_config(served: Served) -> None:
    out = served.serve_output.stdout
    assert served.url.startswith("http://127.0.0.1:") and served.url.endswith("/mcp")
    assert served.url in out and served.token in out
    assert len(served.token) >= 40 and not served.token.startswith("-")
    start = out.index("{")
    config = json.JSONDecoder().raw_decode(out[start:])[0]
    assert config == {
        "mcpServers": {
            "nb": {
                "type": "http",
                "url": served.url,
                "headers": {"Authorization": f"Bearer {served.token}"},
            }
        }
    }
    assert "claude mcp add --transport http nb" in out
    bundle = next(d for d in served.serve_output.displays if WIDGET in d)
    assert "text/plain" in bundle and "text/html" in bundle
    assert "codemode MCP server 'nb'" in bundle["text/plain"]


async def test_list_and_execute_sync_and_async(served: Served) -> None:
    http, c = client(served)
    with anyio.fail_after(STEP):
        async with http, c:
            tools = await c.list_tools()
            assert [t.name for t in tools.tools] == ["execute"]
            text = description(tools)
            assert "function add(args: { a: number; b: number }): Promise<number>;" in text
            assert "function slow_double(" in text and "function scaled(" in text
            assert "_private_helper" not in text
            out = await execute(
                c,
                """
                const s = await codemode.add({ a: 2, b: 3 });
                const [d1, d2] = await Promise.all([
                  codemode.slow_double({ n: s }), codemode.slow_double({ n: 1 }),
                ]);
                console.log("sum", s);
                return { s, d1, d2, scaled: await codemode.scaled({ x: 4 }) };
                """,
            )
            assert out == {
                "success": True,
                "result": {"s": 5, "d1": 10, "d2": 2, "scaled": 40},
                "error": None,
                "logs": ["sum 5"],
                "calls": 4,
            }


async def test_function_defined_later_is_served_live(served: Served, kernel: Kernel) -> None:
    http, c = client(served)
    with anyio.fail_after(STEP * 2):
        async with http, c:
            assert "function triple(" not in description(await c.list_tools())
            async with c.listen(tools_list_changed=True) as changes:
                await anyio.to_thread.run_sync(
                    kernel.ok,
                    'def triple(n: int) -> int:\n    """Triple a number."""\n    return 3 * n\n',
                )
                async for event in changes:
                    assert type(event).__name__ == "ToolsListChanged"
                    break
            text = description(await c.list_tools())
            assert "/** Triple a number. */" in text
            assert "function triple(args: { n: number }): Promise<number>;" in text
            out = await execute(c, "await codemode.triple({ n: 7 })")
            assert out["result"] == 21
            # redefinition: the next run calls the new function, the description follows
            await anyio.to_thread.run_sync(
                kernel.ok,
                'def triple(n: int) -> int:\n    """Triple it, plus one."""\n'
                "    return 3 * n + 1\n",
            )
            assert (await execute(c, "await codemode.triple({ n: 7 })"))["result"] == 22
            assert "Triple it, plus one." in description(await c.list_tools())
            # a cell that changes no function does not touch the registry
            version = await anyio.to_thread.run_sync(kernel.value, "cms.current().registry.version")
            await anyio.to_thread.run_sync(kernel.ok, "x_value = 1 + 1")
            again = await anyio.to_thread.run_sync(kernel.value, "cms.current().registry.version")
            assert again == version


async def test_token_required_and_nothing_runs(served: Served, kernel: Kernel) -> None:
    count = "len(cms.current().requests)"
    before = kernel.value(count)
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "execute", "arguments": {"code": "await codemode.add({a: 1, b: 1})"}},
    }
    headers = {"Accept": "application/json, text/event-stream"}
    with anyio.fail_after(STEP):
        async with httpx2.AsyncClient(timeout=STEP) as raw:
            missing = await raw.post(served.url, json=body, headers=headers)
            assert missing.status_code == 401
            assert missing.headers.get("www-authenticate", "").startswith("Bearer")
            wrong = await raw.post(
                served.url, json=body, headers={**headers, "Authorization": "Bearer nope"}
            )
            assert wrong.status_code == 401
        almost = served.token[:-1] + ("A" if served.token[-1] != "A" else "B")
        http, c = client(served, token=almost)
        with pytest.raises(Exception):  # noqa: B017 - the SDK's error type for a 401 varies
            async with http, c:
                await c.list_tools()
    assert kernel.value(count) == before


async def test_foreign_host_origin_and_oversized_body_are_refused(served: Served) -> None:
    auth = {"Authorization": f"Bearer {served.token}", "Accept": "application/json"}
    with anyio.fail_after(STEP):
        async with httpx2.AsyncClient(timeout=STEP) as raw:
            foreign = await raw.post(served.url, json={}, headers={**auth, "Host": "evil.example"})
            assert foreign.status_code == 421
            origin = await raw.post(
                served.url, json={}, headers={**auth, "Origin": "http://evil.example"}
            )
            assert origin.status_code == 403
            big = b'{"pad": "' + b"x" * (1024 * 1024 + 10) + b'"}'
            too_large = await raw.post(
                served.url, content=big, headers={**auth, "Content-Type": "application/json"}
            )
            assert too_large.status_code == 413

            async def chunks() -> Any:  # no Content-Length: counted while streaming
                for _ in range(20):
                    yield b"x" * 65536

            streamed = await raw.post(
                served.url, content=chunks(), headers={**auth, "Content-Type": "application/json"}
            )
            assert streamed.status_code == 413


async def test_runaway_program_does_not_block_another(served: Served) -> None:
    http, c = client(served)
    timings: dict[str, float] = {}
    results: dict[str, dict[str, Any]] = {}

    async def timed(key: str, code: str) -> None:
        began = time.monotonic()
        results[key] = await execute(c, code)
        timings[key] = time.monotonic() - began

    with anyio.fail_after(STEP):
        async with http, c:
            async with anyio.create_task_group() as tg:
                tg.start_soon(timed, "runaway", "while (true) {}")
                await anyio.sleep(0.2)  # the runaway is spinning
                tg.start_soon(timed, "quick", "await codemode.add({ a: 40, b: 2 })")
    assert results["quick"]["result"] == 42
    assert timings["quick"] < 1.0, timings
    assert results["runaway"]["success"] is False
    assert "did not finish within 2 s" in results["runaway"]["error"]
    assert 1.8 < timings["runaway"] < 6, timings


async def test_requests_recorded_and_panel_updates_while_kernel_busy(
    served: Served, kernel: Kernel
) -> None:
    """A request made while a cell is running is answered (calling notebook functions from server
    threads) and reaches the panel as comm messages before the cell ends; the complete record is
    readable from Python afterwards."""
    http, c = client(served)
    with anyio.fail_after(STEP * 2):
        async with http, c:
            busy = kernel.send("import time; time.sleep(3)")
            await anyio.sleep(0.3)
            began = time.monotonic()
            out = await execute(
                c, 'console.log("while busy"); return await codemode.slow_double({ n: 21 })'
            )
            assert out["result"] == 42 and out["logs"] == ["while busy"]
            assert time.monotonic() - began < 2.0
            await anyio.sleep(0.5)  # the pump's next push
            during = kernel.comm_messages(served.panel_comm, since=began)
            done = await anyio.to_thread.run_sync(kernel.wait, busy)
            assert done.status == "ok"
            idle_at = max(t for t, m in kernel.of(busy) if m["msg_type"] == "status")
            assert during and min(t for t, _ in during) < idle_at

    records = kernel.value("[r.to_dict() for r in cms.current().requests]")
    busy_record = next(r for r in records if "while busy" in r["code"])
    assert busy_record["status"] == "ok" and busy_record["result"] == 42
    assert busy_record["logs"] == ["while busy"]
    assert [call["name"] for call in busy_record["calls"]] == ["slow_double"]
    assert busy_record["calls"][0]["arguments"] == {"n": 21}
    assert busy_record["calls"][0]["result"] == 42
    runaway = next(r for r in records if r["code"] == "while (true) {}")
    assert runaway["status"] == "failed" and runaway["error_kind"] == "timeout"
    first = next(r for r in records if "codemode.scaled" in r["code"])
    assert first["result"]["scaled"] == 40 and len(first["calls"]) == 4
    summary = kernel.value("cms.current().summary()")
    assert "while busy" in summary and "failed" in summary
    rows = kernel.value("[(r['id'], r['status']) for r in cms.current().panel.requests]")
    assert len(rows) == len(records)
    assert all(status != "running" for _, status in rows)


async def test_panel_updates_are_throttled(served: Served, kernel: Kernel) -> None:
    http, c = client(served)
    with anyio.fail_after(STEP):
        async with http, c:
            began = time.monotonic()
            for i in range(25):
                assert (await execute(c, f"await codemode.add({{ a: {i}, b: 1 }})"))["success"]
            ended = time.monotonic()
    await anyio.sleep(0.4)
    window = time.monotonic() - began
    messages = kernel.comm_messages(served.panel_comm, since=began)
    # 25 requests make 75+ changes; the pump sends at most one message per 100 ms tick
    assert 1 <= len(messages) <= window / 0.1 + 3, (len(messages), window, ended - began)
    states = [m["content"]["data"] for _, m in messages]
    last_rows = [s["state"]["requests"] for s in states if "requests" in s.get("state", {})][-1]
    assert last_rows[-1]["status"] == "ok" and "a: 24" in last_rows[-1]["code"]


async def test_busy_limit_and_used_port(served: Served, kernel: Kernel) -> None:
    """A second server (the first keeps running) with one run at a time refuses a concurrent
    program with the busy error; serving on a port in use fails with a clear message."""
    used = kernel.run(f"%codemode_serve --port {served.port}")
    assert used.status == "error"
    assert used.error is not None and used.error["ename"] == "UsageError"
    assert f"port {served.port}" in used.error["evalue"] and "in use" in used.error["evalue"]

    kernel.ok("%codemode_serve --max-runs 1 --timeout 3 --name solo --no-panel")
    info = kernel.value("{'url': cms.current().url, 'token': cms.current().token}")
    solo = Served(info["url"], info["token"], 0, "", used)
    http, c = client(solo)
    results: list[dict[str, Any]] = []
    try:
        with anyio.fail_after(STEP):
            async with http, c:

                async def spin() -> None:
                    results.append(await execute(c, "while (true) {}"))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(spin)
                    await anyio.sleep(0.3)
                    refused = await execute(c, "1 + 1")
                    assert refused["success"] is False
                    assert (
                        "server busy" in refused["error"]
                        and "max_concurrent_runs=1" in (refused["error"])
                    )
        statuses = kernel.value("[r.status for r in cms.current().requests]")
        assert statuses == ["failed", "busy"]
    finally:
        kernel.ok(f"%codemode_serve --stop --port {int(solo.url.rsplit(':', 1)[1].split('/')[0])}")


def test_export_from_the_kernel(served: Served, kernel: Kernel, tmp_path: Path) -> None:
    """ipykernel names cells differently from a terminal IPython; classes have no source for
    ``inspect`` there: the export still finds both."""
    kernel.ok(
        "from dataclasses import dataclass\n\n"
        "@dataclass\n"
        "class Box:\n"
        '    """A box."""\n'
        "    w: float\n"
        "    h: float\n\n"
        "def area(w: float, h: float) -> float:\n"
        '    """Area of a box, scaled."""\n'
        "    return Box(w, h).w * h * SCALE\n"
    )
    target = tmp_path / "from_kernel.py"
    reply = kernel.ok(f"%codemode_export {target} --tools area,slow_double")
    assert f"Wrote {target}: 2 tool(s): area, slow_double" in reply.stdout
    assert reply.stderr == ""
    source = target.read_text()
    assert "class Box:" in source and "SCALE = 10" in source and "import asyncio" in source
    namespace: dict[str, Any] = {"__name__": "from_kernel"}
    exec(compile(source, str(target), "exec", dont_inherit=True), namespace)
    assert namespace["_TOOLS"]["area"](2, 3) == 60


@pytest.mark.skipif(
    not INSPECTOR.exists() or shutil.which("node") is None,
    reason="the MCP Inspector CLI is not installed (npm install at the repository root)",
)
def test_mcp_inspector_cli(served: Served) -> None:
    """An independent client: the MCP Inspector's CLI (TypeScript SDK) lists and calls tools."""
    base = [str(INSPECTOR), "--cli", served.url, "--transport", "http"]
    auth = ["--header", f"Authorization: Bearer {served.token}"]
    listed = subprocess.run(
        [*base, *auth, "--method", "tools/list"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert listed.returncode == 0, listed.stderr
    tools = json.loads(listed.stdout[listed.stdout.index("{") :])
    execute_tool = next(t for t in tools["tools"] if t["name"] == "execute")
    assert "function add(" in execute_tool["description"]
    called = subprocess.run(
        [
            *base,
            *auth,
            "--method",
            "tools/call",
            "--tool-name",
            "execute",
            "--tool-arg",
            "code=await codemode.add({a: 20, b: 22})",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert called.returncode == 0, called.stderr
    result = json.loads(called.stdout[called.stdout.index("{") :])
    assert result["structuredContent"]["result"] == 42 and result["isError"] is False
    refused = subprocess.run(
        [*base, "--method", "tools/list"], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert refused.returncode != 0


def test_stop_frees_the_port_and_threads(served: Served, kernel: Kernel) -> None:
    reply = kernel.ok("%codemode_serve --stop")
    assert f"port {served.port} is free" in reply.stdout
    assert_port_free(served.port)
    # and a new server can take it again
    kernel.ok(f"%codemode_serve --port {served.port} --no-panel")
    assert kernel.value("cms.current().port") == (served.port)
    kernel.ok(f"%codemode_serve --stop --port {served.port}")
    assert_port_free(served.port)
    threads = kernel.value(
        "[t.name for t in __import__('threading').enumerate() "
        "if t.name.startswith('codemode-serve')]"
    )
    assert threads == []
    assert kernel.value("cms.current()") is None
    status = kernel.ok("%codemode_serve --status")
    assert "No codemode MCP server is running" in status.stdout
    # the post_run_cell hook is gone too
    hooks = kernel.value(
        "[getattr(f, '__qualname__', '') for f in get_ipython().events.callbacks['post_run_cell']]"
    )
    assert not any("NotebookServer" in h for h in hooks)


def test_kernel_restart_stops_the_server(kernel: Kernel) -> None:
    kernel.ok(
        "from codemode_jupyter.serve_magics import ServeMagics\n"
        "import codemode_jupyter.serving as cms\n"
        "get_ipython().register_magics(ServeMagics)"
    )
    kernel.ok("%codemode_serve --no-panel")
    port = kernel.value("cms.current().port")
    began = time.monotonic()
    # wait_for_ready reads IOPub itself, and a ZMQ socket must never be used from two threads
    # (libzmq aborts the process): stop the reader thread meanwhile.
    kernel.close()
    try:
        kernel.km.restart_kernel(now=False)
        kernel.kc.wait_for_ready(timeout=60)
    finally:
        kernel.resume()
    assert time.monotonic() - began < 20
    assert_port_free(port)


# ------------------------------------------------------------------------------ in-process
# Options that need no kernel: an InteractiveShell serves (no panel without a kernel).


@pytest.fixture
def shell() -> Iterator[Any]:
    from IPython.core.interactiveshell import InteractiveShell

    from codemode_jupyter import serving
    from codemode_jupyter.serve_magics import register, unregister

    ip = InteractiveShell.instance()
    before = set(ip.user_ns)
    register(ip)
    ip.run_cell(NOTEBOOK, store_history=False)
    try:
        yield ip
    finally:
        unregister(ip)
        assert [s for s in serving.running_servers() if s.shell is ip] == []
        for name in set(ip.user_ns) - before:
            ip.user_ns.pop(name, None)


async def test_wildcard_host_warns_and_checks_host_headers(shell: Any, capsys: Any) -> None:
    from codemode_jupyter import serving

    shell.run_line_magic("codemode_serve", "--host 0.0.0.0 --allow-host notebook.example")
    printed = capsys.readouterr()
    assert "WARNING: listening on 0.0.0.0" in printed.err
    assert "notebook.example:*" in printed.err and "--allow-host" in printed.err
    server = serving.current()
    assert server is not None and server.panel is None
    assert server.url == f"http://127.0.0.1:{server.port}/mcp"
    auth = {"Authorization": f"Bearer {server.token}", "Accept": "application/json"}
    with anyio.fail_after(STEP):
        async with httpx2.AsyncClient(timeout=STEP) as raw:
            foreign = await raw.post(server.url, json={}, headers={**auth, "Host": "evil.example"})
            assert foreign.status_code == 421
            named = await raw.post(
                server.url,
                json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                headers={**auth, "Host": f"notebook.example:{server.port}"},
            )
            assert named.status_code not in (401, 403, 421), named.text
    shell.run_line_magic("codemode_serve", "--stop")
    assert serving.current() is None
    # the same from Python
    api = serving.serve(shell, name="api", max_concurrent_runs=2)
    try:
        assert (
            serving.current() is api
            and api.running
            and api.tool_names
            == [
                "add",
                "scaled",
                "slow_double",
            ]
        )
        assert api.client_config()["mcpServers"]["api"]["url"] == api.url
    finally:
        api.stop()
    assert not api.running and serving.current() is None


async def test_tools_option_and_notebook_capabilities(shell: Any, capsys: Any) -> None:
    """With the extension loaded, `%codemode_allow` capabilities are served too, and
    `--tools` narrows what is served."""
    from codemode_jupyter import serving

    os.environ["CODEMODE_SERVE_TEST"] = "from-the-env"
    shell.run_line_magic("load_ext", "codemode_jupyter")
    try:
        shell.run_line_magic("codemode_allow", "env CODEMODE_SERVE_TEST")
        with pytest.raises(Exception, match="unknown tools: nope"):
            shell.run_line_magic("codemode_serve", "--tools nope")
        shell.run_line_magic("codemode_serve", "--tools add,env --token fixed-token-1 --search")
        server = serving.current()
        assert server is not None and server.token == "fixed-token-1"
        assert server.tool_names == ["add", "env.get", "env.list"]
        headers = {"Authorization": "Bearer fixed-token-1"}
        with anyio.fail_after(STEP):
            async with httpx2.AsyncClient(headers=headers, timeout=STEP) as http:
                async with Client(
                    streamable_http_client(server.url, http_client=http), read_timeout_seconds=STEP
                ) as c:
                    assert sorted(t.name for t in (await c.list_tools()).tools) == [
                        "execute",
                        "search",
                    ]
                    out = await execute(
                        c,
                        "const v = await codemode.env.get({ key: 'CODEMODE_SERVE_TEST' });"
                        "return [v, await codemode.add({ a: 1, b: 2 })]",
                    )
                    assert out["result"] == ["from-the-env", 3], out
                    refused = await execute(c, "await codemode.slow_double({ n: 1 })")
                    assert refused["success"] is False
                    found = await c.call_tool("search", {"query": "add numbers"})
                    assert found.structured_content
                    assert found.structured_content["results"][0]["name"] == "add"
        kinds = [r.kind for r in server.requests]
        assert kinds == ["execute", "execute", "search"]
        shell.run_line_magic("codemode_allow", "--clear")
        shell.run_cell("pass", store_history=False)  # post_run_cell: capabilities follow
        assert server.tool_names == ["add"]
    finally:
        os.environ.pop("CODEMODE_SERVE_TEST", None)
        shell.run_line_magic("unload_ext", "codemode_jupyter")
