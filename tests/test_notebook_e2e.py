"""End to end: notebooks built here, executed in a real ipykernel by nbclient, outputs and saved
widget state checked. One notebook runs with ``allow_errors`` (to see rendered tracebacks and the
kernel carrying on); a second one checks that a failing cell stops execution like Python does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[1]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
STATE_MIME = "application/vnd.jupyter.widget-state+json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

FUNCTIONS = '''
import codemode_jupyter

def add(a: int, b: int) -> int:
    """Add two numbers."""
    print(f"adding {a} and {b}")
    return a + b

def explode(reason: str) -> None:
    raise ValueError(reason)
'''

CELLS = [
    "%load_ext codemode",
    FUNCTIONS,
    # 2: a successful run with console, print(), a caught tool error and a result
    "%%codemode -o summary\n"
    "console.log('start');\n"
    "const x = await codemode.add({a: 1, b: 2});\n"
    "console.warn('x is', x);\n"
    "let caught = null;\n"
    "try { await codemode.explode({reason: 'bad input'}); } catch (e) { caught = e.message; }\n"
    "console.log('end');\n"
    "return {x, caught, list: [1, 2, 3]};",
    # 3: the result is the cell's value
    "print(summary == _, summary['x'], codemode_jupyter.last_run().calls[0].result)",
    # 4: a failing program (line 3 of the body)
    "%%codemode\nconsole.log('about to fail');\nconst y = {};\ny.missing.field;",
    "print('after failure')",
    # 6: a timeout
    "%%codemode --timeout 0.5\nconsole.log('spinning');\nwhile (true) {}",
    "print('after timeout')",
    # 8: plain text only
    "%%codemode --quiet\nconsole.log('quiet line');\nreturn 42;",
    "%codemode_stubs",
]




def _notebook(cells: list[str]) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    return nb


@pytest.fixture(scope="module")
def executed(kernel_env: None, tmp_path_factory: pytest.TempPathFactory) -> Any:
    nb = _notebook(CELLS)
    workdir = tmp_path_factory.mktemp("notebook")
    client = NotebookClient(
        nb, kernel_name="python3", timeout=60, store_widget_state=True, allow_errors=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    nbformat.validate(nb)
    return nb


def _widget_state(nb: Any, cell: Any) -> dict[str, Any]:
    views = [o for o in cell.outputs if o.get("data", {}).get(WIDGET_MIME)]
    assert len(views) == 1, "exactly one widget per cell"
    model_id = views[0]["data"][WIDGET_MIME]["model_id"]
    return nb.metadata["widgets"][STATE_MIME]["state"][model_id]["state"]


def _stream(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o["output_type"] == "stream")


def test_successful_run_saves_full_widget_state(executed: Any) -> None:
    cell = executed.cells[2]
    state = _widget_state(executed, cell)
    assert state["status"] == "done" and state["call_count"] == 2 and state["failed_count"] == 1
    assert json.loads(state["result"]) == {
        "x": 3, "caught": "codemode.explode() raised ValueError: bad input", "list": [1, 2, 3],
    }
    rows = state["calls"]
    assert [row["name"] for row in rows] == ["add", "explode"]
    assert rows[0]["args"] == '{"a":1,"b":2}' and rows[0]["result"] == "3"
    assert rows[1]["error_type"] == "ValueError" and "bad input" in rows[1]["error"]
    assert all(row["duration"] is not None and row["start"] >= 0 for row in rows)
    # print() inside the host function lands in the console, in order.
    assert [entry[1:] for entry in state["logs"]] == [
        ["log", "start"], ["stdout", "adding 1 and 2"], ["warn", "x is 3"], ["log", "end"],
    ]
    assert "function add(args: { a: number; b: number }): Promise<number>;" in state["stubs"]
    assert "function explode(" in state["stubs"] and state["tools"] == ["add", "explode"]
    assert not [o for o in cell.outputs if o["output_type"] == "stream"], "nothing leaks"


def test_text_and_html_fallbacks_are_saved(executed: Any) -> None:
    data = next(o for o in executed.cells[2].outputs if o.get("data", {}).get(WIDGET_MIME))["data"]
    plain, page = data["text/plain"], data["text/html"]
    assert plain.startswith("codemode ✓ done") and "2 calls (1 failed)" in plain
    assert "[stdout] adding 1 and 2" in plain and "#2 explode(" in plain
    assert "Console (4 lines)" in page and "adding 1 and 2" in page and "<table>" in page
    assert "bad input" in page and "&quot;list&quot;" in page


def test_result_is_the_cell_value(executed: Any) -> None:
    assert _stream(executed.cells[3]).strip() == "True 3 3"


def test_failure_renders_a_javascript_traceback_and_the_kernel_goes_on(executed: Any) -> None:
    cell = executed.cells[4]
    errors = [o for o in cell.outputs if o["output_type"] == "error"]
    assert len(errors) == 1 and errors[0]["ename"] == "CodeModeError"
    assert "TypeError: Cannot read properties of undefined" in errors[0]["evalue"]
    text = ANSI.sub("", "\n".join(errors[0]["traceback"]))
    assert "--> 3 | y.missing.field;" in text
    # The stack names the cell's own line 3 (the file is named after the execution count).
    assert re.search(r"cell-\d+\.js:3:\d+", text), text
    state = _widget_state(executed, cell)
    assert state["status"] == "failed" and state["error"]["line"] == 3
    assert [entry[2] for entry in state["logs"]] == ["about to fail"]
    assert _stream(executed.cells[5]).strip() == "after failure"


def test_timeout_fails_the_cell_and_keeps_the_console(executed: Any) -> None:
    cell = executed.cells[6]
    error = next(o for o in cell.outputs if o["output_type"] == "error")
    assert "did not finish within 0.5 s" in error["evalue"]
    assert [entry[2] for entry in _widget_state(executed, cell)["logs"]] == ["spinning"]
    assert _stream(executed.cells[7]).strip() == "after timeout"


def test_quiet_is_plain_text(executed: Any) -> None:
    cell = executed.cells[8]
    assert not [o for o in cell.outputs if WIDGET_MIME in o.get("data", {})]
    assert _stream(cell).strip() == "quiet line"
    result = next(o for o in cell.outputs if o["output_type"] == "execute_result")
    assert result["data"]["text/plain"] == "42"


def test_stubs_magic_output(executed: Any) -> None:
    result = next(o for o in executed.cells[9].outputs if o["output_type"] == "execute_result")
    assert result["data"]["text/markdown"].startswith("```typescript")
    assert "function add(" in result["data"]["text/plain"]


def test_a_failing_cell_stops_the_notebook(kernel_env: None, tmp_path: Path) -> None:
    nb = _notebook([
        "%load_ext codemode_jupyter",
        "%%codemode\nconsole.log('ran');\nthrow new Error('stop here');",
        "print('never')",
    ])
    client = NotebookClient(
        nb, kernel_name="python3", timeout=60, resources={"metadata": {"path": str(tmp_path)}}
    )
    with pytest.raises(CellExecutionError) as info:
        client.execute()
    assert "CodeModeError" in str(info.value) and "stop here" in str(info.value)
    assert nb.cells[2].outputs == []
