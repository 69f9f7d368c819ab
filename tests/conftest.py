"""Shared fixtures for the engine tests (real V8 isolates, no mocks).

Every executor here uses the default 16 MiB heap on purpose: the engine keeps a small pool of
prepared runtimes per heap size, so each extra heap size adds idle runtimes to the process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

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
