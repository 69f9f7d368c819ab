"""codemode_jupyter: Code Mode in IPython and Jupyter.

``%load_ext codemode_jupyter`` (or ``%load_ext codemode``), then a ``%%codemode`` cell runs its
JavaScript in a fresh V8 isolate where ``await codemode.NAME({...})`` calls this notebook's
Python functions. See :class:`~codemode_jupyter.magics.CodeMode` for options and settings.

Python API: :func:`tool` (register a function), :func:`allow`/:func:`revoke` (capabilities),
:func:`last_run` (the complete record of the last run), :func:`stubs` and
:func:`available_tools` (what the next cell can call).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from codemode_jupyter.errors import CodeModeError
from codemode_jupyter.extension import current, load, unload
from codemode_jupyter.magics import CodeMode
from codemode_jupyter.record import RunRecord
from codemode_jupyter.runner import last_run
from codemode_jupyter.tools import forget, tool

__all__ = [
    "CodeMode",
    "CodeModeError",
    "RunRecord",
    "allow",
    "available_tools",
    "forget",
    "last_run",
    "load_ipython_extension",
    "revoke",
    "stubs",
    "tool",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext codemode_jupyter``: register the magics, completion and inspection."""
    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext codemode_jupyter``: remove everything the extension added."""
    unload(ipython)


def _magics() -> CodeMode:
    magics = current()
    if magics is None:
        raise RuntimeError("codemode_jupyter needs a running IPython (load it with %load_ext)")
    return magics


def allow(kind: str, *values: str) -> None:
    """Let ``%%codemode`` cells use a capability: ``allow("fs", "./data")``,
    ``allow("http", "api.example.com")``, ``allow("env", "USER")``."""
    _magics().allow(kind, list(values))


def revoke(kind: str | None = None) -> None:
    """Switch a capability (default: all of them) off again."""
    _magics().revoke(kind)


def available_tools(tools: str | None = None) -> dict[str, Callable[..., Any]]:
    """Every ``codemode.*`` name the next cell can call, with its Python function."""
    return _magics().toolset(tools).table()


def stubs(tools: str | None = None) -> str:
    """The TypeScript declarations the next ``%%codemode`` cell is given."""
    return _magics().toolset(tools).stubs()


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the prebuilt extension (``jupyter labextension develop``)."""
    return [{"src": "labextension", "dest": "codemode-jupyter"}]
