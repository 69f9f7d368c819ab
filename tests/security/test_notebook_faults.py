"""Broken cells, hostile programs, bad magic options and misbehaving notebook functions.

Most cases run in an in-process IPython ``InteractiveShell`` (fast); the ones that need a real
kernel (the cell's reply, the kernel answering afterwards) share ONE ipykernel, driven from a
single thread with ``jupyter_client`` (``execute_interactive`` reads IOPub itself, so no ZMQ
socket is ever used from two threads). After every fault the next ``%%codemode`` cell must work.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import codemode_jupyter
from codemode_jupyter import CodeMode, CodeModeError

pytestmark = pytest.mark.timeout(120)

FUNCTIONS = '''
import os
import asyncio
import threading as _threading

_release = _threading.Event()
_cancelled = []

def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b

def explode(reason: str) -> None:
    raise RuntimeError(reason)

def stuck() -> str:
    """Never returns (until the test lets it go)."""
    _release.wait(60)
    return "released"

async def forever() -> str:
    try:
        await asyncio.sleep(3600)
    finally:
        _cancelled.append(True)
    return "never"

class Helper:
    def __call__(self) -> int:
        return 1

helper_instance = Helper()
run_shell = os.system
evaluate = eval

def _private() -> int:
    return 1
'''
NAMES = (
    "os",
    "asyncio",
    "_threading",
    "_release",
    "_cancelled",
    "add",
    "explode",
    "stuck",
    "forever",
    "Helper",
    "helper_instance",
    "run_shell",
    "evaluate",
    "_private",
)


@pytest.fixture
def ip() -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.run_cell("%load_ext codemode_jupyter", store_history=False)
    shell.run_cell(FUNCTIONS, store_history=False)
    builtins = shell.user_ns["__builtins__"]
    try:
        yield shell
    finally:
        release = shell.user_ns.get("_release")
        if release is not None:
            release.set()
        shell.run_cell("%unload_ext codemode_jupyter", store_history=False)
        for name in NAMES:
            shell.user_ns.pop(name, None)
        shell.user_ns["__builtins__"] = builtins


def healthy(shell: InteractiveShell) -> None:
    """The shell still runs Python, and a ``%%codemode`` cell still calls the notebook."""
    result = shell.run_cell("print('alive'); 40 + 2", store_history=False)
    assert result.error_in_exec is None and result.result == 42
    assert shell.run_cell_magic("codemode", "", "return await codemode.add({a: 1, b: 2})") == 3


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--timeout -1", "--timeout must be a positive, finite number of seconds"),
        ("--timeout abc", "invalid float value: 'abc'"),
        ("--timeout nan", "--timeout must be a positive, finite number"),
        ("--timeout inf", "--timeout must be a positive, finite number"),
        ("--heap nan", "--heap must be a finite number of MiB, at least 4"),
        ("--heap inf", "--heap must be a finite number of MiB, at least 4"),
        ("--heap -5", "--heap must be a finite number of MiB, at least 4"),
        ("-o class", "-o/--out needs a variable name, not 'class'"),
        ("-o None", "-o/--out needs a variable name, not 'None'"),
        ("-o a-b", "-o/--out needs a variable name, not 'a-b'"),
        ("-o __builtins__", "would replace a name the notebook itself needs"),
        ("-o __name__", "would replace a name the notebook itself needs"),
        ("-o In", "would replace a name the notebook itself needs"),
        ("-o get_ipython", "would replace a name the notebook itself needs"),
        ("--tools add,__builtins__", "unknown tool: __builtins__"),
    ],
)
def test_bad_options_are_usage_errors(ip: InteractiveShell, line: str, message: str) -> None:
    namespace_before = {k: id(v) for k, v in ip.user_ns.items()}
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("codemode", line, "return 1")
    assert message in str(info.value)
    assert {k: id(v) for k, v in ip.user_ns.items() if k in namespace_before} == namespace_before
    healthy(ip)


def test_non_finite_settings_are_refused(ip: InteractiveShell) -> None:
    magics = next(c for c in ip.configurables if isinstance(c, CodeMode))
    for trait, value in (
        ("timeout_s", math.nan),
        ("timeout_s", math.inf),
        ("max_heap_mb", math.nan),
    ):
        before = getattr(magics, trait)
        with pytest.raises(Exception, match="finite"):
            setattr(magics, trait, value)
        assert getattr(magics, trait) == before
    from codemode_jupyter.serve_magics import register, unregister

    register(ip)
    try:
        for line, message in (
            ("--timeout nan", "--timeout must be a positive, finite number"),
            ("--heap inf", "--heap must be a finite number"),
            ("--max-body inf", "--max-body must be a positive, finite number"),
            ("--max-body nan", "--max-body must be a positive, finite number"),
        ):
            with pytest.raises(UsageError, match=message):
                ip.run_line_magic("codemode_serve", line)
    finally:
        unregister(ip)
    healthy(ip)


def test_function_that_never_returns_times_out(ip: InteractiveShell) -> None:
    began = time.monotonic()
    with pytest.raises(CodeModeError, match="did not finish within 1 s"):
        ip.run_cell_magic("codemode", "--timeout 1", "return await codemode.stuck()")
    with pytest.raises(CodeModeError, match="did not finish within 1 s"):
        ip.run_cell_magic("codemode", "--timeout 1", "return await codemode.forever()")
    assert time.monotonic() - began < 15  # two 1 s deadlines, not hung
    deadline = time.monotonic() + 10
    while not ip.user_ns["_cancelled"]:  # the abandoned coroutine was cancelled, not left behind
        assert time.monotonic() < deadline, "the async host function was never cancelled"
        time.sleep(0.05)
    ip.user_ns["_release"].set()
    healthy(ip)


def test_names_that_must_never_be_callable(ip: InteractiveShell) -> None:
    exposed = set(codemode_jupyter.available_tools())
    assert {"add", "explode", "stuck", "forever"} <= exposed
    for name in ("Helper", "helper_instance", "run_shell", "evaluate", "_private", "os"):
        assert name not in exposed
    probes = [
        "Helper",
        "helper_instance",
        "run_shell",
        "evaluate",
        "_private",
        "os",
        "asyncio",
        "__builtins__",
        "get_ipython",
        "exit",
        "eval",
        "constructor",
        "__proto__",
    ]
    result = ip.run_cell_magic(
        "codemode",
        "",
        f"""
        const probes = [];
        for (const name of {probes!r}) {{
          try {{ probes.push(["called", await codemode[name]({{}})]); }}
          catch (e) {{ probes.push([e.name, e.message]); }}
        }}
        return {{ probes, keys: Object.keys(codemode).sort() }};
        """,
    )
    for name, (kind, message) in zip(probes, result["probes"], strict=True):
        assert kind != "called", (name, message)
        assert "is not a function" in message, (name, message)
    assert set(result["keys"]) == exposed
    assert codemode_jupyter.last_run().calls == []
    for bad in (InteractiveShell, os, 42):
        with pytest.raises(TypeError, match="@tool needs a function"):
            codemode_jupyter.tool(bad)  # type: ignore[call-overload]
    healthy(ip)


# ---------------------------------------------------------------------------- a real kernel


@pytest.fixture(scope="module")
def kernel(kernel_env: None) -> Iterator[Any]:
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=60)
    try:
        reply = run_in(kc, "%load_ext codemode_jupyter\n" + FUNCTIONS)
        assert reply["status"] == "ok", reply
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run_in(kc: Any, code: str, timeout: float = 60) -> dict[str, Any]:
    """Run a cell; return its reply content plus the ``stdout`` it printed."""
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            out.append(msg["content"]["text"])

    reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook, allow_stdin=False)
    content = dict(reply["content"])
    content["stdout"] = "".join(out)
    return content


def kernel_healthy(kc: Any) -> None:
    reply = run_in(kc, "%%codemode -o health\nreturn await codemode.add({a: 20, b: 22})", 30)
    assert reply["status"] == "ok", reply
    printed = run_in(kc, "print('health', health, 6 * 7)", 30)
    assert printed["status"] == "ok" and "health 42 42" in printed["stdout"], printed


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("cell", "ename", "fragment"),
    [
        ("%%codemode\nconst x = ;\nreturn x;", "CodeModeError", "SyntaxError"),
        ("%%codemode\nthrow new Error('hostile');", "CodeModeError", "Error: hostile"),
        ("%%codemode\nthrow 42;", "CodeModeError", "42"),
        ("%%codemode --timeout 1\nwhile (true) {}", "CodeModeError", "did not finish within 1 s"),
        (
            "%%codemode\nconst a = []; while (true) a.push(new Array(100000).fill(1.5));",
            "CodeModeError",
            "memory",
        ),
        ("%%codemode\nnew ArrayBuffer(2 ** 31);", "CodeModeError", ""),
        (
            "%%codemode\nawait codemode.explode({reason: 'from python'});",
            "CodeModeError",
            "RuntimeError: from python",
        ),
        ("%%codemode --timeout 1\nawait codemode.stuck();", "CodeModeError", "within 1 s"),
        ("%%codemode --timeout abc\nreturn 1", "UsageError", "invalid float value"),
        ("%%codemode --heap 1\nreturn 1", "UsageError", "--heap must be"),
        ("%%codemode --tools nonexistent\nreturn 1", "UsageError", "unknown tool: nonexistent"),
        ("%%codemode -o __builtins__\nreturn 1", "UsageError", "would replace a name"),
        ("%%codemode -o lambda\nreturn 1", "UsageError", "needs a variable name"),
    ],
)
def test_kernel_survives_every_fault(kernel: Any, cell: str, ename: str, fragment: str) -> None:
    began = time.monotonic()
    reply = run_in(kernel, cell)
    assert time.monotonic() - began < 30
    assert reply["status"] == "error", reply
    assert reply["ename"] == ename, reply
    assert fragment in reply["evalue"] or fragment.lower() in reply["evalue"].lower(), reply
    kernel_healthy(kernel)


@pytest.mark.kernel
def test_kernel_released_host_function_and_interrupt_state(kernel: Any) -> None:
    """The thread left waiting by ``stuck`` is released; the kernel's namespace is intact."""
    reply = run_in(kernel, "_release.set(); print(type(__builtins__).__name__, callable(print))")
    assert reply["status"] == "ok" and "True" in reply["stdout"], reply
    alive = run_in(kernel, "import threading; print(threading.active_count() < 50)")
    assert "True" in alive["stdout"]
    kernel_healthy(kernel)
