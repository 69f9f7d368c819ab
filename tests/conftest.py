"""Shared fixtures: engine executors (real V8 isolates, no mocks) and a kernelspec for the tests
that start real kernels.

Every executor here uses the default 16 MiB heap on purpose: the engine keeps a small pool of
prepared runtimes per heap size, so each extra heap size adds idle runtimes to the process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kernelspec import write_test_kernelspec

from codemode import Executor


@pytest.fixture
def make_executor() -> Iterator[Callable[..., Executor]]:
    """Build executors with short default timeouts; all are closed at the end of the test."""
    made: list[Executor] = []

    def make(**kwargs: Any) -> Executor:
        kwargs.setdefault("timeout_s", 5)
        executor = Executor(**kwargs)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.close()


@pytest.fixture
def executor(make_executor: Callable[..., Executor]) -> Executor:
    """A plain executor: 5 s timeout, default heap, no capabilities."""
    return make_executor()


@pytest.fixture(scope="session")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Make ``python3`` mean the test kernelspec (first on ``JUPYTER_PATH``) for the session."""
    root = tmp_path_factory.mktemp("jupyter")
    write_test_kernelspec(root)
    saved = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(root), saved) if p)
    yield
    if saved is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = saved
