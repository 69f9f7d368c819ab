"""A lasting Python thread state for each jsrun isolate thread.

jsrun calls host functions on its isolate thread through pyo3, which wraps every call in
``PyGILState_Ensure``/``PyGILState_Release``. That thread has no Python thread state of its
own, so each call creates one and deletes it on the way out: about 10 us of the 12 us a
one-number sync bridge call costs here (1 us once the state lasts). The deletion also runs the
``__del__`` of the thread's ``threading.local`` values after the host function has returned,
when the engine may already count the thread as done with Python.

So the first host call on an isolate thread *pins* its state (one more ``PyGILState_Ensure``,
never released on that thread): later calls reuse it and nothing is deleted there. The engine
deletes the state from its own thread once the isolate thread has exited (Linux lists live
threads in ``/proc/self/task``). Where that cannot be known (not Linux), or on interpreters
without these semantics (not CPython, or no GIL), nothing is pinned.
"""

from __future__ import annotations

import ctypes
import os
import sys


def _supported() -> bool:
    if sys.implementation.name != "cpython":
        return False
    gil_enabled = getattr(sys, "_is_gil_enabled", None)
    if gil_enabled is not None and not gil_enabled():
        return False
    return os.path.isdir("/proc/self/task")


SUPPORTED = _supported()

# A handle of our own on the interpreter's C API (``ctypes.pythonapi`` is shared: setting
# argument types there would change them for everyone). Calls through a PyDLL hold the GIL.
_api = ctypes.PyDLL(None) if SUPPORTED else None
if _api is not None:
    _api.PyGILState_Ensure.restype = ctypes.c_int
    _api.PyGILState_Ensure.argtypes = []
    _api.PyGILState_GetThisThreadState.restype = ctypes.c_void_p
    _api.PyGILState_GetThisThreadState.argtypes = []
    _api.PyThreadState_Clear.restype = None
    _api.PyThreadState_Clear.argtypes = [ctypes.c_void_p]
    _api.PyThreadState_Delete.restype = None
    _api.PyThreadState_Delete.argtypes = [ctypes.c_void_p]


def pin() -> int:
    """Keep the calling thread's Python thread state after the current host call returns.
    Call it from inside a host function (the GIL is held), once per thread. Answers the state's
    address, for :func:`delete` once the thread has exited (0: nothing was pinned)."""
    if _api is None:
        return 0
    _api.PyGILState_Ensure()
    return _api.PyGILState_GetThisThreadState() or 0


def thread_exited(tid: int) -> bool:
    """Whether the thread with this native id is gone (its state can then be deleted)."""
    return not os.path.exists(f"/proc/self/task/{tid}")


def delete(address: int) -> None:
    """Delete a pinned thread state whose thread has exited (from any other thread)."""
    if _api is None or not address:
        return
    _api.PyThreadState_Clear(address)
    _api.PyThreadState_Delete(address)
