"""What a person sees: JupyterLab and Notebook 7 in a real Chromium, driven by Playwright.

A JupyterLab server runs on a copy of ``notebooks/`` (127.0.0.1, a free port, a random token, a
``python3`` kernelspec that imports this checkout). The quickstart is opened, *Run > Run All
Cells* is clicked, and the page's DOM is checked: every ``%%codemode`` cell rendered its widget
(status, trace rows with the function names, console lines, the stubs pane), the failing cell
shows its error, and the body of a ``%%codemode`` cell is highlighted as JavaScript (by the
``codemode-jupyter`` lab extension), in JupyterLab and in Notebook 7. The serving notebook is run
the same way and its server panel checked. Screenshots go to ``test-artifacts/browser/``; with
``CODEMODE_UPDATE_SCREENSHOT=1`` the README's ``docs/quickstart.png`` is replaced too.

Chromium is Debian's (``/usr/bin/chromium``); Playwright never downloads a browser here. Without
Chromium, Playwright or JupyterLab the tests are skipped, except under CI, where they fail.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kernelspec import write_test_kernelspec

pytestmark = [pytest.mark.browser, pytest.mark.kernel, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "test-artifacts" / "browser"
LABEXTENSION = REPO / "codemode_jupyter" / "labextension"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 180_000  # a single wait in the page; the machine may be busy
PROMPT = re.compile(r"^\[\d+\]:$")


def _require(condition: bool, reason: str) -> None:
    """Skip when a tool is missing, except under CI, where that is a failure."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _labextension_installed() -> bool:
    from jupyter_core.paths import jupyter_path

    return any(
        (Path(base) / "codemode-jupyter" / "package.json").is_file()
        for base in jupyter_path("labextensions")
    )


@dataclass
class Lab:
    base: str
    token: str
    root: Path

    def url(self, path: str) -> str:
        """``path`` on the server, logged in; JupyterLab opens it in a fresh workspace."""
        return f"{self.base}/{path}?token={self.token}&reset"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A JupyterLab server on a temporary copy of the notebooks."""
    _require(_has_module("jupyterlab"), "JupyterLab is not installed (pip install -e '.[test]')")
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    write_test_kernelspec(base / "data")
    settings = base / "settings"
    _write_json(
        settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
        {"fetchNews": "false", "checkForUpdates": False},
    )
    # Render every cell (no virtual scrolling), so element screenshots and text are stable.
    _write_json(
        settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings",
        {"windowingMode": "none"},
    )
    env = dict(os.environ)
    env.update(
        JUPYTER_PATH=os.pathsep.join(
            p for p in (str(base / "data"), os.environ.get("JUPYTER_PATH", "")) if p
        ),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTER_CONFIG_DIR=str(base / "config"),
    )
    token = secrets.token_hex(16)
    port = _free_port()
    command = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        f"--ServerApp.token={token}",
        "--ServerApp.ip=127.0.0.1",
        f"--port={port}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if not _labextension_installed():
        # Not installed (e.g. a plain `pip install -e .` without the data files): load the
        # committed prebuilt extension from the checkout.
        extra = base / "labextensions"
        extra.mkdir()
        (extra / "codemode-jupyter").symlink_to(LABEXTENSION, target_is_directory=True)
        command.append(f"--LabServerApp.extra_labextensions_path={extra}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ARTIFACTS / "jupyterlab.log", "w", encoding="utf-8")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=base)
    lab = Lab(f"http://127.0.0.1:{port}", token, root)
    try:
        _wait_for_server(lab, server)
        yield lab
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def _wait_for_server(lab: Lab, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {server.returncode}: see {ARTIFACTS}")
        try:
            with urllib.request.urlopen(lab.url("api/status"), timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("JupyterLab did not start in time")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require(CHROMIUM.exists(), "Debian's chromium is not installed (apt-get install chromium)")
    _require(_has_module("playwright"), "playwright is not installed (pip install playwright)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page_errors() -> list[str]:
    """Uncaught exceptions in the page (a widget that throws while rendering ends up here)."""
    return []


@pytest.fixture
def page(browser: Any, page_errors: list[str], request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; whatever it shows at the end is saved as ``<test>-last.png``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    try:
        yield page
    finally:
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-last.png"))
        context.close()


# ------------------------------------------------------------------ helpers in the page

# The colours the theme gives keywords and comments, and those of the tokens in one cell.
TOKEN_COLOURS = """
([needle]) => {
  const cell = [...document.querySelectorAll(".jp-CodeCell")].find((node) => {
    const content = node.querySelector(".cm-content");
    return content && content.textContent.includes(needle);
  });
  if (!cell) return null;
  const editor = cell.querySelector(".cm-content");
  const probe = (variable) => {
    const span = document.createElement("span");
    span.style.color = `var(${variable})`;
    editor.append(span);
    const colour = getComputedStyle(span).color;
    span.remove();
    return colour;
  };
  const tokens = [...editor.querySelectorAll(".cm-line span")].map((span) => ({
    text: span.textContent,
    colour: getComputedStyle(span).color,
  }));
  return {
    keyword: probe("--jp-mirror-editor-keyword-color"),
    comment: probe("--jp-mirror-editor-comment-color"),
    tokens,
  };
}
"""


def _code_cell(page: Any, needle: str) -> Any:
    """The notebook code cell whose source contains ``needle``."""
    cells = page.locator(".jp-CodeCell").filter(
        has=page.locator(".jp-InputArea .cm-content", has_text=needle)
    )
    assert cells.count() == 1, f"expected one cell containing {needle!r}, found {cells.count()}"
    return cells.first


def _assert_javascript_highlighting(page: Any) -> None:
    """The body of a ``%%codemode`` cell carries JavaScript tokens: ``const`` is a keyword and
    ``// ...`` a comment (as Python, ``const`` is a plain name and ``//`` an operator)."""
    page.wait_for_function(
        "([n]) => [...document.querySelectorAll('.jp-CodeCell .cm-content')]"
        ".some((c) => c.textContent.includes(n) && c.querySelector('span'))",
        arg=["// no quantity"],
    )
    seen = _token_colours(page, "// no quantity")
    tokens = {token["text"]: token["colour"] for token in seen["tokens"]}
    assert tokens.get("try") == seen["keyword"], f"`try` is not a keyword: {seen}"
    assert tokens.get("// no quantity") == seen["comment"], f"no JS comment token: {seen}"
    first = _token_colours(page, "codemode.add({ a: 2, b: 3 })")
    colours = {token["text"]: token["colour"] for token in first["tokens"]}
    assert colours.get("const") == first["keyword"], f"`const` is not a keyword: {first}"
    assert colours.get("return") == first["keyword"]
    # A Python cell keeps Python highlighting (`//` would be an operator there, `if` a keyword).
    python = _token_colours(page, "print(forecast)")
    assert {t["text"]: t["colour"] for t in python["tokens"]}.get("if") == python["keyword"]


def _token_colours(page: Any, needle: str) -> dict[str, Any]:
    """The theme's keyword and comment colours, and each token's colour, in the code cell
    holding ``needle`` (scrolled into view first: CodeMirror draws only what is visible)."""
    _code_cell(page, needle).scroll_into_view_if_needed()
    page.wait_for_timeout(200)
    seen: dict[str, Any] | None = page.evaluate(TOKEN_COLOURS, [needle])
    assert seen is not None, f"no code cell holds {needle!r}"
    return seen


def _wait_until_all_ran(page: Any, cells: int) -> None:
    """Every code cell has an execution count and the kernel is idle again."""
    deadline = time.monotonic() + WAIT_MS / 1000
    prompts: list[str] = []
    while time.monotonic() < deadline:
        prompts = [p.strip() for p in page.locator(".jp-CodeCell .jp-InputPrompt")
                   .all_text_contents()]
        if len(prompts) == cells and all(PROMPT.match(p) for p in prompts):
            page.get_by_text("| Idle").first.wait_for()
            return
        time.sleep(0.5)
    raise AssertionError(f"not every cell ran: prompts {prompts}")


def _run_all(page: Any, cells: int) -> None:
    """*Run > Run All Cells*, then wait for every cell to have run."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()
    _wait_until_all_ran(page, cells)


def _code_cells(lab: Lab, name: str) -> list[str]:
    notebook = json.loads((lab.root / f"{name}.ipynb").read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]


def _widget(cell: Any) -> Any:
    root = cell.locator(".cmj-root")
    root.wait_for(state="visible")
    assert root.count() == 1, "one codemode widget per %%codemode cell"
    return root


def _texts(locator: Any) -> list[str]:
    return [text.strip() for text in locator.all_text_contents()]


# ------------------------------------------------------------------ tests


def test_prebuilt_labextension_is_complete() -> None:
    """The committed build: the entry point it names exists, and it was built from the
    committed source package (same name and version)."""
    built = json.loads((LABEXTENSION / "package.json").read_text(encoding="utf-8"))
    source = json.loads(
        (REPO / "codemode_jupyter" / "labextension-src" / "package.json").read_text("utf-8")
    )
    assert (built["name"], built["version"]) == (source["name"], source["version"])
    assert (LABEXTENSION / built["jupyterlab"]["_build"]["load"]).is_file()
    assert json.loads((LABEXTENSION / "install.json").read_text("utf-8"))["packageName"] == (
        "codemode-jupyter"
    )



def test_quickstart_run_all_in_jupyterlab(lab: Lab, page: Any, page_errors: list[str]) -> None:
    code = _code_cells(lab, "quickstart")
    widget_cells = [s for s in code if s.startswith("%%codemode") and "--quiet" not in s]

    page.goto(lab.url("lab/tree/quickstart.ipynb"))
    page.locator(".jp-CodeCell .cm-content").first.wait_for()
    page.get_by_text("| Idle").first.wait_for()
    _assert_javascript_highlighting(page)
    page.screenshot(path=str(ARTIFACTS / "lab-opened.png"))

    _run_all(page, len(code))
    assert not page.get_by_text("Error displaying widget").count()
    page.screenshot(path=str(ARTIFACTS / "lab-after-run-all.png"))

    roots = page.locator(".cmj-root")
    assert roots.count() == len(widget_cells), "a %%codemode cell did not render its widget"
    statuses = [roots.nth(i).get_attribute("data-status") for i in range(roots.count())]
    assert statuses.count("failed") == 2 and set(statuses) == {"done", "failed"}, statuses

    # The first run: its call, its console line, its result and the stubs pane.
    first = _code_cell(page, "codemode.add({ a: 2, b: 3 })")
    widget = _widget(first)
    assert _texts(widget.locator(".cmj-badge")) == ["done"]
    assert _texts(widget.locator(".cmj-calls .cmj-fn")) == ["add"]
    assert _texts(widget.locator(".cmj-console .cmj-log")) == ["2 + 3 = 5"]
    assert "doubled: 10" in widget.locator(".cmj-section").first.inner_text()
    stubs = widget.locator("summary", has_text="Callable API")
    assert "4 functions" in stubs.inner_text()
    stubs.click()
    declarations = widget.locator("pre.cmj-stubs")
    declarations.wait_for(state="visible")
    text = declarations.inner_text()
    assert "declare namespace codemode {" in text
    assert "function add(args: { a: number; b: number }): Promise<number>;" in text
    assert "function weather(args: { city: string }): Promise<Weather>;" in text
    first.screenshot(path=str(ARTIFACTS / "cell-first.png"))

    # Three overlapping async calls, their console lines, the timeline bars.
    parallel = _code_cell(page, "Promise.all(cities.map")
    widget = _widget(parallel)
    assert _texts(widget.locator(".cmj-calls .cmj-fn")) == ["weather"] * 3
    assert _texts(widget.locator(".cmj-console .cmj-log")) == [
        "Paris: 18 °C, cloudy", "Oslo: 9 °C, rain", "Lima: 24 °C, sunny",
    ]
    assert widget.locator(".cmj-bar").count() == 3
    parallel.screenshot(path=str(ARTIFACTS / "cell-parallel.png"))

    # print() inside a tool lands in the console, between the program's own lines.
    typed = _widget(_code_cell(page, "quantity: 3, unit_price: 2.5"))
    assert _texts(typed.locator(".cmj-calls .cmj-fn")) == ["order_total", "distance"]
    lines = typed.locator(".cmj-console .cmj-log")
    assert _texts(lines.locator(".cmj-level")) == ["stdout"]
    assert _texts(lines) == ["stdoutpricing 3 x tea", "total 6.75 distance 5"]

    # Caught errors: two failed rows, the run itself is done.
    caught_cell = _code_cell(page, "// no quantity")
    caught = _widget(caught_cell)
    assert _texts(caught.locator(".cmj-badge")) == ["done"]
    assert caught.locator(".cmj-row-error").count() == 2
    assert "caught: codemode.weather() raised KeyError: 'Atlantis'" in caught.inner_text()
    caught_cell.screenshot(path=str(ARTIFACTS / "cell-caught.png"))

    # The failing cell: the widget's error box, the failed row, and Jupyter's own error output.
    failing_cell = _code_cell(page, 'console.log("looking up two cities")')
    failing = _widget(failing_cell)
    assert _texts(failing.locator(".cmj-badge")) == ["failed"]
    head = failing.locator(".cmj-error-head")
    assert head.is_visible() and "KeyError: 'Atlantis'" in head.inner_text()
    assert _texts(failing.locator(".cmj-calls .cmj-fn")) == ["weather", "weather"]
    assert failing.locator(".cmj-row-error").count() == 1
    assert "CodeModeError" in failing_cell.locator(".jp-OutputArea").inner_text()
    failing_cell.screenshot(path=str(ARTIFACTS / "cell-failing.png"))

    options = _widget(_code_cell(page, "-o forecast --tools weather"))
    assert _texts(options.locator(".cmj-console .cmj-log")) == ["callable here: weather"]
    assert "bring an umbrella" in _code_cell(page, 'print(forecast)').inner_text()

    timeout = _widget(_code_cell(page, "while (true) {}"))
    assert "did not finish within 0.5 s" in timeout.locator(".cmj-error-head").inner_text()
    assert _texts(timeout.locator(".cmj-console .cmj-log")) == ["about to spin forever"]

    stub_cell = _code_cell(page, "%codemode_stubs")
    assert "declare namespace codemode" in stub_cell.locator(".jp-OutputArea").inner_text()
    assert not page_errors, page_errors

    if os.environ.get("CODEMODE_UPDATE_SCREENSHOT"):
        # README's picture: the notebook without the file browser beside it.
        page.locator(".lm-MenuBar-itemLabel", has_text="View").click()
        page.locator(".lm-Menu-itemLabel", has_text="Appearance").click()
        page.locator(".lm-Menu-itemLabel").get_by_text("Show Left Sidebar", exact=True).click()
        page.wait_for_timeout(500)
        parallel.screenshot(path=str(REPO / "docs" / "quickstart.png"))


def test_codemode_cells_are_highlighted_in_notebook7(lab: Lab, page: Any) -> None:
    if not _has_module("notebook"):
        pytest.skip("Notebook 7 is not installed")
    page.goto(lab.url("notebooks/quickstart.ipynb"))
    page.locator(".jp-CodeCell .cm-content").first.wait_for()
    _assert_javascript_highlighting(page)
    _code_cell(page, "// no quantity").screenshot(path=str(ARTIFACTS / "notebook7-cell.png"))


def test_serving_panel_in_jupyterlab(lab: Lab, page: Any, page_errors: list[str]) -> None:
    """The serving notebook: Run All, and the server panel lists the agent's requests."""
    code = _code_cells(lab, "serving")
    page.goto(lab.url("lab/tree/serving.ipynb"))
    page.locator(".jp-CodeCell .cm-content").first.wait_for()
    page.get_by_text("| Idle").first.wait_for()
    _run_all(page, len(code))
    assert not page.get_by_text("Error displaying widget").count()
    serve = _code_cell(page, "%codemode_serve --name shop --search")
    panel = serve.locator(".jp-OutputArea-output").filter(has_text="shop").last
    panel.wait_for()
    text = panel.inner_text()
    assert "MCP server" in text and "in_stock" in text, text
    assert "3 requests" in text and text.count("execute") >= 2 and "search" in text, text
    serve.screenshot(path=str(ARTIFACTS / "serving-panel.png"))
    outputs = page.locator(".jp-CodeCell .jp-OutputArea").all_inner_texts()
    assert not any("Traceback" in out or "Error" in out.split(":")[0] for out in outputs), outputs
    assert "coffee in stock: 5" in _code_cell(page, "item: 'coffee', quantity: 5").inner_text()
    assert not page_errors, page_errors
