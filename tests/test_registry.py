"""Tests for ``codemode.registry.Registry``: names, changes, listeners, stubs and search.

Programs are run through the real ``Executor`` where behaviour matters (inline tools, replaced
descriptions), so the registry is checked against what JavaScript actually sees.
"""

from __future__ import annotations

import threading
from typing import TypedDict

import pytest

from codemode import EnvCapability, Executor, FsCapability, HttpCapability, RunCompleted
from codemode.registry import Registry, SearchHit
from codemode.run import is_inline

pytestmark = pytest.mark.timeout(60)


class Mail(TypedDict):
    to: str
    subject: str


def send_email(to: str, subject: str, body: str) -> bool:
    """Send an email message to a recipient.

    Args:
        to: The recipient's address.
        subject: Subject line.
        body: Plain text body.
    """
    return True


def list_emails(folder: str = "inbox") -> list[Mail]:
    """List the emails of a mailbox folder, newest first."""
    return []


def get_weather(city: str) -> dict[str, float]:
    """Current weather for a city.

    Includes the temperature in Celsius and the wind speed.
    """
    return {"temperature": 21.0}


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


async def fetch_user_profile(user_id: int) -> dict[str, str]:
    """Look up a user's profile."""
    return {"id": str(user_id)}


def make_registry() -> Registry:
    return Registry(
        capabilities=[EnvCapability(["USER"]), HttpCapability(["example.org"])],
        tools={
            "send_email": send_email,
            "list_emails": list_emails,
            "get_weather": get_weather,
            "math.add": add,
            "fetchUserProfile": fetch_user_profile,
        },
    )


# -------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name",
    ["add", "_private", "$dollar", "camelCase", "math.add", "a.b.c", "x1", "delete_"],
)
def test_valid_names(name: str) -> None:
    registry = Registry()
    registry.register(name, add)
    assert name in registry.functions()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "invalid tool name"),
        ("1abc", "invalid tool name"),
        ("my-tool", "invalid tool name"),
        ("has space", "invalid tool name"),
        ("math..add", "invalid tool name"),
        (".add", "invalid tool name"),
        ("add.", "invalid tool name"),
        ("x" * 200, "invalid tool name"),
        ("then", "special meaning"),
        ("constructor", "special meaning"),
        ("__proto__", "special meaning"),
        ("math.then", "special meaning"),
        ("__init__", "special meaning"),
        ("ns.__call__", "special meaning"),
        ("delete", "reserved word"),
        ("class", "reserved word"),
    ],
)
def test_invalid_names(name: str, reason: str) -> None:
    registry = Registry()
    with pytest.raises(ValueError, match=reason):
        registry.register(name, add)
    assert registry.version == 0
    assert registry.functions() == {}


def test_name_must_be_a_string_and_fn_callable() -> None:
    registry = Registry()
    with pytest.raises(TypeError):
        registry.register(3, add)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not callable"):
        registry.register("x", 42)  # type: ignore[arg-type]


def test_names_colliding_with_capability_namespaces_are_refused() -> None:
    registry = Registry(capabilities=[EnvCapability(["USER"])])
    for name in ("env", "env.get", "env.extra"):
        with pytest.raises(ValueError, match="capability namespace 'env'"):
            registry.register(name, add)
    registry.register("environment", add)  # a mere prefix of the word is fine


def test_capability_refused_when_a_tool_holds_its_name() -> None:
    registry = Registry(tools={"fs": add})
    with pytest.raises(ValueError, match="collides with the tool 'fs'"):
        registry.add_capability(FsCapability(["."]))
    assert registry.capabilities == []


def test_duplicate_and_overlapping_capabilities() -> None:
    env = EnvCapability(["USER"])
    registry = Registry(capabilities=[env])
    version = registry.version
    registry.add_capability(env)  # same object: no-op
    assert registry.version == version
    with pytest.raises(ValueError, match="already added"):
        registry.add_capability(EnvCapability(["HOME"]))
    with pytest.raises(TypeError, match="exports"):
        registry.add_capability(object())  # type: ignore[arg-type]


def test_a_name_cannot_be_both_function_and_namespace() -> None:
    registry = Registry(tools={"math.add": add})
    with pytest.raises(ValueError, match="both a function and a namespace"):
        registry.register("math", add)
    with pytest.raises(ValueError, match="both a function and a namespace"):
        registry.register("math.add.more", add)
    registry.register("math.sub", add)
    assert sorted(registry.functions()) == ["math.add", "math.sub"]


# -------------------------------------------------------------------- changes


def test_register_replace_unregister_bump_the_version() -> None:
    registry = Registry()
    seen: list[int] = []
    remove = registry.add_listener(lambda: seen.append(registry.version))
    assert registry.register("add", add) is add
    registry.register("add", get_weather)  # re-registering replaces (notebook cells re-run)
    assert registry.functions() == {"add": get_weather}
    assert registry.unregister("add") is get_weather
    assert seen == [1, 2, 3]
    with pytest.raises(KeyError):
        registry.unregister("add")
    remove()
    registry.register("add", add)
    assert seen == [1, 2, 3]
    assert registry.version == 4


def test_replace_tools_swaps_everything_at_once() -> None:
    registry = Registry(capabilities=[EnvCapability(["USER"])], tools={"a": add, "b": add})
    calls: list[int] = []
    registry.add_listener(lambda: calls.append(registry.version))
    registry.replace_tools({"c": add, "ns.d": get_weather})
    assert registry.functions() == {"c": add, "ns.d": get_weather}
    assert len(calls) == 1
    before = registry.version
    for bad in ({"ok": add, "env.x": add}, {"ok": add, "ok.x": add}, {"ok": add, "bad-name": add}):
        with pytest.raises(ValueError):
            registry.replace_tools(bad)
    assert registry.version == before
    assert registry.functions() == {"c": add, "ns.d": get_weather}


def test_failing_listener_does_not_break_registration() -> None:
    registry = Registry()

    def broken() -> None:
        raise RuntimeError("listener bug")

    registry.add_listener(broken)
    registry.register("add", add)
    assert "add" in registry


def test_concurrent_registration_from_threads() -> None:
    registry = Registry()
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(25):
                registry.register(f"t{i}_{j}", add)
                if j % 5 == 0:
                    registry.stubs()
                    registry.search("add")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(registry) == 200
    assert registry.version == 200
    assert registry.stubs().count("function t") == 200


def test_capabilities_and_functions_are_snapshots() -> None:
    env = EnvCapability(["USER"])
    registry = Registry(capabilities=[env], tools={"add": add})
    registry.functions()["x"] = add
    registry.capabilities.append(env)
    assert registry.functions() == {"add": add}
    assert registry.capabilities == [env]
    assert registry.names() == ["add", "env.get", "env.list"]
    removed = registry.remove_capability("env")
    assert removed is env and registry.capabilities == []


# -------------------------------------------------------------------- stubs and running


def test_stubs_cover_tools_and_capabilities_and_follow_changes() -> None:
    registry = make_registry()
    stubs = registry.stubs()
    assert "declare namespace codemode {" in stubs
    assert "function send_email(args: { to: string; subject: string; body: string })" in stubs
    assert "interface Mail {" in stubs
    assert "namespace math {" in stubs and "namespace env {" in stubs
    assert registry.stubs() is stubs  # cached until a change
    registry.register("shout", lambda text: text.upper())
    assert "function shout(" in registry.stubs()


async def test_functions_and_capabilities_run_in_the_executor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USER", "ada")
    registry = make_registry()
    executor = Executor(timeout_s=10, capabilities=registry.capabilities)
    outcome = await executor.execute(
        """
        const [sum, user, profile] = await Promise.all([
          codemode.math.add({ a: 2, b: 3 }),
          codemode.env.get({ key: "USER" }),
          codemode.fetchUserProfile({ user_id: 7 }),
        ]);
        return { sum, user, profile };
        """,
        registry.functions(),
    )
    assert isinstance(outcome, RunCompleted), outcome
    assert outcome.result == {"sum": 5, "user": "ada", "profile": {"id": "7"}}


async def test_inline_and_description_wrap_without_mutating_the_function() -> None:
    def double(n: int) -> int:
        """Double a number.

        Args:
            n: The number to double.

        Returns:
            Twice n.
        """
        return 2 * n

    registry = Registry()
    registry.register("double", double, inline=True, description="Multiply by two, quickly.")
    wrapped = registry.functions()["double"]
    assert wrapped is not double and is_inline(wrapped) and not is_inline(double)
    assert double.__doc__ is not None and double.__doc__.startswith("Double a number.")
    stubs = registry.stubs()
    assert "Multiply by two, quickly." in stubs
    assert "@param n The number to double." in stubs
    assert "@returns Twice n." in stubs
    assert "function double(args: { n: number }): Promise<number>;" in stubs
    outcome = await Executor(timeout_s=10).execute(
        "return await codemode.double({ n: 21 })", registry.functions()
    )
    assert isinstance(outcome, RunCompleted) and outcome.result == 42
    # the original docstring still helps search; the description is the summary
    hit = registry.search("double")[0]
    assert hit.summary == "Multiply by two, quickly."
    with pytest.raises(TypeError, match="sync functions only"):
        registry.register("profile", fetch_user_profile, inline=True)


# -------------------------------------------------------------------- search


def names(hits: list[SearchHit]) -> list[str]:
    return [hit.name for hit in hits]


def test_search_finds_words_in_docstrings() -> None:
    registry = make_registry()
    assert names(registry.search("recipient"))[0] == "send_email"  # parameter documentation
    assert names(registry.search("temperature"))[0] == "get_weather"  # description body
    assert names(registry.search("mailbox"))[0] == "list_emails"  # summary
    assert names(registry.search("profile"))[0] == "fetchUserProfile"  # camelCase name
    assert names(registry.search("environment variables"))[0] in ("env", "env.get")
    assert registry.search("zebra") == []


def test_search_ranks_better_matches_first() -> None:
    registry = make_registry()
    hits = registry.search("send email")
    assert names(hits)[0] == "send_email"
    assert "list_emails" in names(hits)
    assert hits[0].score > hits[1].score
    # a name match beats a docstring match
    assert names(registry.search("weather"))[0] == "get_weather"
    # plural and -ing forms meet their stems, prefixes match
    assert names(registry.search("emailing"))[0] in ("list_emails", "send_email")
    assert names(registry.search("numbers"))[0] == "math.add"
    assert names(registry.search("fetc"))[0] in ("fetchUserProfile", "http.fetch")
    # all words matching beats a single strong word
    assert names(registry.search("user profile lookup"))[0] == "fetchUserProfile"
    # the exact name wins
    assert names(registry.search("math.add"))[0] == "math.add"
    assert names(registry.search("http fetch"))[0] == "http.fetch"


def test_search_hit_stub_is_the_declaration_with_its_interfaces() -> None:
    registry = make_registry()
    hit = registry.search("list emails")[0]
    assert hit.name == "list_emails" and hit.kind == "tool"
    assert hit.summary == "List the emails of a mailbox folder, newest first."
    assert hit.stub.startswith("interface Mail {")
    assert "function list_emails(args?: { folder?: string }): Promise<Mail[]>;" in hit.stub
    fetch = next(h for h in registry.search("http") if h.name == "http.fetch")
    assert fetch.kind == "capability function"
    assert "interface HttpResponse" in fetch.stub and "function fetch(" in fetch.stub
    namespace = next(h for h in registry.search("http") if h.name == "http")
    assert namespace.kind == "namespace" and namespace.stub.startswith("/**")
    assert set(hit.to_dict()) == {"name", "kind", "summary", "stub", "score"}


def test_empty_query_is_an_overview_truncated_to_limit() -> None:
    registry = make_registry()
    overview = registry.search("")
    assert names(overview)[:5] == [
        "fetchUserProfile",
        "get_weather",
        "list_emails",
        "math.add",
        "send_email",
    ]
    assert all(hit.summary for hit in overview)
    assert len(overview) == 10
    assert len(registry.search("  ", limit=3)) == 3
    assert registry.search("add", limit=0) == []
    every = registry.search("", limit=100)
    assert {"env", "env.get", "env.list", "http", "http.fetch"} <= set(names(every))


def test_search_follows_changes() -> None:
    registry = make_registry()
    assert registry.search("translate") == []

    def translate(text: str, language: str) -> str:
        """Translate text into another language."""
        return text

    registry.register("translate", translate)
    assert names(registry.search("language"))[0] == "translate"
    registry.unregister("translate")
    assert registry.search("translate") == []
