"""Kernel-side completion and inspection inside ``%%codemode`` cells, and interrupting a running
cell, all through a real ipykernel driven with jupyter_client messages.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[1]

SETUP = '''
%load_ext codemode_jupyter
import tempfile
data_dir = tempfile.mkdtemp()

def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b

async def fetch_user(user_id: int) -> dict:
    """Look a user up by id."""
    return {"id": user_id}
'''


@pytest.fixture(scope="module")
def kernel(kernel_env: None) -> Iterator[tuple[Any, Any]]:
    """A kernel for this interpreter and checkout (own ``python3`` kernelspec), set up."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=60)
    try:
        assert execute(kc, SETUP)["status"] == "ok"
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def execute(kc: Any, code: str, timeout: float = 30) -> dict[str, Any]:
    # stop_on_error=False: see test_interrupt_stops_a_busy_loop_within_a_second.
    msg_id = kc.execute(code, stop_on_error=False)
    return reply_to(kc, msg_id, timeout)


def reply_to(kc: Any, msg_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        reply = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]


def complete(kc: Any, code: str) -> dict[str, Any]:
    return reply_to(kc, kc.complete(code, len(code)), 10)


def inspect_at(kc: Any, code: str, word: str) -> dict[str, Any]:
    return reply_to(kc, kc.inspect(code, code.index(word) + 1), 10)


def test_completion_offers_tools_after_codemode_dot(kernel: tuple[Any, Any]) -> None:
    _, kc = kernel
    code = "%%codemode\nconst r = await codemode."
    reply = complete(kc, code)
    assert reply["status"] == "ok"
    assert reply["matches"] == ["add", "fetch_user"]
    assert reply["cursor_start"] == reply["cursor_end"] == len(code)
    partial = "%%codemode\nawait codemode.fe"
    reply = complete(kc, partial)
    assert reply["matches"] == ["fetch_user"] and reply["cursor_start"] == len(partial) - 2
    types = {c["text"]: c["type"] for c in reply["metadata"]["_jupyter_types_experimental"]}
    assert types == {"fetch_user": "function"}


def test_completion_of_a_capability_namespace(kernel: tuple[Any, Any]) -> None:
    _, kc = kernel
    assert "fs" not in complete(kc, "%%codemode\nawait codemode.")["matches"]
    assert execute(kc, "%codemode_allow fs {data_dir}")["status"] == "ok"
    try:
        assert "fs" in complete(kc, "%%codemode\nawait codemode.")["matches"]
        members = complete(kc, "%%codemode\nawait codemode.fs.")["matches"]
        assert {"read", "write", "list", "exists"} <= set(members)
        assert complete(kc, "%%codemode --tools add\nawait codemode.")["matches"] == ["add"]
    finally:
        execute(kc, "%codemode_allow --clear")


def test_python_cells_complete_as_usual(kernel: tuple[Any, Any]) -> None:
    _, kc = kernel
    assert "fetch_user" in complete(kc, "fetch_")["matches"]


def test_inspection_shows_the_stub_and_docstring(kernel: tuple[Any, Any]) -> None:
    _, kc = kernel
    code = "%%codemode\nconst u = await codemode.fetch_user({user_id: 1});"
    reply = inspect_at(kc, code, "fetch_user")
    assert reply["status"] == "ok" and reply["found"] is True
    text = reply["data"]["text/plain"]
    assert "function fetch_user(args: { user_id: number }): Promise<" in text
    assert "Look a user up by id." in text
    whole = inspect_at(kc, "%%codemode\nawait codemode.add({a: 1, b: 2})", "codemode")
    assert whole["found"] is True and "declare namespace codemode" in whole["data"]["text/plain"]
    # A Python cell inspects Python objects as usual.
    python = inspect_at(kc, "add(1, 2)", "add")
    assert python["found"] is True and "Signature" in python["data"]["text/plain"]


def test_interrupt_stops_a_busy_loop_within_a_second(kernel: tuple[Any, Any]) -> None:
    km, kc = kernel
    # Without stop_on_error=False, ipykernel aborts the requests that reach it while it handles
    # this cell's error (a window a loaded machine stretches): the next cell would come back
    # "aborted" without having run.
    msg_id = kc.execute("%%codemode --timeout 60\nwhile (true) {}", stop_on_error=False)
    time.sleep(1.0)
    started = time.monotonic()
    km.interrupt_kernel()
    reply = reply_to(kc, msg_id, 10)
    assert time.monotonic() - started < 3
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    assert execute(kc, "%%codemode\nreturn await codemode.add({a: 2, b: 3})")["status"] == "ok"
    check = execute(kc, "import codemode_jupyter\nassert codemode_jupyter.last_run().result == 5")
    assert check["status"] == "ok"
