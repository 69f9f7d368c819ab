"""Daemon worker threads for sync host functions.

``concurrent.futures.ThreadPoolExecutor`` joins its threads when the interpreter exits, so one
tool that never returns (a network call without a timeout) would keep a script, an exported MCP
server or a kernel from ever exiting, long after its run gave up on it at the timeout. These
threads are daemons: a call nobody waits for any more ends with the process.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonPool(Executor):
    """A thread pool (``submit``, usable with ``loop.run_in_executor``) whose threads start
    when needed, up to ``max_workers``, and never hold up interpreter exit."""

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.thread_name_prefix = thread_name_prefix
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # one permit per thread waiting for work
        self._lock = threading.Lock()
        self._threads = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new calls after shutdown")
            self._work.put((future, fn, args, kwargs))
            # An idle thread takes it; otherwise start one, while under the limit.
            if not self._idle.acquire(blocking=False) and self._threads < self.max_workers:
                self._threads += 1
                threading.Thread(
                    target=self._serve,
                    name=f"{self.thread_name_prefix}_{self._threads}",
                    daemon=True,
                ).start()
        return future

    def _serve(self) -> None:
        while True:
            work = self._work.get()
            if work is None:
                return
            future, fn, args, kwargs = work
            del work
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # noqa: BLE001 - the caller gets every failure
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new work and let idle threads end (running calls are not waited for: they
        may never return)."""
        with self._lock:
            self._closed = True
            threads = self._threads
        if cancel_futures:
            while True:
                try:
                    work = self._work.get_nowait()
                except queue.Empty:
                    break
                if work is not None:
                    work[0].cancel()
        for _ in range(threads):
            self._work.put(None)
