"""Hostile programs against the fs, env and http capabilities, run for real.

Every case is a JavaScript program run by a real ``Executor`` (a real V8 isolate) with the
capability enabled, so refusals are checked as the program sees them (a catchable ``ToolError``
carrying the Python type and message). Each case asserts the specific refusal, that no byte of a
secret came back anywhere in the outcome (result, console, call trace), that nothing was created
or removed outside the allowed places, and that a normal call still works afterwards.

HTTP cases talk only to local servers bound to 127.0.0.1; each records every request it receives,
so "refused" also means "never contacted".
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from codemode import Executor
from codemode.capabilities.env import EnvCapability
from codemode.capabilities.fs import FsCapability
from codemode.capabilities.http import HttpCapability
from codemode.events import RunCompleted, RunResult

pytestmark = pytest.mark.timeout(120)

SECRET = f"TOP-SECRET-{uuid.uuid4().hex}"
INSIDE = "harmless inside content"

# Runs a thunk and reports either its value or the error the program caught.
ATTEMPT = """
const attempt = async (f) => {
  try { return { ok: true, value: await f() }; }
  catch (e) { return { ok: false, type: e.pythonType || e.name, message: String(e.message) }; }
};
"""


# ----------------------------------------------------------------------------------- helpers


@pytest.fixture
def executors() -> Iterator[Callable[..., Executor]]:
    """Build executors for one test; all are closed at its end."""
    made: list[Executor] = []

    def make(*capabilities: Any, timeout_s: float = 20) -> Executor:
        executor = Executor(timeout_s=timeout_s, capabilities=list(capabilities))
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.close()


async def run_js(executor: Executor, code: str) -> tuple[Any, RunResult]:
    """Run ``ATTEMPT`` + ``code``; the program must complete (errors are caught inside it)."""
    outcome = await executor.execute(ATTEMPT + code)
    assert isinstance(outcome, RunCompleted), outcome
    return outcome.result, outcome


def everything(outcome: RunResult) -> str:
    """All an outcome carries back to the caller, as one string to search for leaks."""
    calls = [(c.arguments, c.result, c.error) for c in outcome.calls]
    result = getattr(outcome, "result", None)
    error = getattr(outcome, "error", None)
    return json.dumps([result, error, [str(x) for x in outcome.logs], calls], default=repr)


def assert_refused(entry: dict[str, Any], kind: str, fragment: str) -> None:
    assert entry["ok"] is False, entry
    assert entry["type"] == kind, entry
    assert fragment in entry["message"], entry


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@dataclass
class Places:
    root: Path
    outside: Path

    @property
    def secret(self) -> Path:
        return self.outside / "secret.txt"


@pytest.fixture
def places(tmp_path: Path) -> Places:
    root = (tmp_path / "root").resolve()
    outside = (tmp_path / "outside").resolve()
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    (root / "inside.txt").write_text(INSIDE)
    (root / "sub").mkdir()
    return Places(root, outside)


# ---------------------------------------------------------------------------------------- fs


async def test_fs_traversal_spellings_never_escape(
    places: Places, executors: Callable[..., Executor]
) -> None:
    root, outside = places.root, places.outside
    denied, missing = "CapabilityDenied", "FileNotFoundError"
    cases: list[tuple[str, str, str]] = [
        ("../outside/secret.txt", denied, "is outside the allowed paths"),
        ("sub/../../outside/secret.txt", denied, "is outside the allowed paths"),
        ("./././../outside/secret.txt", denied, "is outside the allowed paths"),
        (f"{root}//..//outside/secret.txt", denied, "is outside the allowed paths"),
        (str(places.secret), denied, "is outside the allowed paths"),
        ("/etc/passwd", denied, "is outside the allowed paths"),
        (f"/proc/self/root{outside}/secret.txt", denied, "is outside the allowed paths"),
        (f"/proc/self/root{root}/../outside/secret.txt", denied, "is outside the allowed paths"),
        ("/proc/self/cwd/secret.txt", denied, "is outside the allowed paths"),
        ("/proc/self/environ", denied, "is outside the allowed paths"),
        ("/proc/self/fd/0", denied, "is outside the allowed paths"),
        ("/dev/zero", denied, "is outside the allowed paths"),
        ("inside.txt\u0000/../../outside/secret.txt", denied, "contains a NUL byte"),
        # Literal names on POSIX: no decoding, no home expansion, no look-alike folding.
        ("..\\outside\\secret.txt", missing, "No such file"),
        ("%2e%2e%2foutside%2fsecret.txt", missing, "No such file"),
        ("%252e%252e%252foutside%252fsecret.txt", missing, "No such file"),
        ("~/secret.txt", missing, "No such file"),
        ("\u2025/outside/secret.txt", missing, "No such file"),  # two dot leader
        ("\uff0e\uff0e/outside/secret.txt", missing, "No such file"),  # fullwidth dots
        ("..\u2215outside\u2215secret.txt", missing, "No such file"),  # division slash
        ("\ud800", "ValueError", "contains a lone surrogate"),
        ("", "ValueError", "path is empty"),
    ]
    executor = executors(FsCapability([root]))
    paths = json.dumps([path for path, _, _ in cases])
    result, outcome = await run_js(
        executor,
        f"""
        const out = [];
        for (const path of {paths}) {{
          out.push({{
            read: await attempt(() => codemode.fs.read({{ path }})),
            write: await attempt(() => codemode.fs.write({{ path, content: "pwned" }})),
            exists: await attempt(() => codemode.fs.exists({{ path }})),
          }});
        }}
        return out;
        """,
    )
    for (_path, kind, fragment), entry in zip(cases, result, strict=True):
        assert_refused(entry["read"], kind, fragment)
        if kind == denied:
            assert_refused(entry["write"], kind, fragment)
            assert_refused(entry["exists"], kind, fragment)
    assert SECRET not in everything(outcome)
    assert places.secret.read_text() == SECRET
    assert tree(outside) == ["secret.txt"]
    # The literal (harmless) names were written inside the root, and nowhere else.
    assert all((root / p).resolve().is_relative_to(root) for p in tree(root))
    # Reaching the root through /proc/self/root is still the root: allowed.
    ok, _ = await run_js(
        executor, f"return await codemode.fs.read({{ path: '/proc/self/root{root}/inside.txt' }})"
    )
    assert ok == INSIDE


async def test_fs_symlinks_leading_out_are_refused(
    places: Places, executors: Callable[..., Executor]
) -> None:
    root, outside = places.root, places.outside
    (root / "to_secret").symlink_to(places.secret)
    (root / "to_outside").symlink_to(outside, target_is_directory=True)
    (root / "relative_out").symlink_to("../outside/secret.txt")
    (root / "to_proc_root").symlink_to("/proc/self/root")
    (root / "to_zero").symlink_to("/dev/zero")
    (root / "hop1").symlink_to(root / "hop2")
    (root / "hop2").symlink_to(places.secret)
    (root / "loop_a").symlink_to(root / "loop_b")
    (root / "loop_b").symlink_to(root / "loop_a")
    (root / "inner").symlink_to(root / "inside.txt")  # stays inside: allowed
    executor = executors(FsCapability([root]))
    targets = [
        "to_secret",
        "to_outside/secret.txt",
        "relative_out",
        f"to_proc_root{outside}/secret.txt",
        "to_zero",
        "hop1",
    ]
    result, outcome = await run_js(
        executor,
        f"""
        const out = {{}};
        for (const path of {json.dumps(targets)}) {{
          out[path] = [
            await attempt(() => codemode.fs.read({{ path }})),
            await attempt(() => codemode.fs.write({{ path, content: "pwned" }})),
            await attempt(() => codemode.fs.stat({{ path }})),
          ];
        }}
        out.listing = await attempt(() => codemode.fs.list({{ path: "to_outside" }}));
        out.loop = await attempt(() => codemode.fs.read({{ path: "loop_a" }}));
        out.inner = await codemode.fs.read({{ path: "inner" }});
        out.entries = (await codemode.fs.list({{}})).map((e) => [e.name, e.type]);
        return out;
        """,
    )
    for path in targets:
        for entry in result[path]:
            assert_refused(entry, "CapabilityDenied", "resolves through a symlink")
    assert_refused(result["listing"], "CapabilityDenied", "resolves through a symlink")
    assert result["loop"]["ok"] is False and result["loop"]["type"] == "CapabilityDenied"
    assert result["inner"] == INSIDE
    kinds = dict(result["entries"])
    assert kinds["to_secret"] == kinds["to_outside"] == kinds["loop_a"] == "symlink"
    assert SECRET not in everything(outcome)
    assert places.secret.read_text() == SECRET and tree(outside) == ["secret.txt"]


def _exchanger() -> Callable[[Path, Path], None]:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE), or by two renames."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)

    def two_renames(a: Path, b: Path) -> None:
        parked = a.with_name(a.name + ".parked")
        os.rename(a, parked)
        os.rename(b, a)
        os.rename(parked, b)

    if renameat2 is None:
        return two_renames

    def exchange(a: Path, b: Path) -> None:
        if renameat2(-100, os.fsencode(a), -100, os.fsencode(b), 2) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return exchange


@contextlib.contextmanager
def flipping(a: Path, b: Path) -> Iterator[list[int]]:
    """Swap ``a`` and ``b`` over and over on a thread while the body runs; yields a one-item
    list holding the number of swaps done so far."""
    swap = _exchanger()
    try:
        swap(a, b)
        swap(a, b)
    except OSError:  # e.g. a file system without RENAME_EXCHANGE

        def fallback(x: Path, y: Path) -> None:
            parked = x.with_name(x.name + ".parked")
            os.rename(x, parked)
            os.rename(y, x)
            os.rename(parked, y)

        swap = fallback
    count = [0]
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            swap(a, b)
            count[0] += 1
            time.sleep(0.0002)

    thread = threading.Thread(target=flip, name="symlink-flipper", daemon=True)
    thread.start()
    try:
        yield count
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive()
        if count[0] % 2:  # leave things as they were
            swap(a, b)


RACE_ROUNDS = 250


async def test_fs_race_directory_swapped_for_symlink(
    places: Places, executors: Callable[..., Executor]
) -> None:
    """``sub`` flips between a real directory and a symlink to the outside directory while the
    program reads, writes, lists and removes through it: never one byte from outside."""
    root, outside = places.root, places.outside
    (root / "sub" / "secret.txt").write_text(INSIDE)
    (root / "sub" / "victim.txt").write_text(INSIDE)
    (outside / "victim.txt").write_text(SECRET)
    parked = root.parent / "parked-link"
    parked.symlink_to(outside, target_is_directory=True)
    executor = executors(FsCapability([root]))
    with flipping(root / "sub", parked) as flips:
        result, outcome = await run_js(
            executor,
            f"""
            const seen = [];
            for (let i = 0; i < {RACE_ROUNDS}; i++) {{
              seen.push(await attempt(() => codemode.fs.read({{ path: "sub/secret.txt" }})));
              seen.push(await attempt(() => codemode.fs.list({{ path: "sub" }})));
              seen.push(await attempt(
                () => codemode.fs.write({{ path: "sub/dropped.txt", content: "x" }})));
              seen.push(await attempt(() => codemode.fs.remove({{ path: "sub/victim.txt" }})));
            }}
            return seen;
            """,
        )
    assert flips[0] > 20, "the flipper thread did not run"
    assert SECRET not in everything(outcome)
    kinds = {entry.get("type") for entry in result if not entry["ok"]}
    assert kinds <= {"CapabilityDenied", "FileNotFoundError"}, kinds
    reads = result[0::4]
    assert any(r["ok"] and r["value"] == INSIDE for r in reads)
    assert any(not r["ok"] and r["type"] == "CapabilityDenied" for r in reads)
    for listing in result[1::4]:
        if listing["ok"]:
            assert {e["name"] for e in listing["value"]} <= {
                "secret.txt",
                "victim.txt",
                "dropped.txt",
            }
    assert (outside / "victim.txt").read_text() == SECRET
    assert places.secret.read_text() == SECRET
    assert sorted(os.listdir(outside)) == ["secret.txt", "victim.txt"]


async def test_fs_race_file_swapped_for_symlink(
    places: Places, executors: Callable[..., Executor]
) -> None:
    """The file itself flips between a regular file and a symlink to the secret."""
    root = places.root
    (root / "f.txt").write_text(INSIDE)
    parked = root.parent / "parked-file-link"
    parked.symlink_to(places.secret)
    executor = executors(FsCapability([root]))
    with flipping(root / "f.txt", parked) as flips:
        result, outcome = await run_js(
            executor,
            f"""
            const seen = [];
            for (let i = 0; i < {RACE_ROUNDS * 2}; i++) {{
              seen.push(await attempt(() => codemode.fs.read({{ path: "f.txt" }})));
              seen.push(await attempt(() => codemode.fs.stat({{ path: "f.txt" }})));
            }}
            return seen;
            """,
        )
    assert flips[0] > 20
    assert SECRET not in everything(outcome)
    for entry in result[0::2]:
        assert entry["ok"] and entry["value"] == INSIDE or entry["type"] == "CapabilityDenied"
    for entry in result[1::2]:
        if entry["ok"]:
            assert entry["value"]["size"] == len(INSIDE)
            assert entry["value"]["path"] == str(root / "f.txt")
    assert places.secret.read_text() == SECRET


async def test_fs_race_root_swapped_for_symlink(
    places: Places, executors: Callable[..., Executor]
) -> None:
    """Even the allowed root flipping to a symlink (by someone outside the sandbox) never makes
    a write or a remove land outside."""
    root, outside = places.root, places.outside
    (outside / "victim.txt").write_text(SECRET)
    parked = root.parent / "parked-root-link"
    parked.symlink_to(outside, target_is_directory=True)
    executor = executors(FsCapability([root]))
    with flipping(root, parked) as flips:
        result, outcome = await run_js(
            executor,
            f"""
            const seen = [];
            for (let i = 0; i < {RACE_ROUNDS}; i++) {{
              seen.push(await attempt(
                () => codemode.fs.write({{ path: "victim.txt", content: "inside" }})));
              seen.push(await attempt(() => codemode.fs.remove({{ path: "victim.txt" }})));
              seen.push(await attempt(() => codemode.fs.stat({{ path: "secret.txt" }})));
            }}
            return seen;
            """,
        )
    assert flips[0] > 20
    assert SECRET not in everything(outcome)
    for entry in result[2::3]:  # the root never has a secret.txt: stat must not find one
        assert not entry["ok"], entry
    assert (outside / "victim.txt").read_text() == SECRET
    assert sorted(os.listdir(outside)) == ["secret.txt", "victim.txt"]


async def test_fs_special_files_and_sizes(
    places: Places, executors: Callable[..., Executor]
) -> None:
    root = places.root
    os.mkfifo(root / "fifo")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(root / "sock"))
    try:
        (root / "big.txt").write_text("x" * 1025)
        (root / "ok.txt").write_text("y" * 1024)
        executor = executors(FsCapability([root], max_read_bytes=1024, max_write_bytes=64))
        result, _ = await asyncio.wait_for(
            run_js(
                executor,
                """
                return {
                  fifoRead: await attempt(() => codemode.fs.read({ path: "fifo" })),
                  fifoWrite: await attempt(() => codemode.fs.write({ path: "fifo", content: "x" })),
                  sockRead: await attempt(() => codemode.fs.read({ path: "sock" })),
                  big: await attempt(() => codemode.fs.read({ path: "big.txt" })),
                  ok: (await codemode.fs.read({ path: "ok.txt" })).length,
                  tooMuch: await attempt(
                    () => codemode.fs.write({ path: "w.txt", content: "z".repeat(65) })),
                  wide: await attempt(
                    () => codemode.fs.write({ path: "w.txt", content: "\u00e9".repeat(33) })),
                  surrogate: await attempt(
                    () => codemode.fs.write({ path: "w.txt", content: "\\ud800" })),
                  entries: (await codemode.fs.list({})).map((e) => [e.name, e.type]),
                };
                """,
            ),
            30,  # a FIFO must never block the run waiting for a writer or reader
        )
    finally:
        listener.close()
    assert_refused(result["fifoRead"], "ValueError", "'fifo' is not a regular file (other)")
    assert_refused(result["fifoWrite"], "ValueError", "'fifo' is not a regular file (other)")
    assert_refused(result["sockRead"], "ValueError", "'sock' is not a regular file (other)")
    assert_refused(result["big"], "ValueError", "is 1025 bytes, larger than max_read_bytes=1024")
    assert result["ok"] == 1024
    assert_refused(result["tooMuch"], "ValueError", "is 65 bytes, larger than max_write_bytes=64")
    assert_refused(result["wide"], "ValueError", "is 66 bytes")
    assert_refused(result["surrogate"], "ValueError", "lone surrogate")
    assert not (root / "w.txt").exists()
    assert dict(result["entries"])["fifo"] == "other"


async def test_fs_read_only_changes_nothing(
    places: Places, executors: Callable[..., Executor]
) -> None:
    root = places.root
    before = tree(root)
    executor = executors(FsCapability([root], read_only=True))
    result, _ = await run_js(
        executor,
        """
        return [
          await attempt(() => codemode.fs.write({ path: "inside.txt", content: "changed" })),
          await attempt(() => codemode.fs.write({ path: "new/dir/file.txt", content: "x" })),
          await attempt(() => codemode.fs.remove({ path: "inside.txt" })),
          await attempt(() => codemode.fs.remove({ path: "sub" })),
          await attempt(() => codemode.fs.write({ path: "../outside/x", content: "x" })),
          await codemode.fs.read({ path: "inside.txt" }),
        ];
        """,
    )
    for entry in result[:4]:
        assert_refused(entry, "CapabilityDenied", "this fs capability is read-only")
    assert_refused(result[4], "CapabilityDenied", "read-only")
    assert result[5] == INSIDE
    assert tree(root) == before and (root / "inside.txt").read_text() == INSIDE


# --------------------------------------------------------------------------------------- env


async def test_env_keys_outside_allowlist_leak_nothing(
    monkeypatch: pytest.MonkeyPatch, executors: Callable[..., Executor]
) -> None:
    monkeypatch.setenv("CM_ALLOWED", "visible-value")
    monkeypatch.setenv("CM_SECRET", SECRET)
    monkeypatch.setenv("cm_allowed", SECRET)  # a case variant holding a secret
    executor = executors(EnvCapability(["CM_ALLOWED"]))
    keys = [
        "CM_SECRET",
        "cm_allowed",
        "Cm_Allowed",
        "CM_ALLOWED ",
        " CM_ALLOWED",
        "CM_ALLOWED\u0000",
        "CM_ALLOWED=x",
        "CM_*",
        "*",
        "",
        "__proto__",
        "constructor",
        "toString",
        "hasOwnProperty",
        "PATH",
    ]
    result, outcome = await run_js(
        executor,
        f"""
        const out = {{ keys: [] }};
        for (const key of {json.dumps(keys)}) {{
          out.keys.push(await attempt(() => codemode.env.get({{ key }})));
        }}
        out.arrayKey = await attempt(() => codemode.env.get({{ key: ["CM_SECRET"] }}));
        out.objectKey = await attempt(() => codemode.env.get({{ key: {{ toString: () => "x" }} }}));
        out.protoArgs = await attempt(
          () => codemode.env.get(JSON.parse('{{"__proto__": {{"key": "CM_SECRET"}}}}')));
        out.extra = await attempt(() => codemode.env.list({{ prefix: "CM" }}));
        out.ctor = await attempt(() => codemode.env.constructor({{ key: "CM_SECRET" }}));
        out.list = await codemode.env.list({{}});
        out.allowed = await codemode.env.get({{ key: "CM_ALLOWED" }});
        return out;
        """,
    )
    for key, entry in zip(keys, result["keys"], strict=True):
        assert_refused(entry, "CapabilityDenied", f"environment variable {key!r} is not allowed")
        assert "allowed keys: ['CM_ALLOWED']" in entry["message"]
    assert_refused(result["arrayKey"], "ArgumentError", "parameter 'key' expected string")
    assert_refused(result["objectKey"], "TypeError", "cannot send")
    assert result["protoArgs"]["ok"] is False
    assert_refused(result["extra"], "ArgumentError", "prefix")
    assert result["ctor"]["ok"] is False
    assert result["list"] == ["CM_ALLOWED"]
    assert result["allowed"] == "visible-value"
    assert SECRET not in everything(outcome)
    assert all(call.name in ("env.get", "env.list") for call in outcome.calls)


# -------------------------------------------------------------------------------------- http


@dataclass
class Seen:
    """What the local server received: (Host header, method, path, headers) per request."""

    requests: list[tuple[str, str, str, dict[str, str]]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def since(self, mark: int) -> list[tuple[str, str, str, dict[str, str]]]:
        with self.lock:
            return list(self.requests[mark:])


def _gzip_bomb() -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    return packer.compress(b"\0" * (64 * 1024 * 1024)) + packer.flush()


BOMB = _gzip_bomb()  # ~64 KB on the wire, 64 MiB once inflated


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self) -> None:
        seen = self.server.seen
        with seen.lock:
            seen.requests.append(
                (
                    self.headers.get("Host", ""),
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                )
            )

    def _send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _stream(self, chunks: Any, delay: float = 0.0, **headers: str) -> None:
        """A body without Content-Length, ended by closing the connection."""
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for chunk in chunks:
                if self.server.stopping.is_set():
                    break
                self.wfile.write(chunk)
                self.wfile.flush()
                if delay:
                    time.sleep(delay)
        except OSError:
            self.server.seen.events.append(f"{self.path.split('?')[0]} closed by client")
        self.close_connection = True

    def do_GET(self) -> None:
        self._record()
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/text":
            self._send(200, b"hello", Content_Type="text/plain; charset=utf-8")
        elif url.path == "/echo":
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            payload = {
                "method": self.command,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }
            self._send(200, json.dumps(payload).encode(), Content_Type="application/json")
        elif url.path == "/redirect":
            self.send_response(int(query["status"]))
            self.send_header("Location", query["to"])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif url.path == "/huge":
            self._stream(b"x" * 65536 for _ in range(2000))
        elif url.path == "/bomb":
            self._stream([BOMB], Content_Encoding="gzip")
        elif url.path == "/gzip":
            self._send(200, gzip.compress(b"inflated fine"), Content_Encoding="gzip")
        elif url.path == "/deflate-raw":
            packer = zlib.compressobj(6, zlib.DEFLATED, -15)
            raw = packer.compress(b"raw deflate") + packer.flush()
            self._send(200, raw, Content_Encoding="deflate")
        elif url.path == "/brotli":
            self._send(200, b"\x0b\x02\x80hello\x03", Content_Encoding="br")
        elif url.path == "/lying-length":
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            self.wfile.write(b"short")
            self.close_connection = True
        elif url.path == "/hang":  # accepts, never answers
            self.server.stopping.wait(30)
            self.close_connection = True
        elif url.path == "/drip":  # answers, then one byte every 50 ms for a long time
            self._stream((b"." for _ in range(600)), delay=0.05)
        else:
            self._send(404, b"not found")

    do_POST = do_GET
    do_PUT = do_GET
    do_HEAD = do_GET


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    seen: Seen
    stopping: threading.Event


@dataclass
class Local:
    base: str
    port: int
    seen: Seen


@pytest.fixture(scope="module")
def local() -> Iterator[Local]:
    """A recording HTTP server on 127.0.0.1 with a free port, for the whole module."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.seen = Seen()
    httpd.stopping = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    port = httpd.server_address[1]
    try:
        yield Local(f"http://127.0.0.1:{port}", port, httpd.seen)
    finally:
        httpd.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
        assert not thread.is_alive()


async def test_http_url_tricks_never_reach_the_server(
    local: Local, executors: Callable[..., Executor]
) -> None:
    port = local.port
    denied = "CapabilityDenied"
    cases: list[tuple[Any, str, str]] = [
        (f"http://127.0.0.1:{port}@localhost:{port}/text", denied, "contains credentials"),
        (f"http://user:pw@127.0.0.1:{port}/text", denied, "contains credentials"),
        (f"http://@127.0.0.1:{port}/text", denied, "contains credentials"),
        (f"http://2130706433:{port}/text", denied, "non-canonical form"),
        (f"http://0177.0.0.1:{port}/text", denied, "non-canonical form"),
        (f"http://0x7f.0.0.1:{port}/text", denied, "non-canonical form"),
        (f"http://0x7f000001:{port}/text", denied, "non-canonical form"),
        (f"http://127.1:{port}/text", denied, "non-canonical form"),
        (f"http://127.0.0.01:{port}/text", denied, "non-canonical form"),
        (f"http://127.0.0.1.:{port}/text", denied, "non-canonical form"),
        (f"http://[::1]:{port}/text", denied, "host '::1' is not allowed"),
        (f"http://[::ffff:127.0.0.1]:{port}/text", denied, "host '::ffff:7f00:1' is not"),
        (f"http://[0:0:0:0:0:ffff:7f00:1]:{port}/", denied, "host '::ffff:7f00:1' is not"),
        (f"http://localhost:{port}/text", denied, "host 'localhost' is not allowed"),
        (f"HTTP://LocalHost.:{port}/text", denied, "host 'localhost' is not allowed"),
        (f"http://l\u043ecalhost:{port}/text", denied, "is not allowed"),  # Cyrillic o
        (f"http://evil.example#@127.0.0.1:{port}/", denied, "host 'evil.example' is not"),
        (f"http://127.0.0.1%2e:{port}/text", denied, "not allowed in a host name"),
        (f"http://127.0.0.1:{port}\\@localhost/", denied, "contains a backslash"),
        (f"http://127.0.0.1:{port}/te xt", denied, "whitespace or control characters"),
        (f"http://127.0.0.1:{port}/text\r\nX-Injected: 1", denied, "control characters"),
        ("file:///etc/passwd", denied, "URL scheme 'file' is not allowed"),
        (f"ftp://127.0.0.1:{port}/", denied, "URL scheme 'ftp' is not allowed"),
        ("data:text/plain,hello", denied, "URL scheme 'data' is not allowed"),
        ("javascript:alert(1)", denied, "URL scheme 'javascript' is not allowed"),
        (f"gopher://127.0.0.1:{port}/", denied, "URL scheme 'gopher' is not allowed"),
        (f"ws://127.0.0.1:{port}/", denied, "URL scheme 'ws' is not allowed"),
        (f"//127.0.0.1:{port}/text", "ValueError", "is not absolute"),
        ("http://" + "a" * 5000 + ".example/", denied, "is not allowed"),
        (12345, "ArgumentError", "parameter 'url' expected string"),
    ]
    executor = executors(HttpCapability(["127.0.0.1"]))
    mark = local.seen.count()
    urls = json.dumps([url for url, _, _ in cases])
    result, outcome = await run_js(
        executor,
        f"""
        const out = [];
        for (const url of {urls}) out.push(await attempt(() => codemode.http.fetch({{ url }})));
        return out;
        """,
    )
    for (url, kind, fragment), entry in zip(cases, result, strict=True):
        assert_refused(entry, kind, fragment)
        assert len(entry["message"]) < 1000, (url, len(entry["message"]))
    assert local.seen.since(mark) == []
    # And the allowed host is still reachable, in any letter case of the scheme.
    ok, _ = await run_js(
        executor, f"return await codemode.http.fetch({{ url: 'HtTp://127.0.0.1:{port}/text' }})"
    )
    assert ok["status"] == 200 and ok["text"] == "hello"


async def test_http_ports_and_host_case(local: Local, executors: Callable[..., Executor]) -> None:
    port = local.port
    executor = executors(HttpCapability([f"LOCALHOST:{port}"]))
    mark = local.seen.count()
    result, _ = await run_js(
        executor,
        f"""
        return [
          await codemode.http.fetch({{ url: "http://LocalHost:{port}/text" }}),
          await attempt(() => codemode.http.fetch({{ url: "http://localhost:{port + 1}/" }})),
          await attempt(() => codemode.http.fetch({{ url: "http://localhost/" }})),
          await attempt(() => codemode.http.fetch({{ url: "https://localhost/" }})),
          await attempt(() => codemode.http.fetch({{ url: "http://localhost:99999/" }})),
          await attempt(() => codemode.http.fetch({{ url: "http://127.0.0.1:{port}/" }})),
        ];
        """,
    )
    assert result[0]["status"] == 200
    assert_refused(result[1], "CapabilityDenied", f"port {port + 1} on host 'localhost'")
    assert_refused(result[2], "CapabilityDenied", "port 80 on host 'localhost' is not allowed")
    assert_refused(result[3], "CapabilityDenied", "port 443 on host 'localhost' is not allowed")
    assert result[4]["ok"] is False and result[4]["type"] in ("ValueError", "CapabilityDenied")
    assert_refused(result[5], "CapabilityDenied", "host '127.0.0.1' is not allowed")
    hosts = [host for host, _, _, _ in local.seen.since(mark)]
    assert hosts == [f"localhost:{port}"]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_http_redirects_to_elsewhere_are_refused(
    status: int, local: Local, executors: Callable[..., Executor]
) -> None:
    port = local.port
    targets = [
        (f"http://localhost:{port}/text", "host 'localhost' is not allowed"),
        (f"//localhost:{port}/text", "host 'localhost' is not allowed"),
        (f"http://2130706433:{port}/text", "non-canonical form"),
        (f"http://127.0.0.1.:{port}/text", "non-canonical form"),
        (f"http://user@127.0.0.1:{port}/text", "contains credentials"),
        (f"http://127.0.0.1:{port + 1}/text", f"port {port + 1} on host '127.0.0.1'"),
        ("file:///etc/passwd", "URL scheme 'file' is not allowed"),
        (f"ftp://127.0.0.1:{port}/text", "URL scheme 'ftp' is not allowed"),
        ("data:text/plain,hello", "its Location is not a valid URL"),
        ("javascript:alert(1)", "its Location is not a valid URL"),
        ("\\\\localhost\\text", "contains forbidden characters"),
    ]
    executor = executors(HttpCapability([f"127.0.0.1:{port}"]))
    mark = local.seen.count()
    urls = json.dumps(
        [f"{local.base}/redirect?" + urlencode({"status": status, "to": t}) for t, _ in targets]
    )
    result, _ = await run_js(
        executor,
        f"""
        const out = [];
        for (const url of {urls}) {{
          out.push(await attempt(() => codemode.http.fetch({{
            url, method: "POST", body: "b", headers: {{ Authorization: "Bearer sekrit" }} }})));
        }}
        return out;
        """,
    )
    for (target, fragment), entry in zip(targets, result, strict=True):
        assert_refused(entry, "CapabilityDenied", "refused")
        assert fragment in entry["message"], (target, entry)
    seen = local.seen.since(mark)
    assert [path.split("?")[0] for _, _, path, _ in seen] == ["/redirect"] * len(targets)
    assert all(host == f"127.0.0.1:{port}" for host, _, _, _ in seen)


async def test_http_response_size_limits_and_decompression_bomb(
    local: Local, executors: Callable[..., Executor]
) -> None:
    executor = executors(HttpCapability(["127.0.0.1"], max_response_bytes=1024 * 1024))
    base = local.base
    result, _ = await run_js(
        executor,
        f"""
        return {{
          huge: await attempt(() => codemode.http.fetch({{ url: "{base}/huge" }})),
          bomb: await attempt(() => codemode.http.fetch({{ url: "{base}/bomb" }})),
          lying: await attempt(() => codemode.http.fetch({{ url: "{base}/lying-length" }})),
          brotli: await attempt(() => codemode.http.fetch({{
            url: "{base}/brotli", headers: {{ "Accept-Encoding": "br" }} }})),
          gzip: (await codemode.http.fetch({{ url: "{base}/gzip" }})).text,
          raw: (await codemode.http.fetch({{ url: "{base}/deflate-raw" }})).text,
        }};
        """,
    )
    limit = "exceeded max_response_bytes=1048576; the transfer was aborted"
    assert_refused(result["huge"], "ValueError", limit)
    assert_refused(result["bomb"], "ValueError", limit)
    assert_refused(result["lying"], "ValueError", "is 1000000000 bytes (Content-Length)")
    assert_refused(result["brotli"], "ValueError", "Content-Encoding 'br', which is not supported")
    assert result["gzip"] == "inflated fine" and result["raw"] == "raw deflate"


# Peak Python memory of the same refusals, measured in a process of its own that never starts
# the engine: stopping tracemalloc while another thread takes or drops a Python thread state
# (as jsrun's isolate threads do on their first host call) can crash CPython before 3.12.9 and
# 3.13.2 (CPython gh-128679).
PEAK_OF_REFUSALS = """
import asyncio, sys, tracemalloc
from codemode.capabilities.http import HttpCapability

async def main(base):
    http = HttpCapability(["127.0.0.1"], max_response_bytes=1024 * 1024)
    tracemalloc.start()
    refused = []
    for path in ("/huge", "/bomb"):
        try:
            await http.fetch(url=base + path)
        except ValueError as exc:
            refused.append(str(exc))
    print("PEAK", tracemalloc.get_traced_memory()[1], len(refused), flush=True)

asyncio.run(main(sys.argv[1]))
"""


def test_http_refusing_a_decompression_bomb_stays_small(local: Local) -> None:
    """64 MiB of zeros behind 64 KB of gzip, and an endless body: inflating and reading are
    bounded by the limit, not by the ratio or the length."""
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_OF_REFUSALS, local.base],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    _, peak, refused = next(x for x in proc.stdout.splitlines() if x.startswith("PEAK")).split()
    assert refused == "2"
    assert int(peak) < 24 * 1024 * 1024, f"peak Python memory {int(peak) / 2**20:.1f} MiB"


async def test_http_slow_and_silent_servers_time_out(
    local: Local, executors: Callable[..., Executor]
) -> None:
    executor = executors(HttpCapability(["127.0.0.1"], timeout_s=0.5))
    began = time.monotonic()
    result, _ = await run_js(
        executor,
        f"""
        return [
          await attempt(() => codemode.http.fetch({{ url: "{local.base}/hang" }})),
          await attempt(() => codemode.http.fetch({{ url: "{local.base}/drip" }})),
          (await codemode.http.fetch({{ url: "{local.base}/text" }})).text,
        ];
        """,
    )
    assert time.monotonic() - began < 10  # generous: two 0.5 s deadlines, not hung
    for entry in result[:2]:
        assert_refused(entry, "TimeoutError", "within timeout_s=0.5 seconds")
    assert result[2] == "hello"


async def test_http_run_timeout_closes_a_dripping_download(
    local: Local, executors: Callable[..., Executor]
) -> None:
    """The program's own deadline (shorter than the HTTP one) stops the download too: the
    server sees its connection closed soon after, nothing keeps reading in the background."""
    executor = executors(HttpCapability(["127.0.0.1"], timeout_s=60), timeout_s=1)
    events_before = len(local.seen.events)
    outcome = await executor.execute(f"await codemode.http.fetch({{ url: '{local.base}/drip' }})")
    assert not outcome.ok and "did not finish within 1 s" in getattr(outcome, "error", "")
    deadline = time.monotonic() + 10
    while "/drip closed by client" not in local.seen.events[events_before:]:
        assert time.monotonic() < deadline, "the download kept running after the run ended"
        await asyncio.sleep(0.05)
    again = await executor.execute(
        f"(await codemode.http.fetch({{ url: '{local.base}/text' }})).text"
    )
    assert getattr(again, "result", None) == "hello"


async def test_http_header_and_method_injection(
    local: Local, executors: Callable[..., Executor]
) -> None:
    executor = executors(HttpCapability(["127.0.0.1"]))
    url = f"{local.base}/echo"
    headers_cases: list[tuple[dict[str, str], str, str]] = [
        ({"X-A": "1\r\nX-Injected: yes"}, "ValueError", "invalid value for header 'X-A'"),
        ({"X-A": "1\nX-Injected: yes"}, "ValueError", "invalid value for header 'X-A'"),
        ({"X-A": "1\u0000"}, "ValueError", "invalid value for header 'X-A'"),
        ({"X-A": "a\u000bb"}, "ValueError", "printable ASCII"),
        ({"X-A": "a\u007fb"}, "ValueError", "printable ASCII"),
        ({"X-A": "caf\u00e9"}, "ValueError", "printable ASCII"),
        ({"X-A\r\nX-Injected": "yes"}, "ValueError", "invalid header name"),
        ({"X-A: yes\r\nX-B": "1"}, "ValueError", "invalid header name"),
        ({"X A": "1"}, "ValueError", "invalid header name"),
        ({"": "1"}, "ValueError", "invalid header name"),
        ({"Host": "evil.example"}, "CapabilityDenied", "setting the Host header"),
        ({"host": "evil.example"}, "CapabilityDenied", "setting the Host header"),
        ({"Content-Length": "0"}, "CapabilityDenied", "setting the Content-Length header"),
        ({"Transfer-Encoding": "chunked"}, "CapabilityDenied", "Transfer-Encoding header"),
        ({"Connection": "Upgrade"}, "CapabilityDenied", "setting the Connection header"),
        ({"Upgrade": "h2c"}, "CapabilityDenied", "setting the Upgrade header"),
    ]
    methods: list[tuple[str, str, str]] = [
        ("GET / HTTP/1.1\r\nHost: evil\r\n\r\n", "ValueError", "invalid HTTP method"),
        ("GET /x", "ValueError", "invalid HTTP method"),
        ("", "ValueError", "invalid HTTP method"),
        ("TRACE", "CapabilityDenied", "HTTP method 'TRACE' is not allowed"),
        ("CONNECT", "CapabilityDenied", "HTTP method 'CONNECT' is not allowed"),
        ("PROPFIND", "CapabilityDenied", "HTTP method 'PROPFIND' is not allowed"),
    ]
    mark = local.seen.count()
    result, _ = await run_js(
        executor,
        f"""
        const out = {{ headers: [], methods: [] }};
        const smuggled = "0\\r\\n\\r\\nGET /smuggled HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n";
        for (const headers of {json.dumps([h for h, _, _ in headers_cases])}) {{
          out.headers.push(await attempt(() => codemode.http.fetch({{
            url: "{url}", method: "POST", headers, body: smuggled }})));
        }}
        for (const method of {json.dumps([m for m, _, _ in methods])}) {{
          out.methods.push(await attempt(() => codemode.http.fetch({{ url: "{url}", method }})));
        }}
        out.fine = JSON.parse((await codemode.http.fetch({{
          url: "{url}", method: "post", headers: {{ "X-Fine": "a\\tb" }}, body: smuggled }})).text);
        return out;
        """,
    )
    for (_headers, kind, fragment), entry in zip(headers_cases, result["headers"], strict=True):
        assert_refused(entry, kind, fragment)
    for (_method, kind, fragment), entry in zip(methods, result["methods"], strict=True):
        assert_refused(entry, kind, fragment)
    fine = result["fine"]
    assert fine["method"] == "POST" and fine["headers"]["x-fine"] == "a\tb"
    assert (
        "x-injected" not in fine["headers"] and fine["headers"]["host"] == f"127.0.0.1:{local.port}"
    )
    seen = local.seen.since(mark)
    assert [(method, path) for _, method, path, _ in seen] == [("POST", "/echo")]


async def test_http_very_long_urls(local: Local, executors: Callable[..., Executor]) -> None:
    executor = executors(HttpCapability(["127.0.0.1"]))
    result, _ = await run_js(
        executor,
        f"""
        const base = "{local.base}";
        return [
          await attempt(() => codemode.http.fetch({{ url: base + "/" + "a".repeat(70000) }})),
          await attempt(() => codemode.http.fetch({{ url: base + "/text?" + "q".repeat(200000) }})),
          (await codemode.http.fetch({{ url: base + "/text?" + "q".repeat(8000) }})).status,
        ];
        """,
    )
    for entry in result[:2]:
        # either the server answers 414, or the URL is refused as too long: never a hang, and
        # never a wrong reason ("non-canonical IP") or a message as long as the URL
        if entry["ok"]:
            assert entry["value"]["status"] in (400, 414)
        else:
            assert entry["type"] == "ValueError", entry
            assert "too long" in entry["message"].lower(), entry
            assert len(entry["message"]) < 1000
    assert result[2] == 200
