"""Figure 6: the bytes an agent reads to learn 20 example tools.

The same 20 typed, documented functions are offered three ways, and the ``tools/list`` result an
MCP client receives is measured as JSON: as plain MCP tools (one JSON Schema each, the SDK's own
``MCPServer``), through our ``execute`` tool (TypeScript declarations; also with ``search``
enabled, where the description lists names and summaries and declarations come on demand), and
through py-codemode's server (in its own virtualenv).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TOOLS = '''
from typing import Literal, Optional


def get_weather(city: str, units: Literal["c", "f"] = "c") -> dict:
    """Current weather for a city: temperature, wind and a one-line summary."""


def get_forecast(city: str, days: int = 3) -> list:
    """Daily forecast for the next days (at most 10)."""


def search_flights(origin: str, destination: str, date: str, passengers: int = 1) -> list:
    """Flights between two airports (IATA codes) on a date (YYYY-MM-DD)."""


def book_flight(flight_id: str, passenger_names: list[str], seat_class: str = "economy") -> dict:
    """Book seats on a flight; returns the booking reference."""


def cancel_booking(booking_ref: str, reason: Optional[str] = None) -> bool:
    """Cancel a booking by its reference."""


def list_orders(customer_id: int, status: Optional[str] = None, limit: int = 20) -> list:
    """A customer's orders, newest first, optionally filtered by status."""


def get_order(order_id: int) -> dict:
    """One order with its lines, totals and shipping state."""


def refund_order(order_id: int, amount: float, note: str = "") -> dict:
    """Refund part or all of an order."""


def find_customer(email: str) -> Optional[dict]:
    """Look a customer up by e-mail address."""


def update_customer(customer_id: int, name: Optional[str] = None,
                    phone: Optional[str] = None) -> dict:
    """Change a customer's name or phone number."""


def send_email(to: list[str], subject: str, body: str, cc: Optional[list[str]] = None) -> str:
    """Send an e-mail; returns the message id."""


def list_calendar_events(start: str, end: str, calendar: str = "primary") -> list:
    """Events between two ISO timestamps."""


def create_calendar_event(title: str, start: str, end: str,
                          attendees: Optional[list[str]] = None) -> dict:
    """Create an event and invite people."""


def convert_currency(amount: float, source: str, target: str) -> float:
    """Convert an amount between ISO 4217 currencies at today's rate."""


def stock_quote(symbol: str) -> dict:
    """Latest price, change and volume for a ticker symbol."""


def translate(text: str, target_language: str, source_language: Optional[str] = None) -> str:
    """Translate text; the source language is detected when not given."""


def summarize(text: str, max_words: int = 100) -> str:
    """A summary of a text in at most max_words words."""


def create_ticket(title: str, description: str,
                  priority: Literal["low", "normal", "high"] = "normal") -> dict:
    """Open a support ticket."""


def list_tickets(status: Literal["open", "closed", "all"] = "open", assignee: str = "") -> list:
    """Support tickets by status and assignee."""


def geocode(address: str) -> dict:
    """Latitude and longitude of a street address."""


FUNCTIONS = [v for k, v in list(globals().items()) if callable(v) and not k.startswith("_")
             and getattr(v, "__module__", "") == __name__ and k not in ("Literal", "Optional")]
'''

OURS = """
import asyncio, json
from codemode.mcp import CodeModeServer
from mcp.server.mcpserver import MCPServer

def size(server):
    tools = asyncio.run(server.list_tools())
    return len(json.dumps([t.model_dump(mode="json", exclude_none=True) for t in tools]))

plain = MCPServer("plain")
for fn in FUNCTIONS:
    plain.add_tool(fn)
out = {"plain MCP tools (JSON Schema)": size(plain)}
for search in (False, True):
    server = CodeModeServer(name="bench", enable_search=search)
    for fn in FUNCTIONS:
        server.tool(fn)
    label = "ours, execute + search" if search else "ours, execute"
    out[label] = size(server.mcp)
print(json.dumps(out))
"""

PYCM = """
import asyncio, json
from codemode.mcp import CodeModeServer

out = {}
for search in (False, True):
    server = CodeModeServer(name="bench", enable_search=search)
    for fn in FUNCTIONS:
        server.tool()(fn)
    tools = asyncio.run(server.mcp.list_tools())
    label = "py-codemode, execute + search" if search else "py-codemode, execute"
    out[label] = len(json.dumps([t.model_dump(mode="json", exclude_none=True) for t in tools]))
print(json.dumps(out))
"""


def _sizes(python: str | Path, script: str) -> dict[str, int]:
    path = Path(tempfile.mkdtemp()) / "tools.py"
    path.write_text(TOOLS + script)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [str(python), str(path)],
        capture_output=True,
        text=True,
        cwd=path.parent,
        env=env,
        timeout=300,
    )
    if proc.returncode != 0:
        return {f"{python} failed: {proc.stderr.strip().splitlines()[-1:]}": 0}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def run(pycm_python: Path) -> None:
    sizes = {**_sizes(sys.executable, OURS), **_sizes(pycm_python, PYCM)}
    plain = sizes.get("plain MCP tools (JSON Schema)") or 1
    for label, size in sizes.items():
        print(f"  {label:34s} {size:7d} bytes   ratio vs plain MCP tools {size / plain:.2f}x")
