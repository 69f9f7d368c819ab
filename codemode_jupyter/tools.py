"""Which Python functions a ``%%codemode`` cell may call: explicit registrations and discovery.

Discovery runs at every cell, so redefining a function takes effect at the next run. It exposes
the notebook's own public functions (``__module__ == "__main__"``, lambdas assigned to a public
name included) and never classes, modules, private names or IPython's helpers. ``@tool`` adds
anything else (imported functions, other names, dotted names that nest) and wins over discovery.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from codemode.executor import inline as mark_inline
from codemode.registry import validate_name
from codemode.stubs import js_identifier

F = TypeVar("F", bound=Callable[..., Any])

_registry: dict[str, Callable[..., Any]] = {}

# IPython's and Jupyter's own helpers: never tools, even if a user rebinds them.
_NEVER = frozenset(
    {"exit", "quit", "get_ipython", "display", "In", "Out", "help", "open", "print", "input"}
)
_PART = re.compile(r"^[A-Za-z_$][\w$]*$")


@overload
def tool(fn: F, /) -> F: ...


@overload
def tool(
    fn: None = None, /, *, name: str | None = None, inline: bool = False
) -> Callable[[F], F]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    inline: bool = False,
) -> Any:
    """Make a function callable from ``%%codemode`` cells as ``codemode.<name>``.

    Works as ``@tool``, ``@tool(name="x", inline=True)`` or ``tool(imported_fn)``. ``name`` may
    be dotted (``"math.add"`` becomes ``codemode.math.add``). ``inline=True`` runs a quick sync
    function on the isolate's thread (see :func:`codemode.inline`). Returns ``fn`` unchanged.
    """

    def register(target: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(target) or isinstance(target, type):
            raise TypeError(f"@tool needs a function, not {type(target).__name__}")
        key = tool_name(name or getattr(target, "__name__", ""))
        exposed = _as_inline(target) if inline else target
        for old, registered in list(_registry.items()):
            if old != key and _unwrap(registered) is target:
                del _registry[old]  # renamed: the function keeps one name
        _registry[key] = exposed
        return target

    return register(fn) if fn is not None else register


def tool_name(name: str) -> str:
    """The JavaScript name for ``name`` (each dotted part made a valid identifier)."""
    parts = [part.strip() for part in str(name).split(".")]
    if not parts or not all(_PART.match(part) for part in parts):
        raise ValueError(f"invalid tool name {name!r}: use identifiers, optionally dotted")
    # ``then``, ``constructor``, ``__proto__``... mean something on every JavaScript object.
    return validate_name(".".join(js_identifier(part) for part in parts))


def forget(name: str) -> None:
    """Remove an explicit registration (discovered functions come back if still defined)."""
    _registry.pop(tool_name(name), None)


def registered() -> dict[str, Callable[..., Any]]:
    """The explicit registrations, by JavaScript name."""
    return dict(_registry)


def _as_inline(fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):
        raise ValueError("inline=True is for sync functions; async ones already run on the loop")
    try:
        return mark_inline(fn)
    except (AttributeError, TypeError):  # builtins and slotted callables take no attributes

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        return mark_inline(wrapper)


def _unwrap(fn: Callable[..., Any]) -> Any:
    return getattr(fn, "__wrapped__", fn)


def is_notebook_function(name: str, value: object, hidden: Mapping[str, Any]) -> bool:
    """Whether a user-namespace entry is one of the notebook's own public functions."""
    if not isinstance(name, str) or name.startswith("_") or name in _NEVER:
        return False
    if not name.isidentifier() or isinstance(value, type) or not callable(value):
        return False
    if hidden.get(name, _MISSING) is value:
        return False
    if getattr(value, "__module__", None) != "__main__":
        return False
    # Plain functions (lambdas and async ones too) or decorated ones that say what they wrap.
    return inspect.isfunction(value) or inspect.isfunction(getattr(value, "__wrapped__", None))


_MISSING = object()


def discover(namespace: Mapping[str, Any], hidden: Mapping[str, Any] | None = None) -> dict[
    str, Callable[..., Any]
]:
    """The notebook's public functions, by JavaScript name."""
    hidden = hidden or {}
    found: dict[str, Callable[..., Any]] = {}
    for name, value in list(namespace.items()):
        if is_notebook_function(name, value, hidden):
            try:
                # never exposed: a function named ``then`` would make ``codemode`` a thenable
                found[validate_name(js_identifier(name))] = value
            except ValueError:
                continue
    return found


def notebook_tools(
    namespace: Mapping[str, Any], hidden: Mapping[str, Any] | None = None, *, auto: bool = True
) -> dict[str, Callable[..., Any]]:
    """Discovered functions plus registrations; a function registered under another name is
    exposed only under that name."""
    explicit = registered()
    found = discover(namespace, hidden) if auto else {}
    claimed = {id(_unwrap(fn)) for fn in explicit.values()}
    tools = {name: fn for name, fn in found.items() if id(fn) not in claimed}
    tools.update(explicit)
    return tools
