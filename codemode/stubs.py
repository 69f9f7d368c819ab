"""TypeScript declarations (``.d.ts``) for the ``codemode`` object, generated from Python hints.

The model writing JavaScript only sees these declarations, so they must be valid TypeScript, say
exactly how a host function is called (one object of keyword arguments, a ``Promise`` back) and
carry the docstrings as JSDoc. Generation must never fail: any hint that cannot be mapped becomes
``unknown`` rather than an exception, because tools come from arbitrary user code.

Mapping decisions worth knowing when serialising values across the bridge:

* ``datetime``/``date``/``time`` are ``string`` (ISO 8601); ``UUID`` and paths are ``string``.
* ``Decimal`` (and other ``numbers.Real``) is ``number``: results are sent as JSON numbers
  (arguments may also be numeric strings). ``complex`` has no JSON form and is ``unknown``.
* ``timedelta`` is ``number`` (seconds). ``bytes`` is ``string``; as a result it is
  ``string | { base64: string }`` because non-UTF-8 bytes come back base64-encoded.
* An ``Enum`` becomes a named alias of its values, ``type Color = "red" | "green";``; a ``Flag``
  is ``number``. Values are what crosses the bridge, not member names.
* Dataclasses, pydantic models and ``TypedDict`` become named ``interface`` declarations at top
  level. Fields (and parameters) with defaults are optional. A ``NamedTuple`` argument is an
  object (an interface), a ``NamedTuple`` result a labelled tuple: that is how the bridge
  converts them. Interfaces are declared once, in the shape of where they are first met.
* Names that are not JavaScript identifiers are rewritten with :func:`js_identifier` (e.g.
  ``my-tool`` -> ``my_tool``, ``delete`` -> ``delete_``); the runtime should expose the same names.
"""

from __future__ import annotations

import ast
import builtins
import collections
import collections.abc as cabc
import dataclasses
import datetime as dt
import decimal
import enum
import functools
import inspect
import json
import linecache
import math
import numbers
import pathlib
import re
import sys
import types
import typing
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from codemode.docstrings import parse_docstring

if TYPE_CHECKING:
    from codemode.capabilities.base import Capability

try:  # typing_extensions has its own copies of some special forms; recognise both.
    import typing_extensions as _typing_extensions
except ImportError:  # pragma: no cover - it ships with pydantic, but is not required
    _typing_extensions = None

__all__ = [
    "TypeRegistry",
    "function_stub",
    "generate_stubs",
    "js_identifier",
    "namespace_stub",
    "ts_type",
]

# Beyond this nesting depth a type is rendered as ``unknown``: it stops self-referential aliases
# and string forward references that resolve to themselves.
_MAX_DEPTH = 48
_MAX_ANNOTATION_SOURCE = 2000
_INDENT = "  "
# Function declarations longer than this put one argument field per line.
_MAX_LINE = 100


def _forms(*names: str) -> tuple[object, ...]:
    """The special-form objects called ``names`` in ``typing`` and ``typing_extensions``."""
    found: list[object] = []
    for module in (typing, _typing_extensions):
        for name in names:
            obj = getattr(module, name, None) if module is not None else None
            if obj is not None and not any(obj is seen for seen in found):
                found.append(obj)
    return tuple(found)


def _is(obj: object, forms: tuple[object, ...]) -> bool:
    return any(obj is form for form in forms)


_ANY = _forms("Any")
_NEVER = _forms("Never", "NoReturn")
_LITERAL = _forms("Literal")
_LITERAL_STRING = _forms("LiteralString")
_ANNOTATED = _forms("Annotated")
_UNION = _forms("Union", "Optional")
_REQUIRED = _forms("Required")
_NOT_REQUIRED = _forms("NotRequired")
_TRANSPARENT = _forms("ReadOnly", "Final", "ClassVar") + _REQUIRED + _NOT_REQUIRED
_BOOLEAN_FORMS = _forms("TypeGuard", "TypeIs")
_TYPE_PARAMS = {"TypeVar", "ParamSpec", "TypeVarTuple", "ParamSpecArgs", "ParamSpecKwargs"}

# Identifiers that cannot name a function or namespace in a strict-mode declaration file.
_JS_RESERVED = frozenset(
    """break case catch class const continue debugger default delete do else enum export extends
    false finally for function if import in instanceof new null return super switch this throw
    true try typeof var void while with implements interface let package private protected public
    static yield await arguments eval""".split()
)
# Names an interface or alias must not take: TypeScript's predefined types, the global types of
# the standard ES and DOM libraries (merging with those would change or break them), and the
# ``codemode`` namespace itself.
_RESERVED_TYPE_NAMES = frozenset(
    """any unknown number bigint boolean string symbol object void never undefined null this
    codemode globalThis
    ActiveXObject AggregateError Array ArrayBuffer ArrayBufferLike ArrayBufferTypes ArrayBufferView
    ArrayIterator ArrayLike AsyncDisposable AsyncDisposableStack AsyncGenerator
    AsyncGeneratorFunction AsyncIterable AsyncIterableIterator AsyncIterator AsyncIteratorObject
    Atomics Awaited BigInt BigInt64Array BigUint64Array Boolean Capitalize ConcatArray
    ConstructorParameters DataView Date Disposable DisposableStack Error ErrorOptions EvalError
    Exclude Extract FinalizationRegistry FlatArray Float16Array Float32Array Float64Array Function
    Generator GeneratorFunction IArguments ImportMeta Infinity InstanceType Int16Array Int32Array
    Int8Array Intl Iterable IterableIterator Iterator IteratorObject IteratorResult JSON Lowercase
    Map Math NaN NoInfer NonNullable Number Object Omit OmitThisParameter Parameters Partial Pick
    Promise PromiseLike PromiseSettledResult PromiseWithResolvers PropertyDescriptor PropertyKey
    Proxy ProxyHandler RangeError Readonly ReadonlyArray ReadonlyMap ReadonlySet Record
    ReferenceError Reflect RegExp Required ReturnType Set SharedArrayBuffer String
    SuppressedError Symbol SyntaxError TemplateStringsArray ThisParameterType ThisType TypeError
    URIError Uint16Array Uint32Array Uint8Array Uint8ClampedArray Uncapitalize Uppercase WeakKey
    WeakMap WeakRef WeakSet
    AbortController AbortSignal Algorithm Animatable Animation Attr Audio Blob Body Cache Clipboard
    Comment Console Credential Crypto CryptoKey Document DOMException Element Event EventTarget
    External File FileList FileReader FormData Gamepad Geolocation Headers Highlight History
    HTMLElement Image Keyframe Location Lock MessageEvent Navigator Node NodeList Notification
    Option Performance Permissions Plugin Range ReadableStream Report Request Response Screen
    Selection Slottable Storage Text TextDecoder TextEncoder Touch Transferable Transformer URL
    URLSearchParams WebSocket Window Worker Worklet WritableStream""".split()
)

_STANDARD_MODULES = frozenset({"builtins", "collections", "collections.abc", "typing"})
_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")
# A dataclass or NamedTuple without a docstring gets one generated from its signature.
_GENERATED_DOC = re.compile(r"^\w+\(.*\)$", re.DOTALL)


# --------------------------------------------------------------------------- names and text


def js_identifier(name: str) -> str:
    """The JavaScript identifier a Python name is declared as.

    Invalid characters become ``_``, a leading digit gets a ``_`` prefix, and reserved words get a
    ``_`` suffix (``delete`` -> ``delete_``) because a namespace cannot declare them.
    """
    ident = re.sub(r"[^A-Za-z0-9_$]", "_", str(name)) or "_"
    if ident[0].isdigit():
        ident = "_" + ident
    if ident in _JS_RESERVED:
        ident += "_"
    return ident


def _property_key(name: str) -> str:
    """An object-type key: bare when it is an identifier, otherwise a quoted string."""
    name = str(name)
    return name if _IDENTIFIER.match(name) else json.dumps(name)


def _type_identifier(name: str) -> str:
    ident = re.sub(r"[^A-Za-z0-9_$]", "_", str(name)).strip("_") or "Type"
    if ident[0].isdigit():
        ident = "_" + ident
    return ident


def _comment_text(text: str) -> list[str]:
    """Lines safe to put inside a ``/** ... */`` block (``*/`` cannot end it early)."""
    text = _CONTROL_CHARS.sub(" ", str(text)).replace("*/", "*\\/")
    return [line.rstrip() for line in text.split("\n")]


def _jsdoc(
    summary: str = "",
    params: Sequence[tuple[str, str]] = (),
    returns: str = "",
) -> list[str]:
    """A JSDoc block as lines; one line when there is a single short line of text."""
    lines: list[str] = []
    if summary and summary.strip():
        lines.extend(_comment_text(summary.strip()))
    for name, text in params:
        if text and text.strip():
            lines.extend(_comment_text(f"@param {name} {' '.join(text.split())}"))
    if returns and returns.strip():
        lines.extend(_comment_text(f"@returns {' '.join(returns.split())}"))
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        return []
    if len(lines) == 1:
        return [f"/** {lines[0]} */"]
    return ["/**", *[f" * {line}" if line else " *" for line in lines], " */"]


def _indent_lines(lines: Sequence[str], level: int) -> list[str]:
    pad = _INDENT * level
    return [pad + line if line else line for line in lines]


def _needs_parens(type_text: str) -> bool:
    """Whether ``type_text`` has a top-level ``|`` or ``&`` (so ``T[]`` would bind wrongly)."""
    depth = 0
    quote = ""
    escaped = False
    for char in type_text:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
            continue
        if char in "\"'":
            quote = char
        elif char in "([{<":
            depth += 1
        elif char in ")]}>":
            depth -= 1
        elif char in "|&" and depth == 0:
            return True
    return False


def _array(element: str) -> str:
    return f"({element})[]" if _needs_parens(element) else f"{element}[]"


def _class_summary(cls: type) -> str:
    """The first paragraph of a class's own docstring, skipping generated ones."""
    doc = cls.__dict__.get("__doc__") if isinstance(cls.__dict__, Mapping) else None
    if not isinstance(doc, str) or _GENERATED_DOC.match(doc.strip()):
        return ""
    if doc.strip() == "An enumeration.":
        return ""
    return parse_docstring(doc).summary


# Parsed module sources keyed by file name, with the linecache list they were parsed from (a new
# list means the file changed). Parsing once per module keeps many classes per file cheap.
_SOURCE_TREES: dict[str, tuple[list[str], ast.Module | None]] = {}


def _class_node(cls: type) -> ast.ClassDef | None:
    """The ``class`` statement that defined ``cls``, found by its qualified name."""
    try:
        filename = inspect.getsourcefile(cls)
    except Exception:
        return None
    if not filename:
        return None
    lines = linecache.getlines(filename)
    cached = _SOURCE_TREES.get(filename)
    if cached is None or cached[0] is not lines:
        try:
            tree: ast.Module | None = ast.parse("".join(lines))
        except Exception:
            tree = None
        cached = _SOURCE_TREES[filename] = (lines, tree)
    if cached[1] is None:
        return None
    wanted = getattr(cls, "__qualname__", "")
    stack: list[tuple[ast.AST, str]] = [(cached[1], "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                qualname = prefix + child.name
                if qualname == wanted:
                    return child
                stack.append((child, qualname + "."))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                stack.append((child, f"{prefix}{child.name}.<locals>."))
            else:
                stack.append((child, prefix))
    return None


def _attribute_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (a string literal right after ``name: T``) of ``cls`` and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(getattr(cls, "__mro__", (cls,))):
        if getattr(klass, "__module__", "builtins") in {"builtins", "typing", "typing_extensions"}:
            continue
        node = _class_node(klass)
        body = node.body if node is not None else []
        for previous, statement in zip(body, body[1:], strict=False):
            if (
                isinstance(previous, ast.AnnAssign)
                and isinstance(previous.target, ast.Name)
                and isinstance(statement, ast.Expr)
                and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str)
            ):
                docs[previous.target.id] = inspect.cleandoc(statement.value.value)
    return docs


def _metadata_doc(metadata: Sequence[object]) -> str:
    """A description carried in ``Annotated`` metadata (a string, ``Field``, or ``Doc``)."""
    for item in metadata:
        if isinstance(item, str) and item.strip():
            return item.strip()
        for attr in ("description", "documentation"):
            value = getattr(item, attr, None)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return ""


def _annotation_doc(annotation: object) -> str:
    try:
        if _is(typing.get_origin(annotation), _ANNOTATED):
            return _metadata_doc(getattr(annotation, "__metadata__", ()))
    except Exception:
        pass
    return ""


# --------------------------------------------------------------------------- safe evaluation


class _Unresolved(Exception):
    """A string annotation that cannot be turned into an object."""


def _safe_eval(source: str, namespace: Mapping[str, Any]) -> Any:
    """Evaluate an annotation string allowing only names, attributes, subscripts and ``|``.

    ``eval`` would run arbitrary expressions (and a fuzzer will hand us ``9**9**9``); annotations
    only ever need this small subset.
    """
    if len(source) > _MAX_ANNOTATION_SOURCE:
        raise _Unresolved(source)
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise _Unresolved(source) from exc
    return _eval_node(tree.body, namespace, 0)


def _eval_node(node: ast.AST, namespace: Mapping[str, Any], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise _Unresolved("too deep")
    if isinstance(node, ast.Name):
        if node.id in namespace:
            return namespace[node.id]
        if hasattr(builtins, node.id):
            return getattr(builtins, node.id)
        raise _Unresolved(node.id)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Attribute):
        if node.attr.startswith("__"):
            raise _Unresolved(node.attr)
        return getattr(_eval_node(node.value, namespace, depth + 1), node.attr)
    if isinstance(node, ast.Subscript):
        base = _eval_node(node.value, namespace, depth + 1)
        return base[_eval_node(node.slice, namespace, depth + 1)]
    if isinstance(node, ast.Tuple):
        return tuple(_eval_node(item, namespace, depth + 1) for item in node.elts)
    if isinstance(node, ast.List):
        return [_eval_node(item, namespace, depth + 1) for item in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _eval_node(node.left, namespace, depth + 1) | _eval_node(
            node.right, namespace, depth + 1
        )
    raise _Unresolved(type(node).__name__)


def _module_namespace(obj: object) -> dict[str, Any]:
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    return dict(getattr(module, "__dict__", {}))


# --------------------------------------------------------------------------- type registry


class TypeRegistry:
    """Named declarations (interfaces, type aliases) that rendered types refer to.

    One registry is shared by everything in a generated file, so each class is declared once and
    two different classes never get the same name.
    """

    def __init__(self) -> None:
        self._names: dict[int, str] = {}
        self._keep_alive: list[object] = []
        self._declarations: dict[str, list[str]] = {}
        self._used: set[str] = set(_RESERVED_TYPE_NAMES)

    def lookup(self, obj: object) -> str | None:
        """The name already given to ``obj``, if any."""
        return self._names.get(id(obj))

    def reserve(self, obj: object, wanted: str) -> str:
        """Give ``obj`` a fresh, unique, valid type name derived from ``wanted``."""
        base = _type_identifier(wanted)
        name = base
        counter = 2
        while name in self._used:
            name = f"{base}_{counter}"
            counter += 1
        self._used.add(name)
        self._names[id(obj)] = name
        self._keep_alive.append(obj)  # keeps id() unique while the registry lives
        self._declarations[name] = []
        return name

    def define(self, name: str, lines: Sequence[str]) -> None:
        self._declarations[name] = list(lines)

    @property
    def names(self) -> list[str]:
        """Declared names in the order they were first referenced."""
        return list(self._declarations)

    def declaration(self, name: str) -> str:
        return "\n".join(self._declarations.get(name, []))

    def render(self) -> str:
        """All declarations, separated by blank lines."""
        return "\n\n".join(
            # A name reserved but never defined (only if rendering was interrupted) still has
            # to exist, or every reference to it would be an error.
            "\n".join(lines) if lines else f"type {name} = unknown;"
            for name, lines in self._declarations.items()
        )


@dataclasses.dataclass
class _Field:
    key: str
    type: str
    optional: bool = False
    doc: str = ""


class _Renderer:
    """Turns annotations into TypeScript, registering named types as it meets them."""

    def __init__(self, registry: TypeRegistry, namespace: Mapping[str, Any] | None = None) -> None:
        self.registry = registry
        self.namespace: Mapping[str, Any] = namespace or {}
        self.depth = 0
        # Inside a type alias, ``Record<string, T>`` referring back to the alias is an error
        # ("circularly references itself"); an index signature is the equivalent that works.
        self.in_alias = False
        # Results and arguments are converted differently at the bridge (``codemode.convert``):
        # a NamedTuple is accepted as an object but returned as an array, and bytes that are not
        # UTF-8 come back as ``{base64}``. ``output`` is True while rendering a return type.
        self.output = False

    @contextmanager
    def scope(self, namespace: Mapping[str, Any]) -> Iterator[None]:
        """Resolve string annotations against ``namespace`` (a module's globals) for a while."""
        saved = self.namespace
        self.namespace = namespace
        try:
            yield
        finally:
            self.namespace = saved

    def resolve(self, annotation: object) -> object:
        """Evaluate strings and forward references; raise ``_Unresolved`` when impossible."""
        for _ in range(_MAX_DEPTH):
            if isinstance(annotation, typing.ForwardRef):
                if getattr(annotation, "__forward_evaluated__", False):
                    annotation = annotation.__forward_value__
                else:
                    annotation = annotation.__forward_arg__
                continue
            if isinstance(annotation, str):
                annotation = _safe_eval(annotation, self.namespace)
                continue
            return annotation
        raise _Unresolved("forward reference cycle")

    def render(self, annotation: object) -> str:
        """The TypeScript type for ``annotation``; ``unknown`` whenever mapping fails."""
        if self.depth >= _MAX_DEPTH:
            return "unknown"
        self.depth += 1
        try:
            return self._render(annotation)
        except Exception:
            return "unknown"
        finally:
            self.depth -= 1

    def render_return(self, annotation: object) -> str:
        """A return type: ``None`` is ``void`` and awaitables are unwrapped (no Promise nesting)."""
        try:
            for _ in range(_MAX_DEPTH):
                annotation = self.resolve(annotation)
                origin = typing.get_origin(annotation)
                args = typing.get_args(annotation)
                if _is(origin, _ANNOTATED) and args:
                    annotation = args[0]
                elif isinstance(origin, type) and issubclass(origin, cabc.Awaitable):
                    annotation = args[-1] if args else Any
                elif annotation is cabc.Awaitable or annotation is cabc.Coroutine:
                    annotation = Any
                else:
                    break
        except Exception:
            return "unknown"
        if annotation is None or annotation is type(None):
            return "void"
        if annotation is inspect.Signature.empty:
            return "unknown"
        saved, self.output = self.output, True
        try:
            return self.render(annotation)
        finally:
            self.output = saved

    # -- dispatch

    def _render(self, annotation: object) -> str:
        annotation = self.resolve(annotation)
        if annotation is None or annotation is type(None):
            return "null"
        if annotation is inspect.Parameter.empty or annotation is object or _is(annotation, _ANY):
            return "unknown"
        if _is(annotation, _NEVER):
            return "never"
        if _is(annotation, _LITERAL_STRING):
            return "string"
        if type(annotation).__name__ in _TYPE_PARAMS:
            return "unknown"
        supertype = getattr(annotation, "__supertype__", None)
        if supertype is not None and callable(annotation):  # NewType
            return self.render(supertype)
        if type(annotation).__name__ == "TypeAliasType" and hasattr(annotation, "__value__"):
            return self._alias(annotation)
        origin = typing.get_origin(annotation)
        if origin is not None:
            return self._generic(annotation, origin, typing.get_args(annotation))
        if isinstance(annotation, type):
            return self._class(annotation)
        return "unknown"

    def _generic(self, annotation: object, origin: object, args: tuple[Any, ...]) -> str:
        if _is(origin, _ANNOTATED) or _is(origin, _TRANSPARENT):
            return self.render(args[0]) if args else "unknown"
        if _is(origin, _UNION) or origin is types.UnionType:
            return self._union(args)
        if _is(origin, _LITERAL):
            return self._literal(args)
        if _is(origin, _BOOLEAN_FORMS):
            return "boolean"
        if not isinstance(origin, type) or origin is type:
            return "unknown"
        if _structured_kind(origin):
            return self._class(origin)
        if origin is tuple:
            return self._tuple(annotation, args)
        if issubclass(origin, collections.Counter):
            return "Record<string, number>"
        if issubclass(origin, cabc.Mapping):
            value = self.render(args[1]) if len(args) == 2 else "unknown"
            if self.in_alias:
                return f"{{ [key: string]: {value} }}"
            return f"Record<string, {value}>"
        if issubclass(origin, cabc.Awaitable):
            return f"Promise<{self.render_return(args[-1]) if args else 'unknown'}>"
        if issubclass(origin, (str, bytes, bytearray)):
            return self._class(origin)
        if _array_like(origin):
            return _array(self.render(args[0]) if args else "unknown")
        return self._class(origin)

    def _union(self, args: Sequence[object]) -> str:
        parts: list[str] = []
        for arg in args:
            rendered = self.render(arg)
            if rendered == "unknown":
                return "unknown"
            if rendered != "never" and rendered not in parts:
                parts.append(rendered)
        if "null" in parts:
            parts.remove("null")
            parts.append("null")
        return " | ".join(parts) if parts else "never"

    def _literal(self, values: Sequence[object]) -> str:
        parts: list[str] = []
        for value in values:
            rendered = _literal_value(value)
            if rendered is None:
                # Nested ``Literal[Literal[...]]`` is legal; anything else is not a literal.
                if typing.get_origin(value) is not None:
                    rendered = self.render(value)
                else:
                    return "unknown"
            if rendered == "unknown":
                return "unknown"
            if rendered not in parts:
                parts.append(rendered)
        return " | ".join(parts) if parts else "never"

    def _tuple(self, annotation: object, args: tuple[Any, ...]) -> str:
        if annotation is typing.Tuple:  # noqa: UP006 - the bare alias is what we test for
            return "unknown[]"
        if len(args) == 2 and args[1] is Ellipsis:
            return _array(self.render(args[0]))
        if any(arg is Ellipsis for arg in args):
            return "unknown[]"
        return "[" + ", ".join(self.render(arg) for arg in args) + "]"

    def _class(self, cls: type) -> str:
        if cls is bool:
            return "boolean"
        if issubclass(cls, enum.Enum):
            return self._enum(cls)
        kind = _structured_kind(cls)
        if kind == "typeddict":
            return self._interface(cls, self._typeddict_fields)
        if kind == "pydantic":
            if getattr(cls, "__pydantic_root_model__", False):
                root = cls.model_fields.get("root")
                return self.render(root.annotation) if root is not None else "unknown"
            return self._interface(cls, self._pydantic_fields)
        if kind == "dataclass":
            return self._interface(cls, self._dataclass_fields)
        if kind == "namedtuple":
            if self.output:
                return self._namedtuple(cls)
            return self._interface(cls, self._namedtuple_fields)
        if issubclass(cls, (bytes, bytearray, memoryview)):
            return "string | { base64: string }" if self.output else "string"
        if issubclass(cls, str):
            return "string"
        if issubclass(cls, dt.timedelta):
            return "number"
        if issubclass(cls, (dt.date, dt.time, uuid.UUID, pathlib.PurePath)):
            return "string"
        if issubclass(cls, (int, float, decimal.Decimal)):
            return "number"
        if issubclass(cls, numbers.Real):
            return "number"
        if issubclass(cls, collections.Counter):
            return "Record<string, number>"
        if issubclass(cls, cabc.Mapping):
            return "Record<string, unknown>"
        if issubclass(cls, cabc.Awaitable):
            return "Promise<unknown>"
        if _array_like(cls):
            return "unknown[]"
        return "unknown"

    # -- named types

    def _alias(self, alias: Any) -> str:
        existing = self.registry.lookup(alias)
        if existing is not None:
            return existing
        name = self.registry.reserve(alias, getattr(alias, "__name__", "Alias"))
        with self.scope({**_module_namespace(alias), **self.namespace}):
            saved, self.in_alias = self.in_alias, True
            try:
                body = self.render(alias.__value__)
            finally:
                self.in_alias = saved
        self.registry.define(name, [f"type {name} = {body};"])
        return name

    def _enum(self, cls: type[enum.Enum]) -> str:
        if issubclass(cls, enum.Flag):
            return "number"
        existing = self.registry.lookup(cls)
        if existing is not None:
            return existing
        parts: list[str] = []
        for member in cls:
            rendered = _literal_value(member.value)
            if rendered is None:
                return "unknown"
            if rendered not in parts:
                parts.append(rendered)
        name = self.registry.reserve(cls, cls.__name__)
        lines = _jsdoc(_class_summary(cls))
        lines.append(f"type {name} = {' | '.join(parts) or 'never'};")
        self.registry.define(name, lines)
        return name

    def _interface(self, cls: type, fields: Callable[[type], list[_Field]]) -> str:
        existing = self.registry.lookup(cls)
        if existing is not None:
            return existing
        # Reserve the name before rendering fields so self-references terminate.
        name = self.registry.reserve(cls, getattr(cls, "__name__", "Interface"))
        try:
            with self.scope({**_module_namespace(cls), cls.__name__: cls}):
                members = fields(cls)
        except Exception:
            members = []
        lines = _jsdoc(_class_summary(cls))
        if not members:
            lines.append(f"interface {name} {{}}")
        else:
            lines.append(f"interface {name} {{")
            for member in members:
                lines.extend(_indent_lines(_jsdoc(member.doc), 1))
                optional = "?" if member.optional else ""
                lines.append(f"{_INDENT}{_property_key(member.key)}{optional}: {member.type};")
            lines.append("}")
        self.registry.define(name, lines)
        return name

    def _namedtuple(self, cls: type) -> str:
        """A NamedTuple *result*: a labelled tuple, since it is returned as a JSON array."""
        hints = _class_hints(cls)
        names = [str(name) for name in getattr(cls, "_fields", ())]
        with self.scope({**_module_namespace(cls), cls.__name__: cls}):
            types_ = [self.render(hints.get(name, Any)) for name in names]
        if not all(_IDENTIFIER.match(name) and name not in _JS_RESERVED for name in names):
            return "[" + ", ".join(types_) + "]"
        return "[" + ", ".join(f"{n}: {t}" for n, t in zip(names, types_, strict=True)) + "]"

    def _namedtuple_fields(self, cls: type) -> list[_Field]:
        hints = _class_hints(cls)
        defaults = getattr(cls, "_field_defaults", {}) or {}
        docs = _attribute_docs(cls)
        return [
            _Field(
                key=str(name),
                type=self.render(hints.get(name, Any)),
                optional=name in defaults,
                doc=docs.get(name, "") or _annotation_doc(hints.get(name)),
            )
            for name in getattr(cls, "_fields", ())
        ]

    def _typeddict_fields(self, cls: type) -> list[_Field]:
        hints = _class_hints(cls)
        optional_keys = set(getattr(cls, "__optional_keys__", ()) or ())
        total = bool(getattr(cls, "__total__", True))
        docs = _attribute_docs(cls)
        fields: list[_Field] = []
        for key, annotation in hints.items():
            optional = key in optional_keys if optional_keys or total else True
            marker = _required_marker(annotation)
            if marker is not None:
                optional = not marker
            fields.append(
                _Field(
                    key=key,
                    type=self.render(annotation),
                    optional=optional,
                    doc=docs.get(key) or _annotation_doc(_strip_required(annotation)),
                )
            )
        return fields

    def _dataclass_fields(self, cls: type) -> list[_Field]:
        hints = _class_hints(cls)
        docs = _attribute_docs(cls)
        fields: list[_Field] = []
        for field in dataclasses.fields(cls):
            annotation = hints.get(field.name, field.type)
            metadata = field.metadata or {}
            doc = next(
                (
                    str(metadata[key])
                    for key in ("description", "doc", "help")
                    if isinstance(metadata.get(key), str)
                ),
                "",
            )
            fields.append(
                _Field(
                    key=field.name,
                    type=self.render(annotation),
                    optional=field.default is not dataclasses.MISSING
                    or field.default_factory is not dataclasses.MISSING,
                    doc=doc or docs.get(field.name, "") or _annotation_doc(annotation),
                )
            )
        return fields

    def _pydantic_fields(self, cls: type) -> list[_Field]:
        docs = _attribute_docs(cls)
        fields: list[_Field] = []
        model_fields: Mapping[str, Any] = cls.model_fields  # type: ignore[attr-defined]
        for name, info in model_fields.items():
            alias = getattr(info, "alias", None)
            description = getattr(info, "description", None)
            try:
                optional = not info.is_required()
            except Exception:
                optional = False
            fields.append(
                _Field(
                    key=alias if isinstance(alias, str) and alias else name,
                    type=self.render(getattr(info, "annotation", Any)),
                    optional=optional,
                    doc=description if isinstance(description, str) else docs.get(name, ""),
                )
            )
        return fields


def _literal_value(value: object) -> str | None:
    """The TypeScript literal type for a ``Literal``/``Enum`` value, or None if it has none."""
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(float(value)) if math.isfinite(value) else "number"
    if isinstance(value, str):
        return json.dumps(str(value))
    return None


def _array_like(cls: type) -> bool:
    """Whether values of ``cls`` reach JavaScript as arrays.

    Sequences and sets do; so do the standard iterable ABCs and builtins. An arbitrary user class
    that happens to define ``__iter__`` does not (the bridge cannot serialise it as a list).
    """
    if not issubclass(cls, cabc.Iterable) or issubclass(cls, (str, bytes, cabc.Mapping)):
        return False
    if issubclass(cls, (cabc.Sequence, cabc.Set)):
        return True
    return getattr(cls, "__module__", "") in _STANDARD_MODULES


def _structured_kind(cls: object) -> str | None:
    """Which record-like class family ``cls`` belongs to, if any."""
    if not isinstance(cls, type):
        return None
    try:
        if typing.is_typeddict(cls) or (
            _typing_extensions is not None and _typing_extensions.is_typeddict(cls)
        ):
            return "typeddict"
        if isinstance(getattr(cls, "model_fields", None), Mapping) and hasattr(
            cls, "model_validate"
        ):
            return "pydantic"
        if dataclasses.is_dataclass(cls):
            return "dataclass"
        if issubclass(cls, tuple) and isinstance(getattr(cls, "_fields", None), tuple):
            return "namedtuple"
    except Exception:
        return None
    return None


def _required_marker(annotation: object) -> bool | None:
    """True for ``Required[...]``, False for ``NotRequired[...]`` (looking through Annotated)."""
    for _ in range(_MAX_DEPTH):
        origin = typing.get_origin(annotation)
        if _is(origin, _REQUIRED):
            return True
        if _is(origin, _NOT_REQUIRED):
            return False
        args = typing.get_args(annotation)
        if (_is(origin, _ANNOTATED) or _is(origin, _TRANSPARENT)) and args:
            annotation = args[0]
            continue
        return None
    return None


def _strip_required(annotation: object) -> object:
    origin = typing.get_origin(annotation)
    if (_is(origin, _REQUIRED) or _is(origin, _NOT_REQUIRED)) and typing.get_args(annotation):
        return typing.get_args(annotation)[0]
    return annotation


def _class_hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of a class, falling back to the raw ones (strings resolved later)."""
    for localns in (None, {cls.__name__: cls}):
        try:
            return dict(typing.get_type_hints(cls, localns=localns, include_extras=True))
        except Exception:
            continue
    raw: dict[str, Any] = {}
    for klass in reversed(getattr(cls, "__mro__", (cls,))):
        annotations = klass.__dict__.get("__annotations__", {})
        if isinstance(annotations, Mapping):
            raw.update(annotations)
    return raw


# --------------------------------------------------------------------------- functions


def _hint_target(fn: object) -> object:
    """The plain function whose annotations describe calling ``fn``."""
    for _ in range(16):
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif isinstance(fn, type):
            return fn.__init__
        elif (
            callable(fn)
            and not inspect.isfunction(fn)
            and not inspect.ismethod(fn)
            and not inspect.isbuiltin(fn)
        ):
            fn = type(fn).__call__
        else:
            break
    return fn


def _callable_doc(fn: object) -> str | None:
    """The docstring describing ``fn`` itself, not e.g. ``functools.partial`` or ``int``."""
    for _ in range(16):
        if isinstance(fn, functools.partial):
            fn = fn.func
            continue
        if isinstance(fn, type):
            own = fn.__dict__.get("__doc__")
            if not isinstance(own, str) or _GENERATED_DOC.match(own.strip()):
                return None
            return own
        if inspect.isroutine(fn):
            return inspect.getdoc(fn)
        if callable(fn):
            # A callable object: its ``__call__`` documents the call (parameters included);
            # the class docstring is the fallback.
            call_doc = getattr(type(fn).__call__, "__doc__", None)
            if isinstance(call_doc, str) and call_doc.strip():
                return call_doc
            own = type(fn).__dict__.get("__doc__")
            return own if isinstance(own, str) else None
        return None
    return None


def _callable_namespace(target: object) -> dict[str, Any]:
    try:
        unwrapped = inspect.unwrap(target)  # type: ignore[arg-type]
    except Exception:
        unwrapped = target
    func = getattr(unwrapped, "__func__", unwrapped)
    namespace = getattr(func, "__globals__", None)
    return dict(namespace) if isinstance(namespace, Mapping) else _module_namespace(func)


def _call_expression(path: Sequence[str]) -> str:
    """How JavaScript reaches a tool by its real name, e.g. ``codemode.fs["my-tool"]``."""
    return "codemode" + "".join(
        f".{part}" if _IDENTIFIER.match(part) else f"[{json.dumps(part)}]" for part in path
    )


def _function_lines(
    renderer: _Renderer, name: str, fn: object, real_path: Sequence[str] = ()
) -> list[str]:
    """The declaration of one host function (with JSDoc), unindented.

    ``real_path`` is the tool's registered name split on dots; when the declared identifiers
    differ from it (``my-tool`` declared as ``my_tool``) the JSDoc says how to really call it.
    """
    js_name = js_identifier(name)
    try:
        doc = parse_docstring(_callable_doc(fn))
    except Exception:
        doc = parse_docstring(None)
    if real_path and [js_identifier(part) for part in real_path[:-1]] + [js_name] != list(
        real_path
    ):
        note = f"Call it as {_call_expression(real_path)}(...)."
        doc.summary = f"{doc.summary}\n{note}" if doc.summary else note
    try:
        signature = inspect.signature(fn)  # type: ignore[arg-type]
    except Exception:
        signature = None
    if signature is None:
        return [
            *_jsdoc(doc.summary, (), doc.returns),
            f"function {js_name}(args?: Record<string, unknown>): Promise<unknown>;",
        ]

    target = _hint_target(fn)
    try:
        hints: dict[str, Any] = dict(typing.get_type_hints(target, include_extras=True))
    except Exception:
        hints = {}

    members: list[str] = []
    param_docs: list[tuple[str, str]] = []
    any_required = False
    extra_keys = False
    with renderer.scope(_callable_namespace(target)):
        for index, param in enumerate(signature.parameters.values()):
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                extra_keys = True
                continue
            if index == 0 and param.name in {"self", "cls"}:
                continue
            annotation = hints.get(param.name, param.annotation)
            optional = param.default is not inspect.Parameter.empty
            field_doc = ""
            default = param.default
            if type(default).__name__ == "FieldInfo":  # pydantic ``x: int = Field(...)``
                try:
                    optional = not default.is_required()
                except Exception:
                    pass
                description = getattr(default, "description", None)
                field_doc = description if isinstance(description, str) else ""
            any_required = any_required or not optional
            type_text = renderer.render(annotation)
            key = _property_key(param.name)
            members.append(f"{key}{'?' if optional else ''}: {type_text}")
            text = doc.params.get(param.name) or field_doc or _annotation_doc(annotation)
            param_docs.append((param.name, text))
        if isinstance(fn, type):
            returns = renderer.render(fn)
        else:
            returns = renderer.render_return(hints.get("return", signature.return_annotation))
    if extra_keys:
        members.append("[key: string]: unknown")
    optional_args = "" if any_required else "?"
    args_type = "{ " + "; ".join(members) + " }" if members else "{}"
    declaration = f"function {js_name}(args{optional_args}: {args_type}): Promise<{returns}>;"
    if len(declaration) > _MAX_LINE:
        # Long parameter lists read better one field per line.
        declaration = "\n".join(
            [
                f"function {js_name}(args{optional_args}: {{",
                *[f"{_INDENT}{member};" for member in members],
                f"}}): Promise<{returns}>;",
            ]
        )
    return [*_jsdoc(doc.summary, param_docs, doc.returns), *declaration.split("\n")]


# --------------------------------------------------------------------------- namespaces


@dataclasses.dataclass
class _Namespace:
    description: str = ""
    functions: dict[str, object] = dataclasses.field(default_factory=dict)
    children: dict[str, _Namespace] = dataclasses.field(default_factory=dict)

    def child(self, path: Sequence[str]) -> _Namespace:
        node = self
        for part in path:
            node = node.children.setdefault(part, _Namespace())
        return node


def _split_path(name: object) -> list[str]:
    return [part for part in str(name).split(".") if part] or ["_"]


def _capability_parts(capability: object) -> tuple[list[str], str, Mapping[str, object]]:
    """(namespace path, description, exports) of a capability, tolerating broken ones."""
    path = _split_path(getattr(capability, "namespace", "") or "_")
    description = getattr(capability, "description", "")
    try:
        exports = capability.exports()  # type: ignore[attr-defined]
        if not isinstance(exports, Mapping):
            exports = dict(exports)
    except Exception:
        exports = {}
    return path, description if isinstance(description, str) else "", exports


def _namespace_lines(
    renderer: _Renderer, name: str, node: _Namespace, real_path: Sequence[str] = ()
) -> list[str]:
    """``namespace name { ... }`` with nested members, unindented, preceded by its JSDoc."""
    lines = _jsdoc(node.description)
    body = _namespace_body(renderer, node, real_path)
    if not body:
        lines.append(f"namespace {name} {{}}")
        return lines
    lines.append(f"namespace {name} {{")
    lines.extend(_indent_lines(body, 1))
    lines.append("}")
    return lines


def _namespace_body(
    renderer: _Renderer, node: _Namespace, real_path: Sequence[str] = ()
) -> list[str]:
    taken: set[str] = set()

    def unique(name: str) -> str:
        ident = js_identifier(name)
        candidate, counter = ident, 2
        while candidate in taken:
            candidate = f"{ident}_{counter}"
            counter += 1
        taken.add(candidate)
        return candidate

    def order(item: tuple[str, object]) -> tuple[str, bool, str]:
        # By declared name, so output does not depend on registration order; a name that is
        # already an identifier keeps it when another one sanitises to the same text.
        return js_identifier(item[0]), js_identifier(item[0]) != item[0], item[0]

    functions = sorted(node.functions.items(), key=order)
    declared = [(unique(name), fn) for name, fn in functions]
    # A namespace may share a function's name (TypeScript merges them), so reset for children.
    taken = set()
    children = sorted(node.children.items(), key=order)
    nested = [(unique(name), name, child) for name, child in children]

    lines: list[str] = []
    for (js_name, fn), (name, _) in zip(declared, functions, strict=True):
        lines.extend(_function_lines(renderer, js_name, fn, [*real_path, name]))
    for js_name, name, child in nested:
        lines.extend(_namespace_lines(renderer, js_name, child, [*real_path, name]))
    return lines


# --------------------------------------------------------------------------- public API


def ts_type(
    annotation: object, *, registry: TypeRegistry | None = None, output: bool = False
) -> str:
    """One Python annotation as a TypeScript type expression.

    Named types (interfaces, enum aliases) are referenced by name and collected in ``registry``
    (pass one to get their declarations via ``registry.render()``). ``output=True`` renders the
    shape of a *result* (as returned to JavaScript) rather than of an argument. Never raises.
    """
    renderer = _Renderer(registry if registry is not None else TypeRegistry())
    renderer.output = output
    return renderer.render(annotation)


def function_stub(
    name: str, fn: Callable[..., Any], *, registry: TypeRegistry | None = None
) -> str:
    """The declaration of one host function as it appears inside its namespace, with JSDoc.

    ``name`` may be dotted (``"fs.read"``); only its last part is declared. Interfaces it refers
    to are collected in ``registry`` if given.
    """
    renderer = _Renderer(registry if registry is not None else TypeRegistry())
    try:
        path = _split_path(name)
        return "\n".join(_function_lines(renderer, path[-1], fn, path))
    except Exception:
        js_name = js_identifier(_split_path(name)[-1])
        return f"function {js_name}(args?: Record<string, unknown>): Promise<unknown>;"


def namespace_stub(capability: Capability, *, registry: TypeRegistry | None = None) -> str:
    """The ``namespace`` block of one capability (JSDoc from its description), unindented."""
    renderer = _Renderer(registry if registry is not None else TypeRegistry())
    path, description, exports = _capability_parts(capability)
    root = _Namespace()
    node = root.child(path)
    node.description = description
    node.functions.update({str(key): fn for key, fn in exports.items()})
    name, child = next(iter(root.children.items()))
    return "\n".join(_namespace_lines(renderer, js_identifier(name), child, [name]))


def generate_stubs(
    capabilities: Sequence[Capability] = (),
    flat_fns: Mapping[str, Callable[..., Any]] | None = None,
) -> str:
    """The complete ``.d.ts`` text declaring ``codemode`` and every type it mentions.

    Capabilities become nested namespaces; ``flat_fns`` keys may be dotted (``"math.add"``) to
    nest them too. Members are sorted by name; a later registration of the same name wins.
    """
    root = _Namespace()
    for capability in capabilities:
        path, description, exports = _capability_parts(capability)
        node = root.child(path)
        if description:
            node.description = (
                f"{node.description}\n\n{description}" if node.description else description
            )
        for key, fn in exports.items():
            node.functions[str(key)] = fn
    for key, fn in (flat_fns or {}).items():
        *parents, leaf = _split_path(key)
        root.child(parents).functions[leaf] = fn

    registry = TypeRegistry()
    renderer = _Renderer(registry)
    body = _namespace_body(renderer, root)
    out: list[str] = []
    declarations = registry.render()
    if declarations:
        out.extend([declarations, ""])
    if body:
        out.append("declare namespace codemode {")
        out.extend(_indent_lines(body, 1))
        out.append("}")
    else:
        out.append("declare namespace codemode {}")
    return "\n".join(out) + "\n"
