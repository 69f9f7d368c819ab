"""Side-by-side measurements: our engine, py-codemode 0.1.1 and raw jsrun, in one run.

Run by hand (not a test):  python benchmarks/bench.py [figure ...]

Each system runs in its own subprocess (py-codemode in its own virtualenv, created on first use
under benchmarks/.venv-pycm), so no two V8 snapshot configurations share a process and nothing
one system loads warms up another. Every figure prints median, min and max over several
repetitions and the ratio against the reference.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PYCM_VENV = HERE / ".venv-pycm"
REPEATS = 7


# ---------------------------------------------------------------- workers (run in subprocesses)


def _timed(samples: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
    }


async def _repeat(fn: Callable[[], Awaitable[float]], n: int = REPEATS) -> dict[str, float]:
    return _timed([await fn() for _ in range(n)])


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def worker_ours(figure: str) -> dict[str, Any]:
    from codemode import Executor, inline

    executor = Executor(timeout_s=120)
    await executor.execute("1")

    def add(a: int, b: int) -> int:
        return a + b

    async def add_async(a: int, b: int) -> int:
        return a + b

    @inline
    def add_inline(a: int, b: int) -> int:
        return a + b

    def sleep_sync(s: float) -> float:
        time.sleep(s)
        return s

    async def sleep_async(s: float) -> float:
        await asyncio.sleep(s)
        return s

    if figure == "trivial":

        async def one_prepared() -> float:
            await asyncio.sleep(0.05)  # the engine prepares runtimes while idle
            t = time.perf_counter()
            await executor.execute("() => 1")
            return time.perf_counter() - t

        async def hundred() -> float:
            t = time.perf_counter()
            for _ in range(100):
                await executor.execute("() => 1")
            return (time.perf_counter() - t) / 100

        return {
            "one (prepared)": await _repeat(one_prepared, 40),
            "100 in a row": await _repeat(hundred),
        }
    if figure == "calls":
        out = {}
        for label, fn in [("sync default", add), ("async", add_async), ("sync inline", add_inline)]:
            code = "for (let i = 0; i < 10000; i++) await codemode.f({a: i, b: 1}); return 1"

            async def run(fn: Any = fn, code: str = code) -> float:
                t = time.perf_counter()
                outcome = await executor.execute(code, {"f": fn})
                assert outcome.ok, outcome
                return (time.perf_counter() - t) / 10000

            out[label] = await _repeat(run, 5)
        return out
    if figure == "concurrency":
        out = {}
        for label, fn in [("async sleep", sleep_async), ("sync sleep", sleep_sync)]:
            code = "await Promise.all(Array.from({length: 100}, () => codemode.f({s: 0.1})))"

            async def run(fn: Any = fn, code: str = code) -> float:
                t = time.perf_counter()
                outcome = await executor.execute(code, {"f": fn})
                assert outcome.ok, outcome
                return time.perf_counter() - t

            out[label] = await _repeat(run, 5)
        return out
    if figure == "memory":
        start = _rss_mb()
        for _ in range(1000):
            await executor.execute("() => ({a: [1, 2, 3]})")
        after_1000 = _rss_mb()
        await asyncio.gather(
            *(
                executor.execute("await codemode.f({s: 0.2}); return 1", {"f": sleep_async})
                for _ in range(50)
            )
        )
        return {
            "rss_mb_start": start,
            "rss_mb_after_1000": after_1000,
            "rss_mb_after_50_concurrent": _rss_mb(),
        }
    raise SystemExit(f"unknown figure {figure}")


async def worker_pycm(figure: str) -> dict[str, Any]:
    from codemode import Executor  # py-codemode's, in its own virtualenv

    executor = Executor(timeout_s=120)

    async def add(*, a: int, b: int) -> int:
        return a + b

    def add_sync(*, a: int, b: int) -> int:
        return a + b

    def sleep_sync(*, s: float) -> float:
        time.sleep(s)
        return s

    async def sleep_async(*, s: float) -> float:
        await asyncio.sleep(s)
        return s

    if figure == "trivial":

        async def one() -> float:
            await asyncio.sleep(0.05)
            t = time.perf_counter()
            await executor.execute("async () => 1")
            return time.perf_counter() - t

        async def hundred() -> float:
            t = time.perf_counter()
            for _ in range(100):
                await executor.execute("async () => 1")
            return (time.perf_counter() - t) / 100

        return {
            "one (prepared)": await _repeat(one, 40),
            "100 in a row": await _repeat(hundred),
        }
    if figure == "calls":
        out = {}
        for label, fn in [("sync default", add_sync), ("async", add), ("sync inline", add_sync)]:
            code = (
                "async () => { for (let i = 0; i < 10000; i++) "
                "await codemode.f({a: i, b: 1}); return 1 }"
            )

            async def run(fn: Any = fn, code: str = code) -> float:
                t = time.perf_counter()
                await executor.execute(code, {"f": fn})
                return (time.perf_counter() - t) / 10000

            out[label] = await _repeat(run, 3)
        return out
    if figure == "concurrency":
        out = {}
        for label, fn in [("async sleep", sleep_async), ("sync sleep", sleep_sync)]:
            code = (
                "async () => await Promise.all("
                "Array.from({length: 100}, () => codemode.f({s: 0.1})))"
            )

            async def run(fn: Any = fn, code: str = code) -> float:
                t = time.perf_counter()
                await executor.execute(code, {"f": fn})
                return time.perf_counter() - t

            out[label] = await _repeat(run, 3)
        return out
    if figure == "memory":
        start = _rss_mb()
        for _ in range(1000):
            await executor.execute("async () => ({a: [1, 2, 3]})")
        return {"rss_mb_start": start, "rss_mb_after_1000": _rss_mb()}
    raise SystemExit(f"unknown figure {figure}")


async def worker_raw_snapshot(figure: str) -> dict[str, Any]:
    """Raw jsrun from its own startup snapshot (ours adds the harness to it), nothing else: the
    floor under any engine that gives each run a fresh runtime. A process of its own: runtimes
    with and without a snapshot alive in one process crash jsrun."""
    from jsrun import Runtime, RuntimeConfig, SnapshotBuilder

    snapshot = SnapshotBuilder().build()

    async def hundred() -> float:
        t = time.perf_counter()
        for _ in range(100):
            runtime = Runtime(RuntimeConfig(max_heap_size=16 << 20, snapshot=snapshot))
            runtime.eval("1+1")
            runtime.close()
        return (time.perf_counter() - t) / 100

    return {"100 in a row": await _repeat(hundred)}


async def worker_raw(figure: str) -> dict[str, Any]:
    from jsrun import Runtime, RuntimeConfig

    if figure == "trivial":

        async def one() -> float:
            await asyncio.sleep(0.05)
            t = time.perf_counter()
            runtime = Runtime(RuntimeConfig(max_heap_size=16 << 20))
            runtime.eval("1+1")
            runtime.close()
            return time.perf_counter() - t

        async def hundred() -> float:
            t = time.perf_counter()
            for _ in range(100):
                runtime = Runtime(RuntimeConfig(max_heap_size=16 << 20))
                runtime.eval("1+1")
                runtime.close()
            return (time.perf_counter() - t) / 100

        live = Runtime(RuntimeConfig(max_heap_size=16 << 20))

        async def on_live(timeout: float | None) -> float:
            # What one evaluation of a runtime made already costs, from the thread that owns
            # it: the floor under any prepared run. With a time limit, jsrun's evaluation ends
            # by joining its watchdog thread, which sleeps in 10 ms steps.
            await asyncio.sleep(0.05)
            t = time.perf_counter()
            await live.eval_async("1+1", timeout=timeout)
            return time.perf_counter() - t

        return {
            "one (prepared)": await _repeat(one, 40),
            "100 in a row": await _repeat(hundred),
            "eval_async, made runtime": await _repeat(lambda: on_live(None), 40),
            "... with a time limit": await _repeat(lambda: on_live(60), 40),
        }
    if figure == "calls":
        runtime = Runtime(RuntimeConfig(max_heap_size=64 << 20))

        def add(a: int, b: int) -> int:
            return a + b

        async def add_async(a: int, b: int) -> int:
            return a + b

        runtime.bind_function("fs", add)
        runtime.bind_function("fa", add_async)
        out = {}
        for label, name in [("sync bridge", "fs"), ("async bridge", "fa")]:
            code = (
                f"(async () => {{ for (let i = 0; i < 10000; i++) await {name}(i, 1); "
                "return 1 })()"
            )

            async def run(code: str = code) -> float:
                t = time.perf_counter()
                await runtime.eval_async(code)
                return (time.perf_counter() - t) / 10000

            out[label] = await _repeat(run, 5)
        runtime.close()
        return out
    raise SystemExit(f"unknown figure {figure}")


# ---------------------------------------------------------------- orchestration


def _pycm_python() -> Path:
    python = PYCM_VENV / "bin" / "python"
    if not python.exists():
        print("creating py-codemode virtualenv in", PYCM_VENV, file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(PYCM_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "py-codemode[mcp]==0.1.1"], check=True
        )
    return python


def _run_worker(python: str | Path, system: str, figure: str) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--worker", system, figure],
        capture_output=True,
        text=True,
        cwd=str(HERE),
        env=env,
        timeout=1800,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(value: Any, unit: str) -> str:
    if isinstance(value, dict) and "median" in value:
        scale = {"ms": 1e3, "us": 1e6, "s": 1.0}[unit]
        return (
            f"{value['median'] * scale:9.3f} {unit} (min {value['min'] * scale:.3f}, "
            f"max {value['max'] * scale:.3f})"
        )
    return str(value)


FIGURES = {
    "trivial": ("ms", "1. trivial run `() => 1`"),
    "calls": ("us", "2. per host call, 10,000 sequential calls"),
    "concurrency": ("s", "3. Promise.all of 100 calls sleeping 100 ms"),
    "kernel": ("", "4. a %%codemode cell end to end in a real kernel (bench_kernel.py)"),
    "mcp": ("", "5. MCP execute round trip over loopback (bench_mcp.py)"),
    "description": ("", "6. bytes an agent reads to learn 20 tools (bench_description.py)"),
    "memory": ("MB", "7. peak RSS"),
}
# Figures measured by their own module (each starts its own kernel or servers).
MODULES = {"kernel": "bench_kernel", "mcp": "bench_mcp", "description": "bench_description"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("figures", nargs="*", default=list(FIGURES))
    parser.add_argument("--worker", nargs=2, metavar=("SYSTEM", "FIGURE"))
    args = parser.parse_args()
    if args.worker:
        system, figure = args.worker
        fn = {
            "ours": worker_ours,
            "pycm": worker_pycm,
            "raw": worker_raw,
            "raw-snapshot": worker_raw_snapshot,
        }[system]
        print(json.dumps(asyncio.run(fn(figure))), flush=True)
        # The figures are out: a crash while the interpreter tears down (raw jsrun runtimes
        # closed at exit sometimes segfault) must not lose them.
        os._exit(0)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    pycm = _pycm_python()
    for figure in args.figures:
        unit, title = FIGURES[figure]
        print(f"\n## {title}", flush=True)
        if figure in MODULES:
            sys.path.insert(0, str(HERE))
            importlib.import_module(MODULES[figure]).run(pycm)
            continue
        results = {"ours": _run_worker(sys.executable, "ours", figure)}
        results["py-codemode"] = _run_worker(pycm, "pycm", figure)
        if figure in ("trivial", "calls"):
            results["raw jsrun"] = _run_worker(sys.executable, "raw", figure)
        if figure == "trivial":
            results["raw snapshot"] = _run_worker(sys.executable, "raw-snapshot", figure)
        for system, data in results.items():
            if "error" in data:
                print(f"  {system:12s} failed: {data['error']}")
                continue
            for label, value in data.items():
                line = f"  {system:12s} {label:28s} {_fmt(value, unit)}"
                ref = results.get("py-codemode", {}).get(label)
                if system == "ours" and isinstance(ref, dict) and "median" in ref:
                    line += f"   ratio vs py-codemode {value['median'] / ref['median']:.2f}x"
                print(line)


if __name__ == "__main__":
    main()
