"""``%%codemode`` and its companions, and the ``CodeMode`` configurable that holds their settings.

Subclassing ``Magics`` registers the instance in ``shell.configurables`` under the class name, so
``%config CodeMode.timeout_s = 10`` and ``c.CodeMode.timeout_s = 10`` in ``ipython_config.py``
both work. Input mistakes raise ``UsageError`` (no traceback); a failed program raises
:class:`CodeModeError`, which marks the cell failed like any Python error.
"""

from __future__ import annotations

import keyword
import math
import os
from collections.abc import Sequence
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, Enum, Float, Int, List, TraitError, Unicode, validate

from codemode.capabilities.base import Capability
from codemode.capabilities.env import EnvCapability
from codemode.capabilities.fs import FsCapability
from codemode.capabilities.http import HttpCapability
from codemode_jupyter.errors import CodeModeError
from codemode_jupyter.presenters import Presenter, TextPresenter, WidgetPresenter
from codemode_jupyter.record import FAILED, RunRecord
from codemode_jupyter.runner import last_run, run_program
from codemode_jupyter.tools import notebook_tools
from codemode_jupyter.toolset import Toolset, split_names

MiB = 1024 * 1024
KINDS = ("fs", "env", "http")


class StubsText(str):
    """TypeScript declarations that display as highlighted code in notebooks."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_markdown_(self) -> str:
        return f"```typescript\n{self}```"


@magics_class
class CodeMode(Magics):
    """Code Mode in notebooks: run JavaScript that calls this notebook's Python functions."""

    timeout_s = Float(60.0, help="Wall-clock limit of one run, in seconds.").tag(config=True)
    max_heap_mb = Float(16.0, help="V8 heap limit of one run, in MiB (at least 4).").tag(
        config=True
    )
    inline_sync = Bool(
        False, help="Run every sync host function on the isolate's thread (faster, serial)."
    ).tag(config=True)
    quiet = Bool(False, help="Plain-text output only (no widget, no trace).").tag(config=True)
    display_mode = Enum(
        ["auto", "widget", "text"],
        "auto",
        help="auto: a widget in Jupyter front ends, plain text in terminals.",
    ).tag(config=True)
    max_widget_rows = Int(200, help="Host calls listed in the widget; more are summarised.").tag(
        config=True
    )
    max_widget_logs = Int(1000, help="Console lines kept in the widget (the latest ones).").tag(
        config=True
    )
    auto_discover = Bool(
        True, help="Expose the notebook's public functions without @codemode_jupyter.tool."
    ).tag(config=True)
    fs_allowed_paths = List(
        Unicode(), help="Directories codemode.fs may read and write (empty: fs is off)."
    ).tag(config=True)
    fs_read_only = Bool(False, help="Make codemode.fs read-only.").tag(config=True)
    env_allowed_keys = List(
        Unicode(), help="Environment variables codemode.env may read (empty: env is off)."
    ).tag(config=True)
    http_allowed_hosts = List(
        Unicode(), help="Hosts codemode.http may reach (empty: http is off)."
    ).tag(config=True)

    @validate("timeout_s")
    def _check_timeout(self, proposal: Any) -> float:
        if not math.isfinite(proposal["value"]) or proposal["value"] <= 0:
            raise TraitError("timeout_s must be a positive, finite number of seconds")
        return float(proposal["value"])

    @validate("max_heap_mb")
    def _check_heap(self, proposal: Any) -> float:
        if not math.isfinite(proposal["value"]) or proposal["value"] < 4:
            raise TraitError("max_heap_mb must be a finite number, at least 4")
        return float(proposal["value"])

    # ------------------------------------------------------------ what a run can call

    def capabilities(self) -> list[Capability]:
        """The capabilities switched on by the allowlists (all empty: none)."""
        caps: list[Capability] = []
        try:
            if self.fs_allowed_paths:
                caps.append(FsCapability(list(self.fs_allowed_paths), read_only=self.fs_read_only))
            if self.env_allowed_keys:
                caps.append(EnvCapability(list(self.env_allowed_keys)))
            if self.http_allowed_hosts:
                caps.append(HttpCapability(list(self.http_allowed_hosts)))
        except (TypeError, ValueError, OSError) as exc:
            raise UsageError(f"invalid CodeMode capability setting: {exc}") from None
        return caps

    def toolset(self, tools: str | Sequence[str] | None = None) -> Toolset:
        """What the next cell can call, discovered now (optionally narrowed by ``--tools``)."""
        shell = self.shell
        namespace = shell.user_ns if shell is not None else {}
        hidden = getattr(shell, "user_ns_hidden", {}) if shell is not None else {}
        fns = notebook_tools(namespace, hidden, auto=self.auto_discover)
        toolset = Toolset(fns, self.capabilities())
        names = split_names(tools) if isinstance(tools, str) or tools is None else list(tools)
        if names:
            try:
                toolset = toolset.restrict(names)
            except ValueError as exc:
                asked = {n.split(".")[0] for n in names}
                off = sorted(asked & set(KINDS) - set(toolset.namespaces()))
                hint = f" ({', '.join(off)}: switch on with %codemode_allow first)" if off else ""
                raise UsageError(f"{exc}{hint}") from None
        return toolset

    def allow(self, kind: str, values: Sequence[str]) -> None:
        """Add to a capability's allowlist, validating it first (``UsageError`` if invalid)."""
        if kind not in KINDS:
            raise UsageError(f"unknown capability {kind!r}: use one of {', '.join(KINDS)}")
        if not values:
            raise UsageError(f"say what to allow, e.g. %codemode_allow {kind} {_EXAMPLES[kind]}")
        trait = _TRAITS[kind]
        new = [os.path.abspath(os.path.expanduser(v)) if kind == "fs" else v for v in values]
        merged = list(getattr(self, trait))
        merged.extend(v for v in new if v not in merged)
        try:
            _FACTORIES[kind](merged)
        except (TypeError, ValueError, OSError) as exc:
            raise UsageError(f"cannot allow {kind} {' '.join(values)}: {exc}") from None
        setattr(self, trait, merged)

    def revoke(self, kind: str | None = None) -> None:
        """Clear one allowlist (or all): the capability is off again."""
        for each in KINDS if kind is None else (kind,):
            if each not in KINDS:
                raise UsageError(f"unknown capability {each!r}: use one of {', '.join(KINDS)}")
            setattr(self, _TRAITS[each], [])

    # ------------------------------------------------------------ magics

    @no_var_expand
    @magic_arguments()
    @argument("-o", "--out", metavar="NAME", help="Store the result in this variable.")
    @argument("--timeout", type=float, metavar="S", help="Time limit in seconds for this cell.")
    @argument("--heap", type=float, metavar="MB", help="V8 heap limit in MiB for this cell.")
    @argument(
        "--tools",
        metavar="NAMES",
        help="Only these tools are callable (names, capability namespaces or ns.fn).",
    )
    @argument("--quiet", action="store_true", help="Plain-text output only.")
    @cell_magic
    def codemode(self, line: str, cell: str) -> Any:
        """Run the cell as JavaScript in a fresh V8 isolate.

        ``await codemode.NAME({kw: ...})`` calls the notebook's public functions (and those
        registered with ``@codemode_jupyter.tool``); ``codemode.fs``/``env``/``http`` exist once
        allowed with ``%codemode_allow``. The program's value (``return`` or last expression) is
        the cell's result: ``_``, ``Out[n]`` and ``-o NAME`` hold it, and
        ``codemode_jupyter.last_run()`` the whole run (logs, calls, timings, stubs).
        """
        args = parse_argstring(self.codemode, line)
        timeout = self.timeout_s if args.timeout is None else args.timeout
        heap = self.max_heap_mb if args.heap is None else args.heap
        if not math.isfinite(timeout) or timeout <= 0:
            raise UsageError(
                f"--timeout must be a positive, finite number of seconds, not {timeout}"
            )
        if not math.isfinite(heap) or heap < 4:
            raise UsageError(f"--heap must be a finite number of MiB, at least 4, not {heap}")
        if args.out is not None:
            self._check_out_name(str(args.out))
        toolset = self.toolset(args.tools)
        widgets = self._use_widgets(args.quiet)
        presenter: Presenter
        if widgets:
            presenter = WidgetPresenter(
                max_rows=self.max_widget_rows, max_logs=self.max_widget_logs
            )
        else:
            presenter = TextPresenter(quiet=args.quiet or self.quiet)
        record = run_program(
            cell,
            toolset,
            presenter,
            timeout_s=timeout,
            max_heap_bytes=int(heap * MiB),
            inline_sync=self.inline_sync,
            cell=self._cell_number(),
            widget_rows=self.max_widget_rows,
            widget_logs=self.max_widget_logs,
        )
        if record.status == FAILED:
            raise CodeModeError(record)
        if args.out:
            self.shell.user_ns[args.out] = record.result
        if not widgets:
            return record.result
        self._set_cell_value(record.result)
        return None

    @magic_arguments()
    @argument("--tools", metavar="NAMES", help="Only these tools (as for %%codemode --tools).")
    @line_magic
    def codemode_stubs(self, line: str) -> StubsText:
        """Show the TypeScript declarations of what the next ``%%codemode`` cell can call."""
        args = parse_argstring(self.codemode_stubs, line)
        return StubsText(self.toolset(args.tools).stubs())

    @magic_arguments()
    @argument("kind", nargs="?", help="fs, env or http.")
    @argument("values", nargs="*", help="Directories (fs), variable names (env), hosts (http).")
    @argument("--clear", action="store_true", help="Switch the capability (or all) off again.")
    @line_magic
    def codemode_allow(self, line: str) -> None:
        """Let ``%%codemode`` cells use a capability: ``%codemode_allow fs ./data``,
        ``%codemode_allow http api.example.com``, ``%codemode_allow env USER``.

        Without arguments, shows what is allowed. Nothing is allowed by default.
        """
        args = parse_argstring(self.codemode_allow, line)
        if args.clear:
            self.revoke(args.kind)
        elif args.kind:
            self.allow(args.kind, args.values)
        for kind in KINDS:
            values = getattr(self, _TRAITS[kind])
            print(f"{kind}: {', '.join(values) if values else '(off)'}")

    @line_magic
    def codemode_last(self, line: str) -> RunRecord | None:
        """The last ``%%codemode`` run: result, logs, calls with timings, error, code, stubs."""
        record = last_run()
        if record is None:
            raise UsageError("no %%codemode cell has run yet")
        return record

    # ------------------------------------------------------------ helpers

    def _use_widgets(self, quiet: bool) -> bool:
        if quiet or self.quiet or self.display_mode == "text":
            return False
        if self.display_mode == "widget":
            return True
        return getattr(self.shell, "kernel", None) is not None

    def _check_out_name(self, name: str) -> None:
        """Refuse ``-o`` names that cannot hold a value, or whose value keeps the shell working
        (``-o __builtins__`` would break every later cell, ``-o Out`` the output history)."""
        if not name.isidentifier() or keyword.iskeyword(name):
            raise UsageError(f"-o/--out needs a variable name, not {name!r}")
        hidden = getattr(self.shell, "user_ns_hidden", {}) or {}
        if (name.startswith("__") and name.endswith("__")) or name in hidden:
            raise UsageError(
                f"-o/--out {name!r} would replace a name the notebook itself needs; "
                "choose another variable name"
            )

    def _cell_number(self) -> int | None:
        count = getattr(self.shell, "execution_count", None)
        return count if isinstance(count, int) else None

    def _set_cell_value(self, value: Any) -> None:
        """Make the result the cell's value (``_``, ``Out[n]``) without displaying it twice:
        the widget already shows it."""
        if value is None:
            return
        hook = getattr(self.shell, "displayhook", None)
        if hook is None:
            return
        try:
            hook.update_user_ns(value)
            hook.fill_exec_result(value)
        except Exception:  # noqa: BLE001 - a custom displayhook; the value is in last_run()
            pass


_TRAITS = {"fs": "fs_allowed_paths", "env": "env_allowed_keys", "http": "http_allowed_hosts"}
_EXAMPLES = {"fs": "./data", "env": "USER", "http": "api.example.com"}
_FACTORIES: dict[str, Any] = {
    "fs": FsCapability,
    "env": EnvCapability,
    "http": HttpCapability,
}
