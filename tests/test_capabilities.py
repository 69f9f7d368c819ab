"""Tests for the built-in fs, env and http capabilities: happy paths and every refusal.

The HTTP tests only ever talk to a local server bound to 127.0.0.1; ``localhost`` (which resolves
to the same server) plays the part of a second, distinct host.
"""

import asyncio
import inspect
import json
import os
import threading
import time
import typing
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from codemode.capabilities.base import Capability
from codemode.capabilities.env import EnvCapability
from codemode.capabilities.errors import CapabilityDenied
from codemode.capabilities.fs import FsCapability
from codemode.capabilities.http import HttpCapability

# --------------------------------------------------------------------------------------- general


@pytest.mark.parametrize(
    ("cap", "names"),
    [
        (lambda p: FsCapability([p]), {"read", "write", "list", "exists", "stat", "remove"}),
        (lambda p: EnvCapability(["HOME"]), {"get", "list"}),
        (lambda p: HttpCapability(["127.0.0.1"]), {"fetch"}),
    ],
)
def test_exports_are_typed_keyword_only_coroutines(tmp_path: Path, cap, names) -> None:
    capability = cap(tmp_path)
    assert isinstance(capability, Capability)
    exports = capability.exports()
    assert set(exports) == names
    for fn in exports.values():
        assert inspect.iscoroutinefunction(fn)
        hints = typing.get_type_hints(fn)  # must resolve: the stub generator relies on it
        assert "return" in hints
        params = inspect.signature(fn).parameters.values()
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
        assert all(p.name in hints for p in params)
        doc = inspect.getdoc(fn) or ""
        assert doc
        if list(params):
            assert "Args:" in doc


def test_capability_denied_is_a_permission_error() -> None:
    assert issubclass(CapabilityDenied, PermissionError)


# -------------------------------------------------------------------------------------------- fs


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "root"
    base.mkdir()
    return base.resolve()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    other = tmp_path / "outside"
    other.mkdir()
    (other / "secret.txt").write_text("top secret")
    return other.resolve()


async def test_fs_write_read_roundtrip_and_parent_creation(root: Path) -> None:
    fs = FsCapability([root])
    await fs.write(path="a/b/note.txt", content="héllo ✓")
    assert (root / "a" / "b" / "note.txt").read_text("utf-8") == "héllo ✓"
    assert await fs.read(path="a/b/note.txt") == "héllo ✓"
    assert await fs.read(path=str(root / "a" / "b" / "note.txt")) == "héllo ✓"
    await fs.write(path="a/b/note.txt", content="short")  # overwrite truncates
    assert await fs.read(path="a/b/note.txt") == "short"


async def test_fs_list_exists_stat_remove(root: Path) -> None:
    fs = FsCapability([root])
    (root / "f.txt").write_text("12345")
    (root / "d").mkdir()
    (root / "link").symlink_to(root / "f.txt")
    entries = await fs.list_dir()
    assert entries == [
        {"name": "d", "type": "directory", "size": entries[0]["size"]},
        {"name": "f.txt", "type": "file", "size": 5},
        {"name": "link", "type": "symlink", "size": entries[2]["size"]},
    ]
    assert await fs.list_dir(path="d") == []
    assert await fs.exists(path="f.txt") is True
    assert await fs.exists(path="missing.txt") is False
    assert await fs.exists(path="f.txt/below") is False
    info = await fs.stat(path="f.txt")
    assert info["type"] == "file" and info["size"] == 5 and info["path"] == str(root / "f.txt")
    assert abs(info["modified"] - (root / "f.txt").stat().st_mtime) < 1e-3
    assert (await fs.stat(path="."))["type"] == "directory"
    assert (await fs.stat(path="link"))["path"] == str(root / "f.txt")  # symlinks are resolved
    await fs.remove(path="d")
    await fs.remove(path="f.txt")
    assert not (root / "d").exists() and not (root / "f.txt").exists()


async def test_fs_relative_paths_resolve_against_first_root(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (second / "x.txt").write_text("second")
    fs = FsCapability([first, str(second)])
    await fs.write(path="x.txt", content="first")
    assert (first / "x.txt").read_text() == "first"
    assert await fs.read(path=str(second / "x.txt")) == "second"
    assert fs.allowed_paths == (str(first.resolve()), str(second.resolve()))


async def test_fs_symlink_inside_roots_is_followed(root: Path) -> None:
    (root / "real").mkdir()
    (root / "real" / "f.txt").write_text("inside")
    (root / "alias").symlink_to(root / "real")
    fs = FsCapability([root])
    assert await fs.read(path="alias/f.txt") == "inside"


async def test_fs_empty_allowlist_denies_everything(tmp_path: Path) -> None:
    fs = FsCapability([])
    (tmp_path / "f.txt").write_text("x")
    for call in (fs.read(path=str(tmp_path / "f.txt")), fs.exists(path="f.txt"), fs.list_dir()):
        with pytest.raises(CapabilityDenied, match=r"allowed paths: none — pass allowed_paths="):
            await call


async def test_fs_denies_absolute_path_outside(root: Path) -> None:
    fs = FsCapability([root])
    with pytest.raises(CapabilityDenied) as info:
        await fs.read(path="/etc/passwd")
    assert str(info.value) == f"path '/etc/passwd' is outside the allowed paths: ['{root}']"
    with pytest.raises(CapabilityDenied, match="outside the allowed paths"):
        await fs.exists(path="/etc/passwd")
    with pytest.raises(CapabilityDenied, match="outside the allowed paths"):
        await fs.stat(path="/etc")
    with pytest.raises(CapabilityDenied, match="outside the allowed paths"):
        await fs.list_dir(path="/")


async def test_fs_denies_dotdot_traversal(root: Path, outside: Path) -> None:
    fs = FsCapability([root])
    with pytest.raises(CapabilityDenied) as info:
        await fs.read(path="../outside/secret.txt")
    assert "path '../outside/secret.txt' is outside the allowed paths" in str(info.value)
    assert f"relative paths resolve against '{root}'" in str(info.value)
    with pytest.raises(CapabilityDenied, match="outside the allowed paths"):
        await fs.write(path=f"{root}/sub/../../outside/new.txt", content="x")
    assert not (outside / "new.txt").exists()
    with pytest.raises(CapabilityDenied, match="outside the allowed paths"):
        await fs.list_dir(path="..")


async def test_fs_denies_nul_byte(root: Path) -> None:
    fs = FsCapability([root])
    with pytest.raises(CapabilityDenied, match="contains a NUL byte"):
        await fs.read(path="f.txt\0.png")


async def test_fs_denies_symlinks_leading_outside(root: Path, outside: Path) -> None:
    (root / "to_secret").symlink_to(outside / "secret.txt")
    (root / "to_dir").symlink_to(outside)
    (root / "dangling").symlink_to(outside / "does-not-exist.txt")
    fs = FsCapability([root])
    for path in ("to_secret", "to_dir/secret.txt"):
        with pytest.raises(
            CapabilityDenied, match="resolves through a symlink to a location outside"
        ):
            await fs.read(path=path)
    with pytest.raises(CapabilityDenied, match="resolves through a symlink"):
        await fs.write(path="to_secret", content="pwned")
    with pytest.raises(CapabilityDenied, match="resolves through a symlink"):
        await fs.write(path="dangling", content="pwned")
    with pytest.raises(CapabilityDenied, match="resolves through a symlink"):
        await fs.list_dir(path="to_dir")
    assert (outside / "secret.txt").read_text() == "top secret"
    assert not (outside / "does-not-exist.txt").exists()


def test_fs_toctou_final_component_swapped_for_symlink(root: Path, outside: Path) -> None:
    fs = FsCapability([root])
    (root / "f.txt").write_text("harmless")
    real = fs._resolve("f.txt")  # the check passes...
    (root / "f.txt").unlink()
    (root / "f.txt").symlink_to(outside / "secret.txt")  # ...then a symlink is swapped in
    with pytest.raises(CapabilityDenied, match="turned into a symlink after it was checked"):
        fs._open_file(real, "f.txt", os.O_RDONLY)
    with pytest.raises(CapabilityDenied, match="turned into a symlink"):
        fs._open_file(real, "f.txt", os.O_WRONLY | os.O_CREAT)
    with pytest.raises(CapabilityDenied, match="turned into a symlink"):
        fs._lstat(real, "f.txt")
    assert (outside / "secret.txt").read_text() == "top secret"


def test_fs_toctou_directory_swapped_for_symlink(root: Path, outside: Path) -> None:
    fs = FsCapability([root])
    (root / "sub").mkdir()
    (root / "sub" / "secret.txt").write_text("harmless")
    real = fs._resolve("sub/secret.txt")
    (root / "sub" / "secret.txt").unlink()
    (root / "sub").rmdir()
    (root / "sub").symlink_to(outside)
    with pytest.raises(CapabilityDenied, match="path 'sub/secret.txt' turned into a symlink"):
        fs._open_file(real, "sub/secret.txt", os.O_RDONLY)


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="needs /proc")
def test_fs_verify_fd_refuses_descriptor_outside(root: Path, outside: Path) -> None:
    fs = FsCapability([root])
    fd = os.open(outside / "secret.txt", os.O_RDONLY)
    try:
        with pytest.raises(CapabilityDenied, match="which is outside the allowed paths"):
            fs._verify_fd(fd, "x")
    finally:
        os.close(fd)


async def test_fs_size_limits(root: Path) -> None:
    fs = FsCapability([root], max_read_bytes=10, max_write_bytes=4)
    (root / "ok.txt").write_text("0123456789")
    (root / "big.txt").write_text("0123456789A")
    assert await fs.read(path="ok.txt") == "0123456789"
    with pytest.raises(ValueError, match=r"'big.txt' is 11 bytes, larger than max_read_bytes=10"):
        await fs.read(path="big.txt")
    with pytest.raises(ValueError, match=r"is 5 bytes, larger than max_write_bytes=4"):
        await fs.write(path="w.txt", content="12345")
    assert not (root / "w.txt").exists()
    with pytest.raises(ValueError, match=r"is 6 bytes"):  # limits count UTF-8 bytes
        await fs.write(path="w.txt", content="ééé")


async def test_fs_huge_file_refused_before_reading(root: Path) -> None:
    with open(root / "sparse.bin", "wb") as f:
        f.truncate(4 * 1024**3)  # 4 GiB sparse file: reading it whole would be obvious
    fs = FsCapability([root])
    started = time.monotonic()
    with pytest.raises(ValueError, match="larger than max_read_bytes=10485760"):
        await fs.read(path="sparse.bin")
    assert time.monotonic() - started < 1


async def test_fs_non_utf8_and_non_regular_files(root: Path) -> None:
    (root / "bin.dat").write_bytes(b"ok\xff\xfe")
    (root / "d").mkdir()
    os.mkfifo(root / "fifo")
    fs = FsCapability([root])
    with pytest.raises(
        ValueError, match=r"'bin.dat' is not valid UTF-8 text \(invalid byte at offset 2"
    ):
        await fs.read(path="bin.dat")
    with pytest.raises(IsADirectoryError, match="is a directory; use fs.list"):
        await fs.read(path="d")
    with pytest.raises(IsADirectoryError):
        await fs.write(path="d", content="x")
    with pytest.raises(ValueError, match=r"'fifo' is not a regular file \(other\)"):
        await asyncio.wait_for(fs.read(path="fifo"), 5)  # must not block waiting for a writer


async def test_fs_missing_paths_raise_file_not_found(root: Path) -> None:
    fs = FsCapability([root])
    with pytest.raises(FileNotFoundError) as info:
        await fs.read(path="nope/missing.txt")
    assert info.value.filename == "nope/missing.txt"
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        await fs.stat(path="missing.txt")
    with pytest.raises(FileNotFoundError):
        await fs.remove(path="missing.txt")
    (root / "f.txt").write_text("x")
    with pytest.raises(NotADirectoryError):
        await fs.list_dir(path="f.txt")


async def test_fs_read_only_and_root_protection(root: Path) -> None:
    (root / "f.txt").write_text("x")
    (root / "d").mkdir()
    (root / "d" / "inner").write_text("y")
    ro = FsCapability([root], read_only=True)
    assert await ro.read(path="f.txt") == "x"
    with pytest.raises(
        CapabilityDenied, match=r"cannot write 'f.txt': this fs capability is read-only"
    ):
        await ro.write(path="f.txt", content="y")
    with pytest.raises(CapabilityDenied, match=r"cannot remove 'f.txt': .* read-only"):
        await ro.remove(path="f.txt")
    fs = FsCapability([root])
    with pytest.raises(CapabilityDenied, match="it is an allowed root"):
        await fs.remove(path=".")
    with pytest.raises(OSError, match="Directory not empty"):
        await fs.remove(path="d")


def test_fs_constructor_validation(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="wrap it in a list"):
        FsCapability(str(tmp_path))  # type: ignore[arg-type]
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        FsCapability([tmp_path / "file.txt"])
    assert "no directories are allowed" in FsCapability([]).description


async def test_fs_root_may_be_created_later(tmp_path: Path) -> None:
    # The seed README allows ./examples before it exists: the capability must not refuse it.
    fs = FsCapability([tmp_path / "later"])
    with pytest.raises(FileNotFoundError):
        await fs.read(path="a.txt")
    (tmp_path / "later").mkdir()
    await fs.write(path="a.txt", content="hello")
    assert await fs.read(path="a.txt") == "hello"


async def test_fs_type_errors(root: Path) -> None:
    fs = FsCapability([root])
    with pytest.raises(TypeError, match="path must be a string, got int"):
        await fs.read(path=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="content must be a string"):
        await fs.write(path="x", content=None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- env


async def test_env_get_and_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CM_A", "alpha")
    monkeypatch.setenv("CM_B", "beta")
    monkeypatch.delenv("CM_UNSET", raising=False)
    env = EnvCapability(["CM_B", "CM_A", "CM_UNSET"])
    assert await env.get(key="CM_A") == "alpha"
    assert await env.get(key="CM_UNSET") is None
    assert await env.list_keys() == ["CM_A", "CM_B"]


async def test_env_denies_unlisted_key_without_leaking_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CM_SECRET", "hunter2")
    env = EnvCapability(["CM_A"])
    with pytest.raises(CapabilityDenied) as info:
        await env.get(key="CM_SECRET")
    assert (
        str(info.value)
        == "environment variable 'CM_SECRET' is not allowed (allowed keys: ['CM_A'])"
    )
    assert "hunter2" not in str(info.value)
    with pytest.raises(CapabilityDenied, match="'cm_a' is not allowed"):  # case-sensitive
        await env.get(key="cm_a")


async def test_env_empty_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CM_A", "alpha")
    env = EnvCapability([])
    with pytest.raises(CapabilityDenied, match="allowed keys: none — pass allowed_keys="):
        await env.get(key="CM_A")
    assert await env.list_keys() == []


async def test_env_wildcard_must_be_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CM_ANY", "v")
    with pytest.raises(CapabilityDenied):
        await EnvCapability(["CM_*"]).get(key="CM_ANY")  # no globbing
    env = EnvCapability(["*"])
    assert await env.get(key="CM_ANY") == "v"
    assert "CM_ANY" in await env.list_keys()
    assert env.allowed_keys == ("*",)


def test_env_constructor_validation() -> None:
    with pytest.raises(TypeError, match="wrap it in a list"):
        EnvCapability("PATH")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid environment variable name"):
        EnvCapability(["A=B"])


# ------------------------------------------------------------------------------------------ http


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, fmt: str, *args: object) -> None:
        """Keep test output quiet."""

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        **extra: str,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _redirect(self, status: int, location: str) -> None:
        self._send(status, b"", Location=location)

    def _chunked(self, chunks: Iterator[bytes], delay: float = 0.0) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in chunks:
                if self.server.stopping.is_set():
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                if delay:
                    time.sleep(delay)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client hung up, as expected for the limit tests
            pass
        self.close_connection = True

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        path = self.path.split("?")[0]
        if path == "/text":
            self._send(200, "hello ✓".encode(), X_Multi="a")
        elif path == "/latin1":
            self._send(200, "café".encode("latin-1"), "text/plain; charset=iso-8859-1")
        elif path == "/echo":
            self._echo()
        elif path == "/redirect-ok":
            self._redirect(302, "/text")
        elif path == "/redirect-abs":
            self._redirect(301, f"http://127.0.0.1:{port}/text")
        elif path == "/redirect-localhost":
            self._redirect(302, f"http://localhost:{port}/echo")
        elif path == "/redirect-evil":
            self._redirect(302, "http://user@127.0.0.1/")
        elif path == "/redirect-file":
            self._redirect(302, "file:///etc/passwd")
        elif path == "/redirect-loop":
            self._redirect(302, "/redirect-loop")
        elif path == "/huge":
            self._chunked(b"x" * 65536 for _ in range(10_000))
        elif path == "/slow":
            self._chunked((b"." for _ in range(100)), delay=0.1)
        else:
            self._send(404, b"not found")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        payload = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": raw.decode("utf-8"),
        }
        self._send(200, json.dumps(payload).encode(), "application/json")

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        if path == "/redirect-303":
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._redirect(303, "/echo")
        elif path == "/redirect-307":
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._redirect(307, "/echo")
        else:
            self._echo()

    do_PUT = do_POST
    do_DELETE = do_POST


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stopping: threading.Event


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A local HTTP server on 127.0.0.1 with a free port; yields 'http://127.0.0.1:PORT'."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.stopping = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def port(server: str) -> int:
    return int(server.rsplit(":", 1)[1])


async def test_http_get_text(server: str) -> None:
    http = HttpCapability(["127.0.0.1"])
    res = await http.fetch(url=f"{server}/text")
    assert res["status"] == 200 and res["ok"] is True
    assert res["text"] == "hello ✓"
    assert res["url"] == f"{server}/text"
    assert res["headers"]["content-type"] == "text/plain; charset=utf-8"
    assert res["headers"]["x-multi"] == "a"
    latin = await http.fetch(url=f"{server}/latin1")
    assert latin["text"] == "café"
    missing = await http.fetch(url=f"{server}/nope")
    assert missing["status"] == 404 and missing["ok"] is False
    head = await http.fetch(url=f"{server}/text", method="head")
    assert head["status"] == 200 and head["text"] == ""


async def test_http_json_and_body_echo(server: str) -> None:
    http = HttpCapability(["127.0.0.1"])
    res = await http.fetch(
        url=f"{server}/echo", method="POST", json={"a": [1, 2]}, headers={"X-T": "1"}
    )
    echo = json.loads(res["text"])
    assert echo["method"] == "POST" and json.loads(echo["body"]) == {"a": [1, 2]}
    assert echo["headers"]["content-type"] == "application/json"
    assert echo["headers"]["x-t"] == "1"
    res = await http.fetch(url=f"{server}/echo", method="PUT", body="plain ✓")
    assert json.loads(res["text"])["body"] == "plain ✓"
    with pytest.raises(ValueError, match="either body or json"):
        await http.fetch(url=f"{server}/echo", method="POST", body="x", json=1)


async def test_http_allowlist_with_port(server: str, port: int) -> None:
    assert (await HttpCapability([f"127.0.0.1:{port}"]).fetch(url=f"{server}/text"))["ok"]
    with pytest.raises(CapabilityDenied) as info:
        await HttpCapability(["127.0.0.1:1"]).fetch(url=f"{server}/text")
    assert (
        str(info.value)
        == f"port {port} on host '127.0.0.1' is not allowed (allowed hosts: ['127.0.0.1:1'])"
    )


async def test_http_redirects_followed_and_rechecked(server: str, port: int) -> None:
    http = HttpCapability(["127.0.0.1"])
    res = await http.fetch(url=f"{server}/redirect-ok")
    assert res["status"] == 200 and res["text"] == "hello ✓" and res["url"] == f"{server}/text"
    res = await http.fetch(url=f"{server}/redirect-abs")
    assert res["url"] == f"{server}/text"
    raw = await http.fetch(url=f"{server}/redirect-ok", follow_redirects=False)
    assert raw["status"] == 302 and raw["headers"]["location"] == "/text"
    with pytest.raises(CapabilityDenied) as info:
        await http.fetch(url=f"{server}/redirect-localhost")
    assert str(info.value) == (
        f"redirect from {server}/redirect-localhost to 'http://localhost:{port}/echo' refused: "
        "host 'localhost' is not allowed (allowed hosts: ['127.0.0.1'])"
    )
    with pytest.raises(CapabilityDenied, match="refused: URL .* contains credentials"):
        await http.fetch(url=f"{server}/redirect-evil")
    with pytest.raises(CapabilityDenied, match=r"refused: URL scheme 'file' is not allowed"):
        await http.fetch(url=f"{server}/redirect-file")


async def test_http_redirect_limit(server: str) -> None:
    with pytest.raises(RuntimeError, match="too many redirects: stopped after max_redirects=3"):
        await HttpCapability(["127.0.0.1"], max_redirects=3).fetch(url=f"{server}/redirect-loop")
    with pytest.raises(RuntimeError, match="max_redirects=0"):
        await HttpCapability(["127.0.0.1"], max_redirects=0).fetch(url=f"{server}/redirect-ok")


async def test_http_redirect_method_rewrite_and_credential_stripping(
    server: str, port: int
) -> None:
    http = HttpCapability(["127.0.0.1", "localhost"])
    echo = json.loads(
        (await http.fetch(url=f"{server}/redirect-303", method="POST", body="b"))["text"]
    )
    assert echo["method"] == "GET" and echo["body"] == ""
    echo = json.loads(
        (await http.fetch(url=f"{server}/redirect-307", method="POST", body="b"))["text"]
    )
    assert echo["method"] == "POST" and echo["body"] == "b"
    res = await http.fetch(
        url=f"{server}/redirect-localhost", headers={"Authorization": "Bearer t", "X-Keep": "1"}
    )
    assert res["url"] == f"http://localhost:{port}/echo"
    echo = json.loads(res["text"])
    assert "authorization" not in echo["headers"] and echo["headers"]["x-keep"] == "1"


async def test_http_response_size_limit_streams(server: str) -> None:
    http = HttpCapability(["127.0.0.1"], max_response_bytes=100_000)
    started = time.monotonic()
    with pytest.raises(
        ValueError, match=r"exceeded max_response_bytes=100000; the transfer was aborted"
    ):
        await http.fetch(url=f"{server}/huge")
    assert time.monotonic() - started < 5
    ok = await HttpCapability(["127.0.0.1"], max_response_bytes=9).fetch(url=f"{server}/text")
    assert ok["text"] == "hello ✓"  # "hello " + a 3-byte check mark: exactly at the limit
    with pytest.raises(
        ValueError, match=r"is 9 bytes \(Content-Length\), more than max_response_bytes=8"
    ):
        await HttpCapability(["127.0.0.1"], max_response_bytes=8).fetch(url=f"{server}/text")


async def test_http_total_deadline_beats_slow_drip(server: str) -> None:
    http = HttpCapability(["127.0.0.1"], timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(
        TimeoutError, match=r"HTTP GET .*/slow did not complete within timeout_s=0.5 seconds"
    ):
        await http.fetch(url=f"{server}/slow")
    assert time.monotonic() - started < 3


async def test_http_connection_errors_are_clear() -> None:
    http = HttpCapability(["127.0.0.1:1"])
    with pytest.raises(ConnectionError, match=r"HTTP GET http://127.0.0.1:1/ failed: ConnectError"):
        await http.fetch(url="http://127.0.0.1:1/")


async def test_http_usable_from_several_event_loops(server: str) -> None:
    http = HttpCapability(["127.0.0.1"])
    results: list[int] = []

    def worker() -> None:
        results.append(asyncio.run(http.fetch(url=f"{server}/text"))["status"])

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    results.append((await http.fetch(url=f"{server}/text"))["status"])
    assert results == [200, 200, 200, 200]


@pytest.mark.parametrize("hosts", [None, []])
async def test_http_denies_by_default(hosts: list[str] | None) -> None:
    http = HttpCapability(hosts)
    with pytest.raises(CapabilityDenied) as info:
        await http.fetch(url="http://evil.com/")
    assert str(info.value) == (
        "host 'evil.com' is not allowed (allowed hosts: none — pass allowed_hosts=[...] to "
        "HttpCapability)"
    )


async def test_http_star_allows_any_host(server: str) -> None:
    http = HttpCapability(["*"])
    assert (await http.fetch(url=f"{server}/text"))["ok"]
    assert http.allowed_hosts == ("*",)
    with pytest.raises(CapabilityDenied, match="contains credentials"):  # tricks still refused
        await http.fetch(url="http://a@127.0.0.1/")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://allowed.com@evil.com/", "contains credentials"),
        ("http://allowed.com:pw@allowed.com/", "contains credentials"),
        ("http://@allowed.com/", "contains credentials"),
        (
            "file:///etc/passwd",
            "URL scheme 'file' is not allowed (allowed schemes: ['https', 'http'])",
        ),
        ("ftp://allowed.com/", "URL scheme 'ftp' is not allowed"),
        ("data:text/plain,hi", "URL scheme 'data' is not allowed"),
        ("javascript:alert(1)", "URL scheme 'javascript' is not allowed"),
        ("http://2130706433/", "non-canonical form"),
        ("http://0177.0.0.1/", "non-canonical form"),
        ("http://0x7f.0.0.1/", "non-canonical form"),
        ("http://0x7f000001/", "non-canonical form"),
        ("http://127.1/", "non-canonical form"),
        ("http://[::1]/", "host '::1' is not allowed"),
        ("http://[::ffff:127.0.0.1]/", "host '::ffff:7f00:1' is not allowed"),
        ("http://[fe80::1%25eth0]/", "IPv6 zone index"),
        ("http://evil.com\\@allowed.com/", "contains a backslash"),
        ("http:\\\\allowed.com\\", "contains a backslash"),
        ("http://allowed.com /", "whitespace or control characters"),
        (" http://allowed.com/", "whitespace or control characters"),
        ("http://allowed.com/\n", "whitespace or control characters"),
        ("http://allowed.com\t/", "whitespace or control characters"),
        ("http://allowed%2ecom/", "not allowed in a host name"),
        ("http://allowed.com../", "not allowed in a host name"),
        ("http://allowed.com.evil.com/", "host 'allowed.com.evil.com' is not allowed"),
        ("http://evilallowed.com/", "host 'evilallowed.com' is not allowed"),
        ("http://sub.allowed.com/", "host 'sub.allowed.com' is not allowed"),
    ],
)
async def test_http_url_tricks_refused(url: str, message: str) -> None:
    http = HttpCapability(["allowed.com", "127.0.0.1"])
    with pytest.raises(CapabilityDenied) as info:
        await http.fetch(url=url)
    assert message in str(info.value)


def _matches(http: HttpCapability, url: str) -> bool:
    try:
        http._check_url(url)
    except CapabilityDenied:
        return False
    return True


def test_http_host_normalization_and_wildcards() -> None:
    http = HttpCapability(["Example.COM.", "*.api.test", "[::1]:8080", "münchen.de"])
    assert _matches(http, "https://EXAMPLE.com/x")
    assert _matches(http, "https://example.com./x")  # one trailing dot is the same DNS name
    assert _matches(http, "http://example.com:1234/")  # no port in the entry: any port
    assert _matches(http, "https://v1.api.test/")
    assert _matches(http, "https://a.b.API.test./")
    assert not _matches(http, "https://api.test/")  # '*.' does not include the apex
    assert not _matches(http, "https://xapi.test/")
    assert _matches(http, "http://[::1]:8080/")
    assert _matches(http, "http://[0:0::1]:8080/")  # same IPv6 address, canonical form
    assert not _matches(http, "http://[::1]/")
    assert _matches(http, "https://MÜNCHEN.de/")
    assert _matches(http, "https://xn--mnchen-3ya.de/")


async def test_http_method_header_and_scheme_policy() -> None:
    http = HttpCapability(["allowed.com"], allowed_methods=["get"], allowed_schemes=["https"])
    with pytest.raises(
        CapabilityDenied, match=r"HTTP method 'POST' is not allowed \(allowed methods: \['GET'\]\)"
    ):
        await http.fetch(url="https://allowed.com/", method="post")
    with pytest.raises(
        CapabilityDenied, match=r"URL scheme 'http' is not allowed \(allowed schemes: \['https'\]\)"
    ):
        await http.fetch(url="http://allowed.com/")
    with pytest.raises(CapabilityDenied, match="setting the Host header is not allowed"):
        await http.fetch(url="https://allowed.com/", headers={"host": "evil.com"})
    with pytest.raises(ValueError, match="invalid value for header 'X'"):
        await http.fetch(url="https://allowed.com/", headers={"X": "a\r\nHost: evil.com"})
    with pytest.raises(ValueError, match="is not absolute"):
        await http.fetch(url="allowed.com/path")


def test_http_constructor_validation() -> None:
    with pytest.raises(TypeError, match="wrap it in a list"):
        HttpCapability("example.com")  # type: ignore[arg-type]
    for bad in (
        "http://example.com",
        "example.com/path",
        "user@example.com",
        "*.127.0.0.1",
        "a.*.com",
        "2130706433",
        "example.com:0",
        "example.com:99999",
    ):
        with pytest.raises(ValueError, match="allowed_hosts entry"):
            HttpCapability([bad])
    with pytest.raises(ValueError, match="only 'http' and 'https'"):
        HttpCapability(["a.com"], allowed_schemes=["ftp"])
    assert "no hosts are allowed" in HttpCapability().description
