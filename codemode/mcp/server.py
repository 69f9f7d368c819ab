"""``CodeModeServer``: a Code Mode engine served as MCP tools, with tools that change live.

Instead of one MCP tool per Python function, the server exposes ``execute``: the model writes one
JavaScript program that calls the functions as ``await codemode.name({...})``, so a whole chain of
calls costs one round trip. The TypeScript declarations of the functions are embedded in
``execute``'s description; with ``enable_search=True`` a ``search`` tool returns declarations on
demand, and once there are many functions the description lists only names and summaries.

The functions live in a :class:`~codemode.registry.Registry` that may change while the server
runs (a notebook redefines its tools). The next ``tools/list`` then returns the new description,
and connected clients are told with ``notifications/tools/list_changed``:

* handshake-era clients (protocol <= 2025-11-25) on their connection's standalone channel
  (the stdio pipe, or the streamable-HTTP GET stream); the server advertises
  ``capabilities.tools.listChanged``.
* 2026-07-28 clients through their ``subscriptions/listen`` streams (``client.listen(...)``).

Built on ``mcp.server.mcpserver.MCPServer`` (mcp >= 2.3). Serve it with the SDK:
``server.mcp.run()`` (stdio), ``server.mcp.run(transport="streamable-http", host=..., port=...)``,
or mount ``server.streamable_http_app(host=...)`` in your own ASGI server (uvicorn on a thread
works; see :meth:`CodeModeServer.streamable_http_app`).
"""

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, overload

import anyio.lowlevel
import mcp.types as types
from mcp.server.caching import CacheHint
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.shared.subscriptions import ServerEvent, ToolsListChanged
from mcp.types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field
from starlette.applications import Starlette

from codemode.capabilities.base import Capability, HostFn
from codemode.events import ErrorDetails, Observer, RunCompleted, RunFailed, RunResult
from codemode.executor import Executor, MiB
from codemode.registry import Registry

__all__ = ["CodeModeServer", "ExecuteOutput", "SearchOutput"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_CODE_DOC = "The JavaScript program (see the tool's description for its forms)."
_QUERY_DOC = (
    "Words describing what you need (e.g. 'read file', 'send email'); matched against function "
    "names and documentation. Empty: list everything."
)
_MAX_CLIENTS = 1024


class ExecuteOutput(BaseModel):
    """What one ``execute`` call returns."""

    success: bool
    result: Any = None
    """The program's return value (JSON data), or null if it failed."""
    error: str | None = None
    """Why the program failed (the JavaScript error with its stack), or null."""
    logs: list[str] = Field(default_factory=list)
    """Console output, one string per console.log/info/warn/error call."""
    calls: int = 0
    """How many host function calls the program made."""


class SearchResult(BaseModel):
    """One function (or namespace) found by ``search``."""

    name: str
    """Call it as ``codemode.<name>({...})``."""
    kind: str
    summary: str
    stub: str
    """The TypeScript declaration, preceded by the interfaces it references."""


class SearchOutput(BaseModel):
    """What one ``search`` call returns, best match first."""

    query: str
    results: list[SearchResult]


# -------------------------------------------------------------------- notifications


class _ThreadSafeBus:
    """The SDK's ``SubscriptionBus`` contract, publishable from any thread.

    Listeners (one per open ``subscriptions/listen`` stream) write to loop-bound memory streams,
    so each is remembered with the loop it subscribed on and always invoked on that loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[object, tuple[Callable[[ServerEvent], None], Any]] = {}

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        token = object()
        with self._lock:
            self._listeners[token] = (listener, loop)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.pop(token, None)

        return unsubscribe

    async def publish(self, event: ServerEvent) -> None:
        self.publish_threadsafe(event)
        await anyio.lowlevel.checkpoint()

    def publish_threadsafe(self, event: ServerEvent) -> None:
        """Deliver ``event`` to every listener, each on its own loop."""
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop in self.loops() | {None}:
            if loop is None or loop is current:
                self.deliver(loop, event)
            else:
                try:
                    loop.call_soon_threadsafe(self.deliver, loop, event)
                except RuntimeError:  # the loop is closed: its streams are gone
                    self.drop(loop)

    def loops(self) -> set[asyncio.AbstractEventLoop]:
        with self._lock:
            return {loop for _, loop in self._listeners.values() if loop is not None}

    def count(self) -> int:
        with self._lock:
            return len(self._listeners)

    def deliver(self, loop: asyncio.AbstractEventLoop | None, event: ServerEvent) -> None:
        """Call the listeners that subscribed on ``loop`` (run this on that loop)."""
        with self._lock:
            listeners = [f for f, lp in self._listeners.values() if lp is loop]
        for listener in listeners:
            _call_quietly(listener, event)

    def drop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            for token in [t for t, (_, lp) in self._listeners.items() if lp is loop]:
                self._listeners.pop(token, None)


def _call_quietly(listener: Callable[[ServerEvent], None], event: ServerEvent) -> None:
    try:
        listener(event)
    except Exception:  # noqa: BLE001 - one bad listener must not starve the others
        logger.exception("subscription listener failed")


@dataclass
class _LegacyClient:
    """A handshake-era connection: where its standalone notifications go, and on which loop."""

    session: Any
    loop: asyncio.AbstractEventLoop


# -------------------------------------------------------------------- the server


class CodeModeServer:
    """An MCP server exposing Python functions to LLM-written JavaScript.

    Args:
        name: The server's name, as MCP clients show it.
        capabilities: Capabilities (``FsCapability``, ...) to add to the registry.
        timeout_s: Wall-clock limit of one program.
        max_heap_bytes: V8 heap limit of one program.
        enable_search: Also expose a ``search`` tool returning declarations on demand.
        instructions: MCP server instructions; a short default explains ``execute``.
        registry: Share an existing registry (e.g. a notebook's); one is created otherwise.
        executor_options: Further :class:`~codemode.executor.Executor` options
            (``inline_sync``, ``max_log_lines``, ...).
        on_event: Observer of every run's events (called from engine threads; keep it quick).
        max_concurrent_runs: Programs running at once; past it ``execute`` fails fast with a
            "server busy" error instead of queueing.
        compact_threshold: With search enabled, above this many callable functions the
            ``execute`` description lists names and summaries only, and points to ``search`` for
            the declarations. Without search the full declarations are always embedded.
        mcp_options: Keyword arguments for the SDK's ``MCPServer`` (e.g. ``auth=AuthSettings(...)``
            with ``token_verifier=...``, ``version``, ``log_level``).
    """

    def __init__(
        self,
        *,
        name: str,
        capabilities: Iterable[Capability] | None = None,
        timeout_s: float = 60.0,
        max_heap_bytes: int = 16 * MiB,
        enable_search: bool = False,
        instructions: str | None = None,
        registry: Registry | None = None,
        executor_options: Mapping[str, Any] | None = None,
        on_event: Observer | None = None,
        max_concurrent_runs: int = 8,
        compact_threshold: int = 15,
        mcp_options: Mapping[str, Any] | None = None,
    ) -> None:
        if max_concurrent_runs < 1:
            raise ValueError("max_concurrent_runs must be at least 1")
        options = dict(executor_options or {})
        for key in ("timeout_s", "max_heap_bytes", "capabilities", "on_event"):
            if key in options:
                raise TypeError(f"pass {key} to CodeModeServer directly, not in executor_options")
        self.name = name
        self.enable_search = enable_search
        self.instructions = instructions
        self.max_concurrent_runs = max_concurrent_runs
        self.compact_threshold = compact_threshold
        self.registry: Registry = registry if registry is not None else Registry()
        for capability in capabilities or ():
            self.registry.add_capability(capability)
        self.executor = Executor(
            timeout_s=timeout_s,
            max_heap_bytes=max_heap_bytes,
            capabilities=self.registry.capabilities,
            on_event=on_event,
            **options,
        )
        self._mcp_options = dict(mcp_options or {})
        self._lock = threading.RLock()
        self._active = 0
        self._mcp: MCPServer | None = None
        self._execute_tool: Tool | None = None
        self._described_version = -1
        self._bus = _ThreadSafeBus()
        self._clients: dict[int, _LegacyClient] = {}
        self._pending_loops: set[asyncio.AbstractEventLoop] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._remove_listener = self.registry.add_listener(self.notify_tools_changed)

    # ---------------------------------------------------------------- tools

    @overload
    def tool(self, fn: F, /) -> F: ...

    @overload
    def tool(
        self,
        fn: str | None = None,
        /,
        *,
        name: str | None = None,
        inline: bool = False,
        description: str | None = None,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        fn: Any = None,
        /,
        *,
        name: str | None = None,
        inline: bool = False,
        description: str | None = None,
    ) -> Any:
        """Register a function as ``codemode.<name>``: ``@server.tool``, ``@server.tool()``,
        ``@server.tool("name")`` or ``@server.tool(name="x", inline=True)``.

        The name defaults to the function's ``__name__``; type hints and the docstring become its
        TypeScript declaration. Connected clients are notified of the change.
        """
        if isinstance(fn, str):
            if name is not None:
                raise TypeError("give the tool name once")
            fn, name = None, fn

        def decorator(func: F) -> F:
            self.add_tool(func, name=name, inline=inline, description=description)
            return func

        if fn is None:
            return decorator
        if not callable(fn):
            raise TypeError(f"@server.tool expects a function, got {type(fn).__name__}")
        return decorator(fn)

    def add_tool(
        self,
        fn: HostFn,
        *,
        name: str | None = None,
        inline: bool = False,
        description: str | None = None,
    ) -> HostFn:
        """Register ``fn`` (see :meth:`tool`); re-registering a name replaces the function."""
        tool_name = name if name is not None else getattr(fn, "__name__", None)
        if not isinstance(tool_name, str) or tool_name == "<lambda>":
            raise ValueError("this function has no usable __name__; pass name=...")
        return self.registry.register(tool_name, fn, inline=inline, description=description)

    def remove_tool(self, name: str) -> HostFn:
        """Unregister a tool; connected clients are notified."""
        return self.registry.unregister(name)

    # ---------------------------------------------------------------- running code

    @property
    def active_runs(self) -> int:
        """Programs running right now through this server."""
        return self._active

    async def run_code(self, code: str) -> RunResult:
        """Run one program with the registry's current functions (bounded by
        ``max_concurrent_runs``: past it, a ``RunFailed`` of kind ``busy`` comes back at once)."""
        with self._lock:
            if self._active >= self.max_concurrent_runs:
                busy = True
            else:
                busy = False
                self._active += 1
        if busy:
            message = (
                f"server busy: {self.max_concurrent_runs} programs are already running "
                f"(max_concurrent_runs={self.max_concurrent_runs}); retry shortly, or do the "
                "work in fewer, larger programs"
            )
            return RunFailed(
                error=f"ServerBusy: {message}",
                details=ErrorDetails("busy", "ServerBusy", message),
            )
        try:
            capabilities = self.registry.capabilities
            if capabilities != self.executor.capabilities:
                self.executor.capabilities = capabilities
            return await self.executor.execute(code, self.registry.functions())
        finally:
            with self._lock:
                self._active -= 1

    async def execute(self, code: str) -> dict[str, Any]:
        """Run one program and return what the ``execute`` tool returns (``ExecuteOutput``)."""
        return result_payload(await self.run_code(code))

    def search(self, query: str, limit: int = 10) -> dict[str, Any]:
        """What the ``search`` tool returns (``SearchOutput``)."""
        hits = self.registry.search(query, limit=limit)
        return {
            "query": query,
            "results": [
                {"name": h.name, "kind": h.kind, "summary": h.summary, "stub": h.stub} for h in hits
            ],
        }

    # ---------------------------------------------------------------- descriptions

    def is_compact(self) -> bool:
        """Whether the ``execute`` description lists names only (search on, many functions)."""
        return self.enable_search and len(self.registry.names()) > self.compact_threshold

    def execute_description(self) -> str:
        """The ``execute`` tool's description for the registry as it is now."""
        timeout = f"{self.executor.timeout_s:g} s"
        memory = f"{self.executor.max_heap_bytes / MiB:g} MiB"
        lines = [
            "Run a JavaScript program in a fresh, sandboxed V8 isolate; its return value comes "
            "back as `result`, console output as `logs`.",
            "",
            "`code` is an async arrow function (`async () => { ... }`, called for you), bare "
            "statements with top-level `await` and `return`, or a single expression.",
            "",
            "Rules:",
            "- Call `await codemode.NAME({ arg: value })`: one object of named arguments. A failed "
            "call throws an Error you can catch.",
            "- Only JSON values cross to and from the host; return one.",
            "- Prefer ONE program that does all the work: chain the calls, filter and aggregate in "
            "JavaScript, return only what is needed; run independent calls at once with "
            "`await Promise.all([...])`.",
            f"- Each program is stopped after {timeout} and may use {memory} of memory.",
            "- No network, file system, `import`/`require` or Node.js API: only the functions "
            "below reach the outside world. Standard built-ins (JSON, Math, Date, RegExp, Map, "
            "Set) are there.",
            "",
        ]
        if self.is_compact():
            lines.append(
                "Available functions (call as `codemode.<name>`). Use the `search` tool to get "
                "the exact TypeScript declaration of a function before calling it:"
            )
            for name, summary in self.registry.summaries():
                lines.append(f"- {name}: {summary}" if summary else f"- {name}")
        else:
            lines.append("The `codemode` object has these TypeScript declarations:")
            lines.append("")
            lines.append("```ts")
            lines.append(self.registry.stubs().rstrip("\n"))
            lines.append("```")
            if self.enable_search:
                lines.append("")
                lines.append("The `search` tool finds functions by words in their documentation.")
        return "\n".join(lines)

    def search_description(self) -> str:
        return (
            "Search the functions that `execute` programs can call (`codemode.<name>`), by words "
            "in their names and documentation. Returns the best matches with their TypeScript "
            "declarations (`stub`), so you can call them correctly. An empty query lists every "
            "function with its summary."
        )

    def default_instructions(self) -> str:
        search = (
            " Use `search` to find functions and their exact signatures."
            if self.enable_search
            else ""
        )
        return (
            "This server runs JavaScript programs that call Python functions. Use the `execute` "
            "tool: write one program that makes all the calls a task needs "
            "(`await codemode.name({ arg: value })`) and returns the final answer; its "
            f"description lists the available functions.{search}"
        )

    def refresh(self) -> bool:
        """Bring the ``execute`` description up to date with the registry (done before every
        ``tools/list``); True when it changed."""
        tool = self._execute_tool
        version = self.registry.version
        if tool is None or version == self._described_version:
            return False
        description = self.execute_description()  # outside the lock: stubs can take a while
        with self._lock:
            if version <= self._described_version:
                return False
            tool.description = description
            self._described_version = version
        return True

    # ---------------------------------------------------------------- the MCP server

    @property
    def mcp(self) -> MCPServer:
        """The SDK's ``MCPServer`` (built on first use, then reused: tool changes show up live)."""
        with self._lock:
            if self._mcp is None:
                self._mcp = self._build()
            return self._mcp

    def streamable_http_app(
        self,
        *,
        host: str = "127.0.0.1",
        streamable_http_path: str = "/mcp",
        **options: Any,
    ) -> Starlette:
        """The streamable-HTTP ASGI app (``MCPServer.streamable_http_app``), to run yourself.

        ``host`` is where it will listen: for 127.0.0.1/localhost/::1 the SDK turns on DNS-rebinding
        protection (only those Host/Origin headers are accepted); for other hosts pass
        ``transport_security=TransportSecuritySettings(...)``. Its lifespan runs the session
        manager, so serve it with lifespan on (uvicorn's default). One app per server: each call
        replaces the SDK's session manager.
        """
        return self.mcp.streamable_http_app(
            host=host, streamable_http_path=streamable_http_path, **options
        )

    def run(self, transport: str = "stdio", **options: Any) -> None:
        """Shortcut for ``server.mcp.run(transport, **options)`` (blocking)."""
        self.mcp.run(transport, **options)  # type: ignore[call-overload]

    def notify_tools_changed(self) -> int:
        """Tell connected clients that the tool list changed; safe from any thread.

        Called automatically on every registry change. Delivery happens on each client's event
        loop, and a burst of changes is coalesced into one notification per client. Returns how
        many clients (handshake-era connections plus open listen streams) will be told.
        """
        with self._lock:
            count = len(self._clients)
            loops = {client.loop for client in self._clients.values()}
        loops |= self._bus.loops()
        for loop in loops:
            self._schedule_flush(loop)
        self._bus.deliver(None, ToolsListChanged())  # listeners outside asyncio, if any
        return count + self._bus.count()

    def close(self) -> None:
        """Stop following the registry (the MCP server itself stops with its transport)."""
        self._remove_listener()

    # ---------------------------------------------------------------- internals

    def _build(self) -> MCPServer:
        execute_tool = Tool.from_function(
            self._make_execute(),
            name="execute",
            title="Run JavaScript (Code Mode)",
            description=self.execute_description(),
            annotations=types.ToolAnnotations(title="Run JavaScript (Code Mode)"),
        )
        self._execute_tool = execute_tool
        self._described_version = self.registry.version
        tools = [execute_tool]
        if self.enable_search:
            tools.append(
                Tool.from_function(
                    self._make_search(),
                    name="search",
                    title="Search functions",
                    description=self.search_description(),
                    annotations=types.ToolAnnotations(
                        title="Search functions", read_only_hint=True, idempotent_hint=True
                    ),
                )
            )
        options: dict[str, Any] = {
            "instructions": self.instructions or self.default_instructions(),
            "cache_hints": {"tools/list": CacheHint(ttl_ms=0, scope="private")},
        }
        options.update(self._mcp_options)
        middleware = list(options.pop("middleware", ()))
        server: MCPServer = MCPServer(
            self.name,
            tools=tools,
            subscriptions=self._bus,
            middleware=[self._middleware, *middleware],
            **options,
        )
        return server

    def _make_execute(self) -> Callable[..., Any]:
        async def execute(
            code: Annotated[str, Field(description=_CODE_DOC)],
        ) -> Annotated[types.CallToolResult, ExecuteOutput]:
            return tool_result(await self.run_code(code))

        return execute

    def _make_search(self) -> Callable[..., Any]:
        def search(
            query: Annotated[str, Field(description=_QUERY_DOC)] = "",
            limit: Annotated[int, Field(ge=1, le=100, description="Most results.")] = 10,
        ) -> SearchOutput:
            return SearchOutput.model_validate(self.search(query, limit))

        return search

    async def _middleware(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """Keeps ``execute``'s description current, advertises ``tools.listChanged`` to
        handshake-era clients and remembers their connections for later notifications."""
        method = ctx.method
        if method == "tools/list":
            self.refresh()
        elif method != "initialize" and ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self._remember(ctx.session)
        result = await call_next(ctx)
        if method == "initialize" and isinstance(result, dict):
            capabilities = result.get("capabilities")
            if isinstance(capabilities, dict) and isinstance(capabilities.get("tools"), dict):
                capabilities["tools"]["listChanged"] = True
        return result

    def _remember(self, session: Any) -> None:
        # The standalone channel belongs to the connection; ServerSession objects are built per
        # request, so key by the connection when the SDK lets us see it.
        connection = getattr(session, "_connection", None)
        key_object = connection if connection is not None else session
        key = id(key_object)
        with self._lock:
            if key in self._clients:
                return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        with self._lock:
            if len(self._clients) >= _MAX_CLIENTS:
                self._clients.pop(next(iter(self._clients)))
            self._clients[key] = _LegacyClient(session, loop)
        exit_stack = getattr(connection, "exit_stack", None)
        if exit_stack is not None:
            exit_stack.callback(self._forget, key)

    def _forget(self, key: int) -> None:
        with self._lock:
            self._clients.pop(key, None)

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if loop in self._pending_loops:
                return
            self._pending_loops.add(loop)
        try:
            loop.call_soon_threadsafe(self._flush, loop)
        except RuntimeError:  # closed loop: its clients are gone
            with self._lock:
                self._pending_loops.discard(loop)
                for key in [k for k, c in self._clients.items() if c.loop is loop]:
                    self._clients.pop(key, None)
            self._bus.drop(loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """On ``loop``: one notification per client of this loop, however many changes."""
        with self._lock:
            self._pending_loops.discard(loop)
            targets = [(k, c) for k, c in self._clients.items() if c.loop is loop]
        for key, client in targets:
            task = loop.create_task(self._send(key, client))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._bus.deliver(loop, ToolsListChanged())

    async def _send(self, key: int, client: _LegacyClient) -> None:
        try:
            with anyio.fail_after(10):
                await client.session.send_tool_list_changed()
        except Exception:  # noqa: BLE001 - a gone client is forgotten, not an error
            logger.debug("tools/list_changed not delivered; forgetting the client", exc_info=True)
            self._forget(key)


# -------------------------------------------------------------------- results


def result_payload(outcome: RunResult) -> dict[str, Any]:
    """A run's outcome as the JSON object ``execute`` returns (see :class:`ExecuteOutput`)."""
    logs = [str(line) for line in outcome.logs]
    # The engine keeps a bounded trace; calls past the bound are only counted.
    calls = len(outcome.calls) + int(getattr(outcome, "dropped_calls", 0) or 0)
    if outcome.dropped_logs:
        logs.append(f"[{outcome.dropped_logs} more console lines were dropped: log limit reached]")
    if isinstance(outcome, RunCompleted):
        return {
            "success": True,
            "result": outcome.result,
            "error": None,
            "logs": logs,
            "calls": calls,
        }
    return {
        "success": False,
        "result": None,
        "error": outcome.error,
        "logs": logs,
        "calls": calls,
    }


def tool_result(outcome: RunResult) -> types.CallToolResult:
    """The MCP result of one run: structured content, its JSON as text, and ``isError`` when the
    program failed (so clients and models see the failure as a tool error)."""
    payload = result_payload(outcome)
    text = json.dumps(payload, ensure_ascii=False, default=str)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content=payload,
        is_error=not payload["success"],
    )
