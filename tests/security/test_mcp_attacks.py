"""Hostile and broken traffic against the MCP server, over real HTTP on 127.0.0.1.

A real ``CodeModeServer`` runs under uvicorn on a thread; the kernel serving layer
(``codemode_jupyter.serving``, where the bearer token, the body limit and the Host/Origin checks
for notebooks live) runs in-process with an IPython ``InteractiveShell``. Malformed traffic is
sent with raw httpx (or a raw socket where httpx refuses to lie), normal traffic with the MCP
SDK's own client. Every served function records its calls, so "refused" also means "nothing ran";
after each attack a normal request must still work and no run may be left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from codemode.mcp import CodeModeServer

pytestmark = pytest.mark.timeout(120)

STEP = 20.0  # seconds: the bound on any single wait
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
LEGACY = "2025-11-25"


# ----------------------------------------------------------------------------------- helpers


class Calls:
    """Thread-safe record of host function calls (the proof that something ran, or not)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        with self._lock:
            self.items.append(item)

    def __len__(self) -> int:
        with self._lock:
            return len(self.items)


def make_server(calls: Calls, **options: Any) -> CodeModeServer:
    options.setdefault("timeout_s", 3)
    server = CodeModeServer(name="attacked", **options)

    @server.tool
    def record(x: int) -> int:
        """Record a call and return twice x."""
        calls.add(x)
        return 2 * x

    @server.tool
    async def pause(ms: int) -> int:
        """Sleep, then return ms."""
        calls.add(("pause", ms))
        await asyncio.sleep(ms / 1000)
        return ms

    return server


@contextlib.contextmanager
def serve_http(server: CodeModeServer) -> Iterator[str]:
    """Serve ``server`` with uvicorn on a thread (127.0.0.1, a free port); yields the URL."""
    config = uvicorn.Config(
        server.streamable_http_app(),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    http = uvicorn.Server(config)
    thread = threading.Thread(target=http.run, name="uvicorn-attacks", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STEP
        while not http.started:
            assert thread.is_alive(), "uvicorn did not start"
            assert time.monotonic() < deadline, "uvicorn did not start in time"
            time.sleep(0.01)
        port = http.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        http.should_exit = True
        thread.join(STEP)
        assert not thread.is_alive(), "uvicorn did not stop"


def rpc(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC message in a response, whether sent as JSON or as one SSE event."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data: "):
                message: dict[str, Any] = json.loads(line[6:])
                return message
        raise AssertionError(f"no data in the event stream: {response.text!r}")
    body: dict[str, Any] = response.json()
    return body


async def open_session(raw: httpx.AsyncClient, url: str, **headers: str) -> dict[str, str]:
    """Initialize a handshake-era session by hand; returns the headers that continue it."""
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        },
    }
    answer = await raw.post(url, json=init, headers={**ACCEPT, **headers})
    assert answer.status_code == 200, answer.text
    session = {
        **ACCEPT,
        **headers,
        "mcp-session-id": answer.headers["mcp-session-id"],
        "mcp-protocol-version": LEGACY,
    }
    done = await raw.post(
        url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session
    )
    assert done.status_code == 202
    return session


def call(code: Any, rid: Any = 1, **extra: Any) -> dict[str, Any]:
    arguments = {"code": code} if code is not ... else {}
    arguments.update(extra)
    return {
        "jsonrpc": "2.0",
        "id": rid,
        "method": "tools/call",
        "params": {"name": "execute", "arguments": arguments},
    }


async def sdk_execute(url: str, code: str, **headers: str) -> dict[str, Any]:
    """One normal request through the SDK's real client."""
    async with httpx.AsyncClient(headers=headers, timeout=STEP) as http:
        async with Client(
            streamable_http_client(url, http_client=http), read_timeout_seconds=STEP
        ) as client:
            result = await client.call_tool("execute", {"code": code})
    assert result.structured_content is not None, result
    return dict(result.structured_content)


async def wait_until(predicate: Any, timeout: float = STEP) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await anyio.sleep(0.05)


# -------------------------------------------------------------------- CodeModeServer over HTTP


async def test_malformed_json_rpc_gets_clear_errors_and_nothing_runs() -> None:
    calls = Calls()
    server = make_server(calls)
    with serve_http(server) as url:
        async with httpx.AsyncClient(timeout=STEP) as raw:
            with anyio.fail_after(STEP * 2):
                bad = await raw.post(url, content=b"{not json", headers=ACCEPT)
                assert bad.status_code == 400 and rpc(bad)["error"]["code"] == -32700
                for body, code in [
                    ([{"jsonrpc": "2.0", "id": 1, "method": "ping"}], -32602),  # a batch
                    ({"id": 1, "method": "ping"}, -32602),  # no "jsonrpc"
                    ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, -32602),
                    ({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}, -32602),
                    ({"jsonrpc": "2.0", "id": 1, "method": 7}, -32602),
                    ("just a string", -32602),
                ]:
                    answer = await raw.post(url, json=body, headers=ACCEPT)
                    assert answer.status_code == 400, (body, answer.text)
                    assert rpc(answer)["error"]["code"] == code, (body, answer.text)

                session = await open_session(raw, url)
                unknown = rpc(
                    await raw.post(
                        url,
                        json={"jsonrpc": "2.0", "id": 2, "method": "nope/nothing"},
                        headers=session,
                    )
                )
                assert unknown["error"]["code"] == -32601
                for bad_id in ({"x": 1}, [1], True):
                    # not a valid request id: refused, or at most taken as a notification
                    # (which gets no answer): either way the program never runs
                    request = call("await codemode.record({x: 1})", bad_id)
                    wrong_id = await raw.post(url, json=request, headers=session)
                    assert wrong_id.status_code in (202, 400), (bad_id, wrong_id.text)
                not_object = rpc(
                    await raw.post(
                        url,
                        json={"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": "x"},
                        headers=session,
                    )
                )
                assert "error" in not_object
                no_tool = rpc(
                    await raw.post(
                        url,
                        json={
                            "jsonrpc": "2.0",
                            "id": 4,
                            "method": "tools/call",
                            "params": {"name": "record", "arguments": {"x": 1}},
                        },
                        headers=session,
                    )
                )
                assert no_tool["result"]["isError"] is True
                assert "Unknown tool: record" in no_tool["result"]["content"][0]["text"]
                for request, fragment in [
                    (call(...), "Field required"),
                    (call(5), "Input should be a valid string"),
                    (call(None), "Input should be a valid string"),
                    (call(["await codemode.record({x: 1})"]), "Input should be a valid string"),
                ]:
                    answer = rpc(await raw.post(url, json=request, headers=session))
                    assert answer["result"]["isError"] is True, answer
                    assert fragment in answer["result"]["content"][0]["text"], answer
                args_not_object = rpc(
                    await raw.post(
                        url,
                        json={
                            "jsonrpc": "2.0",
                            "id": 9,
                            "method": "tools/call",
                            "params": {"name": "execute", "arguments": "x"},
                        },
                        headers=session,
                    )
                )
                assert args_not_object["error"]["code"] == -32602
                assert len(calls) == 0 and server.active_runs == 0
                # the same session still works for a real call, and so does the SDK client
                fine = rpc(
                    await raw.post(
                        url, json=call("await codemode.record({x: 4})", 10), headers=session
                    )
                )
                assert fine["result"]["structuredContent"]["result"] == 8
        out = await sdk_execute(url, "await codemode.record({ x: 21 })")
        assert out["result"] == 42 and list(calls.items) == [4, 21]


async def test_foreign_host_and_origin_are_refused_before_anything_runs() -> None:
    calls = Calls()
    server = make_server(calls)
    with serve_http(server) as url:
        port = url.split(":")[2].split("/")[0]
        body = call("await codemode.record({x: 1})")
        async with httpx.AsyncClient(timeout=STEP) as raw:
            with anyio.fail_after(STEP):
                for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.nip.io:{port}"):
                    answer = await raw.post(url, json=body, headers={**ACCEPT, "Host": host})
                    assert answer.status_code == 421, (host, answer.status_code)
                for origin in ("http://evil.example", f"http://127.0.0.1.evil.example:{port}"):
                    answer = await raw.post(url, json=body, headers={**ACCEPT, "Origin": origin})
                    assert answer.status_code == 403, (origin, answer.status_code)
        assert len(calls) == 0
        assert (await sdk_execute(url, "await codemode.record({ x: 2 })"))["result"] == 4


async def test_fifty_concurrent_clients_get_answers_or_a_clear_busy_error() -> None:
    calls = Calls()
    server = make_server(calls, max_concurrent_runs=4, timeout_s=10)
    outcomes: dict[int, dict[str, Any]] = {}
    with serve_http(server) as url:
        with anyio.fail_after(STEP * 3):

            async def one(i: int) -> None:
                code = (
                    "await codemode.pause({ ms: 50 }); "
                    f"return await codemode.record({{ x: {i} }})"
                )
                outcomes[i] = await sdk_execute(url, code)

            async with anyio.create_task_group() as group:
                for i in range(50):
                    group.start_soon(one, i)
            assert len(outcomes) == 50
            busy = 0
            for i, out in outcomes.items():
                if out["success"]:
                    assert out["result"] == 2 * i
                else:
                    busy += 1
                    assert out["error"].startswith("ServerBusy: server busy"), out
                    assert "max_concurrent_runs=4" in out["error"]
            assert 50 - busy >= 4  # at least one full batch ran
            assert server.active_runs == 0
            assert (await sdk_execute(url, "1 + 1"))["result"] == 2


async def test_disconnect_mid_run_leaves_nothing_running() -> None:
    """A client that goes away while its program runs: the run is stopped or finishes on its
    own deadline, live runs return to zero, and the next request works."""
    calls = Calls()
    server = make_server(calls, timeout_s=3)
    with serve_http(server) as url:
        async with httpx.AsyncClient(timeout=STEP) as raw:
            session = await open_session(raw, url)
            for code in ("while (true) {}", "await codemode.pause({ ms: 60000 })"):
                with anyio.move_on_after(0.7):
                    await raw.post(url, json=call(code, 5), headers=session)
                    raise AssertionError("the program should still have been running")
                await wait_until(lambda: server.active_runs == 0, timeout=10)
        assert (await sdk_execute(url, "await codemode.record({ x: 5 })"))["result"] == 10


async def test_runaway_program_times_out_without_holding_up_others() -> None:
    calls = Calls()
    server = make_server(calls, timeout_s=2)
    results: dict[str, dict[str, Any]] = {}
    with serve_http(server) as url:
        with anyio.fail_after(STEP):

            async def run(key: str, code: str) -> None:
                results[key] = await sdk_execute(url, code)

            async with anyio.create_task_group() as group:
                group.start_soon(run, "spin", "while (true) {}")
                await anyio.sleep(0.3)
                for i in range(3):
                    group.start_soon(run, f"quick{i}", f"await codemode.record({{ x: {i} }})")
        assert results["spin"]["success"] is False
        assert "did not finish within 2 s" in results["spin"]["error"]
        assert [results[f"quick{i}"]["result"] for i in range(3)] == [0, 2, 4]
        assert server.active_runs == 0


# ------------------------------------------------------------- the kernel's serving layer


NOTEBOOK = '''
import threading as _threading

_recorded = []
_lock = _threading.Lock()

def record(x: int) -> int:
    """Record a call and return twice x."""
    with _lock:
        _recorded.append(x)
    return 2 * x
'''


@pytest.fixture
def notebook() -> Iterator[Any]:
    """An in-process IPython shell whose ``record`` function is served with a known token and a
    64 KiB body limit; stopped and cleaned at the end."""
    from IPython.core.interactiveshell import InteractiveShell

    from codemode_jupyter import serving

    ip = InteractiveShell.instance()
    before = set(ip.user_ns)
    ip.run_cell(NOTEBOOK, store_history=False)
    server = serving.serve(
        ip, token="correct-horse-battery", max_body_bytes=64 * 1024, timeout_s=3, panel=False
    )
    try:
        yield server
    finally:
        server.stop()
        assert not server.running
        for name in set(ip.user_ns) - before:
            ip.user_ns.pop(name, None)


def recorded(server: Any) -> list[int]:
    return list(server.shell.user_ns["_recorded"])


async def test_token_is_required_and_nothing_runs_without_it(notebook: Any) -> None:
    url, token = notebook.url, notebook.token
    body = call("await codemode.record({x: 1})")
    attempts: list[tuple[str, dict[str, str]]] = [
        (url, {}),
        (url, {"Authorization": "Bearer wrong"}),
        (url, {"Authorization": f"Bearer {token[:-1]}"}),
        (url, {"Authorization": f"Bearer {token}x"}),
        (url, {"Authorization": f"Basic {token}"}),
        (url, {"Authorization": token}),
        (url, {"Authorization": "Bearer"}),
        (f"{url}?token={token}", {}),
        (f"{url}?access_token={token}", {}),
        (url, {"X-Token": token, "Cookie": f"token={token}"}),
    ]
    async with httpx.AsyncClient(timeout=STEP) as raw:
        with anyio.fail_after(STEP):
            for target, headers in attempts:
                answer = await raw.post(target, json=body, headers={**ACCEPT, **headers})
                assert answer.status_code == 401, (target, headers, answer.status_code)
                assert token not in answer.text
    assert recorded(notebook) == [] and notebook.requests == []
    out = await sdk_execute(url, "await codemode.record({ x: 3 })", Authorization=f"Bearer {token}")
    assert out["result"] == 6 and recorded(notebook) == [3]


def _raw_exchange(port: int, request: bytes, then_wait: float = STEP) -> bytes:
    """Send raw bytes, then read until the server closes or ``then_wait`` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=then_wait) as sock:
        sock.sendall(request)
        received = b""
        with contextlib.suppress(TimeoutError, OSError):
            while chunk := sock.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received and b"413" in received.split(b"\r\n", 1)[0]:
                    break
        return received


async def test_oversized_and_lying_bodies(notebook: Any) -> None:
    port, token = notebook.port, notebook.token
    auth = f"Authorization: Bearer {token}\r\n".encode()
    head = (
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Accept: application/json, text/event-stream\r\n"
    )
    async with httpx.AsyncClient(timeout=STEP) as raw:
        with anyio.fail_after(STEP * 2):
            # over the limit, no token at all: refused for its size before anything is parsed
            big = await raw.post(notebook.url, content=b"x" * (70 * 1024), headers=ACCEPT)
            assert big.status_code == 413 and "limit is 65536 bytes" in big.text

            async def chunks() -> Any:
                for _ in range(4):
                    yield b"y" * 32 * 1024

            streamed = await raw.post(
                notebook.url,
                content=chunks(),
                headers={**ACCEPT, "Authorization": f"Bearer {token}"},
            )
            assert streamed.status_code == 413
    # A Content-Length far above the limit, and a body that never comes: answered at once.
    began = time.monotonic()
    reply = await anyio.to_thread.run_sync(
        _raw_exchange, port, head + auth + b"Content-Length: 900000000\r\n\r\n{}"
    )
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    # Just above the limit (so the server would drain it), but held back: still answered.
    reply = await anyio.to_thread.run_sync(
        _raw_exchange, port, head + auth + b"Content-Length: 100000\r\n\r\n{}"
    )
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert time.monotonic() - began < 15  # not hung waiting for bytes that never come
    # A Content-Length below the real body: the rest is not taken as a second request.
    smuggled = json.dumps(call("await codemode.record({x: 666})")).encode()
    reply = await anyio.to_thread.run_sync(
        _raw_exchange,
        port,
        head + auth + b"Content-Length: 2\r\n\r\n{}" + b"POST /mcp HTTP/1.1\r\n" + smuggled,
        3.0,
    )
    assert reply.startswith(b"HTTP/1.1 4"), reply[:200]
    assert 666 not in recorded(notebook)
    out = await sdk_execute(
        notebook.url, "await codemode.record({ x: 7 })", Authorization=f"Bearer {token}"
    )
    assert out["result"] == 14 and recorded(notebook) == [7]


async def test_host_and_origin_checks_in_the_kernel_server(notebook: Any) -> None:
    auth = {**ACCEPT, "Authorization": f"Bearer {notebook.token}"}
    body = call("await codemode.record({x: 1})")
    async with httpx.AsyncClient(timeout=STEP) as raw:
        with anyio.fail_after(STEP):
            for host in ("attacker.example", f"127.0.0.1.attacker.example:{notebook.port}"):
                answer = await raw.post(notebook.url, json=body, headers={**auth, "Host": host})
                assert answer.status_code == 421, (host, answer.status_code)
            for origin in ("http://attacker.example", "null", "file://"):
                answer = await raw.post(notebook.url, json=body, headers={**auth, "Origin": origin})
                assert answer.status_code == 403, (origin, answer.status_code)
            local = await raw.post(
                notebook.url,
                json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                headers={**auth, "Origin": f"http://localhost:{notebook.port}"},
            )
            assert local.status_code not in (401, 403, 421), local.text
    assert recorded(notebook) == []
