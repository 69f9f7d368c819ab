"""Tests for codemode.convert: binding JS call arguments and making results JSON-safe.

No ``from __future__ import annotations`` here on purpose: many tests annotate functions with
classes defined locally, which string annotations could not resolve.
"""

import asyncio
import collections
import dataclasses
import datetime as dt
import decimal
import enum
import functools
import json
import math
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NamedTuple, Optional, TypedDict, Union

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codemode import convert
from codemode.convert import (
    MAX_DEPTH,
    ArgumentError,
    Binder,
    ConversionError,
    dumps,
    to_jsonable,
)

try:
    from typing import NotRequired
except ImportError:  # Python 3.10
    from typing_extensions import NotRequired


def bind_error(fn: Any, args: Any, name: str | None = None) -> ArgumentError:
    """Bind expecting failure; return the error so tests can assert on its exact text."""
    binder = Binder(name or fn.__name__, fn)
    with pytest.raises(ArgumentError) as info:
        binder.bind(args)
    return info.value


def call(fn: Any, args: Any) -> Any:
    """Bind like the engine does and call the function with the result."""
    positional, keyword = Binder(fn.__name__, fn).bind(args)
    return fn(*positional, **keyword)


def add(a: int, b: int = 0) -> int:
    return a + b


# ---------------------------------------------------------------------------------------------
# Argument shape
# ---------------------------------------------------------------------------------------------


class TestShape:
    def test_object_argument_becomes_keywords(self) -> None:
        assert Binder("add", add).bind([{"a": 1, "b": 2}]) == ((), {"a": 1, "b": 2})

    @pytest.mark.parametrize("args", [None, [], [None], (), {}])
    def test_no_argument_means_no_parameters(self, args: Any) -> None:
        def ping() -> str:
            return "pong"

        assert Binder("ping", ping).bind(args) == ((), {})

    def test_bare_dict_is_accepted_for_python_callers(self) -> None:
        assert Binder("add", add).bind({"a": 1}) == ((), {"a": 1})

    def test_bind_does_not_mutate_or_alias_input(self) -> None:
        data = {"a": 1, "b": 2}
        _, kwargs = Binder("add", add).bind([data])
        kwargs["a"] = 99
        assert data == {"a": 1, "b": 2}

    def test_several_positional_arguments(self) -> None:
        err = bind_error(add, [1, 2])
        assert str(err) == (
            "tool 'add' takes one object argument like add({a: ..., b: ...}), "
            "got 2 positional arguments"
        )
        assert err.tool == "add"

    def test_single_non_object_argument(self) -> None:
        err = bind_error(add, ["bob"])
        assert str(err) == (
            "tool 'add' takes one object argument like add({a: ..., b: ...}), got string \"bob\""
        )

    def test_object_plus_extra_argument(self) -> None:
        assert "got 2 positional arguments" in str(bind_error(add, [{"a": 1}, 2]))

    def test_function_without_parameters(self) -> None:
        def ping() -> None: ...

        assert str(bind_error(ping, [5])) == (
            "tool 'ping' takes no arguments (call it as ping()), got number 5"
        )

    def test_array_argument(self) -> None:
        assert str(bind_error(add, [[1, 2]])).endswith("got array of length 2")

    def test_non_list_non_dict(self) -> None:
        assert str(bind_error(add, 5)).endswith("got number 5")

    def test_argument_error_is_a_type_error(self) -> None:
        assert issubclass(ArgumentError, TypeError)
        assert issubclass(ConversionError, TypeError)


# ---------------------------------------------------------------------------------------------
# Parameters: names, kinds, required/optional
# ---------------------------------------------------------------------------------------------


class TestParameters:
    def test_unexpected_key_with_suggestion(self) -> None:
        err = bind_error(add, [{"a": 1, "bb": 2}])
        assert str(err) == (
            "add(): unexpected parameter 'bb' (did you mean 'b'?); accepted parameters: a, b"
        )
        assert err.parameter == "bb"

    def test_unexpected_key_without_suggestion(self) -> None:
        err = bind_error(add, [{"a": 1, "zzzzz": 2}])
        assert str(err) == "add(): unexpected parameter 'zzzzz'; accepted parameters: a, b"

    def test_camel_case_key_suggests_snake_case(self) -> None:
        def get_user(user_id: int) -> None: ...

        err = bind_error(get_user, [{"userId": 3}])
        assert "unexpected parameter 'userId' (did you mean 'user_id'?)" in str(err)

    def test_several_unexpected_keys(self) -> None:
        err = bind_error(add, [{"a": 1, "c": 2, "d": 3}])
        assert str(err) == "add(): unexpected parameters 'c', 'd'; accepted parameters: a, b"

    def test_unexpected_key_for_function_without_parameters(self) -> None:
        def ping() -> None: ...

        assert str(bind_error(ping, [{"x": 1}])) == (
            "ping(): unexpected parameter 'x'; ping takes no parameters"
        )

    def test_missing_required(self) -> None:
        err = bind_error(add, [{"b": 1}])
        assert str(err) == (
            "add(): missing required parameter 'a'; call it as add({a: number, b?: number})"
        )
        assert err.parameter == "a"

    def test_missing_several(self) -> None:
        def f(x: str, y: str) -> None: ...

        assert str(bind_error(f, [])).startswith("f(): missing required parameters 'x', 'y'")

    def test_keyword_only_and_positional_or_keyword(self) -> None:
        def f(a: int, *, b: str, c: bool = False) -> tuple[int, str, bool]:
            return a, b, c

        assert call(f, [{"a": 1, "b": "x"}]) == (1, "x", False)
        assert call(f, [{"b": "x", "a": 2, "c": True}]) == (2, "x", True)

    def test_positional_only_filled_by_name(self) -> None:
        def f(a: int, b: int = 10, /, c: int = 100) -> tuple[int, int, int]:
            return a, b, c

        binder = Binder("f", f)
        assert binder.bind([{"a": 1, "b": 2, "c": 3}]) == ((1, 2), {"c": 3})
        assert binder.bind([{"a": 1}]) == ((1,), {})
        assert call(f, [{"a": 1, "c": 3}]) == (1, 10, 3)
        assert "missing required parameter 'a'" in str(bind_error(f, [{"b": 2}]))

    def test_positional_only_gap_filled_with_default(self) -> None:
        def f(a: int = 1, b: int = 2, /) -> tuple[int, int]:
            return a, b

        assert Binder("f", f).bind([{"b": 5}]) == ((1, 5), {})
        assert call(f, [{"b": 5}]) == (1, 5)

    def test_var_positional_is_ignored(self) -> None:
        def f(a: int, *rest: int, b: int = 0) -> tuple[Any, ...]:
            return (a, rest, b)

        assert call(f, [{"a": 1, "b": 2}]) == (1, (), 2)
        err = bind_error(f, [{"a": 1, "rest": [1]}])
        assert "unexpected parameter 'rest'" in str(err)
        assert Binder("f", f).signature_text == "f({a: number, b?: number})"

    def test_var_keyword_accepts_unknown_keys_and_checks_them(self) -> None:
        def f(a: int, **extra: int) -> dict[str, Any]:
            return {"a": a, **extra}

        assert call(f, [{"a": 1, "x": 2, "y": 3.0}]) == {"a": 1, "x": 2, "y": 3}
        assert str(bind_error(f, [{"a": 1, "x": "no"}])) == (
            "f(): parameter 'x' expected number, got string \"no\""
        )
        assert Binder("f", f).signature_text == "f({a: number, [key: string]: number})"

    def test_null_for_defaulted_parameter_means_default(self) -> None:
        assert call(add, [{"a": 1, "b": None}]) == 1

    def test_null_for_optional_parameter_is_passed(self) -> None:
        def f(x: int | None = 5) -> Any:
            return x

        assert call(f, [{"x": None}]) is None

    def test_null_for_required_parameter_is_an_error(self) -> None:
        assert str(bind_error(add, [{"a": None}])) == (
            "add(): parameter 'a' expected number, got null"
        )

    def test_bound_method_and_partial(self) -> None:
        class Calc:
            def __init__(self, base: int) -> None:
                self.base = base

            def plus(self, n: int) -> int:
                return self.base + n

        assert call(Calc(10).plus, [{"n": 2.0}]) == 12
        part = functools.partial(add, b=5)
        binder = Binder("part", part)
        assert binder.bind([{"a": 1}]) == ((), {"a": 1})
        assert binder.signature_text == "part({a: number, b?: number})"

    def test_callable_instance(self) -> None:
        class Tool:
            def __call__(self, q: str, limit: int = 3) -> str:
                return q * limit

        tool = Tool()
        assert call(tool.__call__, [{"q": "a"}]) == "aaa"
        binder = Binder("tool", tool)
        assert binder.bind([{"q": "x", "limit": 2.0}]) == ((), {"q": "x", "limit": 2})
        assert "expected string" in str(pytest.raises(ArgumentError, binder.bind, [{"q": 1}]).value)

    def test_uninspectable_callable_accepts_keywords(self) -> None:
        binder = Binder("dict", dict)
        assert binder.bind([{"x": 1}]) == ((), {"x": 1})


# ---------------------------------------------------------------------------------------------
# Scalar types
# ---------------------------------------------------------------------------------------------


class TestScalars:
    def test_int_accepts_integral_numbers(self) -> None:
        _, kwargs = Binder("add", add).bind([{"a": 3.0, "b": -2}])
        assert kwargs == {"a": 3, "b": -2}
        assert type(kwargs["a"]) is int

    def test_int_rejects_fraction_bool_and_string(self) -> None:
        assert str(bind_error(add, [{"a": 3.5}])) == (
            "add(): parameter 'a' expected integer, got number 3.5"
        )
        assert str(bind_error(add, [{"a": True}])) == (
            "add(): parameter 'a' expected number, got boolean true"
        )
        assert str(bind_error(add, [{"a": 1, "b": "x"}])) == (
            "add(): parameter 'b' expected number, got string \"x\""
        )

    def test_float_accepts_int_rejects_bool(self) -> None:
        def f(x: float) -> float:
            return x

        result = call(f, [{"x": 2}])
        assert result == 2.0 and type(result) is float
        assert str(bind_error(f, [{"x": False}])) == (
            "f(): parameter 'x' expected number, got boolean false"
        )

    def test_bool_is_strict(self) -> None:
        def f(flag: bool) -> bool:
            return flag

        assert call(f, [{"flag": True}]) is True
        assert (
            str(bind_error(f, [{"flag": 1}]))
            == "f(): parameter 'flag' expected boolean, got number 1"
        )
        assert "got number 0" in str(bind_error(f, [{"flag": 0}]))

    def test_str_is_strict(self) -> None:
        def f(s: str) -> str:
            return s

        assert call(f, [{"s": "é"}]) == "é"
        assert str(bind_error(f, [{"s": 5}])) == "f(): parameter 's' expected string, got number 5"

    def test_long_string_is_truncated_in_message(self) -> None:
        err = bind_error(add, [{"a": "x" * 100}])
        assert 'got string "' + "x" * 37 + '..."' in str(err)

    def test_none_annotation(self) -> None:
        def f(x: None) -> None: ...

        assert Binder("f", f).bind([{"x": None}]) == ((), {"x": None})
        assert str(bind_error(f, [{"x": 0}])) == "f(): parameter 'x' expected null, got number 0"

    @pytest.mark.parametrize("annotation", [Any, object, None])
    def test_any_object_and_unannotated_pass_through(self, annotation: Any) -> None:
        def f(x) -> Any:  # type: ignore[no-untyped-def]
            return x

        if annotation is not None:
            f.__annotations__["x"] = annotation
        value = {"deep": [1, {"x": None}]}
        _, kwargs = Binder("f", f).bind([{"x": value}])
        assert kwargs["x"] is value

    def test_datetime_date_time(self) -> None:
        def f(when: dt.datetime, day: dt.date, at: dt.time) -> None: ...

        _, kwargs = Binder("f", f).bind(
            [{"when": "2024-05-06T07:08:09Z", "day": "2024-05-06", "at": "10:30:00"}]
        )
        assert kwargs["when"] == dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
        assert kwargs["day"] == dt.date(2024, 5, 6) and type(kwargs["day"]) is dt.date
        assert kwargs["at"] == dt.time(10, 30)
        err = bind_error(f, [{"when": "yesterday", "day": "2024-05-06", "at": "10:30"}])
        assert str(err) == (
            "f(): parameter 'when' expected ISO datetime string, got string \"yesterday\""
        )
        assert "expected ISO date string, got number 3" in str(
            bind_error(f, [{"when": "2024-01-01", "day": 3, "at": "10:30"}])
        )

    def test_timedelta_from_seconds(self) -> None:
        def f(d: dt.timedelta) -> dt.timedelta:
            return d

        assert call(f, [{"d": 90}]) == dt.timedelta(minutes=1, seconds=30)

    def test_decimal(self) -> None:
        def f(x: decimal.Decimal) -> decimal.Decimal:
            return x

        assert call(f, [{"x": 0.1}]) == decimal.Decimal("0.1")
        assert call(f, [{"x": "12.50"}]) == decimal.Decimal("12.50")
        assert call(f, [{"x": 7}]) == decimal.Decimal(7)
        assert str(bind_error(f, [{"x": "abc"}])) == (
            "f(): parameter 'x' expected number or numeric string, got string \"abc\""
        )
        assert "got boolean true" in str(bind_error(f, [{"x": True}]))

    def test_uuid_and_path(self) -> None:
        def f(id: uuid.UUID, p: Path, q: PurePosixPath) -> None: ...

        u = uuid.uuid4()
        _, kwargs = Binder("f", f).bind([{"id": str(u), "p": "/tmp/x", "q": "a/b"}])
        assert kwargs == {"id": u, "p": Path("/tmp/x"), "q": PurePosixPath("a/b")}
        assert type(kwargs["q"]) is PurePosixPath
        assert str(bind_error(f, [{"id": "nope", "p": "x", "q": "y"}])) == (
            "f(): parameter 'id' expected UUID string, got string \"nope\""
        )

    def test_bytes_from_string(self) -> None:
        def f(b: bytes) -> bytes:
            return b

        assert call(f, [{"b": "hé"}]) == "hé".encode()


# ---------------------------------------------------------------------------------------------
# Containers, unions, literals, enums
# ---------------------------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class TestContainers:
    def test_list_elements_checked_with_index_path(self) -> None:
        def f(xs: list[int]) -> list[int]:
            return xs

        assert call(f, [{"xs": [1, 2.0, 3]}]) == [1, 2, 3]
        assert str(bind_error(f, [{"xs": [1, "two"]}])) == (
            "f(): parameter 'xs[1]' expected number, got string \"two\""
        )
        assert str(bind_error(f, [{"xs": "abc"}])) == (
            "f(): parameter 'xs' expected array, got string \"abc\""
        )

    def test_abstract_sequence_set_frozenset_tuple(self) -> None:
        def f(
            a: Sequence[str], b: set[int], c: frozenset[str], d: tuple[int, str], e: tuple[int, ...]
        ) -> None: ...

        _, kwargs = Binder("f", f).bind(
            [{"a": ["x"], "b": [1, 1, 2], "c": ["y"], "d": [1, "z"], "e": [1, 2.0]}]
        )
        assert kwargs == {
            "a": ["x"],
            "b": {1, 2},
            "c": frozenset({"y"}),
            "d": (1, "z"),
            "e": (1, 2),
        }
        assert type(kwargs["a"]) is list and type(kwargs["c"]) is frozenset
        assert type(kwargs["e"]) is tuple

    def test_fixed_tuple_length_and_element(self) -> None:
        def f(point: tuple[int, str]) -> None: ...

        assert str(bind_error(f, [{"point": [1]}])) == (
            "f(): parameter 'point' expected array of length 2, got array of length 1"
        )
        assert str(bind_error(f, [{"point": [1, 2]}])) == (
            "f(): parameter 'point[1]' expected string, got number 2"
        )

    def test_bare_containers(self) -> None:
        def f(a: list, b: dict, c: tuple) -> None: ...  # type: ignore[type-arg]

        _, kwargs = Binder("f", f).bind([{"a": [1, "x"], "b": {"k": [None]}, "c": [1]}])
        assert kwargs == {"a": [1, "x"], "b": {"k": [None]}, "c": (1,)}

    def test_dict_values_checked_with_key_path(self) -> None:
        def f(m: dict[str, int], n: Mapping[str, list[str]]) -> None: ...

        assert Binder("f", f).bind([{"m": {"a": 1.0}, "n": {"x": ["y"]}}]) == (
            (),
            {"m": {"a": 1}, "n": {"x": ["y"]}},
        )
        assert str(bind_error(f, [{"m": {"a": "1"}, "n": {}}])) == (
            "f(): parameter 'm.a' expected number, got string \"1\""
        )
        assert str(bind_error(f, [{"m": {}, "n": {"odd key": [3]}}])) == (
            "f(): parameter 'n[\"odd key\"][0]' expected string, got number 3"
        )
        assert str(bind_error(f, [{"m": [], "n": {}}])) == (
            "f(): parameter 'm' expected object, got array of length 0"
        )

    def test_dict_keys_converted_from_strings(self) -> None:
        def f(m: dict[int, str], c: dict[Color, int]) -> None: ...

        _, kwargs = Binder("f", f).bind([{"m": {"1": "a", "-2": "b"}, "c": {"red": 1}}])
        assert kwargs == {"m": {1: "a", -2: "b"}, "c": {Color.RED: 1}}
        assert str(bind_error(f, [{"m": {"x": "a"}, "c": {}}])) == (
            'f(): parameter \'m\' has invalid key string "x" (expected number, got string "x")'
        )

    def test_union_tries_members_in_order(self) -> None:
        def f(x: int | str, y: Union[str, list[int]]) -> None: ...  # noqa: UP007

        binder = Binder("f", f)
        assert binder.bind([{"x": 1, "y": [1]}]) == ((), {"x": 1, "y": [1]})
        assert binder.bind([{"x": "a", "y": "b"}]) == ((), {"x": "a", "y": "b"})
        assert binder.bind([{"x": 2.0, "y": "b"}]) == ((), {"x": 2, "y": "b"})
        assert str(bind_error(f, [{"x": True, "y": "b"}])) == (
            "f(): parameter 'x' expected number or string, got boolean true"
        )
        # The only member that takes arrays reports its own, deeper error.
        assert str(bind_error(f, [{"x": 1, "y": [1, "z"]}])) == (
            "f(): parameter 'y[1]' expected number, got string \"z\""
        )

    def test_union_exact_type_wins_over_order(self) -> None:
        def f(x: float | int) -> Any:
            return x

        assert type(call(f, [{"x": 3}])) is int
        assert type(call(f, [{"x": 3.5}])) is float

    def test_optional(self) -> None:
        def f(x: Optional[int]) -> Any:  # noqa: UP045
            return x

        assert call(f, [{"x": None}]) is None
        assert call(f, [{"x": 4}]) == 4
        assert str(bind_error(f, [{"x": "4"}])) == (
            "f(): parameter 'x' expected number or null, got string \"4\""
        )
        assert Binder("f", f).signature_text == "f({x: number | null})"

    def test_literal(self) -> None:
        def f(mode: Literal["r", "w"], n: Literal[1, 2] = 1) -> None: ...

        assert Binder("f", f).bind([{"mode": "w", "n": 2}]) == ((), {"mode": "w", "n": 2})
        assert str(bind_error(f, [{"mode": "x"}])) == (
            'f(): parameter \'mode\' expected one of "r", "w", got string "x"'
        )
        assert "got boolean true" in str(bind_error(f, [{"mode": "r", "n": True}]))
        assert Binder("f", f).signature_text == 'f({mode: "r" | "w", n?: 1 | 2})'

    def test_enum_by_value_and_name(self) -> None:
        def f(c: Color, lvl: Level = Level.LOW) -> None: ...

        binder = Binder("f", f)
        assert binder.bind([{"c": "red"}]) == ((), {"c": Color.RED})
        assert binder.bind([{"c": "GREEN", "lvl": 2}]) == (
            (),
            {"c": Color.GREEN, "lvl": Level.HIGH},
        )
        assert binder.bind([{"c": "red", "lvl": "HIGH"}])[1]["lvl"] is Level.HIGH
        assert binder.bind([{"c": "red", "lvl": 1.0}])[1]["lvl"] is Level.LOW
        assert str(bind_error(f, [{"c": "blue"}])) == (
            'f(): parameter \'c\' expected one of "red", "green", got string "blue"'
        )
        assert "got boolean true" in str(bind_error(f, [{"c": "red", "lvl": True}]))


# ---------------------------------------------------------------------------------------------
# Structured types
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Address:
    street: str
    zip: str


@dataclasses.dataclass
class User:
    name: str
    address: Address
    tags: list[str] = dataclasses.field(default_factory=list)
    age: int = 0


@dataclasses.dataclass
class Node:
    value: int
    children: "list[Node]" = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Positive:
    n: int

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValueError("n must be positive")


class Movie(TypedDict):
    title: str
    year: int
    rating: NotRequired[float]


class Filters(TypedDict, total=False):
    genre: str
    movie: Movie


class Point(NamedTuple):
    x: int
    y: int = 0


def create_user(user: User) -> User:
    return user


class TestStructured:
    def test_dataclass_nested_with_defaults(self) -> None:
        user = call(create_user, [{"user": {"name": "a", "address": {"street": "s", "zip": "1"}}}])
        assert user == User("a", Address("s", "1"), [], 0)
        user = call(
            create_user,
            [{"user": {"name": "a", "address": {"street": "s", "zip": "1"}, "age": 4.0}}],
        )
        assert user.age == 4 and type(user.age) is int

    def test_dataclass_nested_error_path(self) -> None:
        err = bind_error(
            create_user, [{"user": {"name": "a", "address": {"street": "s", "zip": None}}}]
        )
        assert str(err) == "create_user(): parameter 'user.address.zip' expected string, got null"
        assert err.parameter == "user.address.zip"
        assert err.tool == "create_user"
        err = bind_error(
            create_user,
            [{"user": {"name": "a", "address": {"street": "s", "zip": "1"}, "tags": ["x", 3]}}],
        )
        assert str(err) == "create_user(): parameter 'user.tags[1]' expected string, got number 3"

    def test_dataclass_unknown_and_missing_fields(self) -> None:
        assert str(bind_error(create_user, [{"user": {"nmae": "a"}}])) == (
            "create_user(): parameter 'user' has unexpected field 'nmae' (did you mean 'name'?); "
            "accepted fields: name, address, tags, age"
        )
        assert str(bind_error(create_user, [{"user": {"name": "a"}}])) == (
            "create_user(): parameter 'user' is missing required field 'address'"
        )
        assert str(bind_error(create_user, [{"user": {}}])) == (
            "create_user(): parameter 'user' is missing required fields 'name', 'address'"
        )
        assert str(bind_error(create_user, [{"user": "bob"}])) == (
            "create_user(): parameter 'user' expected object, got string \"bob\""
        )

    def test_dataclass_null_field_with_default_uses_default(self) -> None:
        user = call(
            create_user,
            [{"user": {"name": "a", "address": {"street": "s", "zip": "1"}, "age": None}}],
        )
        assert user.age == 0

    def test_dataclass_instance_passes_through(self) -> None:
        user = User("a", Address("s", "1"))
        assert Binder("create_user", create_user).bind({"user": user})[1]["user"] is user

    def test_recursive_dataclass(self) -> None:
        def f(tree: Node) -> Node:
            return tree

        tree = call(f, [{"tree": {"value": 1, "children": [{"value": 2}, {"value": 3.0}]}}])
        assert tree == Node(1, [Node(2), Node(3)])
        assert (
            str(
                bind_error(
                    f, [{"tree": {"value": 1, "children": [{"value": 2, "children": [{}]}]}}]
                )
            )
            == "f(): parameter 'tree.children[0].children[0]' is missing required field 'value'"
        )

    def test_dataclass_constructor_error(self) -> None:
        def f(p: Positive) -> None: ...

        assert str(bind_error(f, [{"p": {"n": -1}}])) == (
            "f(): parameter 'p' is not a valid Positive: n must be positive"
        )

    def test_optional_dataclass_reports_the_nested_error(self) -> None:
        def f(user: User | None = None) -> None: ...

        assert str(bind_error(f, [{"user": {"name": 1}}])) == (
            "f(): parameter 'user.name' expected string, got number 1"
        )
        assert str(bind_error(f, [{"user": 5}])) == (
            "f(): parameter 'user' expected object or null, got number 5"
        )

    def test_typeddict(self) -> None:
        def f(movie: Movie, filters: Filters | None = None) -> None: ...

        binder = Binder("f", f)
        assert binder.bind([{"movie": {"title": "x", "year": 2000.0}}]) == (
            (),
            {"movie": {"title": "x", "year": 2000}},
        )
        _, kwargs = binder.bind(
            [{"movie": {"title": "x", "year": 1, "rating": 5}, "filters": {"genre": "g"}}]
        )
        assert kwargs["movie"]["rating"] == 5.0 and type(kwargs["movie"]["rating"]) is float
        assert kwargs["filters"] == {"genre": "g"}

    def test_typeddict_errors(self) -> None:
        def f(movie: Movie, filters: Filters | None = None) -> None: ...

        assert str(bind_error(f, [{"movie": {"title": "x"}}])) == (
            "f(): parameter 'movie' is missing required field 'year'"
        )
        assert str(bind_error(f, [{"movie": {"title": "x", "year": 1, "raiting": 3}}])) == (
            "f(): parameter 'movie' has unexpected field 'raiting' (did you mean 'rating'?); "
            "accepted fields: title, year, rating"
        )
        # Unknown keys are rejected for total=False TypedDicts too.
        assert "has unexpected field 'genra'" in str(
            bind_error(f, [{"movie": {"title": "x", "year": 1}, "filters": {"genra": "g"}}])
        )
        assert (
            str(
                bind_error(
                    f, [{"movie": {"title": "x", "year": 1}, "filters": {"movie": {"title": 3}}}]
                )
            )
            == "f(): parameter 'filters.movie.title' expected string, got number 3"
        )

    def test_namedtuple(self) -> None:
        def f(p: Point) -> Point:
            return p

        assert call(f, [{"p": {"x": 1}}]) == Point(1, 0)
        assert "parameter 'p.y' expected number" in str(bind_error(f, [{"p": {"x": 1, "y": "2"}}]))

    def test_signature_text(self) -> None:
        def f(
            a: int,
            b: list[str],
            c: dict[str, float] | None = None,
            d: tuple[int, str] = (1, "a"),
            e: Color = Color.RED,
            u: User | None = None,
            z: Any = None,
        ) -> None: ...

        assert Binder("f", f).signature_text == (
            "f({a: number, b: string[], c?: Record<string, number> | null, "
            'd?: [number, string], e?: "red" | "green", u?: User | null, z?: any})'
        )
        assert Binder("ping", lambda: None).signature_text == "ping()"


class TestPydantic:
    pydantic = pytest.importorskip("pydantic")

    def models(self) -> Any:
        from typing import Annotated

        from pydantic import BaseModel, Field

        class Address(BaseModel):
            zip: str

        class Person(BaseModel):
            name: str = Field(alias="fullName")
            age: Annotated[int, Field(gt=0)]
            address: Address

        return Person

    def test_model_validate(self) -> None:
        person_cls = self.models()

        def create_user(user: person_cls) -> Any:  # type: ignore[valid-type]
            return user

        user = call(create_user, [{"user": {"fullName": "x", "age": 3, "address": {"zip": "1"}}}])
        assert isinstance(user, person_cls)
        assert user.address.zip == "1"

    def test_validation_error_names_tool_parameter_and_field(self) -> None:
        person_cls = self.models()

        def create_user(user: person_cls) -> None: ...  # type: ignore[valid-type]

        err = bind_error(
            create_user, [{"user": {"fullName": "x", "age": 3, "address": {"zip": None}}}]
        )
        assert str(err) == "create_user(): parameter 'user.address.zip' expected string, got null"
        err = bind_error(create_user, [{"user": {"fullName": "x", "age": -1, "address": {}}}])
        assert str(err) == (
            "create_user(): parameter 'user.age' is invalid: Input should be greater than 0 "
            "(got number -1); parameter 'user.address.zip' is missing"
        )
        assert str(bind_error(create_user, [{"user": 3}])) == (
            "create_user(): parameter 'user' expected object, got number 3"
        )

    def test_annotated_constraints_use_pydantic(self) -> None:
        from typing import Annotated

        from pydantic import Field

        def f(n: Annotated[int, Field(gt=0)] = 1) -> int:
            return n

        assert call(f, [{"n": 5}]) == 5
        assert str(bind_error(f, [{"n": 0}])) == (
            "f(): parameter 'n' is invalid: Input should be greater than 0 (got number 0)"
        )

    def test_model_result_uses_aliases_and_json_mode(self) -> None:
        person_cls = self.models()
        person = person_cls(fullName="x", age=1, address={"zip": "9"})
        assert to_jsonable({"p": person}) == {
            "p": {"fullName": "x", "age": 1, "address": {"zip": "9"}}
        }


def test_works_without_pydantic_or_numpy() -> None:
    script = textwrap.dedent(
        """
        import dataclasses, sys
        sys.modules["pydantic"] = None
        sys.modules["numpy"] = None
        from codemode.convert import Binder, dumps
        @dataclasses.dataclass
        class P:
            x: int
        def f(p: P, n: int = 1):
            return p
        print(Binder("f", f).bind([{"p": {"x": 2}}]), dumps({"p": P(3)}))
        assert "pydantic" not in sys.modules or sys.modules["pydantic"] is None
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == '((), {\'p\': P(x=2)}) {"p":{"x":3}}'


# ---------------------------------------------------------------------------------------------
# Annotations that cannot be resolved, async detection
# ---------------------------------------------------------------------------------------------


class TestIntrospection:
    def test_string_annotations_resolved(self) -> None:
        def f(a, b) -> Any:  # type: ignore[no-untyped-def]
            return a

        f.__annotations__.update({"a": "int", "b": "list[Color]"})
        assert Binder("f", f).bind([{"a": 1.0, "b": ["red"]}]) == ((), {"a": 1, "b": [Color.RED]})

    def test_unresolvable_annotation_is_any_others_still_checked(self) -> None:
        def f(a, b) -> Any:  # type: ignore[no-untyped-def]
            return a

        f.__annotations__.update({"a": "NoSuchType", "b": "int"})
        binder = Binder("f", f)
        assert binder.bind([{"a": object, "b": 1}]) == ((), {"a": object, "b": 1})
        assert "parameter 'b' expected number" in str(
            pytest.raises(ArgumentError, binder.bind, [{"a": 1, "b": "x"}]).value
        )

    def test_unknown_classes_pass_through(self) -> None:
        class Opaque:
            pass

        def f(x: Opaque) -> None: ...

        assert Binder("f", f).bind([{"x": [1]}]) == ((), {"x": [1]})

    def test_is_async(self) -> None:
        async def fetch(url: str) -> str:
            return url

        class AsyncTool:
            async def __call__(self, q: str) -> str:
                return q

        class SyncTool:
            def __call__(self, q: str) -> str:
                return q

        assert Binder("fetch", fetch).is_async is True
        assert Binder("p", functools.partial(fetch, url="x")).is_async is True
        assert Binder("t", AsyncTool()).is_async is True
        assert Binder("p2", functools.partial(AsyncTool())).is_async is True
        assert Binder("add", add).is_async is False
        assert Binder("s", SyncTool()).is_async is False
        assert Binder("l", lambda: None).is_async is False

    def test_async_partial_binding_and_call(self) -> None:
        async def fetch(url: str, retries: int = 1) -> tuple[str, int]:
            return url, retries

        binder = Binder("fetch", functools.partial(fetch, retries=2))
        args, kwargs = binder.bind([{"url": "u"}])
        assert asyncio.run(binder.fn(*args, **kwargs)) == ("u", 2)

    def test_bind_is_fast(self) -> None:
        binder = Binder("add", add)
        args = [{"a": 1, "b": 2}]
        best = math.inf
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(2000):
                binder.bind(args)
            best = min(best, (time.perf_counter() - start) / 2000)
        assert best < 10e-6, f"bind took {best * 1e6:.2f} µs"


# ---------------------------------------------------------------------------------------------
# Results: to_jsonable and dumps
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Event:
    when: dt.datetime
    where: Path
    tags: frozenset[str]


class Box:
    def __init__(self, value: Any) -> None:
        self.value = value


class TestToJsonable:
    @pytest.mark.parametrize("value", [None, True, False, 0, -5, 2**70, "", "héllo", 1.5])
    def test_primitives_unchanged(self, value: Any) -> None:
        assert to_jsonable(value) == value
        assert type(to_jsonable(value)) is type(value)

    @pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
    def test_non_finite_floats_become_null(self, value: float) -> None:
        assert to_jsonable(value) is None
        assert to_jsonable([1.0, value]) == [1.0, None]
        assert dumps({"x": value}) == '{"x":null}'

    def test_containers(self) -> None:
        value = {"t": (1, (2, 3)), "s": {3, 1, 2}, "f": frozenset({"b", "a"}), "l": [[], {}]}
        assert to_jsonable(value) == {
            "t": [1, [2, 3]],
            "s": [1, 2, 3],
            "f": ["a", "b"],
            "l": [[], {}],
        }

    def test_mixed_set_order_is_deterministic(self) -> None:
        value = {"b", 2, None, (1, 2), "a", 1.5}
        assert to_jsonable(value) == to_jsonable(set(reversed(list(value))))
        assert sorted(map(json.dumps, to_jsonable(value))) == sorted(
            ["null", "1.5", "2", '"a"', '"b"', "[1, 2]"]
        )

    def test_other_iterables(self) -> None:
        d = {"a": 1, "b": 2}
        assert to_jsonable(range(3)) == [0, 1, 2]
        assert to_jsonable(collections.deque([1, 2])) == [1, 2]
        assert to_jsonable(d.keys()) == ["a", "b"]
        assert to_jsonable(d.values()) == [1, 2]
        assert to_jsonable(d.items()) == [["a", 1], ["b", 2]]
        assert to_jsonable(collections.OrderedDict(x=1)) == {"x": 1}
        assert to_jsonable(collections.Counter("aab")) == {"a": 2, "b": 1}
        assert to_jsonable(Point(1, 2)) == [1, 2]

    def test_dict_keys(self) -> None:
        value = {7: "a", 2.5: "b", True: "c", None: "d", Color.RED: "e", Level.HIGH: "f"}
        assert to_jsonable(value) == {
            "7": "a",
            "2.5": "b",
            "true": "c",
            "null": "d",
            "red": "e",
            "2": "f",
        }
        assert to_jsonable({math.inf: 1, math.nan: 2}) == {"Infinity": 1, "NaN": 2}

    def test_bad_dict_key(self) -> None:
        with pytest.raises(ConversionError) as info:
            to_jsonable({"m": {(1, 2): "x"}})
        assert str(info.value) == (
            "cannot send result.m to JavaScript: object key (1, 2) of type 'tuple' is not a "
            "string (JSON object keys must be strings)"
        )
        assert info.value.path == "result.m"

    def test_dataclass_recursive(self) -> None:
        user = User("a", Address("s", "1"), ["t"])
        assert to_jsonable(user) == {
            "name": "a",
            "address": {"street": "s", "zip": "1"},
            "tags": ["t"],
            "age": 0,
        }
        event = Event(dt.datetime(2024, 1, 2, 3, 4, 5), Path("/x/y"), frozenset({"b", "a"}))
        assert to_jsonable(event) == {
            "when": "2024-01-02T03:04:05",
            "where": "/x/y",
            "tags": ["a", "b"],
        }

    def test_scalars(self) -> None:
        u = uuid.UUID("12345678-1234-5678-1234-567812345678")
        tz = dt.timezone(dt.timedelta(hours=2))
        assert to_jsonable(
            [
                dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=tz),
                dt.date(2024, 1, 2),
                dt.time(3, 4),
                dt.timedelta(minutes=1, milliseconds=500),
                u,
                PurePosixPath("a/b"),
                Color.GREEN,
                Level.LOW,
                decimal.Decimal("12.25"),
                decimal.Decimal("NaN"),
                decimal.Decimal("-Infinity"),
            ]
        ) == [
            "2024-01-02T03:04:05+02:00",
            "2024-01-02",
            "03:04:00",
            60.5,
            "12345678-1234-5678-1234-567812345678",
            "a/b",
            "green",
            1,
            12.25,
            None,
            None,
        ]
        assert type(to_jsonable(Level.LOW)) is int

    def test_enum_value_converted_recursively(self) -> None:
        class Shape(enum.Enum):
            UNIT = (1, dt.date(2020, 1, 1))

        assert to_jsonable(Shape.UNIT) == [1, "2020-01-01"]

    def test_str_int_float_subclasses_become_plain(self) -> None:
        class Name(str):
            pass

        class Count(int):
            pass

        class Ratio(float):
            pass

        result = to_jsonable([Name("x"), Count(3), Ratio(0.5), Ratio(math.nan)])
        assert result == ["x", 3, 0.5, None]
        assert [type(v) for v in result[:3]] == [str, int, float]

    def test_bytes(self) -> None:
        assert to_jsonable(b"hello \xc3\xa9") == "hello é"
        assert to_jsonable(bytearray(b"ok")) == "ok"
        assert to_jsonable(b"\xff\x00\x01") == {"base64": "/wAB"}

    def test_hooks(self) -> None:
        class WithJson:
            def __json__(self) -> Any:
                return {"kind": "json", "at": dt.date(2020, 1, 2)}

        class WithRepr:
            def _repr_json_(self) -> Any:
                return ({"kind": "repr"}, {"expanded": True})

        class WithToDict:
            def to_dict(self) -> Any:
                return {"kind": "to_dict", 1: (1, 2)}

        class Broken:
            def to_dict(self) -> Any:
                raise RuntimeError("boom")

        assert to_jsonable([WithJson(), WithRepr(), WithToDict()]) == [
            {"kind": "json", "at": "2020-01-02"},
            {"kind": "repr"},
            {"kind": "to_dict", "1": [1, 2]},
        ]
        with pytest.raises(ConversionError) as info:
            to_jsonable({"b": Broken()})
        assert str(info.value) == (
            "cannot send result.b to JavaScript: Broken.to_dict() failed: RuntimeError('boom')"
        )

    def test_numpy(self) -> None:
        np = pytest.importorskip("numpy")
        value = {
            "i": np.int64(3),
            "f": np.float32(0.5),
            "b": np.bool_(True),
            "nan": np.float64("nan"),
            "a": np.arange(4).reshape(2, 2),
            "d": np.datetime64("2024-01-02T03:04:05"),
        }
        result = to_jsonable(value)
        assert result == {
            "i": 3,
            "f": 0.5,
            "b": True,
            "nan": None,
            "a": [[0, 1], [2, 3]],
            "d": "2024-01-02T03:04:05",
        }
        assert type(result["i"]) is int and type(result["b"]) is bool
        assert json.loads(dumps(value)) == result

    def test_unknown_object(self) -> None:
        import socket

        with socket.socket() as sock:
            with pytest.raises(ConversionError) as info:
                to_jsonable({"items": [1, 2, sock]})
        assert str(info.value) == (
            "cannot send result.items[2] to JavaScript: object of type 'socket' is not "
            "JSON-serialisable"
        )
        assert info.value.path == "result.items[2]"

    def test_path_through_dataclass_and_custom_where(self) -> None:
        with pytest.raises(ConversionError) as info:
            to_jsonable([Box(1)], where="out")
        assert str(info.value) == (
            "cannot send out[0] to JavaScript: object of type 'Box' is not JSON-serialisable"
        )
        with pytest.raises(ConversionError) as info:
            to_jsonable({"odd key": [User("a", Address("s", Box(2)))]})  # type: ignore[arg-type]
        assert info.value.path == 'result["odd key"][0].address.zip'

    def test_generators_and_coroutines_are_refused_with_a_hint(self) -> None:
        with pytest.raises(ConversionError) as info:
            to_jsonable({"g": (i for i in range(3))})
        assert str(info.value) == (
            "cannot send result.g to JavaScript: object of type 'generator' is not "
            "JSON-serialisable (convert it to a list first)"
        )

        async def work() -> int:
            return 1

        coro = work()
        try:
            with pytest.raises(ConversionError, match=r"did you forget to await it\?"):
                to_jsonable(coro)
        finally:
            coro.close()

    def test_cycles(self) -> None:
        x: dict[str, Any] = {}
        x["a"] = {"b": x}
        with pytest.raises(ConversionError) as info:
            to_jsonable(x)
        assert str(info.value) == (
            "cannot send result to JavaScript: cycle at result.a.b "
            "(a container holds a reference to itself)"
        )
        assert info.value.path == "result.a.b"

        items: list[Any] = [1]
        items.append(items)
        with pytest.raises(ConversionError, match=r"cycle at result\[1\]"):
            to_jsonable(items)

        box = Box(None)
        node = Node(1, [])
        node.children.append(node)
        with pytest.raises(ConversionError, match=r"cycle at result\.children\[0\]"):
            to_jsonable(node)
        del box

    def test_shared_references_are_not_cycles(self) -> None:
        shared = [1, 2]
        assert to_jsonable({"a": shared, "b": [shared, shared]}) == {
            "a": [1, 2],
            "b": [[1, 2], [1, 2]],
        }

    def test_depth_limit(self) -> None:
        def nest(levels: int) -> list[Any]:
            value: list[Any] = []
            for _ in range(levels - 1):
                value = [value]
            return value

        assert MAX_DEPTH == 200
        assert json.dumps(to_jsonable(nest(MAX_DEPTH))) == "[" * 200 + "]" * 200
        with pytest.raises(ConversionError) as info:
            to_jsonable(nest(MAX_DEPTH + 1))
        assert str(info.value).startswith(
            "cannot send result to JavaScript: nested deeper than 200 levels at result[0][0]"
        )

    def test_input_is_not_modified(self) -> None:
        value = {"t": (1, 2), "n": [math.nan]}
        to_jsonable(value)
        assert value["t"] == (1, 2) and math.isnan(value["n"][0])


class TestDumps:
    def test_compact_and_unicode(self) -> None:
        assert dumps({"a": [1, 2], "b": "é"}) == '{"a":[1,2],"b":"é"}'
        assert dumps("x") == '"x"'
        assert dumps(None) == "null"

    def test_falls_back_to_conversion(self) -> None:
        value = {"when": dt.date(2020, 1, 2), "n": math.nan, "s": {2, 1}, 3: b"\xff"}
        assert dumps(value) == '{"when":"2020-01-02","n":null,"s":[1,2],"3":{"base64":"/w=="}}'

    def test_fast_path_skips_the_walk(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("to_jsonable should not run for plain JSON data")

        monkeypatch.setattr(convert, "to_jsonable", fail)
        assert (
            dumps({"a": 1, "b": [1, 2, {"c": 3}], 4: True}) == '{"a":1,"b":[1,2,{"c":3}],"4":true}'
        )

    def test_agrees_with_to_jsonable_on_values_json_accepts_natively(self) -> None:
        values = [
            {7: "a", 2.5: "b", True: "c", None: "d"},
            (1, (2, [3])),
            [Level.HIGH, Point(1, 2), collections.OrderedDict(a=1)],
            {Level.LOW: 1},
        ]
        for value in values:
            assert dumps(value) == json.dumps(
                to_jsonable(value), separators=(",", ":"), ensure_ascii=False
            )

    def test_errors_name_the_path(self) -> None:
        with pytest.raises(ConversionError) as info:
            dumps({"a": [object()]}, where="value")
        assert str(info.value) == (
            "cannot send value.a[0] to JavaScript: object of type 'object' is not JSON-serialisable"
        )
        x: list[Any] = []
        x.append({"self": x})
        with pytest.raises(ConversionError, match=r"cycle at result\[0\]\.self"):
            dumps(x)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


def same(a: Any, b: Any) -> bool:
    """Equality that also insists on identical types (so 1 != 1.0 != True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_json_values_round_trip_through_dumps(value: Any) -> None:
    assert same(json.loads(dumps(value)), value)
    assert same(to_jsonable(value), value)


def _passthrough(*, x: Any) -> Any:
    return x


_PASSTHROUGH = Binder("passthrough", _passthrough)


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_any_parameter_passes_json_values_unchanged(value: Any) -> None:
    positional, keyword = _PASSTHROUGH.bind([{"x": value}])
    assert positional == ()
    assert keyword["x"] is value
