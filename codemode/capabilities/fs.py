"""Sandboxed file access for JavaScript: ``codemode.fs.*`` confined to a set of root directories.

Deny by default: with no allowed roots nothing is reachable. Every path is resolved with
``os.path.realpath`` (so ``..`` and symlinks are followed *before* the check) and must land inside
one of the roots, which are themselves resolved once at construction.

A check on a path name alone is racy: a file or directory can be swapped for a symlink between the
check and the use. So the actual I/O never follows a symlink at all. It walks from the root's file
descriptor one component at a time with ``O_NOFOLLOW`` (``openat``-style, via ``dir_fd``), and on
Linux additionally asks the kernel (``/proc/self/fd``) where the opened descriptor really points
and refuses it if that is outside the roots. Hard links cannot be told apart from the original
file, so do not place hard links to sensitive files inside an allowed root.

This module needs a POSIX platform (``O_NOFOLLOW`` and ``dir_fd`` support).
"""

import asyncio
import errno
import os
import stat as st
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal, TypedDict

from codemode.capabilities.base import HostFn
from codemode.capabilities.errors import CapabilityDenied

__all__ = ["FileEntry", "FileStat", "FileType", "FsCapability"]

MiB = 1024 * 1024

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# Opening a FIFO for reading blocks until a writer appears; non-blocking open avoids that hang.
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_READ_CHUNK = 1 * MiB

FileType = Literal["file", "directory", "symlink", "other"]


class FileEntry(TypedDict):
    """One entry of a directory listing.

    ``type`` is one of ``"file"``, ``"directory"``, ``"symlink"`` or ``"other"``; symlinks are
    reported as such, not followed. ``size`` is in bytes.
    """

    name: str
    type: FileType
    size: int


class FileStat(TypedDict):
    """Metadata of one path.

    ``path`` is the absolute, symlink-free path the request resolved to (useful to see where a
    relative path landed). ``type`` is ``"file"``, ``"directory"``, ``"symlink"`` or ``"other"``,
    ``size`` is in bytes and ``modified`` is the modification time in seconds since the Unix epoch.
    """

    path: str
    type: FileType
    size: int
    modified: float


def _kind(mode: int) -> FileType:
    """Map a ``st_mode`` to the small vocabulary JavaScript sees."""
    if st.S_ISREG(mode):
        return "file"
    if st.S_ISDIR(mode):
        return "directory"
    if st.S_ISLNK(mode):
        return "symlink"
    return "other"


def _is_dir_or_symlink_at(dir_fd: int, name: str) -> bool:
    """Whether ``name`` in ``dir_fd`` is a directory or a symlink, without following it: one
    look, so an entry swapped between the two meanwhile still counts."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        return False
    return st.S_ISDIR(mode) or st.S_ISLNK(mode)


def _fd_path(fd: int) -> str | None:
    """Where the kernel says ``fd`` points, or None where the platform cannot tell (non-Linux)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


@contextmanager
def _reported_as(path: str) -> Iterator[None]:
    """Re-raise OS errors naming the path JavaScript passed, not an internal path component."""
    try:
        yield
    except CapabilityDenied:
        raise
    except OSError as exc:
        if exc.errno is None or exc.filename == path:
            raise
        raise OSError(exc.errno, exc.strerror, path) from None


class FsCapability:
    """``codemode.fs``: read and write UTF-8 text files inside explicitly allowed directories.

    Args:
        allowed_paths: Root directories JavaScript may access (each must exist). Empty means
            nothing is reachable. Relative paths from JavaScript resolve against the FIRST root.
        max_read_bytes: Files larger than this are refused before any byte is read.
        max_write_bytes: Content whose UTF-8 encoding is larger than this is refused.
        read_only: Refuse ``write`` and ``remove``.
    """

    namespace: str = "fs"
    description: str

    def __init__(
        self,
        allowed_paths: Sequence[str | os.PathLike[str]],
        *,
        max_read_bytes: int = 10 * MiB,
        max_write_bytes: int = 10 * MiB,
        read_only: bool = False,
    ) -> None:
        if isinstance(allowed_paths, (str, bytes, os.PathLike)):
            raise TypeError(
                "allowed_paths must be a sequence of paths, not a single path; "
                f"wrap it in a list: allowed_paths=[{os.fspath(allowed_paths)!r}]"
            )
        if not _O_NOFOLLOW or os.open not in os.supports_dir_fd:
            raise OSError("FsCapability needs a POSIX platform with O_NOFOLLOW and dir_fd support")
        if max_read_bytes < 0 or max_write_bytes < 0:
            raise ValueError("max_read_bytes and max_write_bytes must be >= 0")
        roots: list[str] = []
        for entry in allowed_paths:
            raw = os.fspath(entry)
            if not isinstance(raw, str) or not raw or "\0" in raw:
                raise ValueError(f"invalid allowed path: {entry!r}")
            real = os.path.realpath(raw)
            # A root that does not exist yet is allowed (it may be created later); a file is not.
            if os.path.exists(real) and not os.path.isdir(real):
                raise NotADirectoryError(f"allowed path {raw!r} is not a directory")
            if real not in roots:
                roots.append(real)
        self._roots: tuple[str, ...] = tuple(roots)
        self._max_read = max_read_bytes
        self._max_write = max_write_bytes
        self._read_only = read_only
        if roots:
            access = "Read files under" if read_only else "Read and write files under"
            self.description = (
                f"{access}: {', '.join(roots)}. Relative paths resolve against {roots[0]}."
            )
        else:
            self.description = "File access (no directories are allowed, so every call is refused)."

    @property
    def allowed_paths(self) -> tuple[str, ...]:
        """The resolved roots, in the order given."""
        return self._roots

    def exports(self) -> Mapping[str, HostFn]:
        """The JavaScript-visible functions of ``codemode.fs``."""
        return {
            "read": self.read,
            "write": self.write,
            "list": self.list_dir,
            "exists": self.exists,
            "stat": self.stat,
            "remove": self.remove,
        }

    # ----------------------------------------------------------------------------- host functions

    async def read(self, *, path: str) -> str:
        """Read a whole UTF-8 text file.

        Args:
            path: The file to read. Relative paths resolve against the first allowed directory.

        Returns:
            The file's content as text.
        """
        return await asyncio.to_thread(self._read_sync, path)

    async def write(self, *, path: str, content: str) -> None:
        """Create or overwrite a file with UTF-8 text, creating missing parent directories.

        Args:
            path: The file to write. Relative paths resolve against the first allowed directory.
            content: The complete new content of the file.
        """
        await asyncio.to_thread(self._write_sync, path, content)

    async def list_dir(self, *, path: str = ".") -> list[FileEntry]:
        """List a directory's entries, sorted by name (symlinks are reported, not followed).

        Args:
            path: The directory to list; defaults to the first allowed directory.

        Returns:
            One entry per child with its name, type ("file", "directory", "symlink" or "other")
            and size in bytes.
        """
        return await asyncio.to_thread(self._list_sync, path)

    async def exists(self, *, path: str) -> bool:
        """Tell whether a path exists. Paths outside the allowed directories are refused.

        Args:
            path: The path to test. Relative paths resolve against the first allowed directory.

        Returns:
            True if something exists at the path.
        """
        return await asyncio.to_thread(self._exists_sync, path)

    async def stat(self, *, path: str) -> FileStat:
        """Get a path's type, size and modification time.

        Args:
            path: The path to inspect. Relative paths resolve against the first allowed directory.

        Returns:
            The resolved absolute path, type ("file", "directory", "symlink" or "other"), size in
            bytes and modification time in seconds since the Unix epoch.
        """
        return await asyncio.to_thread(self._stat_sync, path)

    async def remove(self, *, path: str) -> None:
        """Delete a file or an empty directory (an allowed root itself cannot be removed).

        Args:
            path: The path to delete. Relative paths resolve against the first allowed directory.
        """
        await asyncio.to_thread(self._remove_sync, path)

    # ------------------------------------------------------------------------ path policy (names)

    def _root_of(self, real: str) -> str | None:
        """The most specific allowed root containing the absolute, resolved path ``real``."""
        best: str | None = None
        for root in self._roots:
            if (real == root or os.path.commonpath([root, real]) == root) and (
                best is None or len(root) > len(best)
            ):
                best = root
        return best

    def _resolve(self, path: str) -> str:
        """Resolve a JavaScript path to a symlink-free absolute path inside a root, or refuse."""
        if not isinstance(path, str):
            raise TypeError(f"path must be a string, got {type(path).__name__}")
        if "\0" in path:
            raise CapabilityDenied(f"path {path!r} contains a NUL byte, which is never allowed")
        if not self._roots:
            raise CapabilityDenied(
                f"path {path!r} is not allowed (allowed paths: none — pass "
                "allowed_paths=[...] to FsCapability)"
            )
        if not path:
            raise ValueError("path is empty; use '.' for the first allowed directory")
        try:
            os.fsencode(path)
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"path {path!r} cannot be a file name: it contains a lone surrogate at index "
                f"{exc.start}"
            ) from None
        joined = path if os.path.isabs(path) else os.path.join(self._roots[0], path)
        try:
            real = os.path.realpath(joined)
        except OSError as exc:  # a symlink on the way was swapped while it was being read
            raise CapabilityDenied(
                f"path {path!r} changed while it was being checked ({exc.strerror}); refusing it "
                f"(allowed paths: {list(self._roots)})"
            ) from None
        if self._root_of(real) is not None:
            return real
        allowed = list(self._roots)
        if self._root_of(os.path.normpath(joined)) is not None:
            raise CapabilityDenied(
                f"path {path!r} resolves through a symlink to a location outside the allowed "
                f"paths: {allowed}"
            )
        hint = "" if os.path.isabs(path) else f" (relative paths resolve against {allowed[0]!r})"
        raise CapabilityDenied(f"path {path!r} is outside the allowed paths: {allowed}{hint}")

    # ----------------------------------------------------------------- race-free I/O (descriptors)

    def _open_dir_at(self, dir_fd: int, name: str, shown: str) -> int:
        """Open directory ``name`` relative to ``dir_fd`` without following a symlink."""
        try:
            return os.open(
                name, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=dir_fd
            )
        except OSError as exc:
            # ELOOP: it was a symlink when opened. ENOTDIR for something that is a directory or
            # a symlink now: it was swapped back and forth while being opened.
            if exc.errno == errno.ELOOP or (
                exc.errno == errno.ENOTDIR and _is_dir_or_symlink_at(dir_fd, name)
            ):
                raise self._swapped(shown) from None
            raise

    def _swapped(self, shown: str) -> CapabilityDenied:
        return CapabilityDenied(
            f"path {shown!r} turned into a symlink after it was checked; refusing to follow it "
            f"(allowed paths: {list(self._roots)})"
        )

    def _open_parent(self, real: str, shown: str, *, create_dirs: bool = False) -> tuple[int, str]:
        """Open the directory holding ``real`` by walking from its root with ``O_NOFOLLOW``.

        Returns the directory's descriptor (the caller closes it) and the final component's name,
        which is ``""`` when ``real`` is the root itself (the descriptor is then the root).
        """
        root = self._root_of(real)
        if root is None:  # _resolve guarantees containment; keep the invariant explicit anyway.
            raise CapabilityDenied(
                f"path {shown!r} is outside the allowed paths: {list(self._roots)}"
            )
        rel = os.path.relpath(real, root)
        parts = [] if rel == "." else rel.split(os.sep)
        fd = os.open(root, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
        where = _fd_path(fd)
        if where is not None and where != root:
            # The root itself was swapped for a symlink after the check: do not walk from there.
            os.close(fd)
            raise CapabilityDenied(
                f"path {shown!r} refused: the allowed path {root!r} now leads to {where!r}"
            )
        try:
            for part in parts[:-1]:
                if create_dirs:
                    try:
                        os.mkdir(part, dir_fd=fd)
                    except FileExistsError:
                        pass
                next_fd = self._open_dir_at(fd, part, shown)
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        return fd, (parts[-1] if parts else "")

    def _verify_fd(self, fd: int, shown: str) -> None:
        """Ask the kernel where ``fd`` really points and refuse it if that is outside the roots."""
        where = _fd_path(fd)
        if where is None:  # No /proc: the O_NOFOLLOW walk alone is the guarantee.
            return
        if where.endswith(" (deleted)") or self._root_of(where) is None:
            raise CapabilityDenied(
                f"path {shown!r} was opened at {where!r}, which is outside the allowed paths: "
                f"{list(self._roots)}"
            )

    def _open_file(self, real: str, shown: str, flags: int, *, create_dirs: bool = False) -> int:
        """Open the resolved path ``real`` with ``flags``, never following any symlink.

        This is the guard against time-of-check/time-of-use races: whatever was swapped into the
        path after ``_resolve`` checked it, no symlink is followed and the opened descriptor is
        verified to lie inside the roots before the caller touches its data.
        """
        dir_fd, name = self._open_parent(real, shown, create_dirs=create_dirs)
        try:
            if not name:
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), shown)
            try:
                fd = os.open(name, flags | _O_NOFOLLOW | _O_CLOEXEC, 0o666, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
                    raise self._swapped(shown) from None
                if exc.errno == errno.ENXIO:  # a FIFO without reader, a socket, a device
                    raise ValueError(f"path {shown!r} is not a regular file (other)") from None
                raise
        finally:
            os.close(dir_fd)
        try:
            self._verify_fd(fd, shown)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _lstat(self, real: str, shown: str) -> os.stat_result:
        """``lstat`` the resolved path through the no-follow walk; a symlink there is refused."""
        dir_fd, name = self._open_parent(real, shown)
        try:
            result = (
                os.stat(name, dir_fd=dir_fd, follow_symlinks=False) if name else os.fstat(dir_fd)
            )
        finally:
            os.close(dir_fd)
        if st.S_ISLNK(result.st_mode):
            raise self._swapped(shown)
        return result

    def _check_writable(self, action: str, path: str) -> None:
        if self._read_only:
            raise CapabilityDenied(
                f"cannot {action} {path!r}: this fs capability is read-only (only read, list, "
                "exists and stat are allowed)"
            )

    # ------------------------------------------------------------------- synchronous operations

    def _read_sync(self, path: str) -> str:
        real = self._resolve(path)
        with _reported_as(path):
            fd = self._open_file(real, path, os.O_RDONLY | _O_NONBLOCK)
            try:
                info = os.fstat(fd)
                if st.S_ISDIR(info.st_mode):
                    raise IsADirectoryError(
                        f"path {path!r} is a directory; use fs.list to see its entries"
                    )
                if not st.S_ISREG(info.st_mode):
                    raise ValueError(f"path {path!r} is not a regular file ({_kind(info.st_mode)})")
                if info.st_size > self._max_read:
                    raise ValueError(
                        f"file {path!r} is {info.st_size} bytes, larger than "
                        f"max_read_bytes={self._max_read}"
                    )
                chunks: list[bytes] = []
                total = 0
                while total <= self._max_read:
                    chunk = os.read(fd, min(_READ_CHUNK, self._max_read + 1 - total))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    total += len(chunk)
                if total > self._max_read:
                    raise ValueError(
                        f"file {path!r} grew past max_read_bytes={self._max_read} while being read"
                    )
            finally:
                os.close(fd)
        data = b"".join(chunks)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"file {path!r} is not valid UTF-8 text (invalid byte at offset {exc.start}); "
                "fs.read only reads text files"
            ) from None

    def _write_sync(self, path: str, content: str) -> None:
        self._check_writable("write", path)
        if not isinstance(content, str):
            raise TypeError(f"content must be a string, got {type(content).__name__}")
        try:
            data = content.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"content for {path!r} cannot be encoded as UTF-8 (lone surrogate at index "
                f"{exc.start})"
            ) from None
        if len(data) > self._max_write:
            raise ValueError(
                f"content for {path!r} is {len(data)} bytes, larger than "
                f"max_write_bytes={self._max_write}"
            )
        real = self._resolve(path)
        with _reported_as(path):
            fd = self._open_file(
                real, path, os.O_WRONLY | os.O_CREAT | _O_NONBLOCK, create_dirs=True
            )
            try:
                info = os.fstat(fd)
                if not st.S_ISREG(info.st_mode):
                    raise ValueError(f"path {path!r} is not a regular file ({_kind(info.st_mode)})")
                # Truncate only now: the descriptor has been verified to be a file inside a root.
                os.ftruncate(fd, 0)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)

    def _list_sync(self, path: str) -> list[FileEntry]:
        real = self._resolve(path)
        with _reported_as(path):
            dir_fd, name = self._open_parent(real, path)
            try:
                fd = self._open_dir_at(dir_fd, name, path) if name else os.dup(dir_fd)
            finally:
                os.close(dir_fd)
            try:
                self._verify_fd(fd, path)
                entries: list[FileEntry] = []
                with os.scandir(fd) as it:
                    for entry in it:
                        info = entry.stat(follow_symlinks=False)
                        entries.append(
                            FileEntry(name=entry.name, type=_kind(info.st_mode), size=info.st_size)
                        )
            finally:
                os.close(fd)
        entries.sort(key=lambda e: e["name"])
        return entries

    def _exists_sync(self, path: str) -> bool:
        real = self._resolve(path)
        try:
            self._lstat(real, path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def _stat_sync(self, path: str) -> FileStat:
        real = self._resolve(path)
        with _reported_as(path):
            info = self._lstat(real, path)
        return FileStat(
            path=real, type=_kind(info.st_mode), size=info.st_size, modified=info.st_mtime
        )

    def _remove_sync(self, path: str) -> None:
        self._check_writable("remove", path)
        real = self._resolve(path)
        if real in self._roots:
            raise CapabilityDenied(
                f"refusing to remove {path!r}: it is an allowed root, only paths inside it can be "
                "removed"
            )
        with _reported_as(path):
            dir_fd, name = self._open_parent(real, path)
            try:
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if st.S_ISDIR(info.st_mode):
                    os.rmdir(name, dir_fd=dir_fd)
                else:  # unlink never follows a symlink: at worst it removes the link itself.
                    os.unlink(name, dir_fd=dir_fd)
            finally:
                os.close(dir_fd)
