"""Serve a Code Mode engine over MCP: one ``execute`` tool (and optionally ``search``).

Needs the MCP SDK (``mcp>=2.3``); importing this package without it explains what to install.
"""

from __future__ import annotations

try:
    import mcp.server.mcpserver as _sdk  # noqa: F401 - probe for the SDK (and its v2 layout)
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    if exc.name not in (None, "mcp", "mcp.server", "mcp.server.mcpserver"):
        raise
    raise ModuleNotFoundError(
        "codemode.mcp needs the MCP Python SDK, version 2.3 or newer: pip install 'mcp>=2.3,<3'"
    ) from exc

from codemode.mcp.server import CodeModeServer

__all__ = ["CodeModeServer"]
