"""Property tests: any JSON value crosses the bridge both ways unchanged, and stub generation
survives arbitrary type hints with output ``tsc --strict`` accepts.

Values reach the program as a JSON string literal given to ``JSON.parse`` (never as Python
source), so the test does not depend on how Python spells a value.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, NewType, Optional, TypedDict, TypeVar, Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codemode import Executor
from codemode.stubs import generate_stubs

REPO = Path(__file__).resolve().parents[2]
TSC = REPO / "node_modules" / ".bin" / "tsc"
SAFE = 2**53 - 1

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-SAFE, max_value=SAFE),
    st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda f: not (f == 0 and math.copysign(1, f) < 0)
    ),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=25,
)


def normalized(value: Any) -> Any:
    """A comparable form: kinds tagged (so True never equals 1), numbers as floats."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, (int, float)):
        return ("number", float(value))
    if isinstance(value, list):
        return ("list", [normalized(v) for v in value])
    assert isinstance(value, dict)
    return ("dict", {k: normalized(v) for k, v in value.items()})


def echo(value: Any = None) -> Any:
    """Returns its argument unchanged."""
    return value


@pytest.fixture(scope="module")
def roundtrip_executor() -> Executor:
    """One executor for every example (each run still gets a fresh isolate)."""
    executor = Executor(timeout_s=10)
    yield executor
    executor.close()


def program_for(value: Any) -> str:
    literal = json.dumps(json.dumps(value))
    return f"const input = JSON.parse({literal});\nreturn await codemode.echo({{ value: input }});"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=json_values)
def test_any_json_value_round_trips_exactly(roundtrip_executor: Executor, value: Any) -> None:
    result = roundtrip_executor.execute_sync(program_for(value), fns={"echo": echo})
    assert result.ok, getattr(result, "error", None)
    # JavaScript has one number type: 0.0 comes back as 0. Everything else is exact.
    assert normalized(result.result) == normalized(value)
    assert normalized(result.calls[0].arguments) == normalized({"value": value})


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.integers(min_value=2**53, max_value=2**120)
    | st.integers(max_value=-(2**53), min_value=-(2**120))
)
def test_big_integers_round_trip_as_bigint(roundtrip_executor: Executor, value: int) -> None:
    code = (
        f"const input = BigInt({json.dumps(str(value))});\n"
        "const back = await codemode.echo({ value: input });\n"
        "return [typeof back, input];"
    )
    result = roundtrip_executor.execute_sync(code, fns={"echo": echo})
    assert result.ok, getattr(result, "error", None)
    assert result.calls[0].arguments == {"value": value}
    kind, exact = result.result
    assert exact == value  # a BigInt result arrives as an exact Python int
    assert kind in ("number", "bigint")


# ------------------------------------------------------------------------------ stubs

T = TypeVar("T")
UserId = NewType("UserId", int)


class Point(TypedDict):
    x: float
    y: float


@dataclasses.dataclass
class Box:
    width: int
    label: str | None = None


BASE_HINTS: list[Any] = [
    int,
    float,
    str,
    bool,
    bytes,
    type(None),
    Any,
    object,
    complex,
    list,
    dict,
    tuple,
    set,
    UserId,
    Point,
    Box,
    T,
    "Box",
    "NoSuchName",
    Callable[[int], str],
    Callable[..., Any],
]


def _compose(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        children.map(lambda t: Optional[t]),  # noqa: UP045 - the typing spelling on purpose
        st.tuples(children, children).map(lambda p: Union[p[0], p[1]]),  # noqa: UP007
        children.map(lambda t: list[t]),
        children.map(lambda t: dict[str, t]),
        st.tuples(children, children).map(lambda p: tuple[p[0], p[1]]),
        children.map(lambda t: tuple[t, ...]),
        children.map(lambda t: set[t] if _hashable_hint(t) else frozenset[int]),
        children.map(lambda t: Annotated[t, "meta"]),
        st.sampled_from([Literal["a", "b"], Literal[1, 2, True], Literal[None], Literal["x"]]),
    )


def _hashable_hint(hint: Any) -> bool:
    try:
        hash(hint)
    except TypeError:
        return False
    return True


type_hints = st.recursive(st.sampled_from(BASE_HINTS), _compose, max_leaves=6)


def make_tool(index: int, hints: list[Any]) -> Callable[..., Any]:
    def tool(*args: Any, **kwargs: Any) -> Any:
        return None

    tool.__name__ = f"tool{index}"
    params = [typing_param(f"p{i}", hint) for i, hint in enumerate(hints[:-1])]
    import inspect

    tool.__signature__ = inspect.Signature(params, return_annotation=hints[-1])  # type: ignore[attr-defined]
    tool.__annotations__ = {f"p{i}": h for i, h in enumerate(hints[:-1])} | {"return": hints[-1]}
    tool.__doc__ = f"Tool {index}."
    return tool


def typing_param(name: str, hint: Any) -> Any:
    import inspect

    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=hint)


collected: list[str] = []


@settings(max_examples=80, deadline=None)
@given(hints=st.lists(type_hints, min_size=1, max_size=4))
def test_stub_generation_never_crashes(hints: list[Any]) -> None:
    tool = make_tool(len(collected), hints)
    stub = generate_stubs((), {f"fuzz.tool{len(collected)}": tool})
    assert isinstance(stub, str) and "declare namespace codemode" in stub
    collected.append(stub)


def test_generated_stubs_compile_with_tsc(tmp_path: Path) -> None:
    """Every stub the property test produced, type-checked in one tsc run."""
    if not TSC.exists():
        pytest.fail(f"TypeScript compiler not found at {TSC}: run `npm install` in {REPO}")
    assert collected, "test_stub_generation_never_crashes must run first"
    names = []
    for index, stub in enumerate(collected):
        name = f"stub{index}.ts"
        (tmp_path / name).write_text("export {};\n" + stub, encoding="utf-8")
        names.append(name)
    proc = subprocess.run(
        [str(TSC), "--noEmit", "--strict", "--pretty", "false", "--target", "es2022", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
