"""A lasting Python thread state for each jsrun isolate thread.

jsrun calls host functions on its isolate thread through pyo3, which wraps every call in
``PyGILState_Ensure``/``PyGILState_Release``. That thread has no Python thread state of its
own, so each call creates one and deletes it on the way out: about 10 us of the 12 us a
one-number sync bridge call costs here (1 us once the state lasts). The deletion also runs the
``__del__`` of the thread's ``threading.local`` values after the host function has returned,
when the engine may already count the thread as done with Python.

So the first host call on an isolate thread *pins* its state (one more ``PyGILState_Ensure``,
never released on that thread): later calls reuse it and nothing is deleted there. Once the
isolate thread has exited (Linux lists live threads in ``/proc/self/task``), the engine clears
the state (with the GIL, so ``__del__`` methods run on the engine's thread) and deletes it.
From 3.12 on, ``PyThreadState_Delete`` also unbinds the *calling* thread's own ``PyGILState``
state, which would break the engine thread: there the deletion runs on a native thread started
for it (a thread that never had one loses nothing), which costs little on an idle machine
(about 40 us) but waits for a core, with the GIL held for it, while runs keep them busy (about
1 ms each; the engine defers these to a quiet moment). Before 3.12 the engine thread deletes
the state itself. Where the thread's exit cannot be known (not Linux), or on interpreters
without these semantics (not CPython, or no GIL), nothing is pinned.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading


def _supported() -> bool:
    if sys.implementation.name != "cpython":
        return False
    gil_enabled = getattr(sys, "_is_gil_enabled", None)
    if gil_enabled is not None and not gil_enabled():
        return False
    if hasattr(sys, "gettotalrefcount"):
        # A debug build asserts that only a thread state's own thread deletes it (3.12+).
        return False
    # Our own thread must be listed, or /proc belongs to another PID namespace (a sandbox that
    # did not remount it) and cannot tell when an isolate thread has exited.
    return os.path.isdir(f"/proc/self/task/{threading.get_native_id()}")


def _bind() -> tuple[ctypes.PyDLL | None, int]:
    """A handle of our own on the interpreter's C API and libc (``ctypes.pythonapi`` is shared:
    setting argument types there would change them for everyone). Calls through a PyDLL hold
    the GIL, the thread-creation ones included: the helper thread then deletes the state while
    the GIL is held for it, as code walking the interpreter's thread states expects."""
    if not _supported():
        return None, 0
    try:
        api = ctypes.PyDLL(None)
        api.PyGILState_Ensure.restype = ctypes.c_int
        api.PyGILState_Ensure.argtypes = []
        api.PyGILState_GetThisThreadState.restype = ctypes.c_void_p
        api.PyGILState_GetThisThreadState.argtypes = []
        api.PyThreadState_Clear.restype = None
        api.PyThreadState_Clear.argtypes = [ctypes.c_void_p]
        api.PyThreadState_Delete.restype = None
        api.PyThreadState_Delete.argtypes = [ctypes.c_void_p]
        api.pthread_create.restype = ctypes.c_int
        api.pthread_create.argtypes = [
            ctypes.POINTER(ctypes.c_ulong),
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        api.pthread_join.restype = ctypes.c_int
        api.pthread_join.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
        # ``void PyThreadState_Delete(PyThreadState *)`` started as a thread's entry point:
        # one pointer in, its (absent) result never read.
        entry = ctypes.cast(api.PyThreadState_Delete, ctypes.c_void_p).value or 0
    except (AttributeError, OSError):  # symbols not exported: pin nothing
        return None, 0
    return (api, entry) if entry else (None, 0)


_api, _delete_entry = _bind()
SUPPORTED = _api is not None
# Whether deleting another thread's state leaves the calling thread's own binding alone.
_DELETE_IN_PLACE = sys.version_info < (3, 12)
# Whether each deletion starts (and waits for) a native thread.
DELETE_NEEDS_A_THREAD = SUPPORTED and not _DELETE_IN_PLACE


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
    """Delete a pinned thread state whose thread has exited (from any other Python thread)."""
    if _api is None or not address:
        return
    _api.PyThreadState_Clear(address)
    if _DELETE_IN_PLACE:
        _api.PyThreadState_Delete(address)
        return
    thread = ctypes.c_ulong()
    if _api.pthread_create(ctypes.byref(thread), None, _delete_entry, address) == 0:
        _api.pthread_join(thread.value, None)
    # Otherwise the cleared state stays allocated (a few hundred bytes): nothing else to do.
