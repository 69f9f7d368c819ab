"""Turn notebook functions into a standalone MCP server script (``%codemode_export``).

:func:`build_export` is pure (no kernel needed): given the functions to serve, the namespace
they were defined in and the capabilities to enable, it writes a script holding

* the source of each function (``inspect.getsource``: IPython keeps cell sources in
  ``linecache``), with ``@codemode_jupyter.tool`` decorators removed and other decorators kept;
* what that source needs from the notebook, found by following global names (the functions'
  bytecode for their bodies, the syntax tree for decorators, defaults and annotations, which run
  at definition time): modules and imported names become import lines, notebook functions and
  classes are copied (recursively), literal constants are written with ``repr`` when
  ``ast.literal_eval(repr(v)) == v``;
* a ``CodeModeServer`` with the same capabilities and limits, and a command line
  (``--transport {streamable-http,stdio} --host --port --token``).

Anything that cannot be carried over (a value with no literal form, a closure, a function
without source) is listed in :attr:`ExportResult.warnings` and the script says so in a comment.
"""

from __future__ import annotations

import ast
import builtins
import dis
import importlib
import inspect
import linecache
import sys
import textwrap
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ExportResult", "build_export"]

MAX_CONSTANT_CHARS = 100_000
_GLOBAL_OPS = {"LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL"}


@dataclass
class ExportResult:
    """The script and an account of what went into it."""

    source: str
    warnings: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    """JavaScript names served (``codemode.<name>``)."""
    definitions: list[str] = field(default_factory=list)
    """Notebook functions and classes copied, tools and helpers alike, in script order."""
    imports: list[str] = field(default_factory=list)
    constants: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    """Names the code uses that could not be carried over (see ``warnings``)."""


@dataclass
class _Block:
    name: str
    source: str


class _Exporter:
    """Collects definitions, imports and constants by following names through the namespace."""

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.ns = namespace
        self.imports: dict[str, str] = {}
        self.constants: dict[str, str] = {}
        self.blocks: list[_Block] = []
        self.aliases: list[str] = []
        self.seen: set[str] = set()
        self.defined: dict[int, str] = {}  # id(object) -> the name the script defines it under
        self.keep_alive: list[Any] = []
        self.unresolved: dict[str, str] = {}
        self.warnings: list[str] = []

    # ------------------------------------------------------------ names

    def need(self, name: str, *, context: str) -> None:
        """Make ``name`` available to the script (once)."""
        if name in self.seen:
            return
        self.seen.add(name)
        if name not in self.ns:
            if not hasattr(builtins, name):
                self.unresolved[name] = f"used by {context} but not defined in the notebook"
            return
        value = self.ns[name]
        if hasattr(builtins, name) and getattr(builtins, name) is value:
            return
        if isinstance(value, types.ModuleType):
            self.imports[name] = _module_import(name, value)
        elif _is_notebook_function(value):
            self.add_function(name, value)
        elif isinstance(value, type) and value.__module__ == "__main__":
            self.add_class(name, value)
        elif (literal := _literal(value)) is not None:
            if len(literal) > MAX_CONSTANT_CHARS:
                self.unresolved[name] = (
                    f"a constant used by {context}, but its repr is {len(literal):,} characters"
                )
            else:
                self.constants[name] = f"{name} = {literal}"
        elif (line := _import_line(name, value)) is not None:
            self.imports[name] = line
        else:
            self.unresolved[name] = (
                f"a {type(value).__name__} used by {context}: not a literal constant, not "
                "importable, not defined in a cell"
            )

    # ------------------------------------------------------------ functions

    def add_function(self, name: str, fn: Any) -> bool:
        """Copy a notebook function's source (bound to ``name``); False if it cannot be."""
        target = inspect.unwrap(fn) if not inspect.isfunction(fn) else fn
        if id(target) in self.defined:
            self._alias(name, self.defined[id(target)])
            return True
        code = getattr(target, "__code__", None)
        if code is None:
            self.unresolved[name] = "not a Python function with source"
            return False
        if code.co_freevars:
            self.unresolved[name] = (
                f"a closure over {', '.join(code.co_freevars)} (defined inside another function): "
                "define it at the top level of a cell to export it"
            )
            return False
        try:
            raw = textwrap.dedent(inspect.getsource(target))
        except (OSError, TypeError) as exc:
            self.unresolved[name] = f"its source is not available ({exc})"
            return False
        if target.__name__ == "<lambda>":
            return self._add_lambda(name, target, raw)
        try:
            tree = ast.parse(raw)
        except SyntaxError as exc:
            self.unresolved[name] = f"its source does not parse ({exc.msg})"
            return False
        node = next(
            (
                n
                for n in tree.body
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                and n.name == target.__name__
            ),
            None,
        )
        if node is None:
            self.unresolved[name] = "its source could not be located"
            return False
        self.defined[id(target)] = target.__name__
        self.keep_alive.append(target)
        source = self._strip_tool_decorators(raw, node)
        context = f"{target.__name__}()"
        # definition-time names first (decorators, defaults, annotations): they must exist
        # before the def runs, so their definitions go above it
        for global_name in sorted(_definition_names(node)):
            if global_name != target.__name__:
                self.need(global_name, context=context)
        self.seen.add(target.__name__)
        for global_name in sorted(_code_globals(code)):
            if global_name != target.__name__:
                self.need(global_name, context=context)
        self.blocks.append(_Block(target.__name__, source.rstrip() + "\n"))
        self._alias(name, target.__name__)
        return True

    def _add_lambda(self, name: str, fn: Any, raw: str) -> bool:
        try:
            tree = ast.parse(raw)
        except SyntaxError:
            self.unresolved[name] = "a lambda whose source line does not parse on its own"
            return False
        lambdas = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)]
        arity = fn.__code__.co_argcount
        matching = [n for n in lambdas if len(n.args.args) == arity]
        if len(matching) != 1:
            self.unresolved[name] = "a lambda that cannot be told apart from others on its line"
            return False
        node = matching[0]
        expression = ast.get_source_segment(raw, node)
        if expression is None:
            self.unresolved[name] = "a lambda whose source could not be located"
            return False
        self.defined[id(fn)] = name
        self.keep_alive.append(fn)
        self.seen.add(name)
        for global_name in sorted(_definition_names(node) | _code_globals(fn.__code__)):
            self.need(global_name, context=f"{name} (a lambda)")
        self.blocks.append(_Block(name, f"{name} = {expression}\n"))
        return True

    def _strip_tool_decorators(self, raw: str, node: ast.AST) -> str:
        """Remove ``@codemode_jupyter.tool`` (and ``@tool(...)``) lines: the script registers
        its tools itself. Other decorators stay (and their names are resolved)."""
        decorators = getattr(node, "decorator_list", [])
        drop: set[int] = set()
        kept: list[ast.expr] = []
        for decorator in decorators:
            if self._is_tool_decorator(decorator):
                drop.update(range(decorator.lineno, (decorator.end_lineno or decorator.lineno) + 1))
            else:
                kept.append(decorator)
        node.decorator_list = kept  # type: ignore[attr-defined]
        if not drop:
            return raw
        lines = raw.splitlines(keepends=True)
        return "".join(line for number, line in enumerate(lines, 1) if number not in drop)

    def _is_tool_decorator(self, decorator: ast.expr) -> bool:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        value = _resolve_dotted(target, self.ns)
        return value is not None and _is_codemode_tool(value)

    # ------------------------------------------------------------ classes

    def add_class(self, name: str, cls: type) -> bool:
        if id(cls) in self.defined:
            self._alias(name, self.defined[id(cls)])
            return True
        located = _class_source(cls)
        if located is None:
            self.unresolved[name] = "a notebook class whose source could not be found"
            return False
        raw, node = located
        self.defined[id(cls)] = cls.__name__
        self.keep_alive.append(cls)
        self.seen.add(cls.__name__)
        context = f"class {cls.__name__}"
        for global_name in sorted(_class_names(node)):
            if global_name != cls.__name__:
                self.need(global_name, context=context)
        self.blocks.append(_Block(cls.__name__, raw.rstrip() + "\n"))
        self._alias(name, cls.__name__)
        return True

    def _alias(self, name: str, defined: str) -> None:
        if name != defined:
            line = f"{name} = {defined}"
            if line not in self.aliases:
                self.aliases.append(line)
            self.seen.add(name)


# ---------------------------------------------------------------------------- name analysis


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _code_globals(code: types.CodeType) -> set[str]:
    """Global names a function's body (and its nested functions/comprehensions) uses."""
    names: set[str] = set()
    for each in _code_objects(code):
        for instruction in dis.get_instructions(each):
            if instruction.opname in _GLOBAL_OPS and isinstance(instruction.argval, str):
                names.add(instruction.argval)
    return names


def _loaded_names(nodes: Sequence[ast.AST | None]) -> set[str]:
    names: set[str] = set()
    for node in nodes:
        if node is None:
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
                names.add(sub.id)
    return names


def _definition_names(node: ast.AST) -> set[str]:
    """Names evaluated when a ``def``/``lambda`` runs: decorators, defaults, annotations."""
    parts: list[ast.AST | None] = list(getattr(node, "decorator_list", []))
    args = getattr(node, "args", None)
    if isinstance(args, ast.arguments):
        parts += list(args.defaults) + list(args.kw_defaults)
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None:
                parts.append(arg.annotation)
    parts.append(getattr(node, "returns", None))
    return _loaded_names(parts)


def _class_names(node: ast.ClassDef) -> set[str]:
    """Global names a class needs: bases, decorators, the class body's own statements, and
    for methods their definition-time names plus whatever their bodies load (minus names the
    method binds itself)."""
    names = _loaded_names([*node.bases, *(k.value for k in node.keywords), *node.decorator_list])
    local: set[str] = set()
    for statement in node.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            names |= _definition_names(statement)
            names |= _function_body_globals(statement)
            local.add(statement.name)
        elif isinstance(statement, ast.ClassDef):
            names |= _class_names(statement) - local
            local.add(statement.name)
        else:
            names |= _loaded_names([statement]) - local
            for sub in ast.walk(statement):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    local.add(sub.id)
    return names


def _function_body_globals(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """An approximation from syntax (class methods have no live code object at hand): names
    loaded in the body that the function does not bind."""
    bound = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store | ast.Del):
            bound.add(sub.id)
        elif isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if sub is not node:
                bound.add(sub.name)
        elif isinstance(sub, ast.alias):
            bound.add((sub.asname or sub.name).split(".")[0])
        elif isinstance(sub, ast.arg):
            bound.add(sub.arg)
    return _loaded_names(list(node.body)) - bound


def _resolve_dotted(node: ast.expr, namespace: Mapping[str, Any]) -> Any:
    """The object an ``a.b.c`` expression names in ``namespace`` (None if it does not)."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in namespace:
        return None
    value = namespace[node.id]
    for part in reversed(parts):
        try:
            value = getattr(value, part)
        except Exception:  # noqa: BLE001 - any attribute error means "not that decorator"
            return None
    return value


def _is_codemode_tool(value: Any) -> bool:
    try:
        from codemode_jupyter.tools import tool
    except ImportError:  # pragma: no cover - the package is this one
        return False
    return value is tool


def _is_notebook_function(value: Any) -> bool:
    if getattr(value, "__module__", None) != "__main__" or isinstance(value, type):
        return False
    return inspect.isfunction(value) or inspect.isfunction(getattr(value, "__wrapped__", None))


def _literal(value: Any) -> str | None:
    """``repr(value)`` when it reads back as an equal value of the same type."""
    if callable(value) or isinstance(value, types.ModuleType):
        return None
    try:
        text = repr(value)
        back = ast.literal_eval(text)
    except Exception:  # noqa: BLE001 - not a literal, whatever the reason
        return None
    try:
        same = type(back) is type(value) and bool(back == value)
    except Exception:  # noqa: BLE001 - e.g. arrays whose == is not a bool
        return None
    return text if same else None


def _module_import(name: str, module: types.ModuleType) -> str:
    full = module.__name__
    if full == name:
        return f"import {full}"
    parent, _, leaf = full.rpartition(".")
    if parent and leaf == name:
        return f"from {parent} import {leaf}"
    return f"import {full} as {name}"


def _public(module_name: str) -> bool:
    return module_name != "__main__" and not any(p.startswith("_") for p in module_name.split("."))


def _import_line(name: str, value: Any) -> str | None:
    """``from module import attr [as name]`` for an importable object, choosing the shortest
    public module that exposes the very same object."""
    candidates: list[tuple[str, str]] = []
    module_name = getattr(value, "__module__", None)
    attr = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    if isinstance(module_name, str) and isinstance(attr, str) and "." not in attr:
        parts = module_name.split(".")
        for depth in range(1, len(parts) + 1):
            candidates.append((".".join(parts[:depth]), attr))
    for module, attribute in candidates:
        if module == "__main__" or (not _public(module) and module != module_name):
            continue
        try:
            imported = importlib.import_module(module)
        except Exception:  # noqa: BLE001 - an import that fails is just not a candidate
            continue
        if getattr(imported, attribute, None) is value:
            return _from_import(module, attribute, name)
    # e.g. typing.Literal: no usable __module__/__qualname__ pair; look it up where it is bound
    found: list[str] = []
    for module, imported in list(sys.modules.items()):
        if imported is None or not _public(module):
            continue
        try:
            if imported.__dict__.get(name) is value:
                found.append(module)
        except Exception:  # noqa: BLE001 - exotic module objects
            continue
    if found:
        best = min(found, key=lambda m: (m.count("."), len(m), m))
        return _from_import(best, name, name)
    return None


def _from_import(module: str, attribute: str, name: str) -> str:
    return f"from {module} import {attribute}" + ("" if attribute == name else f" as {name}")


def _class_source(cls: type) -> tuple[str, ast.ClassDef] | None:
    """A notebook class's source: ``inspect.getsource`` cannot find classes of ``__main__`` in
    IPython, so look in the cell its methods come from, else in every cell IPython cached."""
    try:
        raw = textwrap.dedent(inspect.getsource(cls))
        node = _find_class(raw, cls.__name__, None)
        if node is not None:
            return raw, node[1]
    except (OSError, TypeError):
        pass
    cells: list[str] = []
    for member in vars(cls).values():
        fn = getattr(member, "__func__", None) or getattr(member, "fget", None) or member
        code = getattr(fn, "__code__", None)
        if code is not None and code.co_filename in linecache.cache:
            cells.append(code.co_filename)
    # IPython caches each cell with no modification time (so linecache never evicts it)
    cached = [n for n, entry in linecache.cache.items() if len(entry) == 4 and entry[1] is None]
    for filename in [*cells, *reversed(cached)]:
        lines = linecache.getlines(filename)
        if not lines:
            continue
        found = _find_class("".join(lines), cls.__name__, filename)
        if found is not None:
            return found
    return None


def _find_class(text: str, name: str, filename: str | None) -> tuple[str, ast.ClassDef] | None:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    for node in reversed(tree.body):
        if isinstance(node, ast.ClassDef) and node.name == name:
            segment = _segment_with_decorators(text, node)
            return segment, ast.parse(segment).body[0]  # type: ignore[return-value]
    return None


def _segment_with_decorators(text: str, node: ast.ClassDef) -> str:
    lines = text.splitlines(keepends=True)
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return textwrap.dedent("".join(lines[first - 1 : node.end_lineno]))


# ---------------------------------------------------------------------------- the script


def _capability_code(capability: Any) -> tuple[str, str] | None:
    """``(class name, constructor call)`` for the built-in capabilities, else None."""
    kind = type(capability).__name__
    if kind == "FsCapability":
        paths = list(getattr(capability, "allowed_paths", ()))
        read_only = bool(getattr(capability, "read_only", getattr(capability, "_read_only", False)))
        extra = ", read_only=True" if read_only else ""
        return kind, f"_FsCapability(allowed_paths={paths!r}{extra})"
    if kind == "EnvCapability":
        keys = list(getattr(capability, "allowed_keys", ()))
        return kind, f"_EnvCapability(allowed_keys={keys!r})"
    if kind == "HttpCapability":
        hosts = list(getattr(capability, "allowed_hosts", ()))
        return kind, f"_HttpCapability(allowed_hosts={hosts!r})"
    return None


_HEADER = '''#!/usr/bin/env python3
"""MCP server {name!r}, exported from a notebook by codemode-jupyter (%codemode_export).

Agents call one `execute` tool with a JavaScript program that runs in a fresh V8 isolate and
calls these Python functions as `await codemode.NAME({{...}})`: {tools}.

Run it:
    python {script}                       # streamable HTTP at http://127.0.0.1:8000/mcp
    python {script} --port 9000 --token SECRET
    python {script} --transport stdio     # for clients that start the server themselves
Needs the `codemode-jupyter` package (and whatever the imports below need).
"""
'''

_FOOTER = '''

def _build_server(token: str | None = None) -> _CodeModeServer:
    """The server with the notebook's functions; a bearer token is required when given."""
    options: dict = {{}}
    if token:
        from mcp.server.auth.provider import AccessToken
        from mcp.server.auth.settings import AuthSettings

        class _Token:
            async def verify_token(self, presented: str) -> AccessToken | None:
                if _hmac.compare_digest(presented.encode(), token.encode()):
                    return AccessToken(token=presented, client_id="client", scopes=["codemode"])
                return None

        options = {{
            "auth": AuthSettings(
                issuer_url="http://127.0.0.1",
                resource_server_url=None,
                required_scopes=["codemode"],
            ),
            "token_verifier": _Token(),
        }}
    server = _CodeModeServer(
        name={name!r},
        capabilities=[{capabilities}],
        timeout_s={timeout_s!r},
        max_heap_bytes={max_heap_bytes!r},
        enable_search={enable_search!r},
        mcp_options=options,
    )
    for tool_name, fn in _TOOLS.items():
        server.add_tool(fn, name=tool_name, inline=tool_name in _INLINE)
    return server


def _main(argv: list[str] | None = None) -> None:
    parser = _argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--transport", choices=["streamable-http", "stdio"], default="streamable-http"
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (HTTP)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (HTTP)")
    parser.add_argument(
        "--token",
        default=_os.environ.get("CODEMODE_MCP_TOKEN"),
        help="require this bearer token (HTTP; default: $CODEMODE_MCP_TOKEN, else none)",
    )
    args = parser.parse_args(argv)
    if args.transport == "stdio":
        _build_server().run("stdio")
        return
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.token:
        print(
            f"warning: listening on {{args.host}} without --token: anyone who can reach this "
            "port can run code that calls these functions",
            file=_sys.stderr,
        )
    _build_server(args.token).run("streamable-http", host=args.host, port=args.port)


if __name__ == "__main__":
    _main()
'''


def build_export(
    functions: Mapping[str, Callable[..., Any]],
    namespace: Mapping[str, Any],
    capabilities: Sequence[Any] = (),
    *,
    name: str = "notebook",
    timeout_s: float = 60.0,
    max_heap_bytes: int = 16 * 1024 * 1024,
    enable_search: bool = False,
    script_name: str = "server.py",
) -> ExportResult:
    """Build the source of a standalone MCP server serving ``functions``.

    Args:
        functions: ``{javascript_name: function}`` to serve (names may be dotted).
        namespace: Where the functions were defined (a notebook's ``user_ns``): global names
            they use are looked up here.
        capabilities: ``FsCapability``/``EnvCapability``/``HttpCapability`` objects to enable.
        name: The MCP server name.
        timeout_s, max_heap_bytes, enable_search: ``CodeModeServer`` settings.
        script_name: Used in the script's usage text.
    """
    exporter = _Exporter(namespace)
    registrations: list[tuple[str, str]] = []
    inline: list[str] = []
    skipped: list[str] = []
    for js_name, fn in sorted(functions.items()):
        bound = _bound_name(fn, namespace)
        own = getattr(fn, "__name__", None)
        if _is_notebook_function(fn):
            target = bound or str(own)
            ok = exporter.add_function(target, fn)
            exporter.seen.add(target)
            script_name_of = exporter.defined.get(id(fn), target)
        elif bound is not None:
            exporter.need(bound, context=f"the tool {js_name}")
            target = script_name_of = bound
            ok = bound not in exporter.unresolved
        else:
            target = script_name_of = own if isinstance(own, str) else js_name
            line = _import_line(target, fn) if target.isidentifier() else None
            ok = line is not None
            if line is not None:
                exporter.imports[target] = line
        if not ok:
            reason = exporter.unresolved.pop(target, "it cannot be exported")
            skipped.append(f"tool {js_name!r} left out: {reason}")
            continue
        registrations.append((js_name, script_name_of))
        if getattr(fn, "__codemode_inline__", False):
            inline.append(js_name)

    warnings = list(skipped)
    if exporter.unresolved:
        listed = "; ".join(f"{n}: {why}" for n, why in sorted(exporter.unresolved.items()))
        warnings.append(
            f"could not carry over {len(exporter.unresolved)} name(s) the code uses "
            f"({', '.join(sorted(exporter.unresolved))}); the script will raise NameError where "
            f"they are used. {listed}"
        )
    cap_lines: list[str] = []
    cap_classes: set[str] = set()
    for capability in capabilities:
        code = _capability_code(capability)
        if code is None:
            warnings.append(
                f"capability {getattr(capability, 'namespace', capability)!r} "
                f"({type(capability).__name__}) cannot be exported: add it to the script by hand"
            )
            continue
        cap_classes.add(code[0])
        cap_lines.append(code[1])

    source = _render(
        exporter,
        registrations,
        inline,
        cap_lines,
        cap_classes,
        name=name,
        timeout_s=timeout_s,
        max_heap_bytes=max_heap_bytes,
        enable_search=enable_search,
        script_name=script_name,
    )
    try:
        compile(source, script_name, "exec")
    except SyntaxError as exc:
        warnings.append(f"the generated script does not compile: {exc}")
    return ExportResult(
        source=source,
        warnings=warnings,
        tools=[js for js, _ in registrations],
        definitions=[block.name for block in exporter.blocks],
        imports=sorted(exporter.imports.values()),
        constants=sorted(exporter.constants),
        unresolved=sorted(exporter.unresolved),
    )


def _bound_name(fn: Any, namespace: Mapping[str, Any]) -> str | None:
    """The namespace name bound to ``fn`` (its own ``__name__`` preferred)."""
    own = getattr(fn, "__name__", None)
    if isinstance(own, str) and namespace.get(own) is fn:
        return own
    for key, value in namespace.items():
        if value is fn and isinstance(key, str) and key.isidentifier() and not key.startswith("_"):
            return key
    return None


def _render(
    exporter: _Exporter,
    registrations: list[tuple[str, str]],
    inline: list[str],
    cap_lines: list[str],
    cap_classes: set[str],
    **settings: Any,
) -> str:
    tools = ", ".join(js for js, _ in registrations) or "(none)"
    parts = [
        _HEADER.format(name=settings["name"], tools=tools, script=settings["script_name"]),
        "import argparse as _argparse",
        "import hmac as _hmac",
        "import os as _os",
        "import sys as _sys",
        "",
    ]
    cap_imports = [f"{c} as _{c}" for c in sorted(cap_classes)]
    if cap_imports:
        parts.append(f"from codemode import {', '.join(cap_imports)}")
    parts.append("from codemode.mcp import CodeModeServer as _CodeModeServer")
    if exporter.imports:
        parts += ["", "# What the notebook functions import"]
        parts += sorted(set(exporter.imports.values()), key=_import_sort_key)
    if exporter.unresolved:
        parts += ["", "# Not carried over from the notebook (define these by hand):"]
        parts += [f"#   {n}: {why}" for n, why in sorted(exporter.unresolved.items())]
    if exporter.constants:
        parts += ["", "# Constants from the notebook"]
        parts += [exporter.constants[n] for n in sorted(exporter.constants)]
    for block in exporter.blocks:
        parts += ["", "", block.source.rstrip()]
    if exporter.aliases:
        parts += [""] + exporter.aliases
    parts += ["", "", "_TOOLS = {"]
    parts += [f"    {js!r}: {target}," for js, target in registrations]
    parts += ["}", f"_INLINE = {set(inline)!r}" if inline else "_INLINE: set = set()"]
    footer = _FOOTER.format(
        name=settings["name"],
        capabilities=", ".join(cap_lines),
        timeout_s=float(settings["timeout_s"]),
        max_heap_bytes=int(settings["max_heap_bytes"]),
        enable_search=bool(settings["enable_search"]),
    )
    return "\n".join(parts) + "\n" + footer


def _import_sort_key(line: str) -> tuple[int, str]:
    return (0 if line.startswith("import ") else 1, line)
