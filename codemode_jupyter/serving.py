"""Serve the notebook's functions as a real MCP server from inside the kernel.

``%codemode_serve`` builds a :class:`NotebookServer`: a :class:`~codemode.mcp.CodeModeServer`
whose registry mirrors the notebook's public functions, behind the SDK's streamable-HTTP
transport, run by uvicorn on a daemon thread with its own event loop (cells keep running).

Design choices, each for a reason:

* The kernel's namespace is only read on the kernel's main thread, in a ``post_run_cell`` hook:
  ``user_ns`` mutates while cells run, so server threads never touch it. The registry is replaced
  only when the set of functions really changed, so clients get one ``list_changed`` per change.
* Every request is recorded in Python (:class:`RequestRecord`, complete) from the engine's event
  stream; the panel widget receives bounded rows, pushed from one pump thread at most ten times a
  second (trait changes and comm messages only: nothing prints from a server thread).
* Secure by default: a random bearer token, 127.0.0.1, the SDK's Host/Origin checks (explicit
  allowed hosts when binding elsewhere), a request-body cap answered with 413 before anything is
  parsed, and the engine's per-run timeout, heap limit and concurrent-run limit.
* Servers stop on ``--stop``, at interpreter exit (atexit, so before the engine closes its
  runtimes) and when the shell is collected; the threads are daemons either way.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import errno
import hmac
import html
import ipaddress
import json
import logging
import secrets
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from codemode.capabilities.base import Capability
from codemode.events import (
    CallFinished,
    CallStarted,
    ConsoleEvent,
    HostCall,
    LogLine,
    RunCompleted,
    RunFinished,
    RunResult,
    RunStarted,
)
from codemode.mcp import CodeModeServer
from codemode.registry import Registry, validate_name

__all__ = [
    "NotebookServer",
    "PortInUseError",
    "RequestRecord",
    "current",
    "discover_tools",
    "running_servers",
    "serve",
    "server_log",
    "stop_all",
]

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_MAX_BODY = 1 * MiB
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
MAX_RECORDS = 1000
"""Requests kept per server (the oldest are dropped past this, and counted)."""
START_TIMEOUT_S = 15.0


class PortInUseError(OSError):
    """The requested port is already taken (by another server or program)."""


# ---------------------------------------------------------------------------- records


@dataclass
class RequestRecord:
    """One request from an agent: what it sent, what it printed and called, what came back.

    Kept whole in Python (the panel shows a bounded view of it).
    """

    id: int
    kind: str
    """``execute`` (a program) or ``search``."""
    code: str
    """The program (``execute``) or the query (``search``)."""
    started_at: float
    """Wall-clock time the request arrived (``time.time()``)."""
    status: str = "running"
    """``running``, ``ok``, ``failed`` (the program failed) or ``busy`` (refused: too many runs)."""
    logs: list[LogLine] = field(default_factory=list)
    calls: list[HostCall] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    error_kind: str | None = None
    duration: float | None = None
    """Seconds, once finished."""
    run_id: str | None = None
    tools: list[str] = field(default_factory=list)
    heap_used: int | None = None
    dropped_logs: int = 0
    dropped_calls: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def finished(self) -> bool:
        return self.status != "running"

    def elapsed(self) -> float:
        """Seconds so far (the duration once finished)."""
        if self.duration is not None:
            return self.duration
        return max(0.0, time.time() - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (values that are not JSON become their ``repr``)."""
        data = {
            "id": self.id,
            "kind": self.kind,
            "code": self.code,
            "started_at": self.started_at,
            "status": self.status,
            "logs": [str(line) for line in self.logs],
            "calls": [
                {
                    "name": call.name,
                    "arguments": call.arguments,
                    "duration": call.duration,
                    "result": call.result,
                    "error": call.error,
                }
                for call in self.calls
            ],
            "result": self.result,
            "error": self.error,
            "error_kind": self.error_kind,
            "duration": self.duration,
            "tools": list(self.tools),
        }
        loaded: dict[str, Any] = json.loads(json.dumps(data, default=repr))
        return loaded

    def summary_line(self) -> str:
        """``#3 execute ok 12 ms, 2 calls: first line of the code -> result``."""
        took = _ms(self.elapsed())
        head = f"#{self.id} {self.kind} {self.status} {took}"
        if self.kind == "execute":
            head += f", {len(self.calls) + self.dropped_calls} calls"
        code = " ".join(self.code.split())
        if len(code) > 60:
            code = code[:59] + "…"
        tail = ""
        if self.status == "ok":
            tail = " -> " + _short_json(self.result, 60)
        elif self.error:
            tail = " -> " + self.error.strip().splitlines()[0][:100]
        return f"{head}: {code}{tail}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _short_json(value: Any, limit: int) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Recorder:
    """Builds :class:`RequestRecord` objects from requests and the engine's events.

    Requests are opened by the server (so refused ones are recorded too) and linked to the
    engine's run when its ``RunStarted`` arrives (matched by code, oldest first); the outcome the
    server returns is authoritative for the final state. Event handlers run on engine threads:
    they only append under a lock and tell the pump.
    """

    def __init__(self, on_change: Callable[[int, bool], None]) -> None:
        self._lock = threading.Lock()
        self._records: deque[RequestRecord] = deque()
        self._by_run: dict[str, RequestRecord] = {}
        self._pending: list[RequestRecord] = []
        self._ids = 0
        self.dropped = 0
        self._on_change = on_change

    def begin(self, kind: str, code: str) -> RequestRecord:
        with self._lock:
            self._ids += 1
            record = RequestRecord(id=self._ids, kind=kind, code=code, started_at=time.time())
            self._records.append(record)
            while len(self._records) > MAX_RECORDS:
                old = self._records.popleft()
                self.dropped += 1
                if old.run_id:
                    self._by_run.pop(old.run_id, None)
            if kind == "execute":
                self._pending.append(record)
        self._on_change(record.id, True)
        return record

    def on_event(self, event: Any) -> None:
        """Engine threads: keep the live view of a run current."""
        try:
            self._apply(event)
        except Exception:  # noqa: BLE001 - an observer must never break a run
            logger.debug("codemode serve: could not record an event", exc_info=True)

    def _apply(self, event: Any) -> None:
        with self._lock:
            if isinstance(event, RunStarted):
                record = next((r for r in self._pending if r.code == event.code), None)
                if record is None:
                    return
                self._pending.remove(record)
                record.run_id = event.run_id
                record.tools = list(event.tools)
                self._by_run[event.run_id] = record
            else:
                record = self._by_run.get(getattr(event, "run_id", ""))
                if record is None or record.finished:
                    return
                if isinstance(event, ConsoleEvent):
                    record.logs.append(event.line)
                elif isinstance(event, CallStarted):
                    record.calls.append(event.call)
                elif isinstance(event, CallFinished):
                    if not any(c is event.call for c in record.calls[-50:]):
                        if all(c.call_id != event.call.call_id for c in record.calls):
                            record.calls.append(event.call)
                elif isinstance(event, RunFinished):
                    record.heap_used = event.heap_used
                    self._by_run.pop(event.run_id, None)
                else:
                    return
        self._on_change(record.id, False)

    def finish(self, record: RequestRecord, outcome: RunResult) -> None:
        with self._lock:
            if record in self._pending:
                self._pending.remove(record)
            record.logs = list(outcome.logs)
            record.calls = list(outcome.calls)
            record.dropped_logs = outcome.dropped_logs
            record.dropped_calls = outcome.dropped_calls
            if isinstance(outcome, RunCompleted):
                record.result = outcome.result
                record.status = "ok"
                record.duration = outcome.duration
            else:
                details = outcome.details
                record.error = outcome.error
                record.error_kind = details.kind if details is not None else None
                record.status = "busy" if record.error_kind == "busy" else "failed"
                record.duration = outcome.duration or (time.time() - record.started_at)
        self._on_change(record.id, True)

    def finish_search(self, record: RequestRecord, found: Mapping[str, Any]) -> None:
        with self._lock:
            record.result = [hit.get("name") for hit in found.get("results", [])]
            record.status = "ok"
            record.duration = time.time() - record.started_at
        self._on_change(record.id, True)

    def abort(self, record: RequestRecord, exc: BaseException) -> None:
        with self._lock:
            if record in self._pending:
                self._pending.remove(record)
            cancelled = isinstance(exc, asyncio.CancelledError)
            record.status = "failed"
            record.error_kind = "cancelled" if cancelled else "internal"
            record.error = (
                "the request was cancelled (the client went away or the server stopped)"
                if cancelled
                else f"{type(exc).__name__}: {exc}"
            )
            record.duration = time.time() - record.started_at
        self._on_change(record.id, True)

    def snapshot(self) -> list[RequestRecord]:
        """Copies of every record, oldest first (safe to read while requests run)."""
        with self._lock:
            return [
                dataclasses.replace(r, logs=list(r.logs), calls=list(r.calls), tools=list(r.tools))
                for r in self._records
            ]

    def get(self, ids: set[int]) -> list[RequestRecord]:
        with self._lock:
            return [
                dataclasses.replace(r, logs=list(r.logs), calls=list(r.calls))
                for r in self._records
                if r.id in ids
            ]


class _RecordingServer(CodeModeServer):
    """A ``CodeModeServer`` that records every ``execute`` and ``search`` it answers, refused
    ones included (the engine's events only cover programs that actually ran)."""

    def __init__(self, *, recorder: _Recorder, **options: Any) -> None:
        self._recorder = recorder
        super().__init__(on_event=recorder.on_event, **options)

    async def run_code(self, code: str) -> RunResult:
        record = self._recorder.begin("execute", code)
        try:
            outcome = await super().run_code(code)
        except BaseException as exc:
            self._recorder.abort(record, exc)
            raise
        self._recorder.finish(record, outcome)
        return outcome

    def search(self, query: str, limit: int = 10) -> dict[str, Any]:
        record = self._recorder.begin("search", query)
        try:
            found = super().search(query, limit)
        except BaseException as exc:
            self._recorder.abort(record, exc)
            raise
        self._recorder.finish_search(record, found)
        return found


# ---------------------------------------------------------------------------- HTTP pieces


class _BearerToken:
    """The SDK's ``TokenVerifier``: one static secret, compared in constant time."""

    def __init__(self, token: str) -> None:
        self._token = token.encode("utf-8")

    async def verify_token(self, token: str) -> Any:
        from mcp.server.auth.provider import AccessToken

        if hmac.compare_digest(token.encode("utf-8"), self._token):
            return AccessToken(token=token, client_id="codemode-notebook", scopes=["codemode"])
        return None


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413, before the MCP app
    (and its authentication) sees them.

    A refused body is still read (and dropped) up to a bound, so that an ordinary client, which
    sends its whole body before reading the answer, gets the 413 instead of a reset connection;
    past ``drain_bytes``, or after ``drain_timeout_s`` (a client that announces a large body and
    never sends it), the answer goes out at once.
    """

    def __init__(
        self,
        app: Any,
        max_bytes: int,
        drain_bytes: int | None = None,
        drain_timeout_s: float = 2.0,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes if drain_bytes is not None else max(8 * MiB, 4 * max_bytes)
        self.drain_timeout_s = drain_timeout_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    continue
                if declared > self.max_bytes:
                    if declared <= self.drain_bytes:
                        await self._drain(receive, 0)
                    await self._refuse(send)
                    return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            body.extend(message.get("body", b""))
            more = bool(message.get("more_body", False))
            if len(body) > self.max_bytes:
                if more:
                    await self._drain(receive, len(body))
                await self._refuse(send)
                return
            if not more:
                break
        first = {"type": "http.request", "body": bytes(body), "more_body": False}
        await self.app(scope, _replay([first], receive), send)

    async def _drain(self, receive: Any, received: int) -> None:
        try:
            await asyncio.wait_for(self._drain_all(receive, received), self.drain_timeout_s)
        except (TimeoutError, asyncio.TimeoutError):
            pass  # a client holding back its body gets the 413 now

    async def _drain_all(self, receive: Any, received: int) -> None:
        while received <= self.drain_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return
            received += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _refuse(self, send: Any) -> None:
        text = f"Request body too large (the limit is {self.max_bytes} bytes)\n".encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(text)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": text})


def _replay(messages: list[dict[str, Any]], receive: Any) -> Callable[[], Any]:
    queue = deque(messages)

    async def replayed() -> Any:
        if queue:
            return queue.popleft()
        return await receive()

    return replayed


def _is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_pattern(host: str) -> str:
    """``Host`` header pattern for a host name or address (IPv6 in brackets)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:*"


def allowed_hosts_for(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The Host header values accepted when listening on ``host`` (DNS-rebinding defence).

    Loopback names always; the host itself when specific; for a wildcard bind the machine's
    names and addresses (best effort) — anything else must be given explicitly (``extra``).
    """
    names: list[str] = list(LOOPBACK_NAMES)
    if _is_wildcard(host):
        with contextlib.suppress(OSError):
            hostname = socket.gethostname()
            names += [hostname, socket.getfqdn()]
            names += socket.gethostbyname_ex(hostname)[2]
    elif host not in names:
        names.append(host)
    patterns: list[str] = []
    for name in names:
        if _host_pattern(name) not in patterns:
            patterns.append(_host_pattern(name))
    for entry in extra:
        entry = entry.strip()
        if not entry:
            continue
        # "name:port" and "[v6]:port" are taken as given; a bare name accepts any port
        has_port = entry.startswith("[") and "]:" in entry or entry.count(":") == 1
        pattern = entry if has_port else _host_pattern(entry)
        if pattern not in patterns:
            patterns.append(pattern)
    return patterns


def _transport_security(host: str, extra: Sequence[str]) -> Any:
    from mcp.server.transport_security import TransportSecuritySettings

    hosts = allowed_hosts_for(host, extra)
    origins: list[str] = []
    for pattern in hosts:
        for scheme in ("http", "https"):
            origins.append(f"{scheme}://{pattern}")
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`PortInUseError` naming the port if it cannot be bound (as uvicorn would)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    bind_host = host or "0.0.0.0"
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind_host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(
                    exc.errno, f"port {port} on {bind_host} is already in use"
                ) from None
            raise PortInUseError(exc.errno, f"cannot listen on {bind_host}:{port}: {exc}") from None


class _LogCapture(logging.Handler):
    """Keeps warnings of the SDK and uvicorn (bad Host headers, bind errors, ...) in memory.

    Without a handler on these loggers Python's last-resort handler would print them to the
    kernel's stderr from a server thread, i.e. into whatever cell happens to be running.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque[str] = deque(maxlen=500)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
            self.lines.append(f"{stamp} {record.levelname} {record.name}: {record.getMessage()}")
        except Exception:  # noqa: BLE001 - logging must never raise
            pass


_capture = _LogCapture()
_CAPTURED_LOGGERS = ("mcp", "uvicorn")


def server_log() -> list[str]:
    """Warnings logged by the MCP SDK and uvicorn while serving (most recent last)."""
    return list(_capture.lines)


def _capture_logs(on: bool) -> None:
    for name in _CAPTURED_LOGGERS:
        target = logging.getLogger(name)
        if on and _capture not in target.handlers:
            target.addHandler(_capture)
        elif not on and _capture in target.handlers:
            target.removeHandler(_capture)


@contextlib.contextmanager
def _no_basic_config() -> Iterator[None]:
    """Building ``MCPServer`` calls ``logging.basicConfig`` when the root logger has no handler,
    which would route every later warning of the kernel to a stream of ours: give the root a
    placeholder for that moment, so the call does nothing."""
    root = logging.getLogger()
    placeholder = logging.NullHandler()
    added = not root.handlers
    if added:
        root.addHandler(placeholder)
    try:
        yield
    finally:
        if added:
            root.removeHandler(placeholder)


# ---------------------------------------------------------------------------- discovery


def discover_tools(
    shell: Any, wanted: Sequence[str] = ()
) -> tuple[dict[str, Callable[..., Any]], list[Capability]]:
    """The notebook's tools and enabled capabilities, as ``%%codemode`` cells see them.

    Main thread only (reads ``user_ns``). Uses the extension's settings when it is loaded
    (auto-discovery switch, ``%codemode_allow`` capabilities), else its discovery rules alone.
    ``wanted`` keeps only those names (a namespace name keeps all of it).
    """
    magics = codemode_settings(shell)
    capabilities: list[Capability] = []
    functions: dict[str, Callable[..., Any]]
    if magics is not None:
        toolset = magics.toolset()
        functions = dict(toolset.functions)
        capabilities = list(toolset.capabilities)
    else:
        functions = _notebook_functions(shell)
    if wanted:
        keep = {w.strip().removeprefix("codemode.") for w in wanted if w.strip()}

        def chosen(name: str) -> bool:
            return any(name == k or name.startswith(k + ".") for k in keep)

        functions = {n: f for n, f in functions.items() if chosen(n)}
        capabilities = [c for c in capabilities if chosen(c.namespace)]
    return functions, capabilities


def codemode_settings(shell: Any) -> Any:
    """The extension's ``CodeMode`` configurable when the extension is loaded, else None."""
    try:
        from codemode_jupyter.extension import current as extension_current
    except ImportError:
        return None
    try:
        return extension_current(shell, load_if_needed=False)
    except Exception:  # noqa: BLE001 - an extension half-loaded: fall back to plain discovery
        return None


def _notebook_functions(shell: Any) -> dict[str, Callable[..., Any]]:
    namespace = getattr(shell, "user_ns", {}) or {}
    hidden = getattr(shell, "user_ns_hidden", {}) or {}
    try:
        from codemode_jupyter.tools import notebook_tools
    except ImportError:
        return _fallback_discovery(namespace, hidden)
    return dict(notebook_tools(namespace, hidden))


def _fallback_discovery(
    namespace: Mapping[str, Any], hidden: Mapping[str, Any]
) -> dict[str, Callable[..., Any]]:
    """Used only if the extension's discovery cannot be imported: the same rules (public
    functions defined in ``__main__``)."""
    import inspect

    found: dict[str, Callable[..., Any]] = {}
    for name, value in list(namespace.items()):
        if name.startswith("_") or not name.isidentifier() or hidden.get(name) is value:
            continue
        if getattr(value, "__module__", None) != "__main__" or isinstance(value, type):
            continue
        if inspect.isfunction(value) or inspect.isfunction(getattr(value, "__wrapped__", None)):
            found[name] = value
    return found


def _usable(
    functions: Mapping[str, Callable[..., Any]], namespaces: Sequence[str]
) -> tuple[dict[str, Callable[..., Any]], list[str]]:
    """The functions the registry will accept (valid names, no function/namespace clash), and
    why the others were left out."""
    kept: dict[str, Callable[..., Any]] = {}
    skipped: list[str] = []

    def nested(a: str, b: str) -> bool:
        return a == b or a.startswith(b + ".") or b.startswith(a + ".")

    for name in sorted(functions):
        try:
            validate_name(name)
        except (TypeError, ValueError) as exc:
            skipped.append(str(exc))
            continue
        clash = next((o for o in [*kept, *namespaces] if nested(name, o)), None)
        if clash is not None:
            skipped.append(f"{name!r} left out: it clashes with {clash!r}")
            continue
        kept[name] = functions[name]
    return kept, skipped


def _capability_key(capability: Capability) -> tuple[str, str, str]:
    kind = type(capability)
    return (f"{kind.__module__}.{kind.__qualname__}", capability.namespace, capability.description)


# ---------------------------------------------------------------------------- the server


class NotebookServer:
    """One MCP server serving a notebook's functions (see the module docstring).

    Args:
        shell: The IPython shell whose functions are served.
        name: The MCP server name clients show.
        host: Interface to listen on (127.0.0.1 unless told otherwise).
        port: TCP port; 0 picks a free one.
        token: Bearer token clients must send; a random one by default.
        enable_search: Also serve the ``search`` tool.
        tools: Serve only these names (namespaces keep all their functions).
        timeout_s, max_heap_bytes, max_concurrent_runs: Engine limits of each program.
        max_body_bytes: Larger request bodies get 413.
        allowed_hosts: Extra ``Host`` names accepted (besides loopback and the bound host).
    """

    def __init__(
        self,
        shell: Any,
        *,
        name: str = "notebook",
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        enable_search: bool = False,
        tools: Sequence[str] = (),
        timeout_s: float = 60.0,
        max_heap_bytes: int = 16 * MiB,
        max_concurrent_runs: int = 4,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        allowed_hosts: Sequence[str] = (),
        panel_interval_s: float = 0.1,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"invalid port {port}")
        if token is not None and not token.strip():
            raise ValueError("the token must not be empty")
        self.shell = shell
        self.name = name
        self.host = host
        self.port = port
        self.token = token if token is not None else secrets.token_hex(32)  # never starts with "-"
        self.enable_search = enable_search
        self.wanted = [t for t in tools if t]
        self.timeout_s = timeout_s
        self.max_heap_bytes = max_heap_bytes
        self.max_concurrent_runs = max_concurrent_runs
        self.max_body_bytes = max_body_bytes
        self.allowed_hosts = list(allowed_hosts)
        self.panel_interval_s = panel_interval_s
        self.state = "new"
        self.started_at: float | None = None
        self.skipped: list[str] = []
        self.refresh_error: str | None = None
        self.registry = Registry()
        self._recorder = _Recorder(self._changed)
        self._served: dict[str, Callable[..., Any]] = {}
        self._capability_keys: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._server: _RecordingServer | None = None
        self._http: Any = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._hooked = False
        self._finalizer: weakref.finalize | None = None
        self.panel: Any = None
        self._pump: _PanelPump | None = None

    # ------------------------------------------------------------ public view

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def url(self) -> str:
        """Where clients connect (for a wildcard bind: the loopback address)."""
        host = "127.0.0.1" if _is_wildcard(self.host) else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/mcp"

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request so far (copies, oldest first)."""
        return self._recorder.snapshot()

    @property
    def tool_names(self) -> list[str]:
        """What ``codemode.*`` holds right now (tools and capability functions)."""
        return self.registry.names()

    def client_config(self) -> dict[str, Any]:
        """A ready-to-paste MCP client configuration (``mcpServers`` JSON)."""
        return {
            "mcpServers": {
                self.name: {
                    "type": "http",
                    "url": self.url,
                    "headers": {"Authorization": f"Bearer {self.token}"},
                }
            }
        }

    def claude_command(self) -> str:
        """The equivalent ``claude mcp add`` command line."""
        return (
            f"claude mcp add --transport http {self.name} {self.url} "
            f'--header "Authorization: Bearer {self.token}"'
        )

    def summary(self) -> str:
        """A plain-text account of the server and every request it answered."""
        records = self.requests
        counts = _counts(records)
        lines = [
            f"codemode MCP server {self.name!r} at {self.url} ({self.state})",
            f"listening on {self.host}:{self.port}; limits: {self.timeout_s:g} s, "
            f"{self.max_heap_bytes / MiB:g} MiB, {self.max_concurrent_runs} concurrent runs, "
            f"{self.max_body_bytes} byte bodies",
            "codemode.*: " + (", ".join(self.tool_names) or "(nothing yet)"),
            f"requests: {len(records) + self._recorder.dropped} ({counts['ok']} ok, "
            f"{counts['failed']} failed, {counts['busy']} refused busy, "
            f"{counts['running']} running)",
        ]
        lines += ["  " + record.summary_line() for record in records[-20:]]
        if len(records) > 20:
            lines.append(f"  ({len(records) - 20} earlier requests: see .requests)")
        if self.skipped:
            lines.append("not served: " + "; ".join(self.skipped))
        if self.refresh_error:
            lines.append(f"last refresh failed: {self.refresh_error}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<NotebookServer {self.name!r} {self.url} {self.state}>"

    # ------------------------------------------------------------ lifecycle

    def start(self, *, panel: bool = True) -> NotebookServer:
        """Start listening (returns once the port is bound); kernel main thread only."""
        if self.state != "new":
            raise RuntimeError("a NotebookServer starts once; build a new one to serve again")
        check_port_free(self.host, self.port)
        self.state = "starting"
        try:
            self._start(panel)
        except BaseException:
            self._teardown()
            self.state = "failed"
            raise
        self.state = "running"
        self.started_at = time.time()
        _servers.append(self)
        _ensure_atexit()
        if self.panel is not None:
            self.panel.set_state(status="running", url=self.url)
        return self

    def _start(self, panel: bool) -> None:
        import uvicorn
        from mcp.server.auth.settings import AuthSettings

        mcp_options = {
            "log_level": "WARNING",
            "auth": AuthSettings(
                issuer_url="http://127.0.0.1",  # type: ignore[arg-type]
                resource_server_url=None,
                required_scopes=["codemode"],
            ),
            "token_verifier": _BearerToken(self.token),
        }
        self._server = _RecordingServer(
            recorder=self._recorder,
            name=self.name,
            registry=self.registry,
            timeout_s=self.timeout_s,
            max_heap_bytes=self.max_heap_bytes,
            enable_search=self.enable_search,
            max_concurrent_runs=self.max_concurrent_runs,
            mcp_options=mcp_options,
        )
        self.refresh()
        with _no_basic_config():
            app = self._server.streamable_http_app(
                host=self.host if is_loopback(self.host) else "127.0.0.1",
                transport_security=_transport_security(self.host, self.allowed_hosts),
                max_request_body_size=self.max_body_bytes,
            )
        _capture_logs(True)
        if panel:
            self._make_panel()
        config = uvicorn.Config(
            BodyLimit(app, self.max_body_bytes),
            host=self.host,
            port=self.port,
            log_level="warning",
            log_config=None,
            access_log=False,
            lifespan="on",
            ws="none",
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=1,
        )
        http = uvicorn.Server(config)
        self._http = http
        thread = threading.Thread(
            target=self._serve, name=f"codemode-serve-{self.name}", daemon=True
        )
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not http.started:
            if not thread.is_alive() or self._failure is not None:
                raise self._start_error()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the MCP server did not start within {START_TIMEOUT_S:g} s")
            time.sleep(0.01)
        self.port = http.servers[0].sockets[0].getsockname()[1]
        self._hook(True)
        shell = self.shell
        if shell is not None:
            with contextlib.suppress(TypeError):
                self._finalizer = weakref.finalize(shell, _stop_quietly, weakref.ref(self))

    def _serve(self) -> None:
        """Server thread: uvicorn on a loop of its own (signal handlers are main-thread only,
        so uvicorn installs none here)."""
        try:
            self._http.run()
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a failed bind, too
            self._failure = exc

    def _start_error(self) -> BaseException:
        recent = [line for line in server_log()[-5:] if "uvicorn" in line]
        if any("in use" in line for line in recent):
            return PortInUseError(errno.EADDRINUSE, f"port {self.port} is already in use")
        detail = recent[-1] if recent else repr(self._failure)
        return RuntimeError(f"the MCP server on {self.host}:{self.port} did not start: {detail}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop listening and free the port (waits for uvicorn's thread); idempotent."""
        with self._lock:
            if self.state in ("stopped", "new"):
                return
            self.state = "stopping"
        try:
            self._teardown(timeout_s)
        finally:
            self.state = "stopped"
            with contextlib.suppress(ValueError):
                _servers.remove(self)
            if not _servers:
                _capture_logs(False)

    def _teardown(self, timeout_s: float = 5.0) -> None:
        self._hook(False)
        http, thread = self._http, self._thread
        if http is not None and thread is not None:
            http.should_exit = True
            thread.join(timeout_s)
            if thread.is_alive():
                http.force_exit = True
                thread.join(timeout_s)
        if self._server is not None:
            self._server.close()
            self._server.executor.close()
        if self._pump is not None:
            self._pump.close()
        if self.panel is not None:
            with contextlib.suppress(Exception):
                self.panel.set_state(status="stopped")
        if self._finalizer is not None:
            self._finalizer.detach()

    # ------------------------------------------------------------ live tools

    def refresh(self) -> bool:
        """Bring the served functions up to date with the notebook (main thread: reads
        ``user_ns``); True when something changed (clients are then notified once)."""
        try:
            functions, capabilities = discover_tools(self.shell, self.wanted)
        except Exception as exc:  # noqa: BLE001 - e.g. an invalid allowlist: keep serving
            self.refresh_error = str(exc)
            return False
        self.refresh_error = None
        keys = [_capability_key(c) for c in capabilities]
        caps_changed = keys != self._capability_keys
        functions, self.skipped = _usable(functions, [c.namespace for c in capabilities])
        same = functions.keys() == self._served.keys() and all(
            functions[n] is self._served[n] for n in functions
        )
        if same and not caps_changed:
            return False
        registry = self.registry
        if caps_changed:
            for old in registry.capabilities:
                registry.remove_capability(old.namespace)
        if not same:
            registry.replace_tools(functions)
        if caps_changed:
            for capability in capabilities:
                registry.add_capability(capability)
        self._served = dict(functions)
        self._capability_keys = keys
        if self.panel is not None:
            self.panel.set_state(tools=self.tool_names)
        return True

    def _post_run_cell(self, result: Any = None) -> None:
        if self.running:
            self.refresh()

    def _hook(self, on: bool) -> None:
        events = getattr(self.shell, "events", None)
        if events is None or on == self._hooked:
            return
        if on:
            events.register("post_run_cell", self._post_run_cell)
        else:
            with contextlib.suppress(ValueError):
                events.unregister("post_run_cell", self._post_run_cell)
        self._hooked = on

    # ------------------------------------------------------------ panel

    def _make_panel(self) -> None:
        from codemode_jupyter.server_panel import ServerPanel

        self.panel = ServerPanel(self)
        self._pump = _PanelPump(self.panel, self._recorder, self.panel_interval_s)

    def _changed(self, record_id: int, structural: bool) -> None:
        pump = self._pump
        if pump is not None:
            pump.mark(record_id, structural)

    def records_html(self) -> str:
        """The server and its requests as static HTML (the panel's fallback rendering)."""
        records = self.requests
        counts = _counts(records)
        rows = []
        for r in records[-50:]:
            console = "\n".join(map(str, r.logs[-50:]))
            outcome = r.error if r.error else _short_json(r.result, 2000)
            detail = f"<pre>{html.escape(r.code)}</pre>"
            if console:
                detail += f"<pre>{html.escape(console)}</pre>"
            detail += f"<pre>{html.escape(outcome)}</pre>"
            rows.append(
                f"<tr><td>#{r.id}</td><td>{r.kind}</td><td>{r.status}</td>"
                f"<td>{_ms(r.elapsed())}</td><td>{len(r.calls)}</td><td>{detail}</td></tr>"
            )
        return (
            f"<div><b>codemode MCP server {html.escape(self.name)}</b> "
            f"<code>{html.escape(self.url)}</code> ({self.state}) — "
            f"{len(records)} requests, {counts['ok']} ok, {counts['failed']} failed"
            f"<table><tr><th>#</th><th>kind</th><th>status</th><th>time</th><th>calls</th>"
            f"<th>request</th></tr>{''.join(rows)}</table></div>"
        )


def _counts(records: Sequence[RequestRecord]) -> dict[str, int]:
    counts = {"ok": 0, "failed": 0, "busy": 0, "running": 0}
    for record in records:
        counts[record.status] = counts.get(record.status, 0) + 1
    return counts


class _PanelPump:
    """One daemon thread that pushes record changes to the panel, at most once per interval:
    a request that starts or ends updates the panel's traits; progress of running requests goes
    as one comm message carrying just their rows."""

    def __init__(self, panel: Any, recorder: _Recorder, interval_s: float) -> None:
        self.panel = panel
        self.recorder = recorder
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._dirty: set[int] = set()
        self._structural = False
        self._closed = False
        self.pushes = 0
        self._thread = threading.Thread(target=self._run, name="codemode-serve-panel", daemon=True)
        self._thread.start()

    def mark(self, record_id: int, structural: bool) -> None:
        with self._lock:
            self._dirty.add(record_id)
            self._structural = self._structural or structural
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._closed:
                self._push()
                return
            self._push()
            time.sleep(self.interval_s)  # the throttle: at most one push per interval

    def _push(self) -> None:
        with self._lock:
            self._wake.clear()
            dirty, structural = self._dirty, self._structural
            self._dirty, self._structural = set(), False
        if not dirty:
            return
        try:
            if structural:
                self.panel.show_records(self.recorder.snapshot(), self.recorder.dropped)
            else:
                self.panel.send_progress(self.recorder.get(dirty))
            self.pushes += 1
        except Exception:  # noqa: BLE001 - a closed comm must not kill the pump
            logger.debug("codemode serve: panel update failed", exc_info=True)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(2)


# ---------------------------------------------------------------------------- module state

_servers: list[NotebookServer] = []
_atexit_registered = False


def serve(shell: Any = None, *, panel: bool = True, **options: Any) -> NotebookServer:
    """Start serving the notebook's functions from Python (``%codemode_serve`` without the
    printing); ``options`` are :class:`NotebookServer`'s. The panel is shown only in a kernel."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None:
        raise RuntimeError("serving notebook functions needs a running IPython")
    server = NotebookServer(shell, **options)
    server.start(panel=panel and getattr(shell, "kernel", None) is not None)
    if server.panel is not None:
        from IPython.display import display

        display(server.panel)
    return server


def current() -> NotebookServer | None:
    """The most recently started server that is still running (None if there is none)."""
    return _servers[-1] if _servers else None


def running_servers() -> list[NotebookServer]:
    return list(_servers)


def stop_all() -> None:
    """Stop every running server (at exit, on ``%codemode_serve --stop``, on unload)."""
    for server in list(_servers):
        with contextlib.suppress(Exception):
            server.stop()


def _stop_quietly(ref: weakref.ref[NotebookServer]) -> None:
    server = ref()
    if server is not None:
        with contextlib.suppress(Exception):
            server.stop(timeout_s=2)


def _ensure_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(stop_all)
        _atexit_registered = True
