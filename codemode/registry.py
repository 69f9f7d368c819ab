"""One mutable, thread-safe set of tools and capabilities, shared by servers and notebooks.

A notebook changes its tools while an MCP server built on them is running (often from another
thread), so every change happens under a lock, bumps :attr:`Registry.version` (servers compare it
to notice changes) and calls the registered listeners (servers use them to notify clients).

Tool names are checked up front, because the JavaScript side can only reach names that are plain
identifiers, and a name that is both a function and a namespace (``math`` and ``math.add``) cannot
exist on the ``codemode`` object at all.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from codemode.capabilities.base import Capability, HostFn
from codemode.docstrings import parse_docstring
from codemode.stubs import TypeRegistry, function_stub, generate_stubs, namespace_stub

__all__ = ["Registry", "SearchHit", "validate_name"]

logger = logging.getLogger(__name__)

HitKind = Literal["tool", "capability function", "namespace"]

_PART = r"[A-Za-z_$][A-Za-z0-9_$]*"
_NAME = re.compile(rf"^{_PART}(?:\.{_PART})*$")
_MAX_NAME = 128
# Properties the harness (or JavaScript itself) gives a meaning of their own: a tool called
# ``then`` would make ``codemode`` look like a Promise, ``constructor``/``__proto__`` are object
# machinery, ``toJSON`` is swallowed by the proxy.
_FORBIDDEN_PARTS = frozenset({"then", "constructor", "__proto__", "prototype", "toJSON"})
# A reserved word would have to be declared under another name (``delete_``) in the stubs, which
# the model would then call and miss.
_JS_RESERVED = frozenset(
    """break case catch class const continue debugger default delete do else enum export extends
    false finally for function if import in instanceof new null return super switch this throw
    true try typeof var void while with implements interface let package private protected public
    static yield await arguments eval""".split()
)


@dataclass(frozen=True)
class SearchHit:
    """One search result: what to call, what it does, and its TypeScript declaration."""

    name: str
    """The name after ``codemode.``, e.g. ``"add"`` or ``"fs.read"``."""
    kind: HitKind
    summary: str
    stub: str
    """The declaration of the match itself, preceded by any interfaces it references."""
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Tool:
    fn: HostFn
    """What runs: the user's function, or a thin wrapper carrying ``inline``/``description``."""
    original: HostFn
    description: str | None


@dataclass
class _Entry:
    """A searchable item, with its words pre-stemmed per field."""

    name: str
    kind: HitKind
    summary: str
    target: Any
    leaf: set[str]
    namespace: set[str]
    summary_words: set[str]
    param_words: set[str]
    detail_words: set[str]


def validate_name(name: str) -> str:
    """Check a tool name and return it; raise ``ValueError`` saying what to change."""
    if not isinstance(name, str):
        raise TypeError(f"tool names are strings, not {type(name).__name__}")
    if not name or len(name) > _MAX_NAME or not _NAME.match(name):
        raise ValueError(
            f"invalid tool name {name!r}: use a JavaScript identifier (letters, digits, _ or $, "
            "not starting with a digit), with dots only to place it in a namespace "
            "(e.g. 'math.add')"
        )
    for part in name.split("."):
        if part in _FORBIDDEN_PARTS or (part.startswith("__") and part.endswith("__")):
            raise ValueError(
                f"invalid tool name {name!r}: {part!r} has a special meaning on JavaScript objects"
            )
        if part in _JS_RESERVED:
            raise ValueError(
                f"invalid tool name {name!r}: {part!r} is a JavaScript reserved word; "
                f"choose another name (e.g. {part + '_'!r})"
            )
    return name


def _nested(a: str, b: str) -> bool:
    """Whether one name is a namespace of the other (``math`` and ``math.add``), or equal."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


class Registry:
    """Tools (flat functions, names may be dotted) and capabilities (namespaced groups).

    Args:
        capabilities: Capabilities to add, e.g. ``[FsCapability(allowed_paths=["data"])]``.
        tools: Initial tools, ``{name: fn}``.
    """

    def __init__(
        self,
        capabilities: Iterable[Capability] = (),
        tools: Mapping[str, HostFn] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._capabilities: dict[str, Capability] = {}
        self._tools: dict[str, _Tool] = {}
        self._version = 0
        self._listeners: dict[object, Callable[[], None]] = {}
        self._stubs: tuple[int, str] | None = None
        self._index: tuple[int, list[_Entry]] | None = None
        self._hit_stubs: dict[tuple[int, str], str] = {}
        for capability in capabilities:
            self.add_capability(capability)
        if tools:
            for name, fn in tools.items():
                self.register(name, fn)

    # ---------------------------------------------------------------- reading

    @property
    def version(self) -> int:
        """A counter bumped by every change; compare it to notice that something changed."""
        return self._version

    @property
    def capabilities(self) -> list[Capability]:
        """The capabilities, in the order they were added (a copy)."""
        with self._lock:
            return list(self._capabilities.values())

    def functions(self) -> dict[str, HostFn]:
        """The flat tools, ``{name: fn}`` (a snapshot), to pass to ``Executor.execute``.

        Capability functions are not included: pass :attr:`capabilities` to the ``Executor``.
        A tool registered with ``inline`` or ``description`` appears as a thin wrapper.
        """
        with self._lock:
            return {name: tool.fn for name, tool in self._tools.items()}

    def names(self) -> list[str]:
        """Every callable name, capability functions (``fs.read``) included, sorted."""
        with self._lock:
            tools = list(self._tools)
            caps = list(self._capabilities.values())
        names = set(tools)
        for cap in caps:
            names.update(f"{cap.namespace}.{key}" for key in _exports(cap))
        return sorted(names)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._tools

    def __len__(self) -> int:
        with self._lock:
            return len(self._tools)

    def __repr__(self) -> str:
        with self._lock:
            tools = ", ".join(self._tools)
            caps = ", ".join(self._capabilities)
        return f"Registry(tools=[{tools}], capabilities=[{caps}], version={self._version})"

    def stubs(self) -> str:
        """The TypeScript declarations of everything callable (cached until the next change)."""
        with self._lock:
            version = self._version
            if self._stubs is not None and self._stubs[0] == version:
                return self._stubs[1]
            caps = list(self._capabilities.values())
            fns = {name: tool.fn for name, tool in self._tools.items()}
        text = generate_stubs(caps, fns)
        with self._lock:
            if self._version == version:
                self._stubs = (version, text)
        return text

    def summaries(self) -> list[tuple[str, str]]:
        """``(name, one-line summary)`` of every callable function: tools first, then capability
        functions. Used where full declarations would be too long (e.g. a compact description)."""
        return [
            (entry.name, entry.summary) for entry in self._entries() if entry.kind != "namespace"
        ]

    # ---------------------------------------------------------------- changing

    def add_capability(self, capability: Capability) -> Capability:
        """Add a capability (``codemode.<namespace>.*``); re-adding the same object is a no-op."""
        if not isinstance(capability, Capability):
            raise TypeError(
                "a capability needs 'namespace', 'description' and 'exports()'; "
                f"got {type(capability).__name__}"
            )
        namespace = getattr(capability, "namespace", None)
        if not isinstance(namespace, str):
            raise TypeError("a capability's namespace must be a string")
        validate_name(namespace)
        with self._lock:
            existing = self._capabilities.get(namespace)
            if existing is capability:
                return capability
            if existing is not None:
                raise ValueError(f"a capability with namespace {namespace!r} is already added")
            for other in self._capabilities:
                if _nested(namespace, other):
                    raise ValueError(
                        f"capability namespace {namespace!r} overlaps the namespace {other!r}"
                    )
            for tool in self._tools:
                if _nested(namespace, tool):
                    raise ValueError(
                        f"capability namespace {namespace!r} collides with the tool {tool!r}"
                    )
            self._capabilities[namespace] = capability
            self._changed()
        self._notify()
        return capability

    def remove_capability(self, namespace: str) -> Capability:
        """Remove a capability by namespace and return it."""
        with self._lock:
            if namespace not in self._capabilities:
                raise KeyError(f"no capability with namespace {namespace!r}")
            capability = self._capabilities.pop(namespace)
            self._changed()
        self._notify()
        return capability

    def register(
        self,
        name: str,
        fn: HostFn,
        *,
        inline: bool = False,
        description: str | None = None,
    ) -> HostFn:
        """Add (or replace) the tool ``name``; returns ``fn`` so it works as a decorator body.

        Args:
            name: How JavaScript calls it: ``codemode.<name>({...})``; dots nest it in a namespace.
            fn: A sync or async callable; its type hints and docstring become the declaration.
            inline: Run this quick sync function on the isolate's thread (see ``codemode.inline``).
            description: Replaces the docstring's summary in declarations and search (the
                docstring's parameter and return documentation is kept).
        """
        tool = self._make_tool(name, fn, inline, description)
        with self._lock:
            self._check_free(name, ignore=name)
            self._tools[name] = tool
            self._changed()
        self._notify()
        return fn

    def unregister(self, name: str) -> HostFn:
        """Remove the tool ``name`` and return the function it was registered with."""
        with self._lock:
            if name not in self._tools:
                raise KeyError(f"no tool named {name!r}")
            tool = self._tools.pop(name)
            self._changed()
        self._notify()
        return tool.original

    def replace_tools(self, tools: Mapping[str, HostFn]) -> None:
        """Swap every flat tool for ``tools`` at once (one version bump, one notification).

        Everything is validated first: on error, nothing changes.
        """
        prepared = {name: self._make_tool(name, fn, False, None) for name, fn in tools.items()}
        names = sorted(prepared)
        for i, name in enumerate(names):
            for other in names[i + 1 :]:
                if _nested(name, other):
                    raise ValueError(
                        f"tool {name!r} and tool {other!r} cannot both exist: "
                        "a name cannot be both a function and a namespace"
                    )
        with self._lock:
            for name in names:
                self._check_capabilities(name)
            self._tools = prepared
            self._changed()
        self._notify()

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after every change (from the changing thread, outside the lock).

        Returns a function that removes it. Listeners must be quick and must not raise.
        """
        token = object()
        with self._lock:
            self._listeners[token] = listener

        def remove() -> None:
            with self._lock:
                self._listeners.pop(token, None)

        return remove

    # ---------------------------------------------------------------- search

    def search(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        """Find functions and namespaces by the words of their names and documentation.

        Words are compared after splitting ``snake_case``/``camelCase``/dotted names and light
        stemming (``files`` finds ``file``, ``reading`` finds ``read``); a match in the name
        counts more than one in the summary, which counts more than one in the rest of the
        docstring; partial words match as prefixes; matching every word of the query earns a
        bonus. An empty query returns an overview: every name with its summary, up to ``limit``.
        """
        if limit < 1:
            return []
        entries = self._entries()
        query = query.strip() if isinstance(query, str) else ""
        if not query:
            return [self._hit(entry, 0.0) for entry in entries[:limit]]
        words = _query_words(query)
        compact_query = _compact(query)
        scored: list[tuple[float, int, str, _Entry]] = []
        for entry in entries:
            score = _score(entry, words, compact_query)
            if score > 0:
                scored.append((score, _KIND_ORDER[entry.kind], entry.name, entry))
        scored.sort(key=lambda item: (-item[0], item[1], item[2]))
        return [self._hit(entry, round(score, 3)) for score, _, _, entry in scored[:limit]]

    # ---------------------------------------------------------------- internals

    def _make_tool(self, name: str, fn: HostFn, inline: bool, description: str | None) -> _Tool:
        validate_name(name)
        if not callable(fn):
            raise TypeError(f"tool {name!r} is not callable: {fn!r}")
        if description is not None and not isinstance(description, str):
            raise TypeError("description must be a string")
        if inline and _is_async(fn):
            raise TypeError(f"tool {name!r}: inline=True applies to sync functions only")
        if not inline and not description:
            return _Tool(fn, fn, None)
        return _Tool(_wrap(fn, inline, description or None), fn, description or None)

    def _check_free(self, name: str, *, ignore: str | None = None) -> None:
        """Lock held: ``name`` must not clash with another tool or a capability."""
        for other in self._tools:
            if other != ignore and _nested(name, other):
                raise ValueError(
                    f"tool name {name!r} clashes with the tool {other!r}: "
                    "a name cannot be both a function and a namespace"
                )
        self._check_capabilities(name)

    def _check_capabilities(self, name: str) -> None:
        for namespace in self._capabilities:
            if _nested(name, namespace):
                raise ValueError(
                    f"tool name {name!r} collides with the capability namespace {namespace!r}"
                )

    def _changed(self) -> None:
        """Lock held: record a change."""
        self._version += 1
        self._hit_stubs.clear()

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners.values())
        for listener in listeners:
            try:
                listener()
            except Exception:  # noqa: BLE001 - a listener must never break a registration
                logger.exception("registry listener failed")

    def _entries(self) -> list[_Entry]:
        """The search index for the current version: tools, then each capability's namespace
        followed by its functions."""
        with self._lock:
            version = self._version
            if self._index is not None and self._index[0] == version:
                return self._index[1]
            tools = sorted(self._tools.items())
            caps = sorted(self._capabilities.items())
        entries: list[_Entry] = []
        for name, tool in tools:
            entries.append(_function_entry(name, "tool", tool.fn, tool.description, tool.original))
        for namespace, cap in caps:
            description = getattr(cap, "description", "") or ""
            entries.append(
                _Entry(
                    name=namespace,
                    kind="namespace",
                    summary=_first_line(description),
                    target=cap,
                    leaf=_stems(namespace.split(".")[-1]),
                    namespace=_stems(" ".join(namespace.split(".")[:-1])),
                    summary_words=_stems(description),
                    param_words=set(),
                    detail_words=_stems(" ".join(sorted(_exports(cap)))),
                )
            )
            for key, fn in sorted(_exports(cap).items()):
                entries.append(_function_entry(f"{namespace}.{key}", "capability function", fn))
        with self._lock:
            if self._version == version:
                self._index = (version, entries)
        return entries

    def _hit(self, entry: _Entry, score: float) -> SearchHit:
        key = (self._version, entry.name)
        stub = self._hit_stubs.get(key)
        if stub is None:
            types = TypeRegistry()
            if entry.kind == "namespace":
                declaration = namespace_stub(entry.target, registry=types)
            else:
                declaration = function_stub(entry.name, entry.target, registry=types)
            interfaces = types.render()
            stub = f"{interfaces}\n\n{declaration}" if interfaces else declaration
            with self._lock:
                self._hit_stubs[key] = stub
        return SearchHit(entry.name, entry.kind, entry.summary, stub, score)


# -------------------------------------------------------------------- wrapping


def _is_async(fn: Any) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = type(fn).__dict__.get("__call__") if callable(fn) else None
    return not inspect.isroutine(fn) and inspect.iscoroutinefunction(call)


def _wrap(fn: HostFn, inline: bool, description: str | None) -> HostFn:
    """A wrapper carrying the inline mark and/or a replaced docstring, so the user's function is
    never mutated. Signature and type hints still come from ``fn`` (through ``__wrapped__``)."""
    if not (inspect.isfunction(fn) or inspect.ismethod(fn)):
        # Callable objects, partials, classes: their hints live elsewhere, so a function wrapper
        # would hide them. Mark in place; a description then only affects search.
        if inline:
            try:
                fn.__codemode_inline__ = True  # type: ignore[union-attr]
            except (AttributeError, TypeError) as exc:
                raise TypeError(
                    f"cannot mark {fn!r} inline; register a plain function instead"
                ) from exc
        return fn
    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(fn):

        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await fn(*args, **kwargs)

        wrapper = async_wrapper
    else:

        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        wrapper = sync_wrapper
    functools.update_wrapper(wrapper, fn)
    if inline:
        wrapper.__codemode_inline__ = True  # type: ignore[attr-defined]
    if description:
        wrapper.__doc__ = _docstring_with(fn, description)
    return wrapper


def _docstring_with(fn: HostFn, description: str) -> str:
    """``description`` followed by the original docstring's Args/Returns, in Google style."""
    doc = parse_docstring(_doc_of(fn))
    parts = [description.strip()]
    if doc.params:
        lines = [f"    {key}: {' '.join(text.split())}" for key, text in doc.params.items()]
        parts.append("Args:\n" + "\n".join(lines))
    if doc.returns:
        parts.append("Returns:\n    " + " ".join(doc.returns.split()))
    return "\n\n".join(parts)


# -------------------------------------------------------------------- search helpers

_KIND_ORDER: dict[str, int] = {"tool": 0, "capability function": 1, "namespace": 2}
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_STOPWORDS = frozenset(
    """a an the to of for and or in on with by from is are be it its this that as at into all
    any me my i we our you your how do does can could what which some should will would please
    function functions tool tools""".split()
)
# Field weights: the name says what a function is, the summary what it does, the rest is detail.
_W_LEAF = 10.0
_W_NAMESPACE = 5.0
_W_SUMMARY = 4.0
_W_PARAMS = 2.0
_W_DETAIL = 1.0


def _stem(word: str) -> str:
    """Light suffix stripping, the same for queries and targets so that forms meet."""
    w = word
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    for suffix, minimum in (("ing", 6), ("ed", 5)):
        if len(w) >= minimum and w.endswith(suffix):
            w = w[: -len(suffix)]
            if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
                w = w[:-1]  # running -> run, stopped -> stop
            return w
    if len(w) > 4 and w.endswith(("sses", "xes", "ches", "shes", "zes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def _words(text: str) -> list[str]:
    return [match.group(0).lower() for match in _WORD.finditer(text or "")]


def _stems(text: str) -> set[str]:
    return {_stem(word) for word in _words(text)}


def _query_words(query: str) -> list[str]:
    words = _words(query)
    kept = [word for word in words if word not in _STOPWORDS]
    return list(dict.fromkeys(_stem(word) for word in (kept or words)))


def _compact(text: str) -> str:
    return "".join(_words(text))


def _match(word: str, field: set[str]) -> float:
    """How well one query word matches a field: exact, prefix either way, then substring."""
    if word in field:
        return 1.0
    best = 0.0
    for target in field:
        if len(word) >= 2 and target.startswith(word):
            best = max(best, 0.7)
        elif len(target) >= 3 and word.startswith(target):
            best = max(best, 0.5)
        elif len(word) >= 4 and word in target:
            best = max(best, 0.3)
    return best


def _score(entry: _Entry, words: list[str], compact_query: str) -> float:
    if not words:
        return 0.0
    fields = (
        (_W_LEAF, entry.leaf),
        (_W_NAMESPACE, entry.namespace),
        (_W_SUMMARY, entry.summary_words),
        (_W_PARAMS, entry.param_words),
        (_W_DETAIL, entry.detail_words),
    )
    total = 0.0
    matched = 0
    for word in words:
        best = max(weight * _match(word, field) for weight, field in fields)
        if best > 0:
            matched += 1
            total += best
    if not matched:
        return 0.0
    total *= 0.5 + 0.5 * matched / len(words)  # partial matches rank below full ones
    if matched == len(words) and len(words) > 1:
        total *= 1.25
    leaf = _compact(entry.name.split(".")[-1])
    full = _compact(entry.name)
    if compact_query in (leaf, full):
        total += 15.0
    elif len(compact_query) >= 3 and (leaf.startswith(compact_query) or compact_query in full):
        total += 4.0
    return total


def _doc_of(fn: Any) -> str | None:
    """The docstring describing a callable itself (not ``functools.partial``'s or ``int``'s)."""
    for _ in range(8):
        if isinstance(fn, functools.partial):
            fn = fn.func
        else:
            break
    if inspect.isroutine(fn) or inspect.isclass(fn):
        return inspect.getdoc(fn)
    call = type(fn).__dict__.get("__call__")
    call_doc = inspect.getdoc(call) if call is not None else None
    if call_doc:
        return call_doc
    return inspect.getdoc(type(fn))


def _first_line(text: str) -> str:
    for line in (text or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def _exports(capability: Any) -> dict[str, Any]:
    try:
        return {str(key): fn for key, fn in dict(capability.exports()).items()}
    except Exception:  # noqa: BLE001 - a broken capability must not break search or listing
        logger.exception("capability %r failed to list its exports", capability)
        return {}


def _function_entry(
    name: str,
    kind: HitKind,
    fn: Any,
    description: str | None = None,
    original: Any = None,
) -> _Entry:
    """Index one function; a replaced description is the summary, and the original docstring
    (``original``) still counts as detail."""
    doc = parse_docstring(_doc_of(original if original is not None else fn))
    summary = _first_line(description or "") or _first_line(doc.summary)
    try:
        params = [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]
    except (TypeError, ValueError):
        params = []
    detail = " ".join([doc.description, doc.returns, *doc.params.values()])
    if description:
        detail = f"{doc.summary} {detail}"
    *parents, leaf = name.split(".")
    return _Entry(
        name=name,
        kind=kind,
        summary=summary,
        target=fn,
        leaf=_stems(leaf),
        namespace=_stems(" ".join(parents)),
        summary_words=_stems(description or doc.summary),
        param_words=_stems(" ".join(params)),
        detail_words=_stems(detail),
    )
