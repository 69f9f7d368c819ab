"""The contract a capability fulfils: a namespace of host functions under ``codemode.<ns>``.

Kept as a structural ``Protocol`` so that any object with these three members works, including
capabilities written for other Code Mode engines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

HostFn = Callable[..., Any] | Callable[..., Awaitable[Any]]


@runtime_checkable
class Capability(Protocol):
    """A named group of host functions, e.g. ``fs`` exposing ``codemode.fs.read``."""

    namespace: str
    description: str

    def exports(self) -> Mapping[str, HostFn]:
        """Return the functions of this namespace, keyed by their JavaScript name."""
        ...
