"""Loading and unloading the extension: magics, configurable, completer, inspection, serving.

``%load_ext codemode`` and ``%load_ext codemode_jupyter`` both land here; loading twice is
harmless (the second call finds the state of the first), and ``%unload_ext`` removes every piece
it added, so the shell is as it was.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from codemode_jupyter.completion import make_matcher
from codemode_jupyter.inspection import InspectionHooks
from codemode_jupyter.magics import CodeMode
from codemode_jupyter.serve_magics import register as register_serve
from codemode_jupyter.serve_magics import unregister as unregister_serve


@dataclass
class _Loaded:
    magics: CodeMode
    matcher: Any
    hooks: InspectionHooks


_loaded: weakref.WeakKeyDictionary[Any, _Loaded] = weakref.WeakKeyDictionary()


def load(shell: Any) -> CodeMode:
    """Register everything on ``shell`` (once) and return the ``CodeMode`` configurable."""
    state = _loaded.get(shell)
    if state is not None:
        return state.magics
    magics = CodeMode(shell=shell)
    shell.register_magics(magics)
    matcher = make_matcher(lambda tools: magics.toolset(tools))
    completer = getattr(shell, "Completer", None)
    if completer is not None and hasattr(completer, "custom_matchers"):
        completer.custom_matchers.append(matcher)
    hooks = InspectionHooks(shell, lambda: magics.toolset())
    hooks.install()
    register_serve(shell)
    _loaded[shell] = _Loaded(magics, matcher, hooks)
    return magics


def unload(shell: Any) -> None:
    """Remove the magics, the configurable, the matcher and the inspection hooks."""
    state = _loaded.pop(shell, None)
    if state is None:
        return
    manager = shell.magics_manager
    for kind, names in state.magics.magics.items():
        table = manager.magics.get(kind, {})
        for name in names:
            table.pop(name, None)
    if manager.registry.get(type(state.magics).__name__) is state.magics:
        del manager.registry[type(state.magics).__name__]
    configurables = getattr(shell, "configurables", [])
    if state.magics in configurables:
        configurables.remove(state.magics)
    completer = getattr(shell, "Completer", None)
    matchers = getattr(completer, "custom_matchers", [])
    if state.matcher in matchers:
        matchers.remove(state.matcher)
    state.hooks.uninstall()
    unregister_serve(shell)  # also stops this shell's running servers
    # Loaded under both names? Unloading one unloads both, so neither stays marked as loaded.
    extensions = getattr(getattr(shell, "extension_manager", None), "loaded", None)
    if isinstance(extensions, set):
        extensions.difference_update(_ALIASES)


_ALIASES = ("codemode", "codemode_jupyter")


def current(shell: Any = None, *, load_if_needed: bool = True) -> CodeMode | None:
    """The ``CodeMode`` configurable of ``shell`` (default: the running IPython), loading the
    extension on first use when asked to."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None:
        return None
    state = _loaded.get(shell)
    if state is not None:
        return state.magics
    return load(shell) if load_if_needed else None
