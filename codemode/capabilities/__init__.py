"""Built-in capabilities: sandboxed file system, environment and HTTP access, deny-by-default."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from codemode.capabilities.base import Capability, HostFn

_EXPORTS = {
    "EnvCapability": "codemode.capabilities.env",
    "FsCapability": "codemode.capabilities.fs",
    "HttpCapability": "codemode.capabilities.http",
    "CapabilityDenied": "codemode.capabilities.errors",
}

__all__ = [
    "Capability",
    "CapabilityDenied",
    "EnvCapability",
    "FsCapability",
    "HostFn",
    "HttpCapability",
]

if TYPE_CHECKING:
    from codemode.capabilities.env import EnvCapability
    from codemode.capabilities.errors import CapabilityDenied
    from codemode.capabilities.fs import FsCapability
    from codemode.capabilities.http import HttpCapability


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'codemode.capabilities' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
