"""End-to-end tests of ``codemode.mcp.CodeModeServer`` with the MCP SDK's real client.

Servers run for real: the streamable-HTTP app under uvicorn on a thread (127.0.0.1, a free port),
or a subprocess speaking stdio, or the seed README's Quick start run as a script. Both protocol
eras are exercised: the 2026-07-28 one the SDK client negotiates by default (change notifications
through ``subscriptions/listen``) and the handshake era (``mode="legacy"``: notifications on the
session's standalone channel, received by the message handler).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp.types as types
import pytest
import uvicorn
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings

from codemode import EnvCapability
from codemode.mcp import CodeModeServer
from codemode.registry import Registry

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[1]
STEP = 15  # seconds: the bound on any single wait in these tests


# -------------------------------------------------------------------- helpers


@contextlib.contextmanager
def serve_http(
    server: CodeModeServer, **app_options: Any
) -> Iterator[tuple[str, asyncio.AbstractEventLoop]]:
    """Serve ``server`` over streamable HTTP with uvicorn on a thread; yields the endpoint URL
    and the server's event loop."""
    app = server.streamable_http_app(**app_options)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=2
    )
    http = uvicorn.Server(config)
    thread = threading.Thread(target=http.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STEP
        while not http.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            if time.monotonic() > deadline:
                raise TimeoutError("uvicorn did not start in time")
            time.sleep(0.01)
        listener = http.servers[0]
        port = listener.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/mcp", listener.get_loop()
    finally:
        http.should_exit = True
        thread.join(STEP)
        assert not thread.is_alive(), "uvicorn did not stop"


def client(target: Any, **options: Any) -> Client:
    return Client(target, read_timeout_seconds=STEP, **options)


def text_of(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


async def execute(c: Client, code: str) -> types.CallToolResult:
    result = await c.call_tool("execute", {"code": code})
    # the text content is always the JSON of the structured content
    assert json.loads(text_of(result)) == result.structured_content
    return result


def execute_tool(tools: types.ListToolsResult) -> types.Tool:
    return next(tool for tool in tools.tools if tool.name == "execute")


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


async def slow_double(n: int) -> int:
    """Double a number, slowly."""
    await asyncio.sleep(0.05)
    return 2 * n


def make_server(**options: Any) -> CodeModeServer:
    options.setdefault("timeout_s", 10)
    server = CodeModeServer(
        name="test", capabilities=[EnvCapability(["CODEMODE_TEST_SECRET"])], **options
    )
    server.tool(add)
    server.tool(slow_double)
    return server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -------------------------------------------------------------------- registration API


def test_decorator_forms_and_names() -> None:
    server = CodeModeServer(name="forms")

    @server.tool
    def bare(x: int) -> int:
        return x

    @server.tool()
    def called(x: int) -> int:
        return x

    @server.tool(name="renamed", inline=True)
    def original(x: int) -> int:
        return x

    @server.tool("positional", description="Given a description.")
    async def positional_name(x: int) -> int:
        return x

    assert bare(1) == 1 and original(2) == 2  # decorators return the function itself
    assert sorted(server.registry.functions()) == ["bare", "called", "positional", "renamed"]
    assert "Given a description." in server.registry.stubs()
    with pytest.raises(ValueError, match="invalid tool name"):
        server.add_tool(add, name="not-valid")
    with pytest.raises(ValueError, match="__name__"):
        server.add_tool(lambda: 1)
    server.remove_tool("bare")
    assert "bare" not in server.registry
    with pytest.raises(TypeError, match="executor_options"):
        CodeModeServer(name="x", executor_options={"timeout_s": 1})


def test_shared_registry_and_compact_description() -> None:
    registry = Registry(tools={"add": add})
    server = CodeModeServer(name="shared", registry=registry, enable_search=True)
    assert server.registry is registry
    full = server.execute_description()
    assert "```ts" in full and "function add(args: { a: number; b: number })" in full
    server.compact_threshold = 0
    compact = server.execute_description()
    assert "```ts" not in compact
    assert "- add: Add two numbers." in compact
    assert "search" in compact
    no_search = CodeModeServer(name="plain", registry=registry, compact_threshold=0)
    assert "```ts" in no_search.execute_description()  # without search, stubs are always shown


# -------------------------------------------------------------------- over streamable HTTP


async def test_http_list_and_execute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEMODE_TEST_SECRET", "open sesame")
    events: list[object] = []
    server = make_server(on_event=events.append)
    with serve_http(server) as (url, _):
        with anyio.fail_after(STEP * 2):
            async with client(url) as c:
                tools = await c.list_tools()
                assert [tool.name for tool in tools.tools] == ["execute"]
                description = execute_tool(tools).description or ""
                assert "```ts" in description
                assert (
                    "function add(args: { a: number; b: number }): Promise<number>;" in description
                )
                assert "namespace env {" in description
                assert "async () =>" in description and "Promise.all" in description
                assert "10 s" in description and "16 MiB" in description
                assert execute_tool(tools).input_schema["required"] == ["code"]

                result = await execute(
                    c,
                    """
                    console.log("starting");
                    const [sum, doubled, secret] = await Promise.all([
                      codemode.add({ a: 2, b: 3 }),
                      codemode.slow_double({ n: 21 }),
                      codemode.env.get({ key: "CODEMODE_TEST_SECRET" }),
                    ]);
                    console.warn("done", sum);
                    return { sum, doubled, secret };
                    """,
                )
                assert not result.is_error
                assert result.structured_content == {
                    "success": True,
                    "result": {"sum": 5, "doubled": 42, "secret": "open sesame"},
                    "error": None,
                    "logs": ["starting", "done 5"],
                    "calls": 3,
                }
                # the other accepted forms: arrow function, single expression
                arrow = await execute(c, "async () => await codemode.add({ a: 1, b: 1 })")
                assert arrow.structured_content and arrow.structured_content["result"] == 2
                expression = await execute(c, "[1, 2, 3].map((x) => x * 2)")
                assert expression.structured_content
                assert expression.structured_content["result"] == [2, 4, 6]
    finished = [e for e in events if type(e).__name__ == "RunFinished"]
    assert len(finished) == 3  # the observer saw every run


async def test_http_failed_run_is_an_error_result_with_logs() -> None:
    server = make_server()
    with serve_http(server) as (url, _):
        with anyio.fail_after(STEP * 2):
            async with client(url) as c:
                result = await execute(
                    c,
                    """
                    console.log("before");
                    await codemode.add({ a: 1, b: 2 });
                    throw new Error("something broke");
                    """,
                )
                assert result.is_error
                content = result.structured_content
                assert content is not None
                assert content["success"] is False and content["result"] is None
                assert "Error: something broke" in content["error"]
                assert content["logs"] == ["before"]
                assert content["calls"] == 1

                denied = await execute(c, 'await codemode.env.get({ key: "PATH" })')
                assert denied.is_error
                assert "not allowed" in denied.structured_content["error"]  # type: ignore[index]

                syntax = await execute(c, "return (")
                assert syntax.is_error and "SyntaxError" in text_of(syntax)

                missing = await execute(c, "await codemode.nope({})")
                assert missing.is_error and "nope" in text_of(missing)


async def test_http_search_tool() -> None:
    server = make_server(enable_search=True)

    @server.tool
    def send_email(to: str, subject: str) -> bool:
        """Send an email.

        Args:
            to: The recipient's address.
            subject: Subject line.
        """
        return True

    with serve_http(server) as (url, _):
        with anyio.fail_after(STEP * 2):
            async with client(url) as c:
                tools = await c.list_tools()
                assert sorted(tool.name for tool in tools.tools) == ["execute", "search"]
                result = await c.call_tool("search", {"query": "recipient"})
                assert not result.is_error and result.structured_content
                hits = result.structured_content["results"]
                assert hits[0]["name"] == "send_email"
                assert hits[0]["kind"] == "tool"
                assert hits[0]["summary"] == "Send an email."
                assert (
                    "function send_email(args: { to: string; subject: string })" in hits[0]["stub"]
                )
                doubled = await c.call_tool("search", {"query": "double numbers", "limit": 2})
                names = [hit["name"] for hit in doubled.structured_content["results"]]  # type: ignore[index]
                assert names[0] == "slow_double" and len(names) <= 2
                overview = await c.call_tool("search", {"query": ""})
                listed = {hit["name"] for hit in overview.structured_content["results"]}  # type: ignore[index]
                assert {"add", "send_email", "slow_double", "env"} <= listed


async def test_http_live_updates_modern_listen() -> None:
    """Default (2026-07-28) client: the change arrives on a subscriptions/listen stream."""
    server = make_server()
    with serve_http(server) as (url, _):
        with anyio.fail_after(STEP * 2):
            async with client(url) as c:
                assert c.server_capabilities.tools and c.server_capabilities.tools.list_changed
                before = execute_tool(await c.list_tools()).description or ""
                assert "triple" not in before
                async with c.listen(tools_list_changed=True) as subscription:

                    def triple(n: int) -> int:
                        """Triple a number."""
                        return 3 * n

                    # from another thread, as a notebook would
                    await anyio.to_thread.run_sync(lambda: server.tool(triple))
                    async for event in subscription:
                        assert type(event).__name__ == "ToolsListChanged"
                        break
                after = execute_tool(await c.list_tools()).description or ""
                assert "function triple(args: { n: number }): Promise<number>;" in after
                result = await execute(c, "await codemode.triple({ n: 5 })")
                assert result.structured_content and result.structured_content["result"] == 15


async def test_http_live_updates_legacy_message_handler() -> None:
    """Handshake-era client: tools.listChanged is advertised and the notification reaches the
    session's message handler; a burst of changes is coalesced into one notification."""
    server = make_server()
    notifications: list[Any] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            notifications.append(message)

    async def wait_for(count: int, timeout: float) -> bool:
        with anyio.move_on_after(timeout):
            while len(notifications) < count:
                await anyio.sleep(0.02)
            return True
        return False

    with serve_http(server) as (url, loop):
        with anyio.fail_after(STEP * 2):
            async with client(url, mode="legacy", message_handler=on_message) as c:
                assert c.protocol_version in ("2025-11-25", "2025-06-18")
                assert c.server_capabilities.tools and c.server_capabilities.tools.list_changed
                await c.list_tools()  # the server now knows this connection
                # Notifications ride the standalone GET stream, which the client opens in the
                # background (the SDK drops what is sent before): wait until one gets through.
                for _ in range(int(STEP / 0.5)):
                    assert server.notify_tools_changed() == 1
                    if await wait_for(1, 0.5):
                        break
                assert notifications
                await anyio.sleep(0.2)
                notifications.clear()

                # Five changes while the server's loop is busy: one notification.
                gate = threading.Event()
                loop.call_soon_threadsafe(gate.wait, STEP)
                for i in range(5):
                    server.registry.register(f"later{i}", add)
                gate.set()
                assert await wait_for(1, STEP)
                await anyio.sleep(0.3)
                assert len(notifications) == 1

                description = execute_tool(await c.list_tools()).description or ""
                assert "function later4(" in description
                server.remove_tool("later0")
                assert await wait_for(2, STEP)
                description = execute_tool(await c.list_tools()).description or ""
                assert "function later0(" not in description


async def test_http_busy_limit_fails_fast() -> None:
    release = threading.Event()
    started = threading.Semaphore(0)
    server = CodeModeServer(name="busy", timeout_s=20, max_concurrent_runs=2)

    @server.tool
    def wait_for_release() -> str:
        """Block until the test releases it."""
        started.release()
        release.wait(STEP)
        return "released"

    with serve_http(server) as (url, _):
        try:
            with anyio.fail_after(STEP * 2):
                async with client(url) as c:
                    results: list[types.CallToolResult] = []

                    async def blocked() -> None:
                        results.append(await execute(c, "await codemode.wait_for_release()"))

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(blocked)
                        tg.start_soon(blocked)
                        for _ in range(2):  # both programs are inside the host function
                            assert await anyio.to_thread.run_sync(started.acquire, True, STEP)
                        assert server.active_runs == 2
                        began = time.monotonic()
                        busy = await execute(c, "1 + 1")
                        assert time.monotonic() - began < 5
                        assert busy.is_error
                        assert "server busy" in text_of(busy)
                        assert "max_concurrent_runs=2" in text_of(busy)
                        release.set()
                    assert [r.structured_content["result"] for r in results] == [  # type: ignore[index]
                        "released",
                        "released",
                    ]
                    assert server.active_runs == 0
                    ok = await execute(c, "1 + 1")
                    assert ok.structured_content and ok.structured_content["result"] == 2
        finally:
            release.set()


async def test_http_runs_in_parallel() -> None:
    """Concurrent execute requests run in separate isolates at the same time: each program waits
    at a barrier that only opens once all of them are inside a host call."""
    server = CodeModeServer(name="parallel", timeout_s=20)
    barrier = threading.Barrier(4, timeout=STEP)

    @server.tool
    def meet() -> int:
        """Wait for the other programs."""
        return barrier.wait()

    with serve_http(server) as (url, _):
        with anyio.fail_after(STEP * 2):
            async with client(url) as c:
                results: list[types.CallToolResult] = []

                async def one() -> None:
                    results.append(await execute(c, "await codemode.meet()"))

                async with anyio.create_task_group() as tg:
                    for _ in range(4):
                        tg.start_soon(one)
                assert not any(result.is_error for result in results), results
                arrivals = sorted(r.structured_content["result"] for r in results)  # type: ignore[index]
                assert arrivals == [0, 1, 2, 3]


async def test_http_bearer_auth_through_mcp_options() -> None:
    """What in-kernel serving builds on: the SDK's token_verifier + AuthSettings."""

    class StaticToken:
        async def verify_token(self, token: str) -> AccessToken | None:
            if token == "s3cret-token":
                return AccessToken(token=token, client_id="notebook", scopes=["codemode"])
            return None

    server = make_server(
        mcp_options={
            "auth": AuthSettings(
                issuer_url="http://127.0.0.1",  # type: ignore[arg-type]
                resource_server_url=None,
                required_scopes=["codemode"],
            ),
            "token_verifier": StaticToken(),
        }
    )
    with serve_http(server) as (url, _):
        with anyio.fail_after(STEP * 2):
            async with httpx2.AsyncClient() as raw:
                refused = await raw.post(url, json={})
                assert refused.status_code == 401
            headers = {"Authorization": "Bearer s3cret-token"}
            async with httpx2.AsyncClient(headers=headers, timeout=STEP) as http:
                async with client(streamable_http_client(url, http_client=http)) as c:
                    result = await execute(c, "await codemode.add({ a: 20, b: 22 })")
                    assert result.structured_content
                    assert result.structured_content["result"] == 42


async def test_http_dns_rebinding_protection_on_localhost() -> None:
    server = make_server()
    with serve_http(server) as (url, _):
        with anyio.fail_after(STEP):
            async with httpx2.AsyncClient() as raw:
                evil = await raw.post(
                    url,
                    json={},
                    headers={"Host": "evil.example:80", "Accept": "application/json"},
                )
                assert evil.status_code in (400, 403, 421)


# -------------------------------------------------------------------- over stdio

STDIO_SERVER = """
import os
from codemode import EnvCapability
from codemode.mcp import CodeModeServer

server = CodeModeServer(
    name="stdio-test",
    capabilities=[EnvCapability(allowed_keys=["CODEMODE_STDIO_SECRET"])],
    timeout_s=10,
)


@server.tool()
async def greet(name: str) -> str:
    \"\"\"Greet someone.\"\"\"
    return f"hello {name}"


@server.tool()
def learn(word: str) -> str:
    \"\"\"Register a new tool called `word` (to test live updates).\"\"\"
    server.tool(name=word)(lambda: word.upper())
    return word


if __name__ == "__main__":
    server.mcp.run()
"""


async def test_stdio_execute_and_live_update(tmp_path: Path) -> None:
    script = tmp_path / "stdio_server.py"
    script.write_text(STDIO_SERVER)
    params = StdioServerParameters(
        command=sys.executable,
        args=[str(script)],
        env={"CODEMODE_STDIO_SECRET": "from-the-env", "PYTHONPATH": str(REPO)},
        cwd=str(tmp_path),
    )
    received = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            received.set()

    with anyio.fail_after(STEP * 2):
        async with client(params, mode="legacy", message_handler=on_message) as c:
            tools = await c.list_tools()
            description = execute_tool(tools).description or ""
            assert "function greet(args: { name: string }): Promise<string>;" in description
            result = await execute(
                c,
                """
                const who = await codemode.env.get({ key: "CODEMODE_STDIO_SECRET" });
                console.log("greeting", who);
                return await codemode.greet({ name: who });
                """,
            )
            assert result.structured_content == {
                "success": True,
                "result": "hello from-the-env",
                "error": None,
                "logs": ["greeting from-the-env"],
                "calls": 2,
            }
            failed = await execute(c, 'console.log("x"); null.boom')
            assert failed.is_error and "TypeError" in text_of(failed)
            assert failed.structured_content and failed.structured_content["logs"] == ["x"]

            await execute(c, 'await codemode.learn({ word: "shout" })')
            with anyio.fail_after(STEP):
                await received.wait()
            description = execute_tool(await c.list_tools()).description or ""
            assert "function shout(" in description
            shout = await execute(c, "await codemode.shout()")
            assert shout.structured_content and shout.structured_content["result"] == "SHOUT"


# -------------------------------------------------------------------- the seed README


QUICK_START = textwrap.dedent(
    '''
    from codemode import EnvCapability, FsCapability, HttpCapability
    from codemode.mcp import CodeModeServer

    server = CodeModeServer(
        name="example",
        capabilities=[
            EnvCapability(allowed_keys=["USER"]),
            FsCapability(allowed_paths=["./examples"]),
            HttpCapability(allowed_hosts=["httpbin.org"]),
        ],
        enable_search=True,
    )


    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers"""
        return a + b


    if __name__ == "__main__":
        server.mcp.run(transport="streamable-http")
    '''
)

# The Quick start is run verbatim. MCPServer.run(transport="streamable-http") listens on
# 127.0.0.1:8000 unless given host=/port= (the SDK reads no environment variable for them), so
# this launcher supplies the port as a default keyword, then runs the script as __main__.
LAUNCHER = textwrap.dedent(
    """
    import runpy
    import sys

    from mcp.server.mcpserver import MCPServer

    port = int(sys.argv[2])
    original = MCPServer.run_streamable_http_async


    async def run_streamable_http_async(self, **options):
        options.setdefault("port", port)
        return await original(self, **options)


    MCPServer.run_streamable_http_async = run_streamable_http_async
    runpy.run_path(sys.argv[1], run_name="__main__")
    """
)


async def test_seed_quick_start_runs_unchanged(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    (tmp_path / "mcp_server.py").write_text(QUICK_START)
    (tmp_path / "launch.py").write_text(LAUNCHER)
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "launch.py", "mcp_server.py", str(port)],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + STEP * 2
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited:\n{(tmp_path / 'server.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"server never listened:\n{(tmp_path / 'server.log').read_text()}")
                await anyio.sleep(0.1)
        with anyio.fail_after(STEP * 2):
            async with client(f"http://127.0.0.1:{port}/mcp") as c:
                tools = await c.list_tools()
                assert sorted(tool.name for tool in tools.tools) == ["execute", "search"]
                description = execute_tool(tools).description or ""
                assert "function add(args: { a: number; b: number }): Promise<number>;" in (
                    description
                )
                result = await execute(c, "await codemode.add({a: 2, b: 3})")
                assert not result.is_error
                assert result.structured_content and result.structured_content["result"] == 5
                found = await c.call_tool("search", {"query": "add"})
                assert found.structured_content
                assert found.structured_content["results"][0]["name"] == "add"
    finally:
        process.terminate()
        try:
            process.wait(STEP)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STEP)
        log.close()
