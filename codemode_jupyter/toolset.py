"""Everything one run may call: notebook functions plus enabled capabilities, optionally narrowed.

A :class:`Toolset` is resolved afresh for each cell (and for completion, inspection and
``%codemode_stubs``), so all of them always agree on what ``codemode.*`` holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from codemode.capabilities.base import Capability, HostFn
from codemode.stubs import generate_stubs


class _Subset:
    """A capability narrowed to some of its functions (``--tools fs.read``)."""

    def __init__(self, capability: Capability, names: Iterable[str]) -> None:
        self.namespace = capability.namespace
        self.description = capability.description
        self._capability = capability
        self._names = frozenset(names)

    def exports(self) -> Mapping[str, HostFn]:
        exports = self._capability.exports()
        return {name: fn for name, fn in exports.items() if name in self._names}


@dataclass
class Toolset:
    """Flat functions (JavaScript names, possibly dotted) and capabilities of one run."""

    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)
    capabilities: list[Capability] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A capability namespace wins over a notebook function of the same name.
        spaces = {cap.namespace for cap in self.capabilities}
        self.functions = {
            name: fn for name, fn in self.functions.items() if name.split(".")[0] not in spaces
        }

    def table(self) -> dict[str, Callable[..., Any]]:
        """Every callable dotted name, as the program sees it."""
        table: dict[str, Callable[..., Any]] = {}
        for cap in self.capabilities:
            for name, fn in cap.exports().items():
                table[f"{cap.namespace}.{name}"] = fn
        table.update(self.functions)
        return table

    def names(self) -> list[str]:
        return sorted(self.table())

    def namespaces(self) -> dict[str, str]:
        """Namespace paths (``fs``, ``math`` from ``math.add``) and their descriptions."""
        spaces: dict[str, str] = {}
        for name in self.table():
            parts = name.split(".")[:-1]
            for depth in range(1, len(parts) + 1):
                spaces.setdefault(".".join(parts[:depth]), "")
        for cap in self.capabilities:
            spaces[cap.namespace] = cap.description
        return spaces

    def capability(self, namespace: str) -> Capability | None:
        return next((cap for cap in self.capabilities if cap.namespace == namespace), None)

    def stubs(self) -> str:
        """The ``.d.ts`` declarations of everything callable."""
        return generate_stubs(self.capabilities, self.functions)

    def restrict(self, wanted: Sequence[str]) -> Toolset:
        """Only the named tools; a namespace name keeps all of it. Unknown names: ValueError."""
        table = self.table()
        spaces = self.namespaces()
        keep: set[str] = set()
        unknown: list[str] = []
        for raw in wanted:
            name = raw.strip().removeprefix("codemode.")
            if name in table:
                keep.add(name)
            elif name in spaces:
                keep.update(n for n in table if n.startswith(name + "."))
            else:
                unknown.append(raw)
        if unknown:
            available = ", ".join(self.names()) or "(none)"
            raise ValueError(
                f"unknown tool{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}. "
                f"Callable: {available}"
            )
        capabilities: list[Capability] = []
        for cap in self.capabilities:
            mine = {n.split(".", 1)[1] for n in keep if n.startswith(cap.namespace + ".")}
            if mine == set(cap.exports()):
                capabilities.append(cap)
            elif mine:
                capabilities.append(_Subset(cap, mine))
        functions = {name: fn for name, fn in self.functions.items() if name in keep}
        return Toolset(functions, capabilities)


def split_names(text: str | None) -> list[str]:
    """``"a, b c"`` -> ``["a", "b", "c"]`` (the ``--tools`` option)."""
    if not text:
        return []
    return [part for part in text.replace(",", " ").split() if part]
