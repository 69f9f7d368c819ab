"""The JavaScript/Python boundary: checking call arguments and making results JSON-safe.

JavaScript in the isolate calls ``await codemode.NAME({kw: ...})``. The engine JSON-encodes the
list of JS call arguments, and :class:`Binder` turns that list into ``(args, kwargs)`` for the
Python host function, checked and coerced against its signature so that a wrong call fails with
a message the JavaScript author can act on (it names the tool, the parameter path, and uses JS
type names). Results travel the other way through :func:`to_jsonable` / :func:`dumps`.

Decisions worth knowing (all covered by ``tests/test_convert.py``):

* ``null`` for a top-level parameter (or dataclass field) that has a default and whose annotation
  does not accept ``None`` means "use the default": JavaScript code conflates null/undefined.
* Unknown keys are rejected for every TypedDict (total or not) and every dataclass, so that typos
  in JavaScript object literals surface with a "did you mean" hint instead of vanishing.
* Annotations this module does not understand (arbitrary classes, Callable, unresolvable forward
  references) are treated as ``Any``: the JSON value is passed through unchanged.
* Results: NaN/Infinity become ``null`` (exactly what JavaScript's ``JSON.stringify`` does),
  finite ``Decimal`` becomes a float (non-finite ones ``null``), ``bytes`` become a string when
  they are valid UTF-8 and ``{"base64": "..."}`` otherwise, ``timedelta`` becomes seconds.

Neither pydantic nor numpy is imported here: they are only consulted through ``sys.modules``,
because a value (or annotation) of one of their types can only exist once the library is loaded.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import decimal
import difflib
import enum
import functools
import inspect
import json
import math
import re
import sys
import threading
import types
import typing
import uuid
from collections import abc
from collections.abc import Callable, Iterable
from pathlib import PurePath
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "ArgumentError",
    "Binder",
    "ConversionError",
    "dumps",
    "to_jsonable",
]

MAX_DEPTH = 200
"""Deepest nesting of containers :func:`to_jsonable` will follow before giving up."""


class ArgumentError(TypeError):
    """A JavaScript call did not match the host function's signature.

    The message is written for the author of the JavaScript: it names the tool and the parameter
    path and uses JavaScript type names. ``tool`` and ``parameter`` carry the same facts for code.
    """

    def __init__(self, message: str, tool: str | None = None, parameter: str | None = None) -> None:
        super().__init__(message)
        self.tool = tool
        self.parameter = parameter


class ConversionError(TypeError):
    """A host function returned something that cannot be sent to JavaScript as JSON.

    ``path`` is where in the result the problem sits, e.g. ``result.items[3].when``.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*\Z")


def _join_path(root: str, parts: Iterable[object]) -> str:
    """Render a path the way JavaScript would spell the access: ``a.b[3]["odd key"]``."""
    out = [root]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif isinstance(part, str) and _IDENT.match(part):
            out.append(f".{part}")
        else:
            out.append(f"[{json.dumps(str(part), ensure_ascii=False)}]")
    return "".join(out)


def _js_kind(value: Any) -> str:
    """The JavaScript ``typeof``-style name of a JSON value, with null and array split out."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "python"


def _describe(value: Any) -> str:
    """Describe a received value for an error message, short and in JavaScript terms."""
    kind = _js_kind(value)
    if kind == "null":
        return "null"
    if kind == "boolean":
        return "boolean true" if value else "boolean false"
    if kind == "number":
        return f"number {value!r}"
    if kind == "string":
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"string {json.dumps(text, ensure_ascii=False)}"
    if kind == "array":
        return f"array of length {len(value)}"
    if kind == "object":
        return "object"
    return f"Python object of type '{type(value).__name__}'"


def _suggest(key: str, names: Iterable[str]) -> str:
    """A " (did you mean 'x'?)" hint for a probable typo or camelCase/snake_case mix-up."""
    names = list(names)
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()
    lowered = {n.lower().replace("_", ""): n for n in names}
    exact = lowered.get(key.lower().replace("_", "")) or (snake if snake in names else None)
    if exact is None:
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        exact = close[0] if close else None
    return f" (did you mean '{exact}'?)" if exact else ""


# --------------------------------------------------------------------------------------------
# Argument checking: annotations compiled once into checkers
# --------------------------------------------------------------------------------------------


class _Mismatch(Exception):
    """Internal: a value failed a check. The path is collected while the stack unwinds.

    Unwinding (each container appends its key) costs nothing on the success path, which is
    the one that runs on every call.
    """

    def __init__(self, text: str, others: list[_Mismatch] | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.parts: list[str | int] = []
        self.others = others or []

    def push(self, key: str | int) -> None:
        self.parts.append(key)
        for other in self.others:
            other.push(key)

    def render(self, root: str) -> list[tuple[str, str]]:
        """``(path, text)`` for this problem and any siblings, rooted at a parameter name."""
        found = [(_join_path(root, reversed(self.parts)), self.text)]
        for other in self.others:
            found.extend(other.render(root))
        return found


def _expected(name: str, value: Any) -> _Mismatch:
    return _Mismatch(f"expected {name}, got {_describe(value)}")


_ALL_KINDS = frozenset({"null", "boolean", "number", "string", "array", "object", "python"})

Conv = Callable[[Any], Any]


class _Checker:
    """What one annotation compiles to: a converter plus facts used for speed and messages.

    ``conv`` returns the (possibly converted) value or raises :class:`_Mismatch`. A value whose
    exact type is ``fast`` is accepted unchanged without calling ``conv``; ``is_any`` accepts all.
    ``expected`` names the type in errors ("array"), ``ts`` in signatures ("number[]"), and
    ``kinds`` lists which JSON kinds could possibly match (used to pick the useful union error).
    """

    __slots__ = ("conv", "expected", "ts", "fast", "is_any", "kinds")

    def __init__(
        self,
        conv: Conv,
        expected: str,
        ts: str,
        kinds: Iterable[str],
        fast: type | None = None,
        is_any: bool = False,
    ) -> None:
        self.conv = conv
        self.expected = expected
        self.ts = ts
        self.kinds = frozenset(kinds)
        self.fast = fast
        self.is_any = is_any

    @property
    def accepts_none(self) -> bool:
        return "null" in self.kinds

    def check(self, value: Any) -> Any:
        """Run the checker with its fast paths (used by containers for their elements)."""
        if self.is_any or type(value) is self.fast:
            return value
        return self.conv(value)


def _identity(value: Any) -> Any:
    return value


_ANY = _Checker(_identity, "any value", "any", _ALL_KINDS, is_any=True)


def _conv_str(value: Any) -> Any:
    if isinstance(value, str):
        return value
    raise _expected("string", value)


def _conv_int(value: Any) -> Any:
    if type(value) is float:
        if value.is_integer():
            return int(value)
        raise _Mismatch(f"expected integer, got {_describe(value)}")
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise _expected("number", value)


def _conv_float(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise _Mismatch(f"expected number, got {_describe(value)} (too large)") from None
    raise _expected("number", value)


def _conv_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    raise _expected("boolean", value)


def _conv_none(value: Any) -> Any:
    if value is None:
        return None
    raise _expected("null", value)


_STR = _Checker(_conv_str, "string", "string", {"string"}, fast=str)
_INT = _Checker(_conv_int, "number", "number", {"number"}, fast=int)
_FLOAT = _Checker(_conv_float, "number", "number", {"number"}, fast=float)
_BOOL = _Checker(_conv_bool, "boolean", "boolean", {"boolean"}, fast=bool)
_NONE = _Checker(_conv_none, "null", "null", {"null"})


def _parse_iso(cls: type, what: str) -> _Checker:
    """Checker for datetime/date/time: an ISO 8601 string (``Z`` accepted for UTC)."""

    def conv(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            text = value
            if cls is not _dt.date and value.endswith(("Z", "z")):  # 3.10 lacks "Z" support
                text = value[:-1] + "+00:00"
            try:
                return cls.fromisoformat(text)  # type: ignore[attr-defined]
            except ValueError:
                pass
        raise _expected(what, value)

    return _Checker(conv, what, "string", {"string"})


def _conv_timedelta(value: Any) -> Any:
    if isinstance(value, _dt.timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return _dt.timedelta(seconds=value)
        except OverflowError:
            pass
    raise _expected("number of seconds", value)


def _conv_decimal(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return value
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            # str() first so that 0.1 becomes Decimal("0.1"), not the binary float's expansion.
            return decimal.Decimal(str(value).strip())
        except decimal.InvalidOperation:
            pass
    raise _expected("number or numeric string", value)


def _conv_uuid(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise _expected("UUID string", value)


def _conv_bytes(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    raise _expected("string", value)


def _path_checker(cls: type) -> _Checker:
    def conv(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(value)
        raise _expected("path string", value)

    return _Checker(conv, "path string", "string", {"string"})


def _list_like(elem: _Checker, build: Callable[[list[Any]], Any], expected: str) -> _Checker:
    """Checker for list/Sequence/set/frozenset: a JS array whose elements all pass ``elem``."""

    def conv(value: Any) -> Any:
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise _expected(expected, value)
        if elem.is_any:
            return build(list(value))
        out = []
        fast = elem.fast
        for i, item in enumerate(value):
            if type(item) is fast:
                out.append(item)
                continue
            try:
                out.append(elem.conv(item))
            except _Mismatch as exc:
                exc.push(i)
                raise
        try:
            return build(out)
        except TypeError as exc:  # e.g. objects in a set
            raise _Mismatch(f"cannot be stored as {build.__name__}: {exc}") from None

    ts = elem.ts if " " not in elem.ts else f"({elem.ts})"
    return _Checker(conv, expected, f"{ts}[]", {"array"})


def _tuple_checker(items: list[_Checker]) -> _Checker:
    """Checker for fixed-shape ``tuple[A, B]``: an array of exactly that length."""

    def conv(value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise _expected(f"array of length {len(items)}", value)
        if len(value) != len(items):
            raise _expected(f"array of length {len(items)}", value)
        out = []
        for i, (check, item) in enumerate(zip(items, value, strict=True)):
            try:
                out.append(check.check(item))
            except _Mismatch as exc:
                exc.push(i)
                raise
        return tuple(out)

    return _Checker(conv, "array", "[" + ", ".join(c.ts for c in items) + "]", {"array"})


def _key_checker(key: _Checker) -> Conv:
    """Turn a JSON object key (always a string) into the annotated key type."""
    if key.is_any or key.fast is str:
        return _identity

    def conv(text: Any) -> Any:
        try:
            return key.check(text)
        except _Mismatch as first:
            for parse in (int, float):
                try:
                    number = parse(text)
                except (TypeError, ValueError):
                    continue
                try:
                    return key.check(number)
                except _Mismatch:
                    pass
            raise _Mismatch(f"has invalid key {_describe(text)} ({first.text})") from None

    return conv


def _mapping_checker(key: _Checker, val: _Checker) -> _Checker:
    """Checker for dict/Mapping: a JS object whose keys and values pass their checkers."""
    convert_key = _key_checker(key)

    def conv(value: Any) -> Any:
        if not isinstance(value, abc.Mapping):
            raise _expected("object", value)
        if val.is_any and convert_key is _identity:
            return dict(value)
        out = {}
        for k, v in value.items():
            new_key = convert_key(k)
            try:
                out[new_key] = val.check(v)
            except _Mismatch as exc:
                exc.push(k)
                raise
        return out

    return _Checker(conv, "object", f"Record<{key.ts}, {val.ts}>", {"object"})


def _literal_checker(values: tuple[Any, ...]) -> _Checker:
    """Checker for ``Literal[...]``: one of the listed values, compared type-strictly."""

    def plain(v: Any) -> Any:
        return v.value if isinstance(v, enum.Enum) else v

    def conv(value: Any) -> Any:
        for lit in values:
            want = plain(lit)
            if value is lit:
                return lit
            if value == want and (
                type(value) is type(want)
                or (type(value) is float and type(want) is int)
                or (isinstance(value, str) and isinstance(want, str))
            ):
                return lit
        raise _Mismatch(f"expected {choices}, got {_describe(value)}")

    shown = [json.dumps(plain(v), ensure_ascii=False, default=str) for v in values]
    choices = "one of " + ", ".join(shown) if len(shown) != 1 else shown[0]
    kinds = {_js_kind(plain(v)) for v in values}
    return _Checker(conv, choices, " | ".join(shown), kinds)


def _enum_checker(cls: type[enum.Enum]) -> _Checker:
    """Checker for an Enum: accepts a member's value, or failing that its name."""
    by_value: dict[Any, enum.Enum] = {}
    unhashable: list[enum.Enum] = []
    for member in cls:
        try:
            by_value.setdefault(member.value, member)
        except TypeError:
            unhashable.append(member)
    by_name = dict(cls.__members__)
    bool_values = any(isinstance(v, bool) for v in by_value)

    def conv(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, bool) or bool_values:
            try:
                member = by_value.get(value)
            except TypeError:
                member = None
            if member is not None:
                return member
            for member in unhashable:
                if member.value == value:
                    return member
        if isinstance(value, str) and value in by_name:
            return by_name[value]
        raise _Mismatch(f"expected {choices}, got {_describe(value)}")

    shown = [json.dumps(m.value, ensure_ascii=False, default=str) for m in cls]
    choices = "one of " + ", ".join(shown)
    kinds = {_js_kind(m.value) for m in cls} | {"string"}
    return _Checker(conv, choices, " | ".join(shown), kinds)


def _union_checker(members: list[_Checker]) -> _Checker:
    """Checker for ``Union``/``Optional``: members are tried in order, the first match wins."""
    expected = " or ".join(dict.fromkeys(m.expected for m in members))
    ts = " | ".join(dict.fromkeys(m.ts for m in members))
    kinds = frozenset().union(*(m.kinds for m in members))
    fast_types = {m.fast for m in members if m.fast is not None}

    def conv(value: Any) -> Any:
        if type(value) in fast_types:
            return value
        errors: list[tuple[_Checker, _Mismatch]] = []
        for member in members:
            try:
                return member.conv(value)
            except _Mismatch as exc:
                errors.append((member, exc))
        # Report the error that says most: the only member that could take this kind of
        # value (e.g. the dataclass in ``Optional[User]`` given an object), else the deepest.
        kind = _js_kind(value)
        plausible = [exc for member, exc in errors if kind in member.kinds]
        if len(plausible) == 1:
            raise plausible[0]
        deepest = max((exc for _, exc in errors), key=lambda exc: len(exc.parts))
        if deepest.parts:
            raise deepest
        raise _expected(expected, value)

    return _Checker(conv, expected, ts, kinds)


class _Field:
    """One field of a record type (dataclass/NamedTuple) or TypedDict, compiled."""

    __slots__ = ("name", "checker", "required", "null_default")

    def __init__(self, name: str, checker: _Checker, required: bool, has_default: bool) -> None:
        self.name = name
        self.checker = checker
        self.required = required
        self.null_default = has_default and not checker.accepts_none


def _unexpected_field(key: str, fields: dict[str, _Field]) -> _Mismatch:
    accepted = ", ".join(fields) or "(none)"
    return _Mismatch(
        f"has unexpected field '{key}'{_suggest(key, fields)}; accepted fields: {accepted}"
    )


def _missing_fields(names: list[str]) -> _Mismatch:
    if len(names) == 1:
        return _Mismatch(f"is missing required field '{names[0]}'")
    return _Mismatch("is missing required fields " + ", ".join(f"'{n}'" for n in names))


def _check_fields(value: abc.Mapping[Any, Any], fields: dict[str, _Field]) -> dict[str, Any]:
    """The checked values of a JSON object's keys, for a record or TypedDict: unknown keys and
    missing required ones are refused; a null for a field whose default is None is left out."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        field = fields.get(key)
        if field is None:
            raise _unexpected_field(str(key), fields)
        if item is None and field.null_default:
            continue
        try:
            out[key] = field.checker.check(item)
        except _Mismatch as exc:
            exc.push(key)
            raise
    missing = [f.name for f in fields.values() if f.required and f.name not in out]
    if missing:
        raise _missing_fields(missing)
    return out


def _record_checker(cls: type, build_fields: Callable[[], dict[str, _Field]]) -> _Checker:
    """Checker for a class built from keyword arguments (dataclass, NamedTuple).

    Fields are compiled on first use so that self-referencing classes (trees) work.
    """
    compiled: list[dict[str, _Field]] = []

    def conv(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, abc.Mapping):
            raise _expected("object", value)
        if not compiled:
            compiled.append(build_fields())
        kwargs = _check_fields(value, compiled[0])
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise _Mismatch(f"is not a valid {cls.__name__}: {exc}") from None

    return _Checker(conv, "object", cls.__name__, {"object"})


def _dataclass_fields(cls: type) -> dict[str, _Field]:
    hints = _resolve_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        out[f.name] = _Field(f.name, _compile(hints.get(f.name, Any)), not has_default, has_default)
    return out


def _namedtuple_fields(cls: type) -> dict[str, _Field]:
    hints = _resolve_hints(cls)
    defaults: dict[str, Any] = getattr(cls, "_field_defaults", {})
    return {
        name: _Field(name, _compile(hints.get(name, Any)), name not in defaults, name in defaults)
        for name in cls._fields  # type: ignore[attr-defined]
    }


_WRAPPER_NAMES = {"Required", "NotRequired", "ReadOnly"}


def _typeddict_checker(cls: type) -> _Checker:
    """Checker for a TypedDict: required keys present, values checked, unknown keys rejected."""
    compiled: list[dict[str, _Field]] = []

    def build() -> dict[str, _Field]:
        hints = _resolve_hints(cls)
        required = set(getattr(cls, "__required_keys__", hints))
        for name, tp in hints.items():
            # typing.TypedDict before 3.11 ignores typing_extensions' (Not)Required markers.
            marker = getattr(typing.get_origin(tp), "_name", None)
            if marker == "NotRequired":
                required.discard(name)
            elif marker == "Required":
                required.add(name)
        return {
            name: _Field(name, _compile(tp), name in required, False) for name, tp in hints.items()
        }

    def conv(value: Any) -> Any:
        if not isinstance(value, abc.Mapping):
            raise _expected("object", value)
        if not compiled:
            compiled.append(build())
        return _check_fields(value, compiled[0])

    return _Checker(conv, "object", cls.__name__, {"object"})


_PYDANTIC_EXPECTED = {
    "string_type": "string",
    "int_type": "number",
    "int_parsing": "number",
    "int_from_float": "integer",
    "float_type": "number",
    "float_parsing": "number",
    "bool_type": "boolean",
    "bool_parsing": "boolean",
    "list_type": "array",
    "tuple_type": "array",
    "set_type": "array",
    "dict_type": "object",
    "model_type": "object",
    "model_attributes_type": "object",
    "dataclass_type": "object",
    "none_required": "null",
}


def _from_pydantic(error: Any) -> _Mismatch:
    """Translate a pydantic ValidationError into our path-carrying mismatch."""
    problems: list[_Mismatch] = []
    for item in error.errors(include_url=False):
        kind = item.get("type", "")
        if kind == "missing":
            text = "is missing"
        elif kind == "extra_forbidden":
            text = "is not an accepted field"
        elif kind in _PYDANTIC_EXPECTED:
            text = f"expected {_PYDANTIC_EXPECTED[kind]}, got {_describe(item.get('input'))}"
        else:
            text = f"is invalid: {item.get('msg', kind)} (got {_describe(item.get('input'))})"
        problem = _Mismatch(text)
        for part in reversed(item.get("loc", ())):
            problem.push(part)
        problems.append(problem)
    if not problems:
        return _Mismatch(f"is invalid: {error}")
    first = problems[0]
    first.others = problems[1:]
    return first


def _pydantic_model_checker(model: type) -> _Checker:
    from pydantic import ValidationError

    def conv(value: Any) -> Any:
        if isinstance(value, model):
            return value
        try:
            return model.model_validate(value)  # type: ignore[attr-defined]
        except ValidationError as exc:
            raise _from_pydantic(exc) from None

    return _Checker(conv, "object", model.__name__, {"object"})


def _pydantic_adapter_checker(tp: Any, plain: _Checker) -> _Checker:
    """``Annotated[T, Field(gt=0)]`` and friends: let pydantic enforce the constraints."""
    try:
        from pydantic import TypeAdapter, ValidationError
    except ImportError:
        return plain
    try:
        adapter = TypeAdapter(tp)
    except Exception:  # pydantic cannot build it: fall back to checking the bare type
        return plain

    def conv(value: Any) -> Any:
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            raise _from_pydantic(exc) from None

    return _Checker(conv, plain.expected, plain.ts, plain.kinds)


def _is_pydantic_model(tp: Any) -> bool:
    pydantic = sys.modules.get("pydantic")
    if pydantic is None or not isinstance(tp, type):
        return False
    try:
        return issubclass(tp, pydantic.BaseModel)
    except (AttributeError, TypeError):
        return False


def _is_typeddict(tp: Any) -> bool:
    return (
        isinstance(tp, type)
        and issubclass(tp, dict)
        and hasattr(tp, "__required_keys__")
        and hasattr(tp, "__optional_keys__")
    )


_SEQUENCE_ORIGINS: set[Any] = {
    list,
    abc.Sequence,
    abc.MutableSequence,
    abc.Iterable,
    abc.Collection,
    abc.Reversible,
}
_SET_ORIGINS: set[Any] = {set, abc.Set, abc.MutableSet}
_MAPPING_ORIGINS: set[Any] = {dict, abc.Mapping, abc.MutableMapping}
_UNION_TYPES: tuple[Any, ...] = (typing.Union, types.UnionType)

_CACHE: dict[tuple[Any, str], _Checker] = {}
_BUILDING: set[tuple[Any, str]] = set()
_LOCK = threading.RLock()  # compiling is rare (per tool, per type); keep it simple and safe


def _compile(tp: Any) -> _Checker:
    """Compile an annotation into a checker, cached: the same types recur across tools."""
    try:
        # repr keeps unions apart that compare equal but must be tried in different orders.
        key: tuple[Any, str] | None = (tp, repr(tp))
        hash(key)
    except Exception:
        key = None
    if key is None:
        return _build(tp)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        if key in _BUILDING:  # a recursive type alias: resolve lazily through the cache
            return _Checker(lambda v: _CACHE[key].check(v), "value", "any", _ALL_KINDS)
        _BUILDING.add(key)
        try:
            checker = _build(tp)
        finally:
            _BUILDING.discard(key)
        _CACHE[key] = checker
        return checker


def _build(tp: Any) -> _Checker:
    """The uncached body of :func:`_compile`."""
    if tp is Any or tp is object or tp is inspect.Parameter.empty:
        return _ANY
    if tp is None or tp is type(None):
        return _NONE
    if isinstance(tp, (str, typing.ForwardRef)):  # could not be resolved
        return _ANY
    simple = _SIMPLE.get(tp) if isinstance(tp, type) else None
    if simple is not None:
        return simple

    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if origin is typing.Annotated:
        plain = _compile(args[0])
        libraries = {type(m).__module__.split(".")[0] for m in args[1:]}
        if libraries & {"pydantic", "annotated_types"}:
            return _pydantic_adapter_checker(tp, plain)
        return plain
    if origin is not None and getattr(origin, "_name", None) in _WRAPPER_NAMES:
        return _compile(args[0]) if args else _ANY
    if origin in (typing.ClassVar, typing.Final):
        return _compile(args[0]) if args else _ANY
    if origin in _UNION_TYPES:
        members = [_compile(a) for a in args]
        if any(m.is_any for m in members):  # Optional[Any] (3.10 adds it for "= None")
            return _ANY
        return _union_checker(members)
    if origin is typing.Literal:
        return _literal_checker(args)
    if isinstance(tp, typing.TypeVar):
        return _compile(tp.__bound__) if tp.__bound__ is not None else _ANY
    supertype = getattr(tp, "__supertype__", None)  # typing.NewType
    if supertype is not None and callable(tp):
        return _compile(supertype)
    alias_value = getattr(tp, "__value__", None)  # PEP 695 ``type X = ...``
    if alias_value is not None and type(tp).__name__ == "TypeAliasType":
        return _compile(alias_value)

    if origin is not None:
        if origin in _SEQUENCE_ORIGINS:
            return _list_like(_compile(args[0]) if args else _ANY, list, "array")
        if origin in _SET_ORIGINS:
            return _list_like(_compile(args[0]) if args else _ANY, set, "array")
        if origin is frozenset:
            return _list_like(_compile(args[0]) if args else _ANY, frozenset, "array")
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return _list_like(_compile(args[0]), tuple, "array")
            if args == ((),):
                return _tuple_checker([])
            return _tuple_checker([_compile(a) for a in args])
        if origin in _MAPPING_ORIGINS:
            k, v = (args + (Any, Any))[:2] if args else (Any, Any)
            return _mapping_checker(_compile(k), _compile(v))
        if isinstance(origin, type) and (dataclasses.is_dataclass(origin) or _is_typeddict(origin)):
            return _compile(origin)  # generic dataclass/TypedDict: type variables act as Any
        return _ANY

    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return _enum_checker(tp)
        if _is_pydantic_model(tp):
            return _pydantic_model_checker(tp)
        if _is_typeddict(tp):
            return _typeddict_checker(tp)
        if dataclasses.is_dataclass(tp):
            return _record_checker(tp, lambda: _dataclass_fields(tp))
        if issubclass(tp, tuple) and hasattr(tp, "_fields"):
            return _record_checker(tp, lambda: _namedtuple_fields(tp))
        if issubclass(tp, PurePath):
            return _path_checker(tp)
        if issubclass(tp, _dt.datetime):
            return _SIMPLE[_dt.datetime]
    return _ANY  # a type we cannot build from JSON: pass the value through unchanged


_SIMPLE: dict[Any, _Checker] = {
    str: _STR,
    int: _INT,
    float: _FLOAT,
    bool: _BOOL,
    list: _list_like(_ANY, list, "array"),
    tuple: _list_like(_ANY, tuple, "array"),
    set: _list_like(_ANY, set, "array"),
    frozenset: _list_like(_ANY, frozenset, "array"),
    dict: _mapping_checker(_ANY, _ANY),
    _dt.datetime: _parse_iso(_dt.datetime, "ISO datetime string"),
    _dt.date: _parse_iso(_dt.date, "ISO date string"),
    _dt.time: _parse_iso(_dt.time, "ISO time string"),
    _dt.timedelta: _Checker(_conv_timedelta, "number of seconds", "number", {"number"}),
    decimal.Decimal: _Checker(
        _conv_decimal, "number or numeric string", "number | string", {"number", "string"}
    ),
    uuid.UUID: _Checker(_conv_uuid, "UUID string", "string", {"string"}),
    bytes: _Checker(_conv_bytes, "string", "string", {"string"}),
}
for _abstract in (abc.Sequence, abc.MutableSequence, abc.Iterable, abc.Collection):
    _SIMPLE[_abstract] = _SIMPLE[list]
for _abstract in (abc.Set, abc.MutableSet):
    _SIMPLE[_abstract] = _SIMPLE[set]
for _abstract in (abc.Mapping, abc.MutableMapping):
    _SIMPLE[_abstract] = _SIMPLE[dict]


# --------------------------------------------------------------------------------------------
# Signature inspection
# --------------------------------------------------------------------------------------------


def _hint_target(fn: Any) -> Any:
    """The object whose annotations describe calling ``fn``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.isclass(fn):
        if dataclasses.is_dataclass(fn) or _is_typeddict(fn):
            return fn
        return fn.__init__
    if not (inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isbuiltin(fn)):
        call = type(fn).__call__ if callable(fn) else None
        if inspect.isfunction(call) or inspect.ismethod(call):
            return call
    return fn


def _raw_annotations(target: Any) -> dict[str, Any]:
    """Annotations without evaluation; on 3.14+ unresolvable names become ForwardRefs."""
    try:
        import annotationlib  # type: ignore[import-not-found]

        return dict(annotationlib.get_annotations(target, format=annotationlib.Format.FORWARDREF))
    except ImportError:
        pass
    except Exception:
        return {}
    try:
        return dict(getattr(target, "__annotations__", None) or {})
    except Exception:
        return {}


def _resolve_hints(target: Any) -> dict[str, Any]:
    """Resolved type hints; never raises. Annotations that cannot be resolved become ``Any``.

    ``typing.get_type_hints`` fails as a whole when one annotation names something undefined,
    so the fallback resolves each annotation on its own.
    """
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:
        pass
    raw = _raw_annotations(target)
    try:
        globalns = dict(getattr(inspect.unwrap(target), "__globals__", None) or {})
    except Exception:
        globalns = {}
    if not globalns:
        module = sys.modules.get(getattr(target, "__module__", "") or "")
        globalns = dict(vars(module)) if module is not None else {}
    if isinstance(target, type):
        globalns.update(vars(target))
    out: dict[str, Any] = {}
    for name, ann in raw.items():
        if isinstance(ann, str):
            try:
                ann = eval(ann, globalns)  # the same evaluation get_type_hints does
            except Exception:
                ann = Any
        out[name] = ann
    return out


def _is_async(fn: Any) -> bool:
    """True when calling ``fn`` returns an awaitable coroutine (also partials, async __call__)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    candidates = [fn]
    if not (inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isclass(fn)):
        if callable(fn):
            candidates.append(type(fn).__call__)
    for candidate in candidates:
        if inspect.iscoroutinefunction(candidate):
            return True
        if sys.version_info < (3, 12):
            import asyncio

            if asyncio.iscoroutinefunction(candidate):  # AsyncMock and legacy markers
                return True
    return False


class _Param:
    """A compiled parameter of a host function."""

    __slots__ = (
        "name",
        "checker",
        "conv",
        "fast",
        "is_any",
        "required",
        "null_default",
        "default",
        "positional",
    )

    def __init__(self, param: inspect.Parameter, checker: _Checker) -> None:
        self.name = param.name
        self.checker = checker
        self.conv = checker.conv
        self.fast = checker.fast
        self.is_any = checker.is_any
        has_default = param.default is not inspect.Parameter.empty
        self.required = not has_default
        self.null_default = has_default and not checker.accepts_none
        self.default = param.default
        self.positional = param.kind is inspect.Parameter.POSITIONAL_ONLY


_EMPTY: dict[str, Any] = {}


class Binder:
    """Prepared once per host function (signature + resolved type hints cached), used per call.

    ``bind`` receives the *list of JavaScript call arguments* exactly as the isolate sent it
    (JSON-decoded): ``codemode.add({a: 1, b: 2})`` arrives as ``[{"a": 1, "b": 2}]`` and
    ``codemode.ping()`` as ``[]``. Accepted shapes are ``[]``, ``[null]`` (``undefined``),
    ``None`` and ``[{...}]``; a bare dict is also accepted for Python callers. Every parameter,
    including positional-only ones, is filled from that one object by name.
    """

    __slots__ = (
        "name",
        "fn",
        "is_async",
        "signature_text",
        "_params",
        "_nreq",
        "_var_kw",
        "_posonly",
        "_example",
    )

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self.name = name
        self.fn = fn
        self.is_async: bool = _is_async(fn)
        hints = _resolve_hints(_hint_target(fn))
        try:
            parameters = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):  # no introspectable signature: accept anything
            parameters = [inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)]
        self._params: dict[str, _Param] = {}
        self._var_kw: _Checker | None = None
        for param in parameters:
            annotation = hints.get(param.name, param.annotation)
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                self._var_kw = _compile(annotation)
                continue
            self._params[param.name] = _Param(param, _compile(annotation))
        self._nreq = sum(p.required for p in self._params.values())
        self._posonly = [p for p in self._params.values() if p.positional]
        fields = [
            f"{p.name}{'' if p.required else '?'}: {p.checker.ts}" for p in self._params.values()
        ]
        if self._var_kw is not None:
            fields.append(f"[key: string]: {self._var_kw.ts}")
        self.signature_text = f"{name}({{{', '.join(fields)}}})" if fields else f"{name}()"
        names = [f"{p}: ..." for p in self._params] or ["..."]
        self._example = f"{name}({{{', '.join(names)}}})"

    def __repr__(self) -> str:
        return f"<Binder {self.signature_text}{' async' if self.is_async else ''}>"

    def bind(
        self, args: list[Any] | dict[str, Any] | None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Turn the JS argument list into (positional, keyword) arguments for fn.

        Raises :class:`ArgumentError` naming the tool and parameter when the call does not fit.
        """
        if type(args) is list or type(args) is tuple:
            if len(args) == 1:
                data = args[0]
                if type(data) is not dict:
                    if data is None:
                        data = _EMPTY
                    elif isinstance(data, abc.Mapping):
                        data = dict(data)
                    else:
                        raise self._shape_error(args)
            elif not args:
                data = _EMPTY
            else:
                raise self._shape_error(args)
        elif args is None:
            data = _EMPTY
        elif type(args) is dict:
            data = args
        else:
            raise self._shape_error([args])

        params = self._params
        kwargs: dict[str, Any] = {}
        nreq = 0
        for key, value in data.items():
            p = params.get(key)
            if p is None:
                var_kw = self._var_kw
                if var_kw is None:
                    raise self._unexpected(data)
                try:
                    kwargs[key] = var_kw.check(value)
                except _Mismatch as exc:
                    raise self._mismatch_error(exc, key) from None
                continue
            if p.required:
                nreq += 1
            if not (p.is_any or type(value) is p.fast):
                if value is None and p.null_default:
                    continue
                try:
                    value = p.conv(value)
                except _Mismatch as exc:
                    raise self._mismatch_error(exc, key) from None
                except RecursionError:
                    raise ArgumentError(
                        f"{self.name}(): parameter '{key}' is nested too deeply",
                        self.name,
                        key,
                    ) from None
            kwargs[key] = value
        if nreq != self._nreq:
            raise self._missing(kwargs)
        if not self._posonly:
            return (), kwargs
        return self._split_positional(kwargs), kwargs

    def _split_positional(self, kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Move positional-only parameters out of ``kwargs``, filling gaps with defaults."""
        given = [p.name in kwargs for p in self._posonly]
        last = max((i for i, g in enumerate(given) if g), default=-1)
        positional = []
        for p in self._posonly[: last + 1]:
            positional.append(kwargs.pop(p.name) if p.name in kwargs else p.default)
        return tuple(positional)

    # Error construction: kept off the fast path.

    def _shape_error(self, args: list[Any] | tuple[Any, ...]) -> ArgumentError:
        if len(args) == 1:
            got = _describe(args[0])
        else:
            got = f"{len(args)} positional arguments"
        if not self._params and self._var_kw is None:
            return ArgumentError(
                f"tool '{self.name}' takes no arguments (call it as {self.name}()), got {got}",
                self.name,
            )
        return ArgumentError(
            f"tool '{self.name}' takes one object argument like {self._example}, got {got}",
            self.name,
        )

    def _unexpected(self, data: dict[str, Any]) -> ArgumentError:
        unknown = [k for k in data if k not in self._params]
        names = list(self._params)
        if len(unknown) == 1:
            what = f"unexpected parameter '{unknown[0]}'{_suggest(str(unknown[0]), names)}"
        else:
            what = "unexpected parameters " + ", ".join(f"'{k}'" for k in unknown)
        if names:
            accepted = f"accepted parameters: {', '.join(names)}"
        else:
            accepted = f"{self.name} takes no parameters"
        return ArgumentError(f"{self.name}(): {what}; {accepted}", self.name, str(unknown[0]))

    def _missing(self, given: dict[str, Any]) -> ArgumentError:
        missing = [p.name for p in self._params.values() if p.required and p.name not in given]
        if len(missing) == 1:
            what = f"missing required parameter '{missing[0]}'"
        else:
            what = "missing required parameters " + ", ".join(f"'{n}'" for n in missing)
        return ArgumentError(
            f"{self.name}(): {what}; call it as {self.signature_text}", self.name, missing[0]
        )

    def _mismatch_error(self, exc: _Mismatch, key: str) -> ArgumentError:
        problems = exc.render(key)
        shown = [f"parameter '{path}' {text}" for path, text in problems[:5]]
        if len(problems) > 5:
            shown.append(f"and {len(problems) - 5} more")
        return ArgumentError(f"{self.name}(): " + "; ".join(shown), self.name, problems[0][0])


# --------------------------------------------------------------------------------------------
# Results: Python values to JSON-safe structures
# --------------------------------------------------------------------------------------------

_NO_KEY = object()


class _Fail(Exception):
    """Internal: conversion failed; the path (and the containers on it) gather while unwinding."""

    def __init__(self, reason: str, *, too_deep: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.too_deep = too_deep
        self.keys: list[Any] = []
        self.containers: list[Any] = []

    def push(self, key: Any, container: Any) -> None:
        self.keys.append(key)
        self.containers.append(container)

    def error(self, where: str) -> ConversionError:
        keys = [k for k in reversed(self.keys) if k is not _NO_KEY]
        path = _join_path(where, keys)
        if not self.too_deep:
            return ConversionError(f"cannot send {path} to JavaScript: {self.reason}", path)
        # Depth ran out. If some container is its own ancestor, that is a cycle: report where
        # it closes. The chain comes for free from unwinding, so no per-call ``id`` bookkeeping.
        chain = list(reversed(self.containers))
        ordered_keys = list(reversed(self.keys))
        seen: set[int] = set()
        for index, container in enumerate(chain):
            if id(container) in seen:
                cycle = _join_path(where, [k for k in ordered_keys[:index] if k is not _NO_KEY])
                return ConversionError(
                    f"cannot send {where} to JavaScript: cycle at {cycle} "
                    "(a container holds a reference to itself)",
                    cycle,
                )
            seen.add(id(container))
        shown = path if len(path) <= 120 else path[:60] + "..." + path[-50:]
        return ConversionError(
            f"cannot send {where} to JavaScript: nested deeper than {MAX_DEPTH} levels at {shown}",
            path,
        )


def _float(value: float) -> float | None:
    # JSON has no NaN/Infinity; JavaScript's own JSON.stringify turns them into null too.
    return value if value - value == 0.0 else None


def _key(key: Any) -> str:
    """Object keys must be strings; convert the scalar kinds the way json.dumps does."""
    if isinstance(key, str):
        return str(key)
    if isinstance(key, enum.Enum):
        return _key(key.value)
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        if math.isnan(key):
            return "NaN"
        if math.isinf(key):
            return "Infinity" if key > 0 else "-Infinity"
        return float.__repr__(key)
    raise _Fail(
        f"object key {key!r} of type '{type(key).__name__}' is not a string "
        "(JSON object keys must be strings)"
    )


def _conv(value: Any, depth: int) -> Any:
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is float:
        return value if value - value == 0.0 else None
    if t is dict:
        return _conv_dict(value, depth)
    if t is list or t is tuple:
        return _conv_list(value, depth)
    return _conv_other(value, depth)


def _conv_list(value: Iterable[Any], depth: int) -> list[Any]:
    if depth >= MAX_DEPTH:
        raise _Fail("too deep", too_deep=True)
    depth += 1
    out = []
    append = out.append
    for index, item in enumerate(value):
        t = type(item)
        if t is str or t is int or t is bool or item is None:
            append(item)
            continue
        try:
            append(_conv(item, depth))
        except _Fail as exc:
            exc.push(index, value)
            raise
    return out


def _conv_items(value: Any, items: Iterable[tuple[Any, Any]], depth: int) -> dict[str, Any]:
    if depth >= MAX_DEPTH:
        raise _Fail("too deep", too_deep=True)
    depth += 1
    out: dict[str, Any] = {}
    for key, item in items:
        if type(key) is not str:
            key = _key(key)
        t = type(item)
        if t is str or t is int or t is bool or item is None:
            out[key] = item
            continue
        try:
            out[key] = _conv(item, depth)
        except _Fail as exc:
            exc.push(key, value)
            raise
    return out


def _conv_dict(value: dict[Any, Any], depth: int) -> dict[str, Any]:
    return _conv_items(value, value.items(), depth)


def _nested(value: Any, inner: Any, depth: int) -> Any:
    """Convert ``inner``, a representation of ``value``, recording ``value`` on the path."""
    if depth >= MAX_DEPTH:
        raise _Fail("too deep", too_deep=True)
    try:
        return _conv(inner, depth + 1)
    except _Fail as exc:
        exc.push(_NO_KEY, value)
        raise


def _sorted_json(items: list[Any]) -> list[Any]:
    """Sort converted set elements so output does not depend on hash order."""
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=lambda v: (_js_kind(v), json.dumps(v, sort_keys=True)))


def _bytes(value: bytes | bytearray | memoryview) -> Any:
    raw = bytes(value)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode("ascii")}


def _decimal(value: decimal.Decimal) -> float | None:
    return float(value) if value.is_finite() else None


_BY_TYPE: dict[type, Callable[[Any], Any]] = {
    _dt.datetime: _dt.datetime.isoformat,
    _dt.date: _dt.date.isoformat,
    _dt.time: _dt.time.isoformat,
    _dt.timedelta: _dt.timedelta.total_seconds,
    decimal.Decimal: _decimal,
    uuid.UUID: str,
    bytes: _bytes,
    bytearray: _bytes,
    memoryview: _bytes,
}


def _not_serialisable(value: Any) -> _Fail:
    name = type(value).__name__
    hint = ""
    if inspect.isawaitable(value):
        hint = " (did you forget to await it?)"
    elif isinstance(value, abc.Iterator):
        hint = " (convert it to a list first)"
    return _Fail(f"object of type '{name}' is not JSON-serialisable{hint}")


def _find_hook(value: Any, name: str) -> Callable[[], Any] | None:
    """An instance's conversion method, if any; odd ``__getattr__`` implementations are ignored."""
    if isinstance(value, type):
        return None
    try:
        hook = getattr(value, name, None)
    except Exception:
        return None
    return hook if callable(hook) else None


def _call_hook(value: Any, hook: Callable[[], Any], name: str) -> Any:
    """Call a conversion method the object offers; its failure becomes a path-carrying error."""
    try:
        return hook()
    except Exception as exc:
        raise _Fail(f"{type(value).__name__}.{name}() failed: {exc!r}") from None


def _conv_other(value: Any, depth: int) -> Any:
    """Everything that is not an exact builtin JSON type: slower, ordered by specificity."""
    t = type(value)
    simple = _BY_TYPE.get(t)
    if simple is not None:
        return simple(value)
    if isinstance(value, enum.Enum):
        return _nested(value, value.value, depth)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _float(float(value))
    if isinstance(value, (list, tuple, range, abc.ValuesView)):
        return _conv_list(value, depth)
    if isinstance(value, abc.KeysView):
        return _conv_list(value, depth)
    if isinstance(value, abc.ItemsView):
        return _conv_list([list(pair) for pair in value], depth)
    if isinstance(value, abc.Mapping):
        return _conv_items(value, value.items(), depth)
    if isinstance(value, (set, frozenset, abc.Set)):
        return _sorted_json(_conv_list(value, depth))
    for kind, convert in _BY_TYPE.items():
        if isinstance(value, kind):
            return convert(value)
    if isinstance(value, PurePath):
        return str(value)

    hook = _find_hook(value, "__json__")
    if hook is not None:
        return _nested(value, _call_hook(value, hook, "__json__"), depth)
    hook = _find_hook(value, "_repr_json_")
    if hook is not None:
        data = _call_hook(value, hook, "_repr_json_")
        if isinstance(data, tuple) and len(data) == 2 and isinstance(data[1], dict):
            data = data[0]  # IPython's (data, metadata) form
        return _nested(value, data, depth)

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
        return _conv_items(value, fields, depth)
    if _is_pydantic_model(t):
        try:
            data = value.model_dump(mode="json", by_alias=True)
        except Exception as exc:  # e.g. PydanticSerializationError for an arbitrary type
            raise _Fail(f"{t.__name__}.model_dump() failed: {exc}") from None
        return _nested(value, data, depth)

    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.ndarray):
            return _nested(value, value.tolist(), depth)
        if isinstance(value, numpy.generic):
            item = value.item()
            if type(item) is not t:
                return _nested(value, item, depth)

    if isinstance(value, abc.Sequence):
        return _conv_list(value, depth)
    hook = _find_hook(value, "to_dict")
    if hook is not None:
        return _nested(value, _call_hook(value, hook, "to_dict"), depth)
    raise _not_serialisable(value)


def to_jsonable(value: Any, *, where: str = "result") -> Any:
    """Return a structure of dict/list/str/int/float/bool/None that json.dumps accepts.

    ``where`` names the root in error messages (``result.items[3].when``). Raises
    :class:`ConversionError` for values with no JSON form, cycles and over-deep nesting.
    """
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    try:
        return _conv(value, 0)
    except _Fail as exc:
        raise exc.error(where) from None
    except RecursionError:
        raise ConversionError(
            f"cannot send {where} to JavaScript: nested too deeply", where
        ) from None


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def dumps(value: Any, *, where: str = "result") -> str:
    """Compact JSON text for ``value``, converting with :func:`to_jsonable` only when needed.

    Plain JSON data goes straight through the C encoder; only when it refuses (unknown type,
    NaN, cycle, non-string key it cannot handle) do we pay for the full conversion walk. So
    plain data nested deeper than :data:`MAX_DEPTH` is still encoded here (up to the
    interpreter's recursion limit); the limit only applies once conversion is needed.
    """
    try:
        return _ENCODE(value)
    except (TypeError, ValueError, RecursionError):
        pass
    return _ENCODE(to_jsonable(value, where=where))
