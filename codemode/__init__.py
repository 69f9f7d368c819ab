"""codemode: run LLM-written JavaScript that calls your Python functions in a V8 sandbox.

Names are imported lazily so that ``import codemode`` stays cheap (the notebook extension and
the MCP server import only what they use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Executor": "codemode.executor",
    "RunSession": "codemode.executor",
    "inline": "codemode.executor",
    "HostCallRequest": "codemode.events",
    "RunCompleted": "codemode.events",
    "RunFailed": "codemode.events",
    "RunEvent": "codemode.events",
    "RunResult": "codemode.events",
    "LogLine": "codemode.events",
    "HostCall": "codemode.events",
    "ErrorDetails": "codemode.events",
    "Capability": "codemode.capabilities.base",
    "EnvCapability": "codemode.capabilities.env",
    "FsCapability": "codemode.capabilities.fs",
    "HttpCapability": "codemode.capabilities.http",
    "generate_stubs": "codemode.stubs",
    "Registry": "codemode.registry",
}

__all__ = [
    "Capability",
    "EnvCapability",
    "ErrorDetails",
    "Executor",
    "FsCapability",
    "HostCall",
    "HostCallRequest",
    "HttpCapability",
    "LogLine",
    "Registry",
    "RunCompleted",
    "RunEvent",
    "RunFailed",
    "RunResult",
    "RunSession",
    "generate_stubs",
    "inline",
    "load_ipython_extension",
    "unload_ipython_extension",
]

if TYPE_CHECKING:
    from codemode.capabilities.base import Capability
    from codemode.capabilities.env import EnvCapability
    from codemode.capabilities.fs import FsCapability
    from codemode.capabilities.http import HttpCapability
    from codemode.events import (
        ErrorDetails,
        HostCall,
        HostCallRequest,
        LogLine,
        RunCompleted,
        RunEvent,
        RunFailed,
        RunResult,
    )
    from codemode.executor import Executor, RunSession, inline
    from codemode.registry import Registry
    from codemode.stubs import generate_stubs


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'codemode' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext codemode``: delegates to the notebook layer, which owns everything IPython."""
    importlib.import_module("codemode_jupyter").load_ipython_extension(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    importlib.import_module("codemode_jupyter").unload_ipython_extension(ipython)
