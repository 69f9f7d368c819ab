"""Fixtures for the engine attack suites (helpers live in ``hostile.py``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from codemode import Executor


@pytest.fixture
def strict_executor(make_executor: Callable[..., Executor]) -> Executor:
    """A 5 s executor with small console and trace limits, so floods hit them quickly."""
    return make_executor(max_log_lines=200, max_log_bytes=64 * 1024, max_trace_calls=1000)
