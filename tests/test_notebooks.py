"""The example notebooks in ``notebooks/``, executed end to end in a real kernel.

Each notebook runs as committed (no outputs) from a temporary copy of the folder, by nbclient as
*Run All* would: a cell that fails stops the notebook unless it is tagged ``raises-exception``.
Then the outputs are checked cell by cell (cells are found by their ids), including the widget
state saved with the notebook. README's main-job command (``jupyter nbconvert --execute``) is run
as written there, on a copy too.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
NAMES = sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb"))
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
STATE_MIME = "application/vnd.jupyter.widget-state+json"
RAISES = "raises-exception"
SLOW_S = 60.0
"""A notebook taking longer than this fails the test (they take a few seconds; the aim is < 20 s
on an idle machine, the bound leaves room for a busy one)."""


@pytest.fixture(scope="module")
def notebook_kernel(kernel_env: None) -> Iterator[None]:
    """The test kernelspec; executed notebooks are forgotten after the module."""
    yield
    _executed.cache_clear()


class Executed:
    """One executed notebook: cells by id, their outputs and the saved widget state."""

    def __init__(self, nb: Any, seconds: float, workdir: Path) -> None:
        self.nb = nb
        self.seconds = seconds
        self.workdir = workdir
        self.cells = {cell.id: cell for cell in nb.cells}
        widgets = nb.metadata.get("widgets", {}).get(STATE_MIME, {})
        self.state: dict[str, Any] = widgets.get("state", {})

    def outputs(self, cell_id: str, kind: str | None = None) -> list[Any]:
        outputs = self.cells[cell_id].outputs
        return [o for o in outputs if kind is None or o["output_type"] == kind]

    def stdout(self, cell_id: str) -> str:
        return "".join(o.get("text", "") for o in self.outputs(cell_id, "stream"))

    def value(self, cell_id: str) -> str:
        """The ``text/plain`` of the cell's execute_result."""
        (result,) = self.outputs(cell_id, "execute_result")
        text: str = result["data"]["text/plain"]
        return text

    def error(self, cell_id: str) -> Any:
        (error,) = self.outputs(cell_id, "error")
        return error

    def widget(self, cell_id: str) -> dict[str, Any]:
        """The saved state of the cell's one codemode widget."""
        views = [o for o in self.outputs(cell_id) if WIDGET_MIME in o.get("data", {})]
        assert len(views) == 1, f"cell {cell_id}: expected one widget, got {len(views)}"
        model = views[0]["data"][WIDGET_MIME]["model_id"]
        state: dict[str, Any] = self.state[model]["state"]
        return state

    def logs(self, cell_id: str) -> list[tuple[str, str]]:
        return [(level, text) for _, level, text in self.widget(cell_id)["logs"]]

    def calls(self, cell_id: str) -> list[str]:
        return [row["name"] for row in self.widget(cell_id)["calls"]]


@cache
def _executed(name: str, workroot: str) -> Executed:
    """Run ``notebooks/<name>.ipynb`` from a fresh copy of the folder (once per test module)."""
    workdir = Path(workroot) / name
    shutil.copytree(NOTEBOOKS, workdir, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    nb = nbformat.read(workdir / f"{name}.ipynb", as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=60,
        startup_timeout=120,
        store_widget_state=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    started = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - started
    nbformat.validate(nb)
    return Executed(nb, seconds, workdir)


@pytest.fixture(scope="module")
def run(
    notebook_kernel: None, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Executed]:
    root = tmp_path_factory.mktemp("notebooks")
    return lambda name: _executed(name, str(root))


# ------------------------------------------------------------------ every notebook


def test_the_example_notebooks_exist() -> None:
    assert {"quickstart", "capabilities", "serving"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_clean(name: str) -> None:
    """Stored without outputs, for the ``python3`` kernel, with stable cell ids."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert nb.metadata.language_info.codemirror_mode.name == "ipython"
    assert "widgets" not in nb.metadata
    ids = [cell.id for cell in nb.cells]
    assert len(ids) == len(set(ids))
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.id
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_end_to_end(name: str, run: Callable[[str], Executed]) -> None:
    """Run All goes through; exactly the cells tagged ``raises-exception`` fail."""
    executed = run(name)
    for cell in executed.nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None, f"{cell.id} did not run"
        failed = [o for o in cell.outputs if o["output_type"] == "error"]
        tagged = RAISES in cell.metadata.get("tags", [])
        assert bool(failed) == tagged, f"{cell.id}: error {failed!r}, tagged {tagged}"
    assert executed.seconds < SLOW_S, f"{name} took {executed.seconds:.1f} s"


# ------------------------------------------------------------------ quickstart


def test_quickstart(run: Callable[[str], Executed]) -> None:
    q = run("quickstart")
    stubs = q.value("stubs")
    for declaration in (
        "function add(args: { a: number; b: number }): Promise<number>;",
        "function weather(args: { city: string }): Promise<Weather>;",
        "function order_total(args: { order: Order; discount?: number }): Promise<number>;",
        "function distance(args: { a: Point; b: Point }): Promise<number>;",
        "@param city City name: Paris, Oslo or Lima.",
    ):
        assert declaration in stubs
    assert "```typescript" in q.outputs("stubs")[0]["data"]["text/markdown"]

    first = q.widget("first")
    assert first["status"] == "done" and json.loads(first["result"]) == {"sum": 5, "doubled": 10}
    assert q.calls("first") == ["add"] and q.logs("first") == [("log", "2 + 3 = 5")]

    assert q.calls("parallel") == ["weather"] * 3
    rows = q.widget("parallel")["calls"]
    first_end = min(row["start"] + row["duration"] for row in rows)
    assert all(row["start"] < first_end for row in rows), "the three calls overlap"
    assert json.loads(q.widget("parallel")["result"])["warmest"] == "Lima"

    assert q.calls("typed") == ["order_total", "distance"]
    assert q.logs("typed") == [("stdout", "pricing 3 x tea"), ("log", "total 6.75 distance 5")]
    assert json.loads(q.widget("typed")["result"]) == {"total": 6.75, "d": 5}

    caught = q.widget("caught")
    assert caught["status"] == "done" and caught["failed_count"] == 2
    assert [level for level, _ in q.logs("caught")] == ["warn", "warn"]
    assert "KeyError: 'Atlantis'" in q.logs("caught")[0][1]
    assert "missing required field 'quantity'" in q.logs("caught")[1][1]

    failed = q.widget("uncaught")
    assert failed["status"] == "failed" and failed["error"]["name"] == "ToolError"
    assert q.calls("uncaught") == ["weather", "weather"] and failed["failed_count"] == 1
    error = q.error("uncaught")
    assert error["ename"] == "CodeModeError" and "KeyError: 'Atlantis'" in error["evalue"]

    assert q.logs("options") == [("log", "callable here: weather")]
    assert q.stdout("use-result").strip() == "{'city': 'Oslo', 'umbrella': True}"
    assert q.value("use-result") == "'bring an umbrella'"

    assert "did not finish within 0.5 s" in q.error("timeout")["evalue"]
    assert q.logs("timeout") == [("log", "about to spin forever")]
    assert q.stdout("last").splitlines() == [
        "failed - TimeoutError",
        "console: about to spin forever",
    ]
    assert not q.outputs("last-trace", "display_data"), "--quiet shows no widget"
    assert q.value("last-trace") == "'42 and sunny'"
    printed = q.stdout("last-calls").splitlines()
    assert printed[0].startswith("add({'a': 20, 'b': 22}) -> 42")
    assert printed[1].startswith("weather({'city': 'Lima'}) -> {'city': 'Lima'")


# ------------------------------------------------------------------ capabilities


def test_capabilities(run: Callable[[str], Executed]) -> None:
    c = run("capabilities")
    assert c.stdout("load").splitlines() == ["fs: (off)", "env: (off)", "http: (off)"]

    assert json.loads(c.widget("fs")["result"]) == {"north": 165, "south": 80}
    assert c.calls("fs") == ["fs.list", "fs.read", "fs.write", "fs.read", "fs.read"]
    refused = [text for level, text in c.logs("fs") if level == "warn"]
    assert len(refused) == 2 and all("outside the allowed paths" in t for t in refused)
    assert json.loads(ast.literal_eval(c.value("fs-check"))) == {"north": 165, "south": 80}

    assert json.loads(c.widget("env")["result"]) == {
        "region": "eu-west",
        "secret": "(not readable)",
    }
    assert ("log", 'visible variables: ["DEMO_REGION"]') in c.logs("env")
    assert "do-not-leak" not in json.dumps(c.widget("env"))

    http = c.widget("http")
    assert http["status"] == "done", http["error"]
    assert json.loads(http["result"]) == {"total": 9.25, "items": {"tea": 2, "cake": 1}}
    assert c.calls("http") == ["env.get", "http.fetch", "http.fetch", "http.fetch", "http.fetch"]
    logs = [text for _, text in c.logs("http")]
    assert logs[:2] == ['prices: {"tea":2.5,"coffee":3,"cake":4.25}', "POST /orders -> 201"]
    assert "host 'example.com' is not allowed" in logs[2]
    assert "port 9 on host '127.0.0.1' is not allowed" in logs[3]

    assert c.stdout("revoke").splitlines() == ["fs: (off)", "env: (off)", "http: (off)"]
    assert [text for _, text in c.logs("after-revoke")] == ["codemode.fs.list is not a function"]


# ------------------------------------------------------------------ README's main job


def _readme_command() -> str:
    """The ``jupyter nbconvert ...`` part of README's main-job command."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    line = next(line for line in readme.splitlines() if "jupyter nbconvert" in line)
    return next(part.strip() for part in line.split("&&") if "jupyter nbconvert" in part)


def test_readme_main_job_command(notebook_kernel: None, tmp_path: Path) -> None:
    """The nbconvert step of README's main job, run as written from a copy of the repository
    layout: Run All through the tagged failing cells, an HTML copy with the outputs."""
    command = shlex.split(_readme_command())
    assert command[:2] == ["jupyter", "nbconvert"] and "--execute" in command
    shutil.copytree(NOTEBOOKS, tmp_path / "notebooks")
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", *command[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    page = (tmp_path / "build" / "quickstart.html").read_text(encoding="utf-8")
    assert "codemode quickstart" in page
    assert "bring an umbrella" in page
    assert "CodeModeError" in page  # the tagged failing cells, with their tracebacks
    assert STATE_MIME in page and '"2 + 3 = 5"' in page  # the widgets' saved state
    assert re.search(r"<span[^>]*>const</span>", page), "%%codemode bodies are not highlighted"


# ------------------------------------------------------------------ serving


def test_serving(run: Callable[[str], Executed]) -> None:
    s = run("serving")
    assert not s.outputs("load"), "loading the extension prints nothing"
    served = s.stdout("serve")
    url = re.search(r"URL:\s+(http://127\.0\.0\.1:\d+/mcp)", served)
    token = re.search(r"Token:\s+(\S+)", served)
    assert url and token and "serving 2 function(s): in_stock, price" in served
    panel = [o for o in s.outputs("serve", "display_data") if WIDGET_MIME in o["data"]]
    assert len(panel) == 1, "the server panel is displayed"
    assert "codemode MCP server 'shop'" in panel[0]["data"]["text/plain"]

    printed = s.stdout("client").splitlines()
    assert printed[0] == "tools: ['execute', 'search']"
    assert printed[1] == "search 'price' -> ['price']"
    assert "'function in_stock(args: { item: string }): Promise<number>;'" in printed[2]
    reply = ast.literal_eval(s.value("client"))
    assert reply["success"] and reply["logs"] == ["checked 3 items"] and reply["calls"] == 6
    assert reply["result"] == [
        {"item": "tea", "stock": 12, "price": 2.5},
        {"item": "cake", "stock": 3, "price": 4.25},
    ]
    assert s.stdout("live-call").strip() == "coffee in stock: 5 | in the notebook: 5"
    assert s.value("auth") == "(401, 401)"

    status = s.stdout("status")
    assert "requests: 3 (3 ok, 0 failed" in status
    assert "codemode.*: in_stock, price, restock" in status
    assert s.stdout("records").splitlines() == [
        "execute ok 2 calls: ['restock', 'in_stock']",
        "result: 5",
    ]

    exported = s.stdout("export")
    assert "3 tool(s): in_stock, price, restock" in exported and "PRICES, STOCK" in exported
    script = (s.workdir / "shop_server.py").read_text(encoding="utf-8")
    assert "def in_stock(item: str) -> int:" in script and "async def price(" in script
    assert "listening on http://127.0.0.1:" in s.stdout("run")
    assert ast.literal_eval(s.value("call-exported"))["result"] == {"cakes": 3, "value": 12.75}
    assert "Stopped 'shop' (3 requests served)" in s.stdout("stop")
