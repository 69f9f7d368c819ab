"""Tests for TypeScript declaration generation (``codemode.stubs``) and docstring parsing.

Besides asserting on the generated text, every stub is compiled with the real TypeScript compiler
together with code that *uses* it, including ``// @ts-expect-error`` lines: those fail to compile
if the expected error does not happen, which proves the declared types actually constrain calls.
All TypeScript sources are checked in a single ``tsc`` run (each case is its own module so their
declarations do not collide) to keep the suite fast.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import inspect
import pathlib
import re
import subprocess
import typing
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import (
    Annotated,
    Any,
    ForwardRef,
    Literal,
    NamedTuple,
    NewType,
    NotRequired,
    Optional,
    Required,
    TypedDict,
    TypeVar,
    Union,
)

import pytest
from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from codemode.docstrings import Docstring, parse_docstring
from codemode.stubs import (
    TypeRegistry,
    function_stub,
    generate_stubs,
    js_identifier,
    namespace_stub,
    ts_type,
)

REPO = Path(__file__).resolve().parents[1]
TSC = REPO / "node_modules" / ".bin" / "tsc"
# ``--skipDefaultLibCheck`` only skips re-checking TypeScript's own lib files (saves ~2 s);
# every generated file is still fully checked.
TSC_FLAGS = [
    "--noEmit",
    "--strict",
    "--pretty",
    "false",
    "--target",
    "es2022",
    "--skipDefaultLibCheck",
]


# --------------------------------------------------------------------------- fixtures: types


class Color(enum.Enum):
    """A primary-ish colour."""

    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Perm(enum.Flag):
    READ = 1
    WRITE = 2


@dataclasses.dataclass
class Point:
    """A point on the plane."""

    x: float
    """Horizontal position."""
    y: float = 0.0
    """Vertical position; a */ here must not end the comment."""


# Same ``__name__`` as ``Point`` but a different class: must get its own interface name.
OtherPoint = dataclasses.make_dataclass("Point", [("label", str)])


@dataclasses.dataclass
class TreeNode:
    """A self-referencing tree."""

    value: int
    children: list[TreeNode] = dataclasses.field(default_factory=list)
    parent: TreeNode | None = None


@dataclasses.dataclass
class Left:
    right: Right | None = None


@dataclasses.dataclass
class Right:
    left: Left


@dataclasses.dataclass
class Event:
    """Clashes with the DOM's global ``Event`` interface, so it must be renamed."""

    kind: str
    at: dt.datetime


class Movie(TypedDict):
    title: str
    """The title."""
    year: NotRequired[int]


class Draft(TypedDict, total=False):
    body: str
    author: Required[str]


Weird = TypedDict("Weird", {"my-key": str, "class": int, "ok": bool})


class Address(BaseModel):
    street: str = Field(description="Street name */ and number")
    zip_code: str = Field(alias="zip-code")


class Person(BaseModel):
    """A person with friends."""

    name: str
    age: int | None = None
    friends: list[Person] = []
    address: Address | None = None


class Pair(NamedTuple):
    left: int
    right: str = "r"


UserId = NewType("UserId", int)
T = TypeVar("T")
Json = TypeAliasType("Json", "dict[str, Json] | list[Json] | str | int | float | bool | None")


# --------------------------------------------------------------------------- fixtures: tools


def add(a: int, b: int = 2) -> int:
    """Add two integers.

    Longer description that is not part of the summary.

    Args:
        a (int): The first number.
        b: The second number,
            defaulting to two.

    Returns:
        int: The sum.
    """
    return a + b


def scale(p: Point, factor: float) -> Point:
    """Scale a point.

    Parameters
    ----------
    p : Point
        The point to scale.
    factor : float
        Multiplier for both coordinates.

    Returns
    -------
    Point
        The scaled point.
    """
    return Point(p.x * factor, p.y * factor)


async def ping() -> None:
    """Check the host is alive."""


def all_defaults(verbose: bool = False, *, limit: int = 10) -> list[str]:
    return []


def with_kwargs(name: str, *args: Any, **extra: Any) -> dict[str, Any]:
    """Accept arbitrary extra keyword arguments."""
    return {"name": name, **extra}


def returns_awaitable() -> Awaitable[int]:
    raise NotImplementedError


async def async_words(n: int) -> list[str]:
    return ["x"] * n


def untyped(a, b=1):
    return a


def nasty_doc(x: str) -> str:
    """Summary with */ inside.

    Args:
        x: A parameter */ that tries to close the comment.

    Returns:
        Text */ again.
    """
    return x


def structured(
    movie: Movie,
    draft: Draft,
    weird: Weird,
    person: Person,
    tree: TreeNode,
    left: Left,
    event: Event,
    other: OtherPoint,  # type: ignore[valid-type]
    pair: Pair,
    json_value: Json,
) -> Person:
    """Take one of each record-like type."""
    raise NotImplementedError


def pair_result() -> Pair:
    """NamedTuples are accepted as objects but returned as arrays."""
    return Pair(1)


def raw_bytes(data: bytes) -> bytes:
    """Bytes go in as a string; non-UTF-8 results come back as ``{base64}``."""
    return data


def scalars(
    s: str,
    i: int,
    f: float,
    b: bool,
    n: None,
    raw: bytes,
    when: dt.datetime,
    day: dt.date,
    clock: dt.time,
    money: decimal.Decimal,
    ident: uuid.UUID,
    path: pathlib.Path,
    user: UserId,
    color: Color,
    level: Level,
    perm: Perm,
    choice: Literal["a", 1, True],
    maybe: Optional[int],  # noqa: UP045 - the typing spelling must work
    either: Union[int, str],  # noqa: UP007
    ann: Annotated[int, "An annotated int."],
    anything: Any,
    whatever: object,
    generic: T,  # type: ignore[valid-type]
    callback: Callable[[int], str],
    cplx: complex,
) -> str:
    """Take one of each scalar type."""
    raise NotImplementedError


def containers(
    ints: list[int],
    seq: Sequence[str],
    uniq: set[int],
    frozen: frozenset[str],
    it: Iterable[bool],
    pair: tuple[int, str],
    many: tuple[float, ...],
    scores: dict[str, int],
    nested: Mapping[str, list[int]],
    bare_list: list,
    bare_dict: dict,
    mixed: list[int | str],
    optional_list: Optional[list[Point]] = None,  # noqa: UP045
) -> tuple[int, Point]:
    """Take one of each container type."""
    raise NotImplementedError


class Greeter:
    """Callable object whose ``__call__`` is the tool."""

    def __call__(self, who: str) -> str:
        """Greet someone."""
        return f"hi {who}"


class GeoCapability:
    """A small capability used as a namespace ``codemode.geo``."""

    namespace = "geo"
    description = "Geometry helpers.\n\nAll distances are in metres; */ is escaped."

    def exports(self) -> Mapping[str, Callable[..., Any]]:
        return {"distance": self.distance, "centroid": self.centroid}

    def distance(self, a: Point, b: Point) -> float:
        """Euclidean distance between two points."""
        return ((a.x - b.x) ** 2 + (a.y - b.y) ** 2) ** 0.5

    async def centroid(self, points: list[Point]) -> Point:
        """Mean of the points."""
        raise NotImplementedError


FLAT_FNS: dict[str, Callable[..., Any]] = {
    "add": add,
    "ping": ping,
    "all_defaults": all_defaults,
    "with_kwargs": with_kwargs,
    "returns_awaitable": returns_awaitable,
    "async_words": async_words,
    "untyped": untyped,
    "nasty_doc": nasty_doc,
    "math.scale": scale,
    "types.structured": structured,
    "types.scalars": scalars,
    "types.containers": containers,
    "types.pair_result": pair_result,
    "types.raw_bytes": raw_bytes,
    "deep.er.greet": Greeter(),
    "my-tool": add,
    "delete": add,
}


def main_stub() -> str:
    return generate_stubs([GeoCapability()], FLAT_FNS)


MAIN_USAGE = """
async function useMain(): Promise<void> {
  const pending: Promise<number> = codemode.add({ a: 1 });
  const sum: number = await codemode.add({ a: 1, b: 2 });
  // @ts-expect-error a must be a number
  await codemode.add({ a: "1" });
  // @ts-expect-error a is required
  await codemode.add({ b: 1 });
  // @ts-expect-error the args object is required when a parameter is
  await codemode.add();
  // @ts-expect-error no excess properties without **kwargs
  await codemode.add({ a: 1, c: 3 });
  // @ts-expect-error the result is a number, not a string
  const notString: string = await codemode.add({ a: 1 });

  const nothing: void = await codemode.ping();
  await codemode.ping({});
  // @ts-expect-error void is not a number
  const notNumber: number = await codemode.ping();
  const names: string[] = await codemode.all_defaults();
  await codemode.all_defaults({ limit: 3 });
  const extra: Record<string, unknown> = await codemode.with_kwargs({ name: "n", anything: 1 });
  const direct: number = await codemode.returns_awaitable();
  const words: string[] = await codemode.async_words({ n: 2 });
  const u: unknown = await codemode.untyped({ a: 1 });
  // @ts-expect-error an untyped result is unknown
  const notTyped: number = await codemode.untyped({ a: 1 });
  const s: string = await codemode.nasty_doc({ x: "x" });
  const renamed: number = await codemode.my_tool({ a: 1 });
  const reserved: number = await codemode.delete_({ a: 1 });

  const scaled: Point = await codemode.math.scale({ p: { x: 1 }, factor: 2 });
  const x: number = scaled.x;
  // @ts-expect-error x is required in Point
  await codemode.math.scale({ p: { y: 1 }, factor: 2 });
  const hello: string = await codemode.deep.er.greet({ who: "you" });

  const far: number = await codemode.geo.distance({ a: { x: 0, y: 0 }, b: { x: 3, y: 4 } });
  const mid: Point = await codemode.geo.centroid({ points: [{ x: 1 }] });
  // @ts-expect-error points is an array
  await codemode.geo.centroid({ points: { x: 1 } });

  const person: Person = await codemode.types.structured({
    movie: { title: "T" },
    draft: { author: "me" },
    weird: { "my-key": "k", class: 1, ok: true },
    person: { name: "n", friends: [{ name: "f" }], address: { street: "s", "zip-code": "z" } },
    tree: { value: 1, children: [{ value: 2 }], parent: null },
    left: { right: { left: {} } },
    event: { kind: "k", at: "2024-01-01T00:00:00" },
    other: { label: "l" },
    pair: { left: 1 },
    json_value: { a: [1, "two", null, { b: true }] },
  });
  const friendName: string = person.friends![0].name;
  const [left, right]: [number, string] = await codemode.types.pair_result();
  const raw: string | { base64: string } = await codemode.types.raw_bytes({ data: "text" });
  // @ts-expect-error a bytes result is not always a string
  const rawString: string = await codemode.types.raw_bytes({ data: "text" });
  const badMovie: Movie = {
    title: "T",
    // @ts-expect-error year is a number
    year: "1999",
  };
  // @ts-expect-error author is Required in a total=False TypedDict
  const noAuthor: Draft = { body: "b" };
  // @ts-expect-error the alias, not the Python name, is the key
  const noAlias: Address = { street: "s", zip_code: "z" };

  const text: string = await codemode.types.scalars({
    s: "s", i: 1, f: 1.5, b: true, n: null, raw: "b64", when: "2024-01-01T00:00:00",
    day: "2024-01-01", clock: "12:00:00", money: 1.25, ident: "uuid", path: "/tmp",
    user: 7, color: "red", level: 2, perm: 3, choice: true, maybe: null, either: "x", ann: 1,
    anything: {}, whatever: [], generic: 1, callback: 1, cplx: 1,
  });
  const badColor = {
    // @ts-expect-error an enum takes its values only
    color: "blue" as const,
  } satisfies Partial<Parameters<typeof codemode.types.scalars>[0]>;
  // @ts-expect-error Literal["a", 1, True] does not include false
  const badChoice: Parameters<typeof codemode.types.scalars>[0]["choice"] = false;

  const result: [number, Point] = await codemode.types.containers({
    ints: [1], seq: ["a"], uniq: [1], frozen: ["f"], it: [true], pair: [1, "a"],
    many: [1, 2, 3], scores: { a: 1 }, nested: { a: [1] }, bare_list: [1, "x"],
    bare_dict: { k: 1 }, mixed: [1, "a"],
  });
  // @ts-expect-error a 2-tuple needs both elements
  const shortPair: Parameters<typeof codemode.types.containers>[0]["pair"] = [1];
  // @ts-expect-error mixed elements are numbers or strings
  const badMixed: Parameters<typeof codemode.types.containers>[0]["mixed"] = [true];
}
"""


# --------------------------------------------------------------------------- tsc harness


def require_tsc(tsc: Path = TSC) -> Path:
    """The TypeScript compiler; fails (never skips) with instructions when it is missing."""
    if not tsc.exists():
        pytest.fail(
            f"TypeScript compiler not found at {tsc}. Run `npm install` in {REPO} "
            "(package.json pins the typescript devDependency) and re-run the tests.",
            pytrace=False,
        )
    return tsc


def run_tsc(directory: Path, files: Mapping[str, str]) -> dict[str, list[str]]:
    """Write ``files`` to ``directory``, type-check them in one run, return errors per file."""
    tsc = require_tsc()
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [str(tsc), *TSC_FLAGS, *files],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=240,
    )
    errors: dict[str, list[str]] = {name: [] for name in files}
    current: list[str] | None = None
    for line in proc.stdout.splitlines():
        match = re.match(r"^(.+?)\(\d+,\d+\): error ", line)
        if match:
            current = errors.setdefault(match.group(1), [])
            current.append(line)
        elif current is not None and line.startswith(" "):
            current[-1] += "\n" + line
        elif line.strip():
            errors.setdefault("<tsc>", []).append(line)
    if proc.returncode != 0 and not any(errors.values()):
        errors.setdefault("<tsc>", []).append(proc.stdout + proc.stderr)
    return errors


def numbered(text: str) -> str:
    return "\n".join(f"{i:4} {line}" for i, line in enumerate(text.splitlines(), 1))


def module_case(*parts: str) -> str:
    """A TypeScript module (so its global-looking declarations stay private to the file)."""
    return "export {};\n\n" + "\n\n".join(parts) + "\n"


# Every generated ``ts_type`` expression in MAPPINGS is compiled as ``type T<n> = ...``.
MAPPINGS: list[tuple[object, str]] = [
    (str, "string"),
    (int, "number"),
    (float, "number"),
    (bool, "boolean"),
    (complex, "unknown"),
    (None, "null"),
    (type(None), "null"),
    (bytes, "string"),
    (list[int], "number[]"),
    (Sequence[str], "string[]"),
    (set[int], "number[]"),
    (frozenset[str], "string[]"),
    (Iterable[bool], "boolean[]"),
    (typing.List[int], "number[]"),  # noqa: UP006 - the old alias must work too
    (tuple[int, str], "[number, string]"),
    (tuple[int, ...], "number[]"),
    (tuple[()], "[]"),
    (dict[str, int], "Record<string, number>"),
    (Mapping[str, list[int]], "Record<string, number[]>"),
    (list, "unknown[]"),
    (dict, "Record<string, unknown>"),
    (typing.Dict, "Record<string, unknown>"),  # noqa: UP006
    (Optional[int], "number | null"),  # noqa: UP045
    (int | None, "number | null"),
    (Union[None, int], "number | null"),  # noqa: UP007
    (Union[int, str], "number | string"),  # noqa: UP007
    (Union[int, Any], "unknown"),  # noqa: UP007
    (Literal["a", 1, True], '"a" | 1 | true'),
    (Literal['say "hi"\n'], '"say \\"hi\\"\\n"'),
    (Literal[-1, False, None], "-1 | false | null"),
    (Any, "unknown"),
    (object, "unknown"),
    (inspect.Parameter.empty, "unknown"),
    (dt.datetime, "string"),
    (dt.date, "string"),
    (dt.time, "string"),
    (decimal.Decimal, "number"),
    (uuid.UUID, "string"),
    (pathlib.Path, "string"),
    (pathlib.PurePosixPath, "string"),
    (Annotated[int, "meta"], "number"),
    (Annotated[Optional[str], "meta"], "string | null"),  # noqa: UP045
    (UserId, "number"),
    (T, "unknown"),
    (Callable[[int], str], "unknown"),
    (Awaitable[int], "Promise<number>"),
    (list[int | str], "(number | string)[]"),
    (list[Optional[Color]], "(Color | null)[]"),  # noqa: UP045
    (dict[str, list[Point]], "Record<string, Point[]>"),
    ("int", "number"),
    ("list[str] | None", "string[] | null"),
    (ForwardRef("str"), "string"),
    (list["int"], "number[]"),
    ("NoSuchName", "unknown"),
    ("9 ** 9 ** 9 ** 9", "unknown"),
    ("__import__('os').getcwd()", "unknown"),
    (Color, "Color"),
    (Level, "Level"),
    (Perm, "number"),
    (Point, "Point"),
    (Movie, "Movie"),
    (Person, "Person"),
    (Pair, "Pair"),
    (dt.timedelta, "number"),
    (42, "unknown"),
    ([int], "unknown"),
    (typing.Generic, "unknown"),
    (type[int], "unknown"),
]


def mappings_case() -> str:
    registry = TypeRegistry()
    aliases = [
        f"type T{i} = {ts_type(ann, registry=registry)};" for i, (ann, _) in enumerate(MAPPINGS)
    ]
    return module_case(registry.render(), "\n".join(aliases))


def function_stub_case() -> str:
    registry = TypeRegistry()
    decls = "\n".join(function_stub(name, fn, registry=registry) for name, fn in FLAT_FNS.items())
    body = "\n".join("  " + line for line in decls.splitlines())
    usage = "const p: Promise<Point> = codemode.scale({ p: { x: 1 }, factor: 1 });"
    return module_case(registry.render(), f"declare namespace codemode {{\n{body}\n}}", usage)


def namespace_stub_case() -> str:
    registry = TypeRegistry()
    block = namespace_stub(GeoCapability(), registry=registry)
    body = "\n".join("  " + line for line in block.splitlines())
    usage = (
        "const d: Promise<number> = codemode.geo.distance({ a: { x: 0 }, b: { x: 1 } });\n"
        "// @ts-expect-error b is required\n"
        "codemode.geo.distance({ a: { x: 0 } });"
    )
    return module_case(registry.render(), f"declare namespace codemode {{\n{body}\n}}", usage)


def empty_case() -> str:
    return module_case(generate_stubs(), "const ns: typeof codemode = codemode;")


def odd_names_case() -> str:
    fns = {
        name: add
        for name in ["class", "default", "eval", "arguments", "a-b", "a_b", "1st", "x.y-z.w", "$ok"]
    }
    fns["string.type"] = add
    fns["namespace.module"] = add
    return module_case(
        generate_stubs((), fns),
        "const n: Promise<number> = codemode.class_({ a: 1 });\n"
        "const m: Promise<number> = codemode.x.y_z.w({ a: 1 });",
    )


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Type-check all TypeScript sources of this module in one ``tsc`` run."""
    directory = tmp_path_factory.mktemp("tsc")
    files = {
        "codemode.d.ts": main_stub(),
        "usage.ts": MAIN_USAGE,
        "mappings.ts": mappings_case(),
        "function_stubs.ts": function_stub_case(),
        "namespace_stub.ts": namespace_stub_case(),
        "empty.ts": empty_case(),
        "odd_names.ts": odd_names_case(),
    }
    errors = run_tsc(directory, files)
    errors["_sources"] = [f"--- {name}\n{numbered(text)}" for name, text in files.items()]
    return errors


def assert_compiles(compiled: dict[str, list[str]], *names: str) -> None:
    problems = [error for name in (*names, "<tsc>") for error in compiled.get(name, [])]
    assert not problems, "\n".join(problems) + "\n\n" + "\n".join(compiled["_sources"])


# --------------------------------------------------------------------------- compile tests


def test_main_stub_compiles_and_types_are_enforced(compiled: dict[str, list[str]]) -> None:
    assert_compiles(compiled, "codemode.d.ts", "usage.ts")


def test_every_mapping_compiles(compiled: dict[str, list[str]]) -> None:
    assert_compiles(compiled, "mappings.ts")


def test_function_and_namespace_stubs_compile(compiled: dict[str, list[str]]) -> None:
    assert_compiles(compiled, "function_stubs.ts", "namespace_stub.ts")


def test_empty_and_odd_names_compile(compiled: dict[str, list[str]]) -> None:
    assert_compiles(compiled, "empty.ts", "odd_names.ts")


def test_missing_tsc_fails_with_instructions(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="npm install"):
        require_tsc(tmp_path / "no" / "tsc")


# --------------------------------------------------------------------------- text tests


@pytest.mark.parametrize(("annotation", "expected"), MAPPINGS, ids=lambda v: repr(v)[:40])
def test_ts_type_mapping(annotation: object, expected: str) -> None:
    assert ts_type(annotation) == expected


def test_function_stub_exact_text() -> None:
    assert function_stub("add", add) == (
        "/**\n"
        " * Add two integers.\n"
        " * @param a The first number.\n"
        " * @param b The second number, defaulting to two.\n"
        " * @returns The sum.\n"
        " */\n"
        "function add(args: { a: number; b?: number }): Promise<number>;"
    )


def test_numpy_docstring_becomes_jsdoc() -> None:
    text = function_stub("math.scale", scale)
    assert "Scale a point." in text
    assert "@param p The point to scale." in text
    assert "@param factor Multiplier for both coordinates." in text
    assert "@returns The scaled point." in text
    assert "function scale(args: { p: Point; factor: number }): Promise<Point>;" in text


def test_no_params_none_return_and_all_defaults() -> None:
    assert function_stub("ping", ping).endswith("function ping(args?: {}): Promise<void>;")
    assert "function all_defaults(args?: { verbose?: boolean; limit?: number })" in function_stub(
        "all_defaults", all_defaults
    )


def test_result_shapes_follow_the_bridge() -> None:
    assert ts_type(Pair, output=True) == "[left: number, right: string]"
    assert ts_type(bytes, output=True) == "string | { base64: string }"
    assert ts_type(list[bytes], output=True) == "(string | { base64: string })[]"
    assert "function pair_result(args?: {}): Promise<[left: number, right: string]>;" in (
        function_stub("pair_result", pair_result)
    )
    registry = TypeRegistry()
    assert ts_type(Pair, registry=registry) == "Pair"
    assert registry.declaration("Pair") == "interface Pair {\n  left: number;\n  right?: string;\n}"


def test_kwargs_and_varargs() -> None:
    assert "function kw(args: { name: string; [key: string]: unknown }): Promise<" in (
        function_stub("kw", with_kwargs)
    )
    # Past 100 characters the args object is written one field per line.
    assert function_stub("with_kwargs", with_kwargs).endswith(
        "function with_kwargs(args: {\n  name: string;\n  [key: string]: unknown;\n"
        "}): Promise<Record<string, unknown>>;"
    )


def test_awaitables_are_not_double_wrapped() -> None:
    assert "Promise<number>;" in function_stub("r", returns_awaitable)
    assert "Promise<string[]>;" in function_stub("w", async_words)
    assert "Promise<Promise" not in main_stub()


def test_untyped_parameters_are_unknown() -> None:
    assert "function untyped(args: { a: unknown; b?: unknown }): Promise<unknown>;" in (
        function_stub("untyped", untyped)
    )


def test_comment_terminator_is_escaped() -> None:
    stub = main_stub()
    assert "Summary with *\\/ inside." in stub
    assert "@param x A parameter *\\/ that tries to close the comment." in stub
    assert "@returns Text *\\/ again." in stub
    assert "Street name *\\/ and number" in stub
    for comment in re.findall(r"/\*\*.*?\*/", stub, flags=re.DOTALL):
        assert comment.count("*/") == 1


def test_interfaces_declared_once_at_top_level() -> None:
    stub = main_stub()
    assert stub.count("interface Point {") == 1
    assert stub.index("interface Point {") < stub.index("declare namespace codemode")
    assert "/** A point on the plane. */\ninterface Point {" in stub
    assert "  /** Horizontal position. */\n  x: number;" in stub
    assert "  y?: number;" in stub


def test_name_clashes_get_distinct_names() -> None:
    registry = TypeRegistry()
    assert ts_type(Point, registry=registry) == "Point"
    assert ts_type(OtherPoint, registry=registry) == "Point_2"
    assert ts_type(Point, registry=registry) == "Point"
    assert "label: string;" in registry.declaration("Point_2")
    # A class named like a global (DOM) type is renamed instead of merging with it.
    assert ts_type(Event, registry=registry) == "Event_2"
    assert "interface Event_2 {" in registry.render()


def test_recursive_types_terminate() -> None:
    registry = TypeRegistry()
    assert ts_type(TreeNode, registry=registry) == "TreeNode"
    tree = registry.declaration("TreeNode")
    assert "children?: TreeNode[];" in tree
    assert "parent?: TreeNode | null;" in tree
    assert ts_type(Left, registry=registry) == "Left"
    assert "right?: Right | null;" in registry.declaration("Left")
    assert "left: Left;" in registry.declaration("Right")
    assert ts_type(Json, registry=registry) == "Json"
    assert registry.declaration("Json").startswith("type Json = { [key: string]: Json } | Json[]")


def test_typeddict_required_and_optional_keys() -> None:
    registry = TypeRegistry()
    ts_type(Movie, registry=registry)
    ts_type(Draft, registry=registry)
    ts_type(Weird, registry=registry)
    assert registry.declaration("Movie") == (
        "interface Movie {\n  /** The title. */\n  title: string;\n  year?: number;\n}"
    )
    assert "  body?: string;\n  author: string;" in registry.declaration("Draft")
    assert registry.declaration("Weird") == (
        'interface Weird {\n  "my-key": string;\n  class: number;\n  ok: boolean;\n}'
    )


def test_pydantic_models_use_aliases_and_descriptions() -> None:
    registry = TypeRegistry()
    assert ts_type(Person, registry=registry) == "Person"
    person = registry.declaration("Person")
    assert person.startswith("/** A person with friends. */\ninterface Person {")
    assert "  name: string;" in person
    assert "  age?: number | null;" in person
    assert "  friends?: Person[];" in person
    assert "  address?: Address | null;" in person
    address = registry.declaration("Address")
    assert "  /** Street name *\\/ and number */\n  street: string;" in address
    assert '  "zip-code": string;' in address


def test_enum_becomes_named_alias_of_values() -> None:
    registry = TypeRegistry()
    assert ts_type(Color, registry=registry) == "Color"
    assert registry.declaration("Color") == (
        '/** A primary-ish colour. */\ntype Color = "red" | "green";'
    )
    ts_type(Level, registry=registry)
    assert registry.declaration("Level") == "type Level = 1 | 2;"


def test_capability_namespace() -> None:
    block = namespace_stub(GeoCapability())
    assert block.startswith(
        "/**\n * Geometry helpers.\n *\n * All distances are in metres; *\\/ is escaped.\n */\n"
        "namespace geo {\n"
    )
    assert "  /** Euclidean distance between two points. */\n" in block
    assert "  function distance(args: { a: Point; b: Point }): Promise<number>;" in block
    assert "  function centroid(args: { points: Point[] }): Promise<Point>;" in block
    assert block.endswith("\n}")


def test_dotted_flat_names_nest() -> None:
    stub = generate_stubs((), {"math.add": add, "math.deep.scale": scale, "top": ping})
    assert (
        "declare namespace codemode {\n"
        "  /** Check the host is alive. */\n"
        "  function top(args?: {}): Promise<void>;\n"
        "  namespace math {\n"
    ) in stub
    assert "\n    function add(args: { a: number; b?: number }): Promise<number>;\n" in stub
    assert "\n    namespace deep {\n" in stub
    assert "\n      function scale(args: { p: Point; factor: number }): Promise<Point>;\n" in stub


def test_output_is_deterministic() -> None:
    reversed_fns = dict(reversed(list(FLAT_FNS.items())))
    assert generate_stubs([GeoCapability()], FLAT_FNS) == generate_stubs(
        [GeoCapability()], reversed_fns
    )


def test_empty_stub() -> None:
    assert generate_stubs() == "declare namespace codemode {}\n"


def test_identifiers_are_sanitized() -> None:
    assert js_identifier("my-tool") == "my_tool"
    assert js_identifier("delete") == "delete_"
    assert js_identifier("1st") == "_1st"
    assert js_identifier("") == "_"
    assert js_identifier("$ok") == "$ok"
    stub = generate_stubs((), {"a-b": add, "a_b": add, "fs.delete": add})
    # The name that already is an identifier keeps it; renamed tools say how to call them.
    assert "     * Add two integers.\n     * Call it as codemode.fs.delete(...).\n" in stub
    assert '   * Call it as codemode["a-b"](...).\n' in stub
    assert "function a_b(" in stub
    assert stub.index('codemode["a-b"]') > stub.index("function a_b(")
    assert stub.index('codemode["a-b"]') < stub.index("function a_b_2(")
    assert "Call it as" in function_stub("x.my-tool", add)
    assert "Call it as" not in function_stub("x.tool", add)


def test_unresolvable_forward_references_do_not_crash() -> None:
    @dataclasses.dataclass
    class Local:
        me: Local | None
        ghost: Ghost  # type: ignore[name-defined]  # noqa: F821

    def tool(x: Local, y: Missing) -> Local:  # type: ignore[name-defined]  # noqa: F821
        raise NotImplementedError

    registry = TypeRegistry()
    text = function_stub("tool", tool, registry=registry)
    # ``Local`` is local to this function, so the string annotation cannot be resolved.
    assert "function tool(args: { x: unknown; y: unknown }): Promise<unknown>;" in text
    assert ts_type(Local, registry=registry) == "Local"
    assert "  me: Local | null;\n  ghost: unknown;" in registry.declaration("Local")


def test_odd_callables_and_objects() -> None:
    assert "function greet(args: { who: string }): Promise<string>;" in function_stub(
        "greet", Greeter()
    )
    assert "/** Greet someone. */" in function_stub("greet", Greeter())
    assert function_stub("x", 42) == "function x(args?: Record<string, unknown>): Promise<unknown>;"
    assert "function len(args: { obj: unknown }): Promise<unknown>;" in function_stub("len", len)
    assert "Promise<Point>" in function_stub("make", Point)


class BrokenCapability:
    namespace = "broken"
    description = "Exports raise."

    def exports(self) -> Mapping[str, Callable[..., Any]]:
        raise RuntimeError("boom")


def test_broken_capability_still_renders() -> None:
    assert "namespace broken {}" in generate_stubs([BrokenCapability()])


# --------------------------------------------------------------------------- docstrings


def test_parse_google_docstring() -> None:
    doc = parse_docstring(add.__doc__)
    assert doc == Docstring(
        summary="Add two integers.",
        description="Longer description that is not part of the summary.",
        params={"a": "The first number.", "b": "The second number, defaulting to two."},
        returns="The sum.",
    )


def test_parse_google_variants() -> None:
    doc = parse_docstring(
        """Do things
        across two lines.

        Arguments:
            path (str, optional): Where.
            *args: Ignored.
            **kwargs: Extra options.

        Raises:
            ValueError: Never part of a parameter.

        Returns: The result.
        """
    )
    assert doc.summary == "Do things across two lines."
    assert doc.params == {"path": "Where.", "args": "Ignored.", "kwargs": "Extra options."}
    assert doc.returns == "The result."


def test_parse_numpy_docstring() -> None:
    doc = parse_docstring(
        """Compute.

        Parameters
        ----------
        x, y : float
            Coordinates.
        flag : bool, optional
            Whether to
            do it.

        Returns
        -------
        total : float
            The total.

        Notes
        -----
        Not a parameter.
        """
    )
    assert doc.summary == "Compute."
    assert doc.params == {"x": "Coordinates.", "y": "Coordinates.", "flag": "Whether to do it."}
    assert doc.returns == "The total."


def test_parse_rest_docstring() -> None:
    doc = parse_docstring(
        """Fetch a page.

        :param url: The address
            to fetch.
        :param int retries: How often.
        :returns: The body.
        :rtype: str
        """
    )
    assert doc.summary == "Fetch a page."
    assert doc.params == {"url": "The address to fetch.", "retries": "How often."}
    assert doc.returns == "The body."


def test_parse_empty_docstrings() -> None:
    assert parse_docstring(None) == Docstring("", "", {}, "")
    assert parse_docstring("") == Docstring("", "", {}, "")
    assert parse_docstring("Only a summary.").summary == "Only a summary."
