"""Figure 5: an MCP ``execute`` round trip over loopback, ours against py-codemode's server.

Each server runs in its own process (py-codemode's in its own virtualenv, on mcp 1.x) with the
same tool; one client, the MCP SDK's own (2.x, in this process), measures both, so the client's
cost is the same on both sides. Reported: median and p99 of one client making calls one after
another, and of 8 clients calling at once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

OURS = """
from codemode.mcp import CodeModeServer

server = CodeModeServer(name="bench")

@server.tool
def add(a: int, b: int) -> int:
    "Add two integers."
    return a + b

server.run("streamable-http", host="127.0.0.1", port={port})
"""

PYCM = """
from codemode.mcp import CodeModeServer

server = CodeModeServer(name="bench")

@server.tool()
def add(a: int, b: int) -> int:
    "Add two integers."
    return a + b

server.mcp.settings.host = "127.0.0.1"
server.mcp.settings.port = {port}
server.mcp.run(transport="streamable-http")
"""

# The same program for both: py-codemode accepts only a function expression.
PROGRAM = "async () => { const r = await codemode.add({a: 1, b: 2}); return r }"
SEQUENTIAL = 200
CLIENTS = 8
PER_CLIENT = 40


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(python: str | Path, script: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    path = Path(tempfile.mkdtemp()) / "server.py"
    path.write_text(textwrap.dedent(script.format(port=port)))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen(
        [str(python), str(path)],
        cwd=path.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}/mcp"
        if proc.poll() is not None:
            raise RuntimeError(f"{python} server exited with {proc.returncode}")
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError("server did not start")


async def _client_latencies(url: str, n: int) -> list[float]:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    samples = []
    async with Client(streamable_http_client(url), read_timeout_seconds=60) as client:
        await client.call_tool("execute", {"code": PROGRAM})  # warm the session
        for _ in range(n):
            t = time.perf_counter()
            result = await client.call_tool("execute", {"code": PROGRAM})
            samples.append(time.perf_counter() - t)
            if result.is_error:
                raise RuntimeError(f"execute failed: {result.content}")
    return samples


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "min": ordered[0],
        "max": ordered[-1],
    }


async def _measure(url: str) -> dict[str, dict[str, float]]:
    one = await _client_latencies(url, SEQUENTIAL)
    many = await asyncio.gather(*(_client_latencies(url, PER_CLIENT) for _ in range(CLIENTS)))
    return {
        "1 client": _summary(one),
        f"{CLIENTS} clients": _summary([s for client in many for s in client]),
    }


def measure(python: str | Path, script: str) -> dict[str, Any]:
    proc, url = _start(python, script)
    try:
        return asyncio.run(_measure(url))
    except Exception as exc:  # noqa: BLE001 - report and go on with the other system
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        proc.terminate()
        proc.wait(10)


def run(pycm_python: Path) -> None:
    results = {
        "ours": measure(sys.executable, OURS),
        "py-codemode": measure(pycm_python, PYCM),
    }
    for system, data in results.items():
        if "error" in data:
            print(f"  {system:12s} failed: {data['error']}")
            continue
        for label, s in data.items():
            line = (
                f"  {system:12s} {label:10s} median {s['median'] * 1e3:7.2f} ms  "
                f"p99 {s['p99'] * 1e3:7.2f} ms  (min {s['min'] * 1e3:.2f}, "
                f"max {s['max'] * 1e3:.2f})"
            )
            ref = results["py-codemode"].get(label)
            if system == "ours" and isinstance(ref, dict):
                line += f"   ratio median {s['median'] / ref['median']:.2f}x"
                line += f", p99 {s['p99'] / ref['p99']:.2f}x"
            print(line)
