"""Run one program for a cell: start it, feed the presenter while it runs, stop it on interrupt.

The magic's thread (the kernel's main thread) never blocks for long: it waits on the run's
future in ``flush_interval`` slices and flushes a batched delta to the presenter between waits.
So widget messages are sent from the main thread, with the cell's parent header, and a
KeyboardInterrupt (the kernel's interrupt is SIGINT to the main thread) lands in the wait,
where cancelling the future makes the engine terminate the isolate, ``while(true){}`` included.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any

from codemode.events import RunCompleted, RunFailed
from codemode.executor import Executor
from codemode_jupyter import capture
from codemode_jupyter._loop import background_loop
from codemode_jupyter.presenters import Presenter
from codemode_jupyter.record import Recorder, RunRecord
from codemode_jupyter.toolset import Toolset

FLUSH_INTERVAL = 0.1

_last: RunRecord | None = None


def last_run() -> RunRecord | None:
    """The most recent ``%%codemode`` run of this process (complete record), if any."""
    return _last


def run_program(
    code: str,
    toolset: Toolset,
    presenter: Presenter,
    *,
    timeout_s: float,
    max_heap_bytes: int,
    inline_sync: bool = False,
    cell: int | None = None,
    widget_rows: int = 200,
    widget_logs: int = 1000,
    flush_interval: float = FLUSH_INTERVAL,
    executor_factory: Callable[..., Executor] = Executor,
) -> RunRecord:
    """Run ``code`` with ``toolset`` and return its complete record (raises KeyboardInterrupt
    after stopping the program if the user interrupts)."""
    global _last
    filename = "codemode.js" if cell is None else f"cell-{cell}.js"
    executor = executor_factory(
        timeout_s=timeout_s,
        max_heap_bytes=max_heap_bytes,
        capabilities=toolset.capabilities,
        inline_sync=inline_sync,
        filename=filename,
    )
    record = RunRecord(code=code, stubs=toolset.stubs(), tools=toolset.names(), cell=cell)
    recorder = Recorder(record, widget_rows=widget_rows, widget_logs=widget_logs)
    _last = record
    presenter.start(record)
    with capture.routing():
        future = _start(executor, code, toolset, recorder)
        try:
            outcome = _wait(future, recorder, presenter, flush_interval)
        except KeyboardInterrupt:
            future.cancel()  # the engine terminates the isolate and abandons host calls
            recorder.interrupt()
            presenter.finish(recorder)
            raise
        except BaseException:
            future.cancel()
            raise
    recorder.finish(outcome)
    presenter.finish(recorder)
    return record


def _start(
    executor: Executor, code: str, toolset: Toolset, recorder: Recorder
) -> concurrent.futures.Future[Any]:
    """Submit the run with the recorder bound as print() sink in the context it captures."""
    token = capture.bind(recorder)
    try:
        coro = executor.execute(code, toolset.functions, on_event=recorder.on_event)
        return asyncio.run_coroutine_threadsafe(coro, background_loop())
    finally:
        capture.unbind(token)


def _wait(
    future: concurrent.futures.Future[Any],
    recorder: Recorder,
    presenter: Presenter,
    interval: float,
) -> RunCompleted | RunFailed:
    while True:
        try:
            return future.result(timeout=interval)
        except concurrent.futures.TimeoutError:
            presenter.update(recorder)
