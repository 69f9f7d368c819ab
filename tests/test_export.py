"""``%codemode_export`` and :func:`codemode_jupyter.export.build_export`.

Functions are defined with ``InteractiveShell.run_cell`` (so their source lives in IPython's cell
cache, as in a notebook). Unit tests check what goes into the script (imports, helpers, classes,
constants, stripped decorators, warnings for what cannot be carried over) and run its functions
in a fresh namespace; end-to-end tests run the exported script as a real MCP server, over
streamable HTTP (with and without a token) and over stdio, with the SDK's client.
"""

from __future__ import annotations

import ast
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from codemode import EnvCapability, FsCapability, HttpCapability
from codemode_jupyter.export import build_export
from codemode_jupyter.serve_magics import register, unregister
from codemode_jupyter.serving import discover_tools

pytestmark = pytest.mark.timeout(90)

REPO = Path(__file__).resolve().parents[1]
STEP = 20.0

CELLS = [
    """
import math
import functools
import os.path as osp
from json import dumps as to_json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal
import codemode_jupyter
from codemode_jupyter import tool
""",
    """
RATE = 0.5
UNITS = {"m": 1, "km": 1000}
LABELS = ("low", "high")
DEFAULT_PLACES = 2
LOCK = __import__("threading").Lock()
NOT_A_NUMBER = float("nan")
""",
    '''
@dataclass
class Point:
    """A point in the plane."""
    x: float
    y: float

    def norm(self) -> float:
        return math.hypot(self.x, self.y)
''',
    """
def _round(value: float, places: int = DEFAULT_PLACES) -> float:
    return round(value, places)

def _scale(value: float, unit: str) -> float:
    return _round(value * UNITS[unit] * RATE)
""",
    '''
@codemode_jupyter.tool
def distance(x: float, y: float, unit: Literal["m", "km"] = "m") -> float:
    """Distance of (x, y) from the origin, scaled."""
    return _scale(Point(x, y).norm(), unit)

@tool(name="fmt")
def format_labels(prefix: str = "") -> str:
    """Join the labels as JSON."""
    return to_json([prefix + label for label in LABELS])

@functools.lru_cache(maxsize=8)
def cached_square(n: int) -> int:
    """Square, cached."""
    return n * n

async def slow_add(a: int, b: int) -> int:
    """Add, asynchronously."""
    import asyncio
    await asyncio.sleep(0.01)
    return a + b

def ordered(keys: list[str]) -> list[str]:
    """Keys in insertion order, deduplicated."""
    return list(OrderedDict.fromkeys(keys))

def base_name(path: str) -> str:
    """The last part of a path."""
    return osp.basename(path)

halve = lambda x: x / 2

def locked() -> bool:
    """Uses an object that cannot be exported."""
    with LOCK:
        return True

def uses_nan() -> float:
    """Uses a float with no literal form."""
    return NOT_A_NUMBER

def uses_missing() -> int:
    """Refers to a name no cell defines."""
    return NEVER_DEFINED + 1

def make_adder(n: int):
    def add_n(x: int) -> int:
        return x + n
    return add_n

add_five = make_adder(5)
''',
]


@pytest.fixture(scope="module")
def shell() -> Iterator[InteractiveShell]:
    from codemode_jupyter.tools import forget, registered

    ip = InteractiveShell.instance()
    before = set(ip.user_ns)
    registrations = set(registered())
    for cell in CELLS:
        result = ip.run_cell(cell, store_history=False)
        assert result.success, result.error_in_exec or result.error_before_exec
    yield ip
    for name in set(ip.user_ns) - before:
        ip.user_ns.pop(name, None)
    for name in set(registered()) - registrations:  # @tool registrations are process-wide
        forget(name)


@pytest.fixture(scope="module")
def tools(shell: InteractiveShell) -> dict[str, Any]:
    functions, _ = discover_tools(shell)
    return functions


def exported_namespace(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "exported_server"}
    # dont_inherit: this test module's `from __future__ import annotations` must not leak in
    exec(compile(source, "exported_server.py", "exec", dont_inherit=True), namespace)
    return namespace


# ------------------------------------------------------------------------------ build_export


def test_discovery_matches_the_notebook(tools: dict[str, Any]) -> None:
    assert sorted(tools) == [
        "add_five",
        "base_name",
        "cached_square",
        "distance",
        "fmt",
        "halve",
        "locked",
        "make_adder",
        "ordered",
        "slow_add",
        "uses_missing",
        "uses_nan",
    ]


def test_imports_helpers_classes_and_constants(
    shell: InteractiveShell, tools: dict[str, Any]
) -> None:
    wanted = ["distance", "fmt", "cached_square", "slow_add", "ordered", "base_name", "halve"]
    result = build_export({n: tools[n] for n in wanted}, shell.user_ns, [])
    assert result.warnings == []
    assert result.tools == sorted(wanted)
    assert set(result.imports) == {
        "import math",
        "import functools",
        "import posixpath as osp" if os.name == "posix" else "import ntpath as osp",
        "from json import dumps as to_json",
        "from collections import OrderedDict",
        "from dataclasses import dataclass",
        "from typing import Literal",
    }
    assert set(result.constants) == {"RATE", "UNITS", "LABELS", "DEFAULT_PLACES"}
    # helpers come before what needs them at definition time; the class keeps its decorator
    order = result.definitions
    assert order.index("Point") < order.index("distance")
    assert {"_scale", "_round", "Point"} <= set(order)
    tree = ast.parse(result.source)
    defined = {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    assert isinstance(defined["slow_add"], ast.AsyncFunctionDef)
    assert defined["distance"].decorator_list == []  # @codemode_jupyter.tool stripped
    assert defined["format_labels"].decorator_list == []  # @tool(name="fmt") stripped
    assert ast.unparse(defined["cached_square"].decorator_list[0]) == (
        "functools.lru_cache(maxsize=8)"
    )
    assert ast.unparse(defined["Point"].decorator_list[0]) == "dataclass"
    assert "UNITS = {'m': 1, 'km': 1000}" in result.source
    assert "halve = lambda x: x / 2" in result.source
    assert "'fmt': format_labels," in result.source
    # nothing is imported from IPython or the extension
    assert "codemode_jupyter" not in result.source.split('"""', 2)[2]


def test_exported_functions_behave_like_the_originals(
    shell: InteractiveShell, tools: dict[str, Any]
) -> None:
    wanted = ["distance", "fmt", "cached_square", "slow_add", "ordered", "base_name", "halve"]
    result = build_export({n: tools[n] for n in wanted}, shell.user_ns, [])
    namespace = exported_namespace(result.source)
    exported = namespace["_TOOLS"]
    assert set(exported) == set(wanted)
    assert exported["distance"](3, 4) == tools["distance"](3, 4) == 2.5
    assert exported["distance"](3, 4, "km") == 2500.0
    assert exported["fmt"]("x-") == '["x-low", "x-high"]'
    assert exported["cached_square"](12) == 144
    assert anyio.run(exported["slow_add"], 2, 3) == 5
    assert exported["ordered"](["b", "a", "b"]) == ["b", "a"]
    assert exported["base_name"]("/a/b.txt") == "b.txt"
    assert exported["halve"](5) == 2.5
    server = namespace["_build_server"]()
    assert sorted(server.registry.names()) == sorted(wanted)
    assert 'function distance(args: { x: number; y: number; unit?: "m" | "km" })' in (
        server.registry.stubs()
    )


def test_unresolvable_names_are_reported(shell: InteractiveShell, tools: dict[str, Any]) -> None:
    wanted = ["locked", "uses_nan", "uses_missing", "add_five", "halve"]
    result = build_export({n: tools[n] for n in wanted}, shell.user_ns, [])
    assert result.unresolved == ["LOCK", "NEVER_DEFINED", "NOT_A_NUMBER"]
    text = "\n".join(result.warnings)
    assert "tool 'add_five' left out: a closure over n" in text
    for name in ("LOCK", "NEVER_DEFINED", "NOT_A_NUMBER"):
        assert name in text
    assert "NEVER_DEFINED: used by uses_missing() but not defined in the notebook" in text
    assert "#   LOCK: a lock used by locked()" in result.source
    assert result.tools == ["halve", "locked", "uses_missing", "uses_nan"]
    compile(result.source, "x.py", "exec")


def test_capabilities_are_written_out(
    shell: InteractiveShell, tools: dict[str, Any], tmp_path: Path
) -> None:
    class Custom:
        namespace = "custom"
        description = "A custom capability."

        def exports(self) -> dict[str, Any]:
            return {}

    capabilities = [
        FsCapability([str(tmp_path)], read_only=True),
        EnvCapability(["HOME"]),
        HttpCapability(["example.com"]),
        Custom(),
    ]
    result = build_export(
        {"halve": tools["halve"]}, shell.user_ns, capabilities, name="caps", timeout_s=7
    )
    assert f"_FsCapability(allowed_paths=[{str(tmp_path)!r}], read_only=True)" in result.source
    assert "_EnvCapability(allowed_keys=['HOME'])" in result.source
    assert "_HttpCapability(allowed_hosts=['example.com'])" in result.source
    assert any("'custom' (Custom) cannot be exported" in w for w in result.warnings)
    server = exported_namespace(result.source)["_build_server"]()
    assert server.name == "caps" and server.executor.timeout_s == 7
    assert [c.namespace for c in server.registry.capabilities] == ["fs", "env", "http"]
    assert server.registry.capabilities[0].allowed_paths == (str(tmp_path),)


def test_export_magic(shell: InteractiveShell, tmp_path: Path, capsys: Any) -> None:
    register(shell)
    try:
        target = tmp_path / "out" / "nb_server.py"
        shell.run_line_magic("codemode_export", f"{target} --tools distance,fmt --allow-env HOME")
        printed = capsys.readouterr()
        assert f"Wrote {target}: 2 tool(s): distance, fmt" in printed.out
        assert "helpers: Point, _round, _scale" in printed.out or "Point" in printed.out
        assert "capabilities: env" in printed.out
        source = target.read_text()
        assert "name='nb_server'" in source and "_EnvCapability(allowed_keys=['HOME'])" in source
        shell.run_line_magic("codemode_export", f"{tmp_path / 'all.py'}")
        printed = capsys.readouterr()
        assert "WARNING:" in printed.err and "NEVER_DEFINED" in printed.err
        assert "add_five" in printed.err
        with pytest.raises(UsageError, match="unknown tools: nope"):
            shell.run_line_magic("codemode_export", f"{tmp_path / 'x.py'} --tools nope")
    finally:
        unregister(shell)
    assert "codemode_export" not in shell.magics_manager.magics["line"]


# ------------------------------------------------------------------------------ as a server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(script: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run the exported script on a free port; yields its URL; always killed at the end."""
    port = free_port()
    log = (script.parent / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(script), "--port", str(port), *args],
        cwd=script.parent,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + STEP
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited:\n{(script.parent / 'server.log').read_text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=0.2),
            ):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"never listened:\n{(script.parent / 'server.log').read_text()}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp", process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


PROGRAM = """
const d = await codemode.distance({ x: 3, y: 4, unit: "km" });
const s = await codemode.slow_add({ a: 1, b: 2 });
console.log("labels", await codemode.fmt({ prefix: "#" }));
return { d, s, sq: await codemode.cached_square({ n: 9 }) };
"""
EXPECTED = {"d": 2500.0, "s": 3, "sq": 81}


@pytest.fixture(scope="module")
def script(shell: InteractiveShell, tools: dict[str, Any], tmp_path_factory: Any) -> Path:
    wanted = ["distance", "fmt", "cached_square", "slow_add"]
    result = build_export({n: tools[n] for n in wanted}, shell.user_ns, [], name="exported")
    assert result.warnings == []
    path = tmp_path_factory.mktemp("export") / "server.py"
    path.write_text(result.source)
    return path


async def test_exported_script_over_http(script: Path) -> None:
    with running(script, "--token", "t0ken-123") as (url, _):
        with anyio.fail_after(STEP * 2):
            async with httpx2.AsyncClient(timeout=STEP) as raw:
                assert (await raw.post(url, json={})).status_code == 401
            headers = {"Authorization": "Bearer t0ken-123"}
            async with httpx2.AsyncClient(headers=headers, timeout=STEP) as http:
                async with Client(
                    streamable_http_client(url, http_client=http), read_timeout_seconds=STEP
                ) as c:
                    tools = await c.list_tools()
                    execute = next(t for t in tools.tools if t.name == "execute")
                    assert "function distance(" in (execute.description or "")
                    assert "Join the labels as JSON." in (execute.description or "")
                    result = await c.call_tool("execute", {"code": PROGRAM})
                    assert result.structured_content == {
                        "success": True,
                        "result": EXPECTED,
                        "error": None,
                        "logs": ['labels ["#low", "#high"]'],
                        "calls": 4,
                    }


async def test_exported_script_over_http_without_token(script: Path) -> None:
    with running(script) as (url, _):
        with anyio.fail_after(STEP * 2):
            async with Client(url, read_timeout_seconds=STEP) as c:
                code = "await codemode.cached_square({n: 4})"
                result = await c.call_tool("execute", {"code": code})
                assert result.structured_content and result.structured_content["result"] == 16


async def test_exported_script_over_stdio(script: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=[str(script), "--transport", "stdio"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=str(script.parent),
    )
    with anyio.fail_after(STEP * 2):
        async with Client(params, read_timeout_seconds=STEP) as c:
            result = await c.call_tool("execute", {"code": PROGRAM})
            assert result.structured_content and result.structured_content["result"] == EXPECTED
