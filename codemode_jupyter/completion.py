"""Kernel-side Tab completion inside ``%%codemode`` cells, through IPython's matcher API (v2).

ipykernel hands the completer the whole cell, so the matcher can tell a ``%%codemode`` cell from
a Python one. After ``codemode.`` it offers the callable functions and namespaces, after
``codemode.fs.`` that namespace's members; it suppresses the Python matchers (Jedi would offer
Python names that mean nothing in JavaScript).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from IPython.core.completer import SimpleCompletion, context_matcher

from codemode_jupyter.toolset import Toolset, split_names

MATCHER_ID = "codemode_jupyter.codemode_matcher"
_MAGIC = re.compile(r"^\s*%%codemode(?:\s|$)")
_PATH = re.compile(r"(?<![\w$.])codemode((?:\.[A-Za-z_$][\w$]*)*)\.([A-Za-z_$][\w$]*)?$")
_TOOLS_OPTION = re.compile(r"--tools(?:=|\s+)(\S+)")
_JS_GLOBALS = (
    "codemode", "console", "await", "async", "const", "let", "return", "function", "JSON",
    "Math", "Promise", "Object", "Array", "String", "Number", "Date", "Error", "Map", "Set",
    "for", "of", "if", "else", "try", "catch", "throw", "new", "typeof", "null", "undefined",
    "true", "false",
)
_CONSOLE = ("log", "info", "warn", "error", "debug", "table", "dir", "assert", "count", "time",
            "timeEnd")
_WORD = re.compile(r"(?<![\w$.])([A-Za-z_$][\w$]*)$")
_CONSOLE_PATH = re.compile(r"(?<![\w$.])console\.([\w$]*)$")


def is_codemode_cell(text: str) -> bool:
    """Whether a cell's text is a ``%%codemode`` cell."""
    return bool(_MAGIC.match(text or ""))


def cell_tools(text: str) -> list[str]:
    """The ``--tools`` restriction on a cell's magic line, if any (read leniently)."""
    first = (text or "").lstrip().split("\n", 1)[0]
    match = _TOOLS_OPTION.search(first)
    return split_names(match.group(1).strip("'\"")) if match else []


def members(toolset: Toolset, path: str) -> list[tuple[str, str]]:
    """``(name, type)`` of what ``codemode.<path>.`` holds (``path`` "" for the top)."""
    prefix = f"{path}." if path else ""
    found: dict[str, str] = {}
    for name in toolset.table():
        if not name.startswith(prefix):
            continue
        head, _, rest = name[len(prefix) :].partition(".")
        found.setdefault(head, "module" if rest else "function")
        if rest:
            found[head] = "module"
    return sorted(found.items())


def complete(toolset: Toolset, before_cursor: str) -> tuple[str, list[tuple[str, str]]] | None:
    """(fragment being completed, candidates) for the text before the cursor, if we own it."""
    match = _PATH.search(before_cursor)
    if match:
        path = match.group(1).lstrip(".")
        fragment = match.group(2) or ""
        return fragment, [(n, k) for n, k in members(toolset, path) if n.startswith(fragment)]
    match = _CONSOLE_PATH.search(before_cursor)
    if match:
        fragment = match.group(1)
        return fragment, [(n, "function") for n in _CONSOLE if n.startswith(fragment)]
    match = _WORD.search(before_cursor)
    if match:
        fragment = match.group(1)
        names = [(n, "keyword") for n in _JS_GLOBALS if n.startswith(fragment) and n != fragment]
        return fragment, names
    return None


def make_matcher(resolve: Callable[[list[str]], Toolset]) -> Any:
    """A v2 matcher; ``resolve(tools)`` returns the toolset a cell with ``--tools`` would get."""

    @context_matcher(identifier=MATCHER_ID)
    def codemode_matcher(context: Any) -> dict[str, Any]:
        empty: dict[str, Any] = {"completions": [], "suppress": False}
        if context.cursor_line == 0 or not is_codemode_cell(context.full_text):
            return empty
        try:
            toolset = resolve(cell_tools(context.full_text))
        except Exception:  # noqa: BLE001 - e.g. an unknown --tools name: offer everything
            try:
                toolset = resolve([])
            except Exception:  # noqa: BLE001 - completion must never raise
                return empty
        found = complete(toolset, context.text_until_cursor)
        if found is None:
            return {"completions": [], "suppress": True}
        fragment, candidates = found
        return {
            "completions": [SimpleCompletion(text=name, type=kind) for name, kind in candidates],
            "matched_fragment": fragment,
            "suppress": True,
        }

    return codemode_matcher
