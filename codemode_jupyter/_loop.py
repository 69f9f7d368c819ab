"""A private asyncio loop on a daemon thread, to drive ``Executor.execute`` from a blocking magic.

Magics are synchronous and the kernel's own loop is busy running the cell, so ``asyncio.run``
is not an option. Driving the coroutine on a loop of our own gives the magic a
``concurrent.futures.Future`` it can wait on in short slices (flushing the widget between waits)
and cancel on KeyboardInterrupt, which stops the JavaScript program.
"""

from __future__ import annotations

import asyncio
import threading

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


def background_loop() -> asyncio.AbstractEventLoop:
    """The process's helper loop, started on first use (daemon thread: never blocks exit)."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(
                target=_serve, args=(loop, ready), name="codemode-jupyter-loop", daemon=True
            )
            thread.start()
            ready.wait()
            _loop = loop
        return _loop
