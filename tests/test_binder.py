"""What Binder (repo2docker) builds from ``binder/``, rebuilt here in a fresh virtualenv.

repo2docker ignores the root ``pyproject.toml`` when ``binder/`` exists: it installs
``binder/requirements.txt`` from the repository root, then runs ``binder/postBuild``. This test
does exactly that on a copy of the repository (``python -m venv``, ``pip install -r
binder/requirements.txt``, ``binder/postBuild`` with the venv's ``bin`` first on ``PATH``), with
nothing of this checkout's environment leaking in (no ``PYTHONPATH``, no ``JUPYTER_PATH``, a
fresh Jupyter data directory), then executes every notebook with that venv's ``python3`` kernel.

It is slow (pip), so it reuses pip's cache: in CI the ``.[test]`` install just before it has
already downloaded the same wheels.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

pytestmark = [pytest.mark.binder, pytest.mark.kernel, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"
# What a fresh clone would not have (or what only this machine's tools produced).
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", "node_modules", ".venv*", "build", "dist", "test-artifacts", "*.egg-info",
    "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", ".benchmarks",
    ".ipynb_checkpoints",
)


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = f"$ {' '.join(command)}\n{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, output[-6000:]
    return output


def test_binder_environment_runs_the_notebooks(tmp_path: Path) -> None:
    assert (BINDER / "requirements.txt").read_text().split() == [".[lab]"]
    postbuild = BINDER / "postBuild"
    assert os.access(postbuild, os.X_OK), "binder/postBuild must be executable"
    assert "set -e" in postbuild.read_text()

    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo, ignore=NOT_IN_A_CLONE, symlinks=True)
    venv = tmp_path / "venv"
    bin_dir = venv / "bin"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "JUPYTER", "VIRTUAL_ENV", "PIP_NO_CACHE"))
    }
    env.update(
        PATH=os.pathsep.join([str(bin_dir), env.get("PATH", "")]),
        VIRTUAL_ENV=str(venv),
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
        JUPYTER_PREFER_ENV_PATH="1",
        IPYTHONDIR=str(tmp_path / "ipython"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
    )
    timings: dict[str, float] = {}

    started = time.monotonic()
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env, 120)
    _run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "-r",
          "binder/requirements.txt"], repo, env, 600)
    timings["install"] = time.monotonic() - started

    started = time.monotonic()
    _run([str(postbuild.relative_to(REPO))], repo, env, 300)
    timings["postBuild"] = time.monotonic() - started

    # The package comes from the venv (not this checkout), and so does the python3 kernel.
    where = _run([str(bin_dir / "python"), "-c",
                  "import codemode_jupyter; print(codemode_jupyter.__file__)"], tmp_path, env, 60)
    assert str(venv) in where.splitlines()[1]
    specs = json.loads(
        subprocess.run([str(bin_dir / "jupyter"), "kernelspec", "list", "--json"], env=env,
                       capture_output=True, text=True, timeout=60, check=True).stdout
    )["kernelspecs"]
    assert specs["python3"]["resource_dir"].startswith(str(venv))
    assert Path(specs["python3"]["spec"]["argv"][0]).parent in (bin_dir, bin_dir.resolve())
    extensions = _run([str(bin_dir / "jupyter"), "labextension", "list"], repo, env, 120)
    listed = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in extensions.splitlines()]
    ours = [line.split() for line in listed if line.strip().startswith("codemode-jupyter ")]
    assert ours and ours[0][2:4] == ["enabled", "OK"], extensions

    # Run All on every notebook, as a person on Binder would, with that kernel.
    notebooks = sorted((repo / "notebooks").glob("*.ipynb"))
    assert {path.stem for path in notebooks} >= {"quickstart", "capabilities", "serving"}
    started = time.monotonic()
    out = tmp_path / "executed"
    _run([str(bin_dir / "jupyter"), "nbconvert", "--to", "notebook", "--execute",
          "--ExecutePreprocessor.timeout=120", "--output-dir", str(out),
          *[str(path.relative_to(repo)) for path in notebooks]], repo, env, 600)
    timings["notebooks"] = time.monotonic() - started
    for path in notebooks:
        nb = nbformat.read(out / path.name, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.execution_count is not None, f"{path.name}: {cell.id} did not run"
    quickstart = (out / "quickstart.ipynb").read_text(encoding="utf-8")
    assert "bring an umbrella" in quickstart
    print("binder timings (s):", {k: round(v, 1) for k, v in timings.items()})
