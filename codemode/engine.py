"""The engine thread: the one place where V8 runtimes are created, run, stopped and closed.

jsrun runtimes are bound to the thread that created them (touching one from elsewhere panics),
two different startup snapshots alive together crash, and closing runtimes carelessly at
interpreter exit can segfault. So one daemon thread per process owns an asyncio loop, one
snapshot holding the harness, and a small pool of runtimes prepared ahead of time (each is used
for exactly one run, then closed). Everything else talks to it through thread-safe calls.

A live jsrun runtime keeps its own thread busy polling (about one core each) whenever it is not
inside a call into the host. So a prepared runtime parks inside one: its evaluation starts at
once (isolate start-up and harness sealing happen off any run's path), then blocks in a host
function until a run hands it a job, which it runs within that same evaluation. Parked runtimes
cost memory, not CPU; they are released after a linger time without runs.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import gc
import importlib.resources
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from jsrun import Runtime, RuntimeConfig, SnapshotBuilder

from codemode import threadstate

T = TypeVar("T")

BridgeHandler = Callable[..., Any]


def harness_source() -> str:
    """The JavaScript harness, shipped as a real ``.js`` file inside the package."""
    return importlib.resources.files("codemode").joinpath("harness.js").read_text("utf-8")


class Slot:
    """Per-runtime indirection for the bridges: bound once when the runtime is prepared, pointed
    at the run that leases it. Lets runtimes be prepared before anyone knows what they will run.
    ``gate``/``job`` hand a parked runtime its program ("" tells it to quit); ``in_park`` says
    its isolate thread is inside the park call (waiting at the gate, or leaving it). ``tid`` and
    ``pthread`` are the isolate thread's native and POSIX ids, learnt on its first call into the
    host (the first reads its state in /proc, the second its CPU clock), and ``tstate`` the
    Python thread state pinned for it then (see :mod:`codemode.threadstate`)."""

    __slots__ = ("run", "gate", "job", "in_park", "tid", "pthread", "tstate", "stop")

    def __init__(self) -> None:
        self.run: Any = None
        # Set by the run leasing the runtime: stops it (engine thread), used at shutdown.
        self.stop: Callable[[], None] | None = None
        self.gate = threading.Event()
        self.job = ""
        self.in_park = False
        self.tid = 0
        self.pthread = 0
        self.tstate = 0


class Prepared:
    """A fresh runtime with the bridges bound, waiting for its one run. ``parked`` is the
    evaluation it is parked in (None: not parked, the run evaluates its own script)."""

    __slots__ = ("runtime", "slot", "heap", "expiry", "parked")

    def __init__(self, runtime: Runtime, slot: Slot, heap: int) -> None:
        self.runtime = runtime
        self.slot = slot
        self.heap = heap
        self.expiry: asyncio.TimerHandle | None = None
        self.parked: asyncio.Future[Any] | None = None

    def hand(self, job: str) -> None:
        """Give a parked runtime its job ("": quit)."""
        self.slot.job = job
        self.slot.gate.set()


def _bind_bridges(runtime: Runtime, slot: Slot) -> None:
    """The only function JavaScript can reach: one sync bridge, ``__cm_host(op, a, b)``, that
    answers through the run the slot points at (and refuses once that run is being stopped, see
    ``RunState.stopping``). One binding, because each costs a round trip to the isolate thread
    while the runtime is being prepared; sync, because a jsrun runtime awaiting an async host
    call keeps a core busy polling (default calls are started here and awaited by blocking in
    ``wait``)."""

    def cm_host(op: str, a: Any, b: Any) -> Any:
        if not slot.tid:
            slot.tid = threading.get_native_id()
            slot.pthread = threading.get_ident()
            slot.tstate = threadstate.pin()
        if op == "peek":
            # Before rehearsing: a run that took the runtime early has handed its job over.
            return slot.job if slot.gate.is_set() else None
        if op == "park":
            slot.in_park = True
            slot.gate.wait()
            job = slot.job
            slot.in_park = False  # last statement before return (see in_sync below)
            return job
        run = slot.run
        if run is None:
            return _NO_RUN_ANSWERS.get(op)
        # ``in_sync`` counts the isolate thread in here. Its decrement must stay the very last
        # statement before ``return``: no thread switch can happen between the two, so once
        # the engine sees it at zero, the isolate thread never needs the GIL for this call
        # again (see RunState.silent).
        run.in_sync += 1
        try:
            if op == "start":
                answer = run.start(a, b)
            elif op == "wait":
                answer = run.wait(a)
            elif op == "call":
                answer = run.call_sync(a, b)
            elif op == "log":
                answer = run.log(a, b)
            else:
                answer = None
                if op == "done":
                    run.finish(a)
        finally:
            run.last_bridge = time.perf_counter()
            run.in_sync -= 1
        return answer

    runtime.bind_function("__cm_host", cm_host)


# When the engine first looks for a closed isolate thread's exit, and at most how long apart.
_REAP_FIRST_S = 0.05
_REAP_MAX_S = 2.0
# Where deleting a thread state takes a native thread (CPython 3.12+, see threadstate), the
# engine waits for it with the GIL held: about 40 us on an idle machine, about 1 ms while runs
# keep both cores busy. So it deletes them once no run has started for this long...
_REAP_QUIET_S = 0.2
# ... or when this many are waiting (a few kilobytes each), and at most this many at a time.
_REAP_BACKLOG = 256
_REAP_BATCH = 16

NO_RUN = '{"err":{"message":"no run is active","type":"RuntimeError"}}'
# What each operation answers when no run is using the runtime (-1 and {"stop"}: stop).
_NO_RUN_ANSWERS: dict[str, Any] = {"call": NO_RUN, "start": -1, "wait": '{"stop":1}', "log": 0}


class Engine:
    """Process-wide owner of the engine thread. Use :func:`get_engine`."""

    def __init__(self, pool_size: int = 2, linger_s: float = 30.0, max_live: int = 8) -> None:
        self.pool_size = pool_size
        self.linger_s = linger_s
        # Runs holding a runtime at once; more wait their turn. Each running jsrun runtime keeps
        # a core busy, so hundreds at once would starve each other (and everything else).
        self.max_live = max_live
        self._live_slots: asyncio.Semaphore | None = None
        self._pools: dict[int, deque[Prepared]] = {}
        self._preparing: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._watchers: set[asyncio.Future[Any]] = set()
        self._snapshot: bytes | None = None
        self._closing = False
        # Set in a forked child: this engine's threads stayed in the parent.
        self.orphaned = False
        self._live: dict[Runtime, Slot] = {}
        # Thread states pinned for isolate threads that are closing: (native id, address),
        # deleted once the thread has exited.
        self._exiting: list[tuple[int, int]] = []
        self._reaper: asyncio.TimerHandle | None = None
        self._reap_delay = _REAP_FIRST_S
        self._last_lease = 0.0
        # Runtimes a run holds (until disposed of, or for ever if a host function keeps its
        # thread): at shutdown they may still run JavaScript, or be stuck in Python, which
        # close() would wait for for ever (GIL held); they are let go instead.
        self._leased: dict[Runtime, Slot] = {}
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._main, args=(ready,), name="codemode-engine", daemon=True
        )
        self._thread.start()
        ready.wait()

    # ---------------------------------------------------------------- thread plumbing

    def _main(self, ready: threading.Event) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        try:
            self.loop.run_forever()
        finally:
            self._close_all()
            self.loop.close()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def on_engine_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule a coroutine on the engine loop from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await a coroutine on the engine loop from any event loop (or directly if on it)."""
        if self.on_engine_thread():
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn`` on the engine thread soon; safe from any thread."""
        if self.on_engine_thread():
            self.loop.call_soon(fn, *args)
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    # ---------------------------------------------------------------- runtimes

    def _snapshot_bytes(self) -> bytes:
        if self._snapshot is None:
            builder = SnapshotBuilder()
            builder.execute_script("codemode-harness.js", harness_source())
            builder.execute_script("codemode-warm.js", "__codemode_warm()")
            self._snapshot = builder.build()
        return self._snapshot

    def _construct(self, heap: int) -> Prepared:
        runtime = Runtime(RuntimeConfig(max_heap_size=heap, snapshot=self._snapshot_bytes()))
        slot = Slot()
        _bind_bridges(runtime, slot)
        self._live[runtime] = slot
        return Prepared(runtime, slot, heap)

    async def acquire_slot(self) -> None:
        """Wait for a turn to run (engine thread); give it back with :meth:`release_slot`."""
        if self._live_slots is None:
            self._live_slots = asyncio.Semaphore(self.max_live)
        await self._live_slots.acquire()

    def release_slot(self) -> None:
        if self._live_slots is not None:
            self._live_slots.release()

    async def lease(self, heap: int) -> Prepared:
        """Take a runtime for one run (engine thread only): a prepared one when there is one."""
        self._last_lease = time.monotonic()
        pool = self._pools.setdefault(heap, deque())
        preparing = self._preparing.get(heap)
        if not pool and preparing is not None:
            # One is on its way and started earlier than a new one would: wait for it.
            await asyncio.shield(preparing)
        if not pool:
            # The run's own evaluation prepares it (the harness seals itself on first use).
            prepared = self._construct(heap)
            self._leased[prepared.runtime] = prepared.slot
            return prepared
        prepared = pool.popleft()
        self._leased[prepared.runtime] = prepared.slot
        if prepared.expiry is not None:
            prepared.expiry.cancel()
            prepared.expiry = None  # no cycle through the timer: runtimes must die here
        return prepared

    def _schedule_refill(self, heap: int) -> None:
        if heap in self._preparing or self._closing or self.pool_size <= 0:
            return
        if len(self._pools.setdefault(heap, deque())) >= self.pool_size:
            return
        self._preparing[heap] = self.loop.create_task(self._prepare(heap))

    async def _prepare(self, heap: int) -> None:
        """Get one runtime ready: its isolate started and the harness sealed, off any run."""
        try:
            # Let a finished run's result reach its caller before the constructor takes the loop.
            await asyncio.sleep(0.001)
            if self._closing:
                return
            prepared = self._construct(heap)
            prepared.parked = asyncio.ensure_future(
                prepared.runtime.eval_async("__codemode_serve()")
            )
            prepared.expiry = self.loop.call_later(self.linger_s, self._expire, prepared)
            self._pools.setdefault(heap, deque()).append(prepared)
        finally:
            self._preparing.pop(heap, None)
        self._schedule_refill(heap)

    def _expire(self, prepared: Prepared) -> None:
        """Release a prepared runtime nobody used within the linger time."""
        prepared.expiry = None
        pool = self._pools.get(prepared.heap)
        if pool is not None and prepared in pool:
            pool.remove(prepared)
            self._release(prepared)

    def _release(self, prepared: Prepared) -> asyncio.Future[Any] | None:
        """Unpark (with an empty job) and close once its evaluation has returned."""
        if prepared.expiry is not None:
            prepared.expiry.cancel()
            prepared.expiry = None
        parked = prepared.parked
        if parked is None:
            self._close_runtime(prepared.runtime)
            return None
        runtime = prepared.runtime

        def close(fut: asyncio.Future[Any]) -> None:
            if not fut.cancelled():
                fut.exception()  # retrieved: a failed release is not worth a warning
            self._close_runtime(runtime)

        parked.add_done_callback(close)
        prepared.hand("")
        return parked

    def prewarm(self, heap: int) -> None:
        """Ask the engine to get runtimes of this heap size ready ahead of the first run."""
        self.call_soon(self._schedule_refill, heap)

    def dispose(self, prepared: Prepared) -> None:
        """Close a used runtime soon, off the run's critical path (engine thread only)."""
        runtime = prepared.runtime
        # Cut every path from the run's leftovers (exceptions, tracebacks, tasks, which may sit
        # in reference cycles collected on any thread) to the runtime, which may only be freed
        # on this thread.
        prepared.slot.run = None
        prepared.parked = None
        prepared.runtime = None  # type: ignore[assignment]
        self._leased.pop(runtime, None)
        prepared.slot.stop = None
        self.loop.call_soon(self._close_runtime, runtime)
        self._schedule_refill(prepared.heap)

    def abandon(self) -> None:
        """Stop waiting at shutdown for the current retirement (engine thread): a host function
        keeps its runtime's thread. It keeps watching; its runtime, still leased, is only let
        go at shutdown (dropping it never waits for its thread)."""
        task = asyncio.current_task()
        if task is not None and task in self._tasks:
            self._tasks.discard(task)
            self._watchers.add(task)
            task.add_done_callback(self._watchers.discard)

    def _close_runtime(self, runtime: Runtime) -> None:
        slot = self._live.pop(runtime, None)
        try:
            runtime.close()
        except Exception:  # noqa: BLE001 - a broken runtime still has to go
            pass
        if slot is not None and slot.tstate:
            self._exiting.append((slot.tid, slot.tstate))
            slot.tstate = 0
            self._reap_delay = _REAP_FIRST_S
            if self._reaper is None and not self.loop.is_closed():
                self._reaper = self.loop.call_later(self._reap_delay, self._reap)

    def _reap(self) -> None:
        """Delete the thread states of isolate threads that have exited; look again later
        (less and less often) for those still winding down, or kept by a host function."""
        self._reaper = None
        budget = len(self._exiting)
        if threadstate.DELETE_NEEDS_A_THREAD:
            if (
                len(self._exiting) < _REAP_BACKLOG
                and time.monotonic() - self._last_lease < _REAP_QUIET_S
            ):
                if not self.loop.is_closed():
                    self._reaper = self.loop.call_later(_REAP_QUIET_S, self._reap)
                return
            budget = _REAP_BATCH
        still: list[tuple[int, int]] = []
        for tid, tstate in self._exiting:
            if budget > 0 and threadstate.thread_exited(tid):
                threadstate.delete(tstate)
                budget -= 1
            else:
                still.append((tid, tstate))
        self._exiting = still
        if still and not self.loop.is_closed():
            if budget == 0:
                # More to delete: soon, one batch at a time (each holds the GIL meanwhile).
                self._reaper = self.loop.call_later(0.01, self._reap)
                return
            self._reap_delay = min(self._reap_delay * 2, _REAP_MAX_S)
            self._reaper = self.loop.call_later(self._reap_delay, self._reap)

    def track(self, task: asyncio.Future[Any]) -> None:
        """Keep a background task (a runtime being retired) to be awaited at shutdown."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _shutdown(self) -> None:
        """Stop every run still going, unpark and close every runtime on this thread, then
        stop the loop."""
        for slot in list(self._leased.values()):
            if slot.stop is not None:
                slot.stop()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=3)
        for watcher in list(self._watchers):
            watcher.cancel()
        await asyncio.sleep(0)
        self._closing = True
        for task in list(self._preparing.values()):
            task.cancel()
        waiting = [
            fut for pool in self._pools.values() for fut in map(self._release, list(pool)) if fut
        ]
        for pool in self._pools.values():
            pool.clear()
        if waiting:
            await asyncio.wait(waiting, timeout=2)
        self._close_all()
        self.loop.stop()

    def _close_all(self) -> None:
        for pool in self._pools.values():
            for prepared in pool:
                prepared.slot.gate.set()
                if prepared.expiry is not None:
                    prepared.expiry.cancel()
                    prepared.expiry = None
            pool.clear()
        for runtime in [runtime for runtime in self._live if runtime not in self._leased]:
            self._close_runtime(runtime)
        self._live.clear()
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        self._leased.clear()
        # Runtime objects may only be freed on this thread: collect any cycle holding one now.
        gc.collect()

    def shutdown(self) -> None:
        """Close every runtime on the engine thread, then stop it. Called at exit."""
        if self.orphaned or self._closing or self.loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
        except RuntimeError:
            return
        self._thread.join(timeout=5)
        # Let V8's worker threads wind down before the interpreter tears down.
        time.sleep(0.05)


_engine: Engine | None = None
_engine_lock = threading.Lock()
# Engines inherited through os.fork(), kept untouched for ever (see _after_fork_in_child).
_inherited: list[Engine] = []


def get_engine() -> Engine:
    """The process's engine, started on first use."""
    global _engine
    if _inherited:
        raise RuntimeError(
            "this process was forked from one whose codemode engine had started, and V8 does "
            "not survive os.fork() (its threads stay in the parent): start worker processes "
            "with the 'spawn' or 'forkserver' method, e.g. multiprocessing.get_context('spawn')"
        )
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = Engine()
                atexit.register(_engine.shutdown)
    return _engine


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads: neither the engine's, nor any isolate's,
    nor V8's own (a runtime created here crashes). Runs then fail with a clear error instead of
    waiting for ever on a thread that is not there. The parent's engine stays referenced and
    untouched: freeing its runtimes would wait for those threads too, and its exit handler
    does nothing here."""
    global _engine, _engine_lock
    _engine_lock = threading.Lock()
    if _engine is not None:
        _engine.orphaned = True
        _inherited.append(_engine)
        _engine = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
