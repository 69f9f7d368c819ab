"""The kernelspec every test that starts a real kernel uses."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_test_kernelspec(data_dir: Path) -> None:
    """Write a ``python3`` kernelspec under ``data_dir/kernels`` that runs this interpreter and
    imports this checkout (so kernels test the code here, installed or not)."""
    from ipykernel.kernelspec import write_kernel_spec

    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    write_kernel_spec(
        str(data_dir / "kernels" / "python3"),
        overrides={
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "env": {"PYTHONPATH": path},
        },
    )
