"""Shift+Tab (``inspect_request``) on ``codemode.NAME`` inside a ``%%codemode`` cell.

ipykernel answers inspection with ``shell.object_inspect_mime(name, ...)``, where ``name`` is the
dotted token at the cursor and the cell's text is no longer known. So the kernel's
``do_inspect`` is wrapped to note whether the request came from a ``%%codemode`` cell, and
``object_inspect_mime`` is wrapped to answer ``codemode.*`` names there with the TypeScript
stub and docstring. Both wrappers are instance attributes, removed again on unload.
"""

from __future__ import annotations

import contextvars
import html
import inspect
from collections.abc import Callable
from typing import Any

from codemode.stubs import function_stub, namespace_stub
from codemode_jupyter.completion import is_codemode_cell
from codemode_jupyter.toolset import Toolset

_in_cell: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "codemode_jupyter_inspecting_cell", default=None
)


def describe(toolset: Toolset, name: str) -> str | None:
    """Plain text describing ``codemode``, ``codemode.ns`` or ``codemode.fn`` (None: not ours)."""
    if name == "codemode":
        return "codemode: what this cell can call\n\n" + toolset.stubs()
    if not name.startswith("codemode."):
        return None
    path = name[len("codemode.") :]
    table = toolset.table()
    fn = table.get(path)
    if fn is not None:
        lines = [f"codemode.{path}: a Python host function, called as `await codemode.{path}"
                 "({...})`", "", function_stub(path, fn)]
        origin = _origin(fn)
        if origin:
            lines += ["", f"Python: {origin}"]
        doc = inspect.getdoc(fn)
        if doc:
            lines += ["", doc]
        return "\n".join(lines)
    capability = toolset.capability(path)
    if capability is not None:
        return f"codemode.{path}: {capability.description}\n\n" + namespace_stub(capability)
    if path in toolset.namespaces():
        inner = {n: f for n, f in table.items() if n.startswith(path + ".")}
        return f"codemode.{path}: namespace\n\n" + "\n\n".join(
            function_stub(n, f) for n, f in sorted(inner.items())
        )
    return None


def _origin(fn: Callable[..., Any]) -> str:
    target = getattr(fn, "__wrapped__", fn)
    module = getattr(target, "__module__", None) or ""
    qualname = getattr(target, "__qualname__", None) or getattr(target, "__name__", "")
    try:
        signature = str(inspect.signature(target))
    except (TypeError, ValueError):
        signature = "(...)"
    return f"{module}.{qualname}{signature}" if module else f"{qualname}{signature}"


def bundle(text: str) -> dict[str, str]:
    """The MIME bundle ipykernel expects (it drops ``text/html`` unless the HTML pager is on)."""
    return {
        "text/plain": text,
        "text/html": f"<pre>{html.escape(text)}</pre>",
    }


class InspectionHooks:
    """Installs and removes the two wrappers on one shell (and its kernel, if any)."""

    def __init__(self, shell: Any, resolve: Callable[[], Toolset]) -> None:
        self.shell = shell
        self.resolve = resolve
        self._mime: Callable[..., Any] | None = None
        self._kernel: Any = None
        self._do_inspect: Callable[..., Any] | None = None
        self._saved: dict[str, Any] = {}

    def lookup(self, name: str) -> dict[str, str] | None:
        try:
            text = describe(self.resolve(), name)
        except Exception:  # noqa: BLE001 - inspection must never break the kernel
            return None
        return None if text is None else bundle(text)

    def install(self) -> None:
        original_mime = self.shell.object_inspect_mime

        def object_inspect_mime(oname: str, *args: Any, **kwargs: Any) -> Any:
            in_cell = _in_cell.get()
            if in_cell and isinstance(oname, str):
                found = self.lookup(oname)
                if found is not None:
                    return found
            try:
                return original_mime(oname, *args, **kwargs)
            except KeyError:
                # No kernel told us where the request came from (e.g. a terminal): help anyway.
                found = self.lookup(oname) if in_cell is None else None
                if found is None:
                    raise
                return found

        self._mime = object_inspect_mime
        self._saved["mime"] = self.shell.__dict__.get("object_inspect_mime", _MISSING)
        self.shell.object_inspect_mime = object_inspect_mime

        kernel = getattr(self.shell, "kernel", None)
        original_inspect = getattr(kernel, "do_inspect", None)
        if kernel is None or original_inspect is None:
            return

        def do_inspect(code: str, cursor_pos: int, *args: Any, **kwargs: Any) -> Any:
            flag = is_codemode_cell(code)
            token = _in_cell.set(flag)
            try:
                reply = original_inspect(code, cursor_pos, *args, **kwargs)
            finally:
                _in_cell.reset(token)
            if inspect.isawaitable(reply):
                return _awaiting(reply, flag)
            return reply

        self._kernel = kernel
        self._do_inspect = do_inspect
        self._saved["inspect"] = kernel.__dict__.get("do_inspect", _MISSING)
        kernel.do_inspect = do_inspect

    def uninstall(self) -> None:
        """Put back what was there before (unless someone wrapped ours since: leave theirs)."""
        _restore(self.shell, "object_inspect_mime", self._mime, self._saved.get("mime"))
        if self._kernel is not None:
            _restore(self._kernel, "do_inspect", self._do_inspect, self._saved.get("inspect"))
        self._mime = self._do_inspect = self._kernel = None
        self._saved.clear()


_MISSING = object()


def _restore(owner: Any, name: str, ours: Any, previous: Any) -> None:
    if ours is None or owner.__dict__.get(name) is not ours:
        return
    if previous is _MISSING or previous is None:
        delattr(owner, name)
    else:
        setattr(owner, name, previous)


async def _awaiting(reply: Any, flag: bool) -> Any:
    token = _in_cell.set(flag)
    try:
        return await reply
    finally:
        _in_cell.reset(token)
