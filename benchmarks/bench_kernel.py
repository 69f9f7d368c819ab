"""Figure 4: a ``%%codemode`` cell end to end in a real kernel, widgets on.

One kernel (this interpreter) runs the same program two ways, each timed from the client's
execute request to the kernel going idle: as a ``%%codemode`` cell (widgets, trace, console,
record), and as a plain Python cell awaiting the engine alone (``Executor.execute``). Also
counted: the widget (comm) messages each cell sends, which must stay bounded however many calls
the program makes.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPEATS = 5
SETUP = """
%load_ext codemode
from codemode import Executor

def add(a: int, b: int) -> int:
    return a + b

_engine_alone = Executor(timeout_s=300)
"""
PROGRAMS = {
    "1 call": "return await codemode.add({a: 1, b: 2});",
    "10,000 calls": (
        "let s = 0;\nfor (let i = 0; i < 10000; i++) s += await codemode.add({a: i, b: 1});\n"
        "return s;"
    ),
}


def _kernel() -> tuple[Any, Any]:
    from jupyter_client.manager import start_new_kernel

    root = Path(tempfile.mkdtemp())
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "bench", "language": "python"})
    )
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        p for p in (str(root), os.environ.get("JUPYTER_PATH", "")) if p
    )
    return start_new_kernel(kernel_name="python3", startup_timeout=60)


def _execute(kc: Any, code: str) -> tuple[float, int]:
    """Seconds from request to idle, and the comm messages the cell sent."""
    start = time.perf_counter()
    msg_id = kc.execute(code)
    comm = 0
    while True:
        msg = kc.get_iopub_msg(timeout=300)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] in ("comm_open", "comm_msg"):
            comm += 1
        elif msg["msg_type"] == "error":
            raise RuntimeError("\n".join(msg["content"]["traceback"]))
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return time.perf_counter() - start, comm


def _stats(samples: list[float]) -> str:
    return (
        f"median {statistics.median(samples) * 1e3:8.1f} ms "
        f"(min {min(samples) * 1e3:.1f}, max {max(samples) * 1e3:.1f})"
    )


def run(pycm_python: Path | None = None) -> None:
    km, kc = _kernel()
    try:
        _execute(kc, SETUP)
        for label, program in PROGRAMS.items():
            alone_cell = f"_ = await _engine_alone.execute({program!r}, {{'add': add}})"
            magic_cell = f"%%codemode\n{program}"
            _execute(kc, alone_cell)  # warm both paths once
            _execute(kc, magic_cell)
            alone, magic, messages = [], [], []
            for _ in range(REPEATS):
                alone.append(_execute(kc, alone_cell)[0])
                seconds, comm = _execute(kc, magic_cell)
                magic.append(seconds)
                messages.append(comm)
            ratio = statistics.median(magic) / statistics.median(alone)
            print(f"  {label}")
            print(f"    engine alone     {_stats(alone)}")
            print(
                f"    %%codemode cell  {_stats(magic)}   ratio vs engine alone {ratio:.2f}x, "
                f"widget messages {min(messages)}-{max(messages)}"
            )
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
