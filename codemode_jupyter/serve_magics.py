"""``%codemode_serve`` (serve the notebook's functions over MCP) and ``%codemode_export``
(write them out as a standalone MCP server script).

Input mistakes (a port in use, an unknown tool name) raise ``UsageError``: a one-line message,
no traceback. The extension registers these with :func:`register` and removes them with
:func:`unregister`; both are idempotent.
"""

from __future__ import annotations

import json
import math
import os
import sys
import weakref
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from codemode_jupyter import serving
from codemode_jupyter.export import build_export

MiB = 1024 * 1024

__all__ = ["ServeMagics", "register", "unregister"]


def _names(text: str | None) -> list[str]:
    """``"a, b c"`` -> ``["a", "b", "c"]``."""
    if not text:
        return []
    return [part for part in text.replace(",", " ").split() if part]


@magics_class
class ServeMagics(Magics):
    """Serve this notebook's functions to MCP clients, or export them as a server script."""

    @no_var_expand
    @magic_arguments()
    @argument("--port", type=int, default=None, help="TCP port (default: a free one).")
    @argument(
        "--host",
        default="127.0.0.1",
        help="Interface to listen on (default 127.0.0.1: this machine only).",
    )
    @argument("--name", default=None, help="Server name clients show (default: notebook).")
    @argument("--search", action="store_true", help="Also serve the `search` tool.")
    @argument("--token", default=None, help="Bearer token clients must send (default: random).")
    @argument("--tools", metavar="A,B", help="Serve only these functions/namespaces.")
    @argument("--timeout", type=float, metavar="S", help="Time limit of one program, seconds.")
    @argument("--heap", type=float, metavar="MB", help="V8 heap limit of one program, MiB.")
    @argument("--max-runs", type=int, default=4, help="Programs running at once (default 4).")
    @argument(
        "--max-body",
        type=float,
        default=1.0,
        metavar="MB",
        help="Largest request body in MiB (default 1); larger ones get 413.",
    )
    @argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="Extra Host header accepted (repeatable), e.g. when serving on 0.0.0.0.",
    )
    @argument("--no-panel", action="store_true", help="Do not display the live panel.")
    @argument("--stop", action="store_true", help="Stop the server (the one on --port, or all).")
    @argument("--status", action="store_true", help="Show the running servers and requests.")
    @line_magic
    def codemode_serve(self, line: str) -> None:
        """Serve this notebook's functions as an MCP server (streamable HTTP) in the background.

        Agents call one tool, ``execute``, with a JavaScript program that calls the functions as
        ``await codemode.NAME({...})``. The functions update live: define or redefine one and
        the next request sees it (clients are told the tool list changed). Requests need the
        printed bearer token; every request shows up in the panel and in
        ``codemode_jupyter.serving.current().requests``.
        """
        args = parse_argstring(self.codemode_serve, line)
        if args.stop:
            self._stop(args.port)
            return
        if args.status:
            self._status()
            return
        server = self._start(args)
        self._announce(server)
        if server.panel is not None:
            from IPython.display import display

            display(server.panel)

    def _start(self, args: Any) -> serving.NotebookServer:
        timeout, heap = self._limits(args)
        if not math.isfinite(timeout) or timeout <= 0:
            raise UsageError("--timeout must be a positive, finite number of seconds")
        if not math.isfinite(heap) or heap < 4:
            raise UsageError("--heap must be a finite number of MiB, at least 4")
        if args.max_runs < 1:
            raise UsageError("--max-runs must be at least 1")
        if not math.isfinite(args.max_body) or args.max_body <= 0:
            raise UsageError("--max-body must be a positive, finite number of MiB")
        port = 0 if args.port is None else args.port
        if not 0 <= port <= 65535:
            raise UsageError(f"--port must be between 0 and 65535, not {port}")
        if args.token is not None and not args.token.strip():
            raise UsageError("--token must not be empty")
        wildcard = args.host in ("0.0.0.0", "::", "")
        if not serving.is_loopback(args.host):
            hosts = serving.allowed_hosts_for(args.host, args.allow_host)
            print(
                f"WARNING: listening on {args.host or '0.0.0.0'}: other machines that can reach "
                "this port may connect (they still need the token; traffic is plain HTTP, so "
                "use it only on a trusted network). Accepted Host headers: "
                + ", ".join(hosts)
                + ("; add others with --allow-host NAME" if wildcard else ""),
                file=sys.stderr,
            )
        wanted = _names(args.tools)
        if wanted:
            available, capabilities = serving.discover_tools(self.shell)
            known = set(available) | {c.namespace for c in capabilities}
            spaces = {n.split(".")[0] for n in known}
            unknown = [w for w in wanted if w.removeprefix("codemode.") not in known | spaces]
            if unknown:
                raise UsageError(
                    f"unknown tools: {', '.join(unknown)}. Available: "
                    + (", ".join(sorted(known)) or "(none)")
                )
        server = serving.NotebookServer(
            self.shell,
            name=args.name or "notebook",
            host=args.host,
            port=port,
            token=args.token,
            enable_search=args.search,
            tools=wanted,
            timeout_s=timeout,
            max_heap_bytes=int(heap * MiB),
            max_concurrent_runs=args.max_runs,
            max_body_bytes=int(args.max_body * MiB),
            allowed_hosts=args.allow_host,
        )
        panel = not args.no_panel and getattr(self.shell, "kernel", None) is not None
        try:
            server.start(panel=panel)
        except serving.PortInUseError as exc:
            raise UsageError(
                f"cannot serve on port {port}: {exc.strerror or exc}. Choose another --port, or "
                "leave --port out to get a free one."
            ) from None
        except (OSError, RuntimeError) as exc:
            where = f"{args.host}:{port}"
            raise UsageError(f"the MCP server could not start on {where}: {exc}") from None
        return server

    def _announce(self, server: serving.NotebookServer) -> None:
        names = server.tool_names
        print(
            f"codemode MCP server {server.name!r} is serving {len(names)} function(s): "
            + (", ".join(names) or "none yet (define some and they appear)")
        )
        print(f"  URL:    {server.url}")
        print(f"  Token:  {server.token}")
        print("MCP client configuration (mcpServers JSON):")
        print(json.dumps(server.client_config(), indent=2))
        print(f"Claude Code:  {server.claude_command()}")
        if server.skipped:
            print("Not served: " + "; ".join(server.skipped), file=sys.stderr)
        print("Functions update after every cell. Stop with %codemode_serve --stop.")

    def _stop(self, port: int | None) -> None:
        targets = [s for s in serving.running_servers() if port is None or s.port == port]
        if not targets:
            where = f" on port {port}" if port is not None else ""
            print(f"No codemode MCP server is running{where}.")
            return
        for server in targets:
            server.stop()
            print(
                f"Stopped {server.name!r} ({len(server.requests)} requests served); "
                f"port {server.port} is free."
            )

    def _status(self) -> None:
        servers = serving.running_servers()
        if not servers:
            print("No codemode MCP server is running (start one with %codemode_serve).")
        for server in servers:
            print(server.summary())
        log = serving.server_log()
        if log:
            print("Recent server warnings:\n  " + "\n  ".join(log[-10:]))

    @no_var_expand
    @magic_arguments()
    @argument("path", help="Where to write the server script (.py).")
    @argument("--tools", metavar="A,B", help="Only these functions (default: all discovered).")
    @argument("--name", default=None, help="Server name (default: the file's stem).")
    @argument("--search", action="store_true", help="Also serve the `search` tool.")
    @argument("--timeout", type=float, metavar="S", help="Time limit of one program, seconds.")
    @argument("--heap", type=float, metavar="MB", help="V8 heap limit of one program, MiB.")
    @argument(
        "--allow-fs",
        action="append",
        default=[],
        metavar="DIR",
        help="Enable codemode.fs on DIR in the script (repeatable).",
    )
    @argument(
        "--allow-env",
        action="append",
        default=[],
        metavar="KEY",
        help="Enable codemode.env for KEY in the script (repeatable).",
    )
    @argument(
        "--allow-http",
        action="append",
        default=[],
        metavar="HOST",
        help="Enable codemode.http for HOST in the script (repeatable).",
    )
    @line_magic
    def codemode_export(self, line: str) -> None:
        """Write the notebook's functions as a standalone, runnable MCP server script.

        The script holds each function's source plus what it needs from the notebook (imports,
        helper functions and classes, literal constants), the capabilities allowed in this
        notebook (``%codemode_allow``, plus ``--allow-*``), and a command line:
        ``python PATH [--transport stdio] [--host H] [--port P] [--token T]``.
        """
        args = parse_argstring(self.codemode_export, line)
        path = os.path.abspath(os.path.expanduser(args.path))
        wanted = _names(args.tools)
        functions, capabilities = serving.discover_tools(self.shell)
        if wanted:
            picked, _ = serving.discover_tools(self.shell, wanted)
            spaces = {n.split(".")[0] for n in functions}
            unknown = [w for w in wanted if w not in functions and w not in spaces]
            if unknown:
                raise UsageError(
                    f"unknown tools: {', '.join(unknown)}. Available: "
                    + (", ".join(sorted(functions)) or "(none)")
                )
            functions = picked
        if not functions:
            raise UsageError("no notebook functions to export: define some first")
        capabilities = list(capabilities) + self._extra_capabilities(args, capabilities)
        timeout, heap = self._limits(args)
        name = args.name or os.path.splitext(os.path.basename(path))[0] or "notebook"
        result = build_export(
            functions,
            self.shell.user_ns,
            capabilities,
            name=name,
            timeout_s=timeout,
            max_heap_bytes=int(heap * MiB),
            enable_search=args.search,
            script_name=os.path.basename(path),
        )
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(result.source)
        helpers = [d for d in result.definitions if d not in result.tools]
        print(f"Wrote {path}: {len(result.tools)} tool(s): {', '.join(result.tools) or 'none'}")
        if helpers:
            print(f"  with notebook helpers: {', '.join(helpers)}")
        if result.imports:
            print(f"  imports: {'; '.join(result.imports)}")
        if result.constants:
            print(f"  constants: {', '.join(result.constants)}")
        if capabilities:
            print(f"  capabilities: {', '.join(c.namespace for c in capabilities)}")
        print(f"Run it: python {args.path}   (or --transport stdio; --port, --host, --token)")
        for warning in result.warnings:
            print(f"WARNING: {warning}", file=sys.stderr)

    def _limits(self, args: Any) -> tuple[float, float]:
        """Timeout (s) and heap (MiB): the options, else the extension's settings (``%config
        CodeMode.timeout_s``), else the engine's defaults."""
        settings = serving.codemode_settings(self.shell)
        timeout = args.timeout if args.timeout is not None else _setting(settings, "timeout_s", 60)
        heap = args.heap if args.heap is not None else _setting(settings, "max_heap_mb", 16)
        return timeout, heap

    def _extra_capabilities(self, args: Any, existing: list[Any]) -> list[Any]:
        from codemode.capabilities.env import EnvCapability
        from codemode.capabilities.fs import FsCapability
        from codemode.capabilities.http import HttpCapability

        have = {c.namespace for c in existing}
        extra: list[Any] = []
        try:
            if args.allow_fs:
                if "fs" in have:
                    raise UsageError("fs is already allowed in this notebook (%codemode_allow)")
                extra.append(FsCapability([os.path.abspath(p) for p in args.allow_fs]))
            if args.allow_env:
                if "env" in have:
                    raise UsageError("env is already allowed in this notebook (%codemode_allow)")
                extra.append(EnvCapability(args.allow_env))
            if args.allow_http:
                if "http" in have:
                    raise UsageError("http is already allowed in this notebook (%codemode_allow)")
                extra.append(HttpCapability(args.allow_http))
        except (TypeError, ValueError, OSError) as exc:
            raise UsageError(f"invalid --allow-* option: {exc}") from None
        return extra


def _setting(settings: Any, name: str, default: float) -> float:
    value = getattr(settings, name, None) if settings is not None else None
    return float(value) if isinstance(value, int | float) else default


_registered: weakref.WeakKeyDictionary[Any, ServeMagics] = weakref.WeakKeyDictionary()


def register(ipython: Any) -> ServeMagics:
    """Add ``%codemode_serve`` and ``%codemode_export`` to ``ipython`` (once)."""
    magics = _registered.get(ipython)
    if magics is None:
        magics = ServeMagics(shell=ipython)
        ipython.register_magics(magics)
        _registered[ipython] = magics
    return magics


def unregister(ipython: Any) -> None:
    """Stop this shell's servers and remove the magics."""
    for server in serving.running_servers():
        if server.shell is ipython:
            server.stop()
    magics = _registered.pop(ipython, None)
    if magics is None:
        return
    manager = ipython.magics_manager
    for kind, names in magics.magics.items():
        table = manager.magics.get(kind, {})
        for name in names:
            table.pop(name, None)
    if manager.registry.get(type(magics).__name__) is magics:
        del manager.registry[type(magics).__name__]
    configurables = getattr(ipython, "configurables", [])
    if magics in configurables:
        configurables.remove(magics)
