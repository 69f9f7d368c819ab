"""Magic-level tests of the notebook extension in an in-process IPython shell (no kernel, fast).

Without a kernel the magic picks plain-text output, so these tests see what a terminal user sees;
the widget and the real kernel are covered by test_widgets.py, test_notebook_e2e.py and
test_completion.py.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.completer import provisionalcompleter
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import MAGIC_NO_VAR_EXPAND_ATTR

import codemode_jupyter
from codemode_jupyter import CodeMode, CodeModeError
from codemode_jupyter.completion import MATCHER_ID
from codemode_jupyter.tools import forget

ANSI = re.compile(r"\x1b\[[0-9;]*m")

NOTEBOOK_FUNCTIONS = '''
import math
import json as _json

def add(a: int, b: int) -> int:
    """Add two numbers."""
    print("adding", a, b)
    return a + b

async def twice(x: int) -> int:
    return 2 * x

def explode(reason: str) -> None:
    raise ValueError(reason)

triple = lambda x: 3 * x

class Helper:
    pass

def _private() -> int:
    return 1
'''


@pytest.fixture(scope="module")
def shell() -> InteractiveShell:
    ip = InteractiveShell.instance()
    return ip


@pytest.fixture
def ip(shell: InteractiveShell) -> Iterator[InteractiveShell]:
    """The shell with the extension loaded and the notebook's functions defined."""
    shell.run_cell("%load_ext codemode_jupyter", store_history=False)
    shell.run_cell(NOTEBOOK_FUNCTIONS, store_history=False)
    yield shell
    magics = _magics(shell)
    magics.revoke()
    magics.display_mode = "auto"
    magics.quiet = False
    shell.run_cell("%unload_ext codemode_jupyter", store_history=False)
    for name in ("add", "twice", "explode", "triple", "Helper", "_private", "late"):
        shell.user_ns.pop(name, None)


def _magics(ip: InteractiveShell) -> CodeMode:
    found = [c for c in ip.configurables if isinstance(c, CodeMode)]
    assert len(found) == 1
    return found[0]


def run(ip: InteractiveShell, code: str) -> Any:
    """Run a cell; Python errors in it fail the test, and its result is returned."""
    result = ip.run_cell(code, store_history=True)
    if result.error_before_exec is not None:
        raise result.error_before_exec
    if result.error_in_exec is not None:
        raise result.error_in_exec
    return result.result


# ---------------------------------------------------------------- loading and options


def test_load_both_names_twice_and_unload_cleanly(shell: InteractiveShell) -> None:
    completer_before = list(shell.Completer.custom_matchers)
    shell.run_cell("%load_ext codemode", store_history=False)
    shell.run_cell("%load_ext codemode_jupyter", store_history=False)
    shell.run_cell("%load_ext codemode_jupyter", store_history=False)
    assert shell.find_cell_magic("codemode") is not None
    for name in ("codemode_stubs", "codemode_allow", "codemode_last"):
        assert shell.find_line_magic(name) is not None
    assert len([c for c in shell.configurables if isinstance(c, CodeMode)]) == 1
    ids = [getattr(m, "matcher_identifier", "") for m in shell.Completer.custom_matchers]
    assert ids.count(MATCHER_ID) == 1
    assert "object_inspect_mime" in shell.__dict__

    shell.run_cell("%unload_ext codemode", store_history=False)
    assert not {"codemode", "codemode_jupyter"} & shell.extension_manager.loaded
    assert shell.find_cell_magic("codemode") is None
    assert shell.find_line_magic("codemode_stubs") is None
    assert "CodeMode" not in shell.magics_manager.registry
    assert not [c for c in shell.configurables if isinstance(c, CodeMode)]
    assert shell.Completer.custom_matchers == completer_before
    assert "object_inspect_mime" not in shell.__dict__


def test_config_traits_and_help(ip: InteractiveShell) -> None:
    magics = _magics(ip)
    run(ip, "%config CodeMode.timeout_s = 7")
    assert magics.timeout_s == 7.0
    for trait in ("timeout_s", "max_heap_mb", "inline_sync", "quiet", "max_widget_rows",
                  "fs_allowed_paths", "env_allowed_keys", "http_allowed_hosts"):
        assert magics.trait_metadata(trait, "config") is True
    assert magics.fs_allowed_paths == [] and magics.env_allowed_keys == []
    assert magics.http_allowed_hosts == []
    with pytest.raises(Exception, match="at least 4"):
        magics.max_heap_mb = 1
    magics.timeout_s = 60
    doc = ip.find_cell_magic("codemode").__doc__ or ""
    for option in ("--out", "--timeout", "--heap", "--tools", "--quiet"):
        assert option in doc
    assert getattr(ip.find_cell_magic("codemode"), MAGIC_NO_VAR_EXPAND_ATTR, False)


def test_config_from_the_shell_config_file(shell: InteractiveShell) -> None:
    shell.config.CodeMode.timeout_s = 3.5
    try:
        shell.run_cell("%load_ext codemode_jupyter", store_history=False)
        assert _magics(shell).timeout_s == 3.5
    finally:
        del shell.config["CodeMode"]
        shell.run_cell("%unload_ext codemode_jupyter", store_history=False)


def test_bad_options_are_usage_errors(ip: InteractiveShell) -> None:
    for line in ("--timeout 0", "--heap 1", "--tools nope", "-o 1x", "--bogus"):
        with pytest.raises(UsageError):
            ip.run_cell_magic("codemode", line, "return 1")
    with pytest.raises(UsageError, match="Callable: add"):
        ip.run_cell_magic("codemode", "--tools add,nope", "return 1")


def test_no_variable_expansion_on_the_magic_line(ip: InteractiveShell) -> None:
    ip.user_ns["name"] = "zzz"
    # With expansion, {name} would become zzz (a valid variable name).
    with pytest.raises(UsageError, match="variable name"):
        run(ip, "%%codemode -o {name}\nreturn 1")
    assert "zzz" not in ip.user_ns


# ---------------------------------------------------------------- running


def test_result_is_the_cell_value_and_out(ip: InteractiveShell, capsys: Any) -> None:
    value = run(
        ip,
        "%%codemode -o total\n"
        "const x = await codemode.add({a: 1, b: 2});\n"
        "console.log('x is', x);\n"
        "return {x, y: await codemode.twice({x: 4}), z: await codemode.triple({x: 5})};",
    )
    assert value == {"x": 3, "y": 8, "z": 15}
    assert ip.user_ns["total"] == value
    assert ip.user_ns["_"] == value
    out = capsys.readouterr().out
    assert "x is 3" in out and "Out[" in out


def test_widget_mode_sets_the_cell_value_without_a_second_display(
    ip: InteractiveShell, capsys: Any
) -> None:
    run(ip, "%config CodeMode.display_mode = 'widget'")
    result = ip.run_cell("%%codemode\nreturn {answer: 42}", store_history=True)
    assert result.error_in_exec is None and result.result == {"answer": 42}
    assert ip.user_ns["_"] == {"answer": 42}
    assert ip.user_ns["Out"][result.execution_count] == {"answer": 42}
    out = capsys.readouterr().out
    assert "codemode" in out and "Out[" not in out  # the widget (here its text) is the output


def test_discovery_rules(ip: InteractiveShell) -> None:
    names = set(codemode_jupyter.available_tools())
    assert {"add", "twice", "explode", "triple"} <= names
    for hidden in ("Helper", "_private", "math", "_json", "get_ipython", "exit", "quit"):
        assert hidden not in names
    assert "display" not in names


def test_names_special_on_javascript_objects_are_never_exposed(ip: InteractiveShell) -> None:
    run(ip, "def then(resolve):\n    return 1\ndef constructor() -> int:\n    return 2")
    try:
        names = set(codemode_jupyter.available_tools())
        assert "then" not in names and "constructor" not in names
        # a `then` tool would make `codemode` a thenable: awaiting it must stay harmless
        assert run(ip, "%%codemode\nconst c = await codemode;\nreturn typeof c.add;") == "function"
        for name in ("then", "constructor", "__proto__", "math.__proto__"):
            with pytest.raises(ValueError, match="special meaning"):
                codemode_jupyter.tool(len, name=name)
    finally:
        ip.user_ns.pop("then", None)
        ip.user_ns.pop("constructor", None)


def test_redefinition_takes_effect_at_the_next_run(ip: InteractiveShell) -> None:
    assert run(ip, "%%codemode\nreturn await codemode.triple({x: 2})") == 6
    run(ip, "def triple(x: int) -> int:\n    return 30 * x")
    assert run(ip, "%%codemode\nreturn await codemode.triple({x: 2})") == 60
    run(ip, "def late(y: int) -> int:\n    return y + 1")
    assert run(ip, "%%codemode\nreturn await codemode.late({y: 1})") == 2


def test_tool_decorator_names_inline_and_imports(ip: InteractiveShell) -> None:
    import textwrap

    try:
        codemode_jupyter.tool(textwrap.dedent, name="text.dedent")
        run(
            ip,
            "import codemode_jupyter\n"
            "@codemode_jupyter.tool(name='fast', inline=True)\n"
            "def quick(n: int) -> int:\n    return n + 100",
        )
        names = set(codemode_jupyter.available_tools())
        assert {"text.dedent", "fast"} <= names and "quick" not in names
        value = run(
            ip,
            "%%codemode\n"
            "return [await codemode.fast({n: 1}), await codemode.text.dedent({text: '  a'})]",
        )
        assert value == [101, "a"]
        assert codemode_jupyter.last_run().calls[0].name == "fast"
    finally:
        forget("text.dedent")
        forget("fast")
        ip.user_ns.pop("quick", None)


def test_tools_option_restricts(ip: InteractiveShell) -> None:
    value = run(
        ip,
        "%%codemode --tools add\n"
        "try { await codemode.twice({x: 1}); return 'called'; }\n"
        "catch (e) { return e.message; }",
    )
    assert "not a function" in value and "Available: add" in value
    assert codemode_jupyter.last_run().tools == ["add"]


def test_failure_raises_with_js_traceback_and_keeps_console(ip: InteractiveShell) -> None:
    result = ip.run_cell(
        "%%codemode\nconsole.log('before');\nconst x = 1;\nnull.foo;\n", store_history=True
    )
    error = result.error_in_exec
    assert isinstance(error, CodeModeError)
    assert error.details.line == 3 and error.details.name == "TypeError"
    text = ANSI.sub("", "\n".join(error._render_traceback_()))
    assert "CodeModeError: TypeError: Cannot read properties of null" in text
    assert "--> 3 | null.foo;" in text and "cell-" in text
    record = codemode_jupyter.last_run()
    assert record.status == "failed" and [str(line) for line in record.logs] == ["before"]
    assert run(ip, "%%codemode\nreturn 'still alive'") == "still alive"


def test_host_function_errors_are_traced(ip: InteractiveShell) -> None:
    value = run(
        ip,
        "%%codemode\ntry { await codemode.explode({reason: 'boom'}); }\n"
        "catch (e) { return [e.name, e.message]; }",
    )
    assert value[0] == "ToolError" and "ValueError: boom" in value[1]
    call = codemode_jupyter.last_run().calls[0]
    assert call.name == "explode" and call.arguments == {"reason": "boom"}
    assert call.error_type == "ValueError" and call.duration is not None
    with pytest.raises(CodeModeError, match="boom"):
        ip.run_cell_magic("codemode", "", "await codemode.explode({reason: 'boom'})")
    assert "explode" in ANSI.sub("", "\n".join(
        CodeModeError(codemode_jupyter.last_run())._render_traceback_()))


def test_print_in_host_functions_is_captured_in_order(ip: InteractiveShell) -> None:
    run(
        ip,
        "%%codemode\nconsole.log('one');\nawait codemode.add({a: 1, b: 2});\n"
        "console.log('three');\nawait codemode.add({a: 3, b: 4});",
    )
    logs = codemode_jupyter.last_run().logs
    assert [(line.level, str(line)) for line in logs] == [
        ("log", "one"), ("stdout", "adding 1 2"), ("log", "three"), ("stdout", "adding 3 4"),
    ]


def test_quiet_prints_console_only(ip: InteractiveShell, capsys: Any) -> None:
    run(ip, "%%codemode --quiet\nconsole.log('hello'); await codemode.add({a: 1, b: 1});")
    out = capsys.readouterr().out
    assert "hello" in out and "adding 1 1" in out
    assert "codemode ✓" not in out and "#1 add" not in out


def test_text_output_has_summary_and_trace(ip: InteractiveShell, capsys: Any) -> None:
    run(ip, "%%codemode\nconsole.warn('careful'); return await codemode.add({a: 2, b: 2});")
    out = capsys.readouterr().out
    assert "[warn] careful" in out
    assert "codemode ✓ done" in out and "1 call" in out and '#1 add({"a":2,"b":2}) -> 4' in out


def test_timeout_and_heap_limits_fail_and_kernel_survives(ip: InteractiveShell) -> None:
    started = time.perf_counter()
    with pytest.raises(CodeModeError, match="did not finish within 0.5 s"):
        ip.run_cell_magic("codemode", "--timeout 0.5", "console.log('spin'); while (true) {}")
    assert time.perf_counter() - started < 5
    assert [str(line) for line in codemode_jupyter.last_run().logs] == ["spin"]
    with pytest.raises(CodeModeError) as info:
        ip.run_cell_magic(
            "codemode", "", "const a = []; while (true) a.push(new Array(100000).fill(1.5));"
        )
    assert info.value.details.kind == "memory"
    assert run(ip, "%%codemode\nreturn 1 + 1") == 2


def test_interrupt_stops_a_busy_loop(ip: InteractiveShell) -> None:
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    started = time.perf_counter()
    timer.start()
    try:
        result = ip.run_cell("%%codemode --timeout 30\nwhile (true) {}", store_history=False)
    finally:
        timer.cancel()
    elapsed = time.perf_counter() - started
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert elapsed < 1.5
    assert codemode_jupyter.last_run().status == "interrupted"
    assert run(ip, "%%codemode\nreturn 'next'") == "next"


def test_last_run_is_complete(ip: InteractiveShell) -> None:
    code = "await codemode.add({a: 5, b: 6});\nreturn 'done'"
    run(ip, "%%codemode\n" + code)
    record = run(ip, "%codemode_last")
    assert record is codemode_jupyter.last_run()
    assert record.ok and record.result == "done" and record.code.rstrip() == code
    assert record.call_count == 1 and record.calls[0].result == 11
    assert record.calls[0].started >= 0 and record.calls[0].duration >= 0
    assert "function add(args: { a: number; b: number }): Promise<number>;" in record.stubs
    assert record.duration > 0 and record.error is None
    assert "codemode ✓ done" in record._repr_html_()


def test_stubs_magic(ip: InteractiveShell) -> None:
    stubs = run(ip, "%codemode_stubs")
    assert "declare namespace codemode" in stubs and "function add(" in stubs
    assert "Helper" not in stubs
    only = run(ip, "%codemode_stubs --tools twice")
    assert "function twice(" in only and "function add(" not in only
    assert stubs._repr_markdown_().startswith("```typescript")


def test_capabilities_are_off_until_allowed(ip: InteractiveShell, tmp_path: Path) -> None:
    (tmp_path / "note.txt").write_text("hello file")
    assert run(ip, "%%codemode\nreturn 'fs' in codemode") is False
    with pytest.raises(CodeModeError, match="not a function"):
        ip.run_cell_magic("codemode", "", "await codemode.fs.read({path: 'note.txt'})")
    run(ip, f"%codemode_allow fs {tmp_path}")
    assert run(ip, "%%codemode\nreturn await codemode.fs.read({path: 'note.txt'})") == "hello file"
    assert "fs.read" in codemode_jupyter.available_tools()
    only_read = run(ip, "%%codemode --tools fs.read\nreturn Object.keys(codemode.fs)")
    assert only_read == ["read"]
    with pytest.raises(UsageError):
        run(ip, "%codemode_allow fs " + str(tmp_path / "note.txt"))
    with pytest.raises(UsageError):
        run(ip, "%codemode_allow ftp example.com")
    codemode_jupyter.allow("env", "HOME")
    codemode_jupyter.allow("http", "api.example.com")
    magics = _magics(ip)
    assert magics.env_allowed_keys == ["HOME"]
    assert magics.http_allowed_hosts == ["api.example.com"]
    run(ip, "%codemode_allow --clear fs")
    assert magics.fs_allowed_paths == [] and "fs.read" not in codemode_jupyter.available_tools()
    codemode_jupyter.revoke()
    assert magics.env_allowed_keys == [] and magics.http_allowed_hosts == []


# ---------------------------------------------------------------- completion and inspection


def _complete(ip: InteractiveShell, text: str) -> list[str]:
    with provisionalcompleter():
        return [c.text for c in ip.Completer.completions(text, len(text))]


def test_completion_in_codemode_cells(ip: InteractiveShell, tmp_path: Path) -> None:
    assert _complete(ip, "%%codemode\nawait codemode.") == ["add", "explode", "triple", "twice"]
    assert _complete(ip, "%%codemode\nawait codemode.tw") == ["twice"]
    assert _complete(ip, "%%codemode --tools add\nawait codemode.") == ["add"]
    codemode_jupyter.allow("fs", str(tmp_path))
    assert "fs" in _complete(ip, "%%codemode\nawait codemode.")
    assert "read" in _complete(ip, "%%codemode\nawait codemode.fs.")
    # Not a codemode cell: Python completion as usual.
    assert "codemode_jupyter" not in _complete(ip, "x = codemode.")


def test_inspection_of_codemode_names(ip: InteractiveShell) -> None:
    bundle = ip.object_inspect_mime("codemode.add")
    text = bundle["text/plain"]
    assert "function add(args: { a: number; b: number }): Promise<number>;" in text
    assert "Add two numbers." in text and "text/html" in bundle
    with pytest.raises(KeyError):
        ip.object_inspect_mime("codemode.nothing_here")
    assert "Signature" in ANSI.sub("", ip.object_inspect_mime("add")["text/plain"])
