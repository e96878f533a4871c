"""The one file-system discipline of gapsync: every file it writes and every file it reads from
the medium or the mirror goes through this module (tests/test_fs_discipline.py walks the code
for any other ``open(..., "w")``, ``os.replace``, ``write_bytes``... and fails naming file:line).

Why: the medium (a USB stick, a shared drop directory) is in the attacker's hands, and so is
whatever it names. A name on it may be a symlink to any file of the operator (``usb/x.partial ->
~/.ssh/authorized_keys``), a dangling link (``x.minisig -> /etc/cron.d/x``), or a FIFO that
blocks ``open()`` forever while gapsync holds the mirror lock. The rules:

- **Writes**: the directory is opened once (``O_DIRECTORY|O_NOFOLLOW``); the file is created
  relative to that descriptor with ``O_CREAT|O_EXCL|O_NOFOLLOW`` under a temporary name, written,
  fsynced, and renamed into place relative to the same descriptor (``rename`` replaces a name,
  it never writes through a link). A temporary name is created exclusively, so it can never
  overwrite or remove a file that is already there, published or not (a publish of a file named
  like a temporary one is safe), and an existing destination that is a symlink or not a regular
  file is refused, naming it (``UnsafeFileError``), unless the caller replaces links on purpose
  (the mirror's own links: ``symlink_atomic``).
- **Reads** of the medium or the mirror: ``open_regular`` opens with
  ``O_RDONLY|O_NOFOLLOW|O_NONBLOCK`` (so a FIFO or a device cannot block the open), checks with
  ``fstat`` that it is a regular file, then clears ``O_NONBLOCK``. A symlink, FIFO, device,
  socket or directory is refused at once with one line naming the file (exit 3).

Only the final component is checked: the directories the operator names (``-o usb``,
``--mirror``) are trusted as given, what is *inside* them is not.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from gapsync.errors import GapsyncError, VerificationError

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
TEMP_SUFFIX = ".gapsync-tmp"


class UnsafeFileError(VerificationError):
    """A name gapsync was to read or write is a symlink, FIFO, device, socket or directory
    where a regular file belongs: refused, never followed (exit 3)."""


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "not a regular file"


def _unsafe(path: Path | str, mode: int, doing: str) -> UnsafeFileError:
    return UnsafeFileError(f"{path}: is {_kind(mode)}, not a regular file; gapsync does not {doing} it "
                           "(a link or special file where a file belongs: remove it and run again)")


def _temp_name(name: str) -> str:
    """A fresh temporary name for ``name`` (``.<name>.<12 hex>.gapsync-tmp``), within the 255
    bytes a file name may have whatever the encoding of ``name``."""
    stem = name.encode("utf-8", "surrogateescape")[:180].decode("utf-8", "ignore")
    return f".{stem}.{secrets.token_hex(6)}{TEMP_SUFFIX}"


# -- reading ---------------------------------------------------------------------------------

def open_regular_fd(path: Path | str, *, dir_fd: int | None = None) -> int:
    """A read-only descriptor of the regular file ``path``, never following a final symlink and
    never blocking on a FIFO or device (``O_NONBLOCK`` until ``fstat`` said it is a regular
    file, then cleared). FileNotFoundError passes through (callers decide whether a missing
    file matters); anything that is not a regular file raises ``UnsafeFileError``."""
    try:
        fd = os.open(path, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW on a symlink
            raise _unsafe(path, stat.S_IFLNK, "read") from None
        if e.errno == errno.ENXIO:  # a socket, or a FIFO with no writer (O_NONBLOCK|O_WRONLY only)
            raise UnsafeFileError(f"{path}: is a socket or special file, not a regular file; gapsync does not "
                                  "read it (remove it and run again)") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _unsafe(path, st.st_mode, "read")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(path: Path | str, *, buffering: int = -1) -> BinaryIO:
    """``open(path, "rb")`` for a file of the medium or the mirror, refusing anything but a
    regular file at once (see ``open_regular_fd``). Use it for every such read: bundle, volumes,
    approvals side files, parity files, receipts, ``.minisig``."""
    return os.fdopen(open_regular_fd(path), "rb", buffering=buffering)


def read_regular(path: Path | str, limit: int) -> bytes:
    """The whole regular file ``path``, refused (``VerificationError``, naming it) when it is
    larger than ``limit`` bytes: a side file is never read whole before its size is known."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise VerificationError(f"{path}: is {size} bytes, more than the {limit} gapsync reads for it")
        data = f.read(limit + 1)
    if len(data) > limit:  # grew while being read
        raise VerificationError(f"{path}: is more than the {limit} bytes gapsync reads for it")
    return data


class HeldPath(type(Path())):  # type: ignore[misc]
    """A blob that is not a file of its own but a range of a file gapsync is writing: a model
    file that ``bundle create --no-cache`` downloaded straight into the bundle's body
    (``bundle.archive.BundleBody``), never into the cache. It names the blob in messages, but
    it cannot be opened, stat'ed or passed to any function that takes a path: ``__fspath__``
    raises. A reader that was not written for it therefore fails closed, loudly, instead of
    reading some other file's bytes; the readers that were (the model scanner) go through
    ``open_blob``, which reads exactly the range and nothing beside it."""

    _pread: Callable[[int, int], bytes]
    offset: int
    size: int

    def __fspath__(self) -> str:
        raise HeldBlobError(f"{self}: is held in the bundle being written (--no-cache), not in a file; "
                            "it is read through fsutil.open_blob only")


class HeldBlobError(GapsyncError):
    """A held blob (``HeldPath``) was handed to a reader that takes a file path: a gapsync bug,
    refused rather than read from the wrong place."""


def held_path(name: str, pread: Callable[[int, int], bytes], offset: int, size: int) -> HeldPath:
    """The ``HeldPath`` of ``size`` bytes at ``offset`` of a file read with ``pread(n, offset)``."""
    p = HeldPath(name)
    p._pread, p.offset, p.size = pread, offset, size
    return p


class Window(io.RawIOBase):
    """A read-only, seekable view of ``size`` bytes at ``start`` of a file read with
    ``pread(n, offset)``: reads end at the view's end, positions are relative to its start, a
    negative one is refused. The one window: a held blob here, a stored zip entry in the model
    scanner (``scanner.formats.streams.Window``)."""

    def __init__(self, pread: Callable[[int, int], bytes], start: int, size: int) -> None:
        super().__init__()
        self._pread, self._start, self._size, self._pos = pread, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        pos = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence] + offset
        if pos < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._size - self._pos)
        if n <= 0:
            return 0
        data = self._pread(n, self._start + self._pos)
        b[:len(data)] = data
        self._pos += len(data)
        return len(data)


def open_blob(path: Path | str) -> BinaryIO:
    """``open(path, "rb")`` for a blob's verified bytes: a cache entry, a staged or an operator's
    file as before, or a ``HeldPath`` (a range of the bundle being written) through a reader
    that cannot see past the range."""
    if isinstance(path, HeldPath):
        return io.BufferedReader(Window(path._pread, path.offset, path.size), 1 << 20)
    return open(path, "rb")


STATE_LIMIT = 256 << 20  # a mirror state file (inventory, index.json, views) is read whole: refuse a planted giant


def read_json(path: Path | str, default: Any = None, limit: int = STATE_LIMIT) -> Any:
    """The JSON document in the mirror's state file ``path`` (``read_regular``: a link, FIFO or
    directory planted there is refused, never followed), or ``default`` when it is absent and a
    default is given. A file that is not UTF-8 JSON is refused with one line naming it (exit 3)
    instead of a JSONDecodeError far from the file. Typed ``Any`` like ``json.loads``: the caller
    knows the shape of the state document it wrote."""
    import json

    try:
        data = read_regular(path, limit)
    except FileNotFoundError:
        if default is None:
            raise
        return default
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise VerificationError(f"{path}: not a JSON document gapsync wrote ({str(e)[:120]}); "
                                "restore it from a backup or remove it and import again") from None


# -- directories -----------------------------------------------------------------------------

def make_dirs(path: Path) -> None:
    """``mkdir -p``; the last component must end up a real directory, not a link to one."""
    path.mkdir(parents=True, exist_ok=True)


class Dir:
    """A directory opened once (``O_DIRECTORY|O_NOFOLLOW``): every name created, replaced or
    removed through it is relative to that descriptor, so a directory swapped for a link after
    the open cannot redirect the writes."""

    def __init__(self, path: Path | str, *, create: bool = True):
        self.path = Path(path)
        if create:
            make_dirs(self.path)
        try:
            self.fd = os.open(self.path, _DIR_FLAGS)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                try:
                    mode = os.lstat(self.path).st_mode
                except OSError:
                    mode = 0
                raise UnsafeFileError(f"{self.path}: is {_kind(mode) if mode else 'not a directory'}, not a directory; "
                                      "gapsync does not write through it (name the real directory)") from None
            raise

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:  # a Dir dropped on an error path still gives its descriptor back
        if getattr(self, "fd", -1) >= 0:
            self.close()

    def __enter__(self) -> Dir:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def check_replaceable(self, name: str) -> None:
        """Refuse when ``name`` exists and is not a regular file (a link, FIFO, device...)."""
        st = self.lstat(name)
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise _unsafe(self.path / name, st.st_mode, "write through or replace")

    def open_regular(self, name: str) -> BinaryIO:
        return os.fdopen(open_regular_fd(name, dir_fd=self.fd), "rb")

    def create(self, name: str, mode: int = 0o644) -> BinaryIO:
        """A new file ``name`` (``O_CREAT|O_EXCL|O_NOFOLLOW``), open for writing; FileExistsError
        when anything, even a dangling link, has that name."""
        return os.fdopen(os.open(name, _NEW_FLAGS, mode, dir_fd=self.fd), "wb")

    def open_rw(self, name: str, mode: int = 0o600) -> BinaryIO:
        """A descriptor open for reading and writing at any offset on ``name``, created if absent,
        never through a link (``O_NOFOLLOW``) and refused unless a regular file: a file gapsync
        fills piece by piece across runs (the importer's part staging, gapsync/mirror/parts.py)."""
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, mode, dir_fd=self.fd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.EMLINK):
                raise _unsafe(self.path / name, stat.S_IFLNK, "write") from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise _unsafe(self.path / name, st.st_mode, "write")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "r+b")

    def create_temp(self, name: str, mode: int = 0o644) -> tuple[str, BinaryIO]:
        """A new file under a fresh temporary name for ``name`` (created exclusively, so it never
        touches an existing file of any name); returns (temporary name, file)."""
        for _ in range(100):
            tmp = _temp_name(name)
            try:
                return tmp, self.create(tmp, mode)
            except FileExistsError:
                continue
        raise FileExistsError(errno.EEXIST, "no free temporary name", str(self.path / name))

    def unlink(self, name: str) -> None:
        """Remove the name (a link is removed itself, never what it points to); no error if gone."""
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass

    def replace(self, src: str, dst: str, *, dst_dir: Dir | None = None) -> None:
        """Rename ``src`` over ``dst`` (relative to this directory, or ``dst_dir``): atomic, and a
        rename never follows a link at either name. A directory (or, for a directory, a file)
        planted at ``dst`` is refused naming it, as a link or FIFO is elsewhere, instead of an
        IsADirectoryError that named only the temporary name."""
        target = dst_dir or self
        try:
            os.replace(src, dst, src_dir_fd=self.fd, dst_dir_fd=target.fd)
        except (IsADirectoryError, NotADirectoryError) as e:
            st = target.lstat(dst)
            raise _unsafe(target.path / dst, st.st_mode if st else stat.S_IFDIR, "replace") from e
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            st = target.lstat(dst)
            raise _unsafe(target.path / dst, st.st_mode if st else stat.S_IFDIR, "replace") from e

    def fsync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError:
            pass

    def write_atomic(self, name: str, data: bytes, mode: int = 0o644) -> None:
        with self.atomic(name, mode) as f:
            f.write(data)

    def atomic(self, name: str, mode: int = 0o644, *, temp: str | None = None) -> AtomicFile:
        return AtomicFile(self, name, mode, temp=temp)


class AtomicFile:
    """A file written under a temporary name in ``d`` and renamed over ``name`` by ``commit()``
    (after an fsync), or removed by ``abort()``. As a context manager: commit on success, abort
    on any exception. ``temp``: a fixed temporary name (the bundle's documented ``.partial``);
    a stale regular file of that name is removed first, a link or special file is refused.
    ``file`` is a plain buffered binary file: the bundle writer's hot path writes to it directly."""

    def __init__(self, d: Dir, name: str, mode: int = 0o644, *, temp: str | None = None, own_dir: bool = False):
        self.dir, self.name, self._own_dir = d, name, own_dir
        d.check_replaceable(name)
        if temp is None:
            self.temp, self.file = d.create_temp(name, mode)
        else:
            d.check_replaceable(temp)
            d.unlink(temp)  # a regular file left by an interrupted run
            self.temp, self.file = temp, d.create(temp, mode)
        os.fchmod(self.file.fileno(), mode)  # exactly the mode asked for, whatever the umask
        self.done = False

    @property
    def path(self) -> Path:
        return self.dir.path / self.name

    def fileno(self) -> int:
        return self.file.fileno()

    def write(self, data: bytes) -> int:
        return self.file.write(data)

    def commit(self) -> None:
        """Flush, fsync and rename into place; on any failure (a full disk at the flush) the
        temporary file is removed and the error raised."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            self.dir.check_replaceable(self.name)  # planted while we wrote: still never replaced silently
            self.dir.replace(self.temp, self.name)
        except BaseException:
            self.abort()
            raise
        self.done = True
        self.dir.fsync()
        self._close_dir()

    def abort(self) -> None:
        if not self.file.closed:
            try:
                self.file.close()  # flushes: on a full disk that fails too, and the file goes anyway
            except OSError:
                pass
        if not self.done:
            self.dir.unlink(self.temp)
            self.done = True
        self._close_dir()

    def _close_dir(self) -> None:
        if self._own_dir:
            self.dir.close()

    def __enter__(self) -> BinaryIO:
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


# -- path-level writes (each opens the parent directory once) ------------------------------

def atomic_file(path: Path, mode: int = 0o644, *, temp: str | None = None) -> AtomicFile:
    """``AtomicFile`` for ``path``, its parent directory created if needed and opened here."""
    d = Dir(path.parent)
    try:
        return AtomicFile(d, path.name, mode, temp=temp, own_dir=True)
    except BaseException:
        d.close()
        raise


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` all or nothing: a fresh exclusive temporary file beside it,
    fsync, rename over. Refuses (``UnsafeFileError``) when ``path`` is a link or special file."""
    with atomic_file(path, mode) as f:
        f.write(data)


def write_new(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Create ``path`` with ``data``, only if no name ``path`` exists (``O_EXCL|O_NOFOLLOW``):
    private keys, which are never replaced. FileExistsError otherwise."""
    with Dir(path.parent) as d:
        try:
            with d.create(path.name, mode) as f:
                os.fchmod(f.fileno(), mode)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except FileExistsError:
            raise
        except BaseException:
            d.unlink(path.name)
            raise


def copy_file(src: Path, dst: Path, mode: int = 0o644) -> None:
    """Copy the regular file ``src`` to ``dst`` atomically (``src`` read with ``open_regular``)."""
    with open_regular(src) as fin, atomic_file(dst, mode) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def link_or_copy(src: Path, dst: Path, mode: int = 0o444) -> None:
    """Publish ``src`` at ``dst`` atomically: a hard link when possible (no second copy of the
    bytes), a copy when the file system refuses. The link or copy is made under a fresh
    temporary name and renamed over ``dst``; an existing ``dst`` that is a link is refused."""
    with Dir(dst.parent) as d:
        d.check_replaceable(dst.name)
        tmp = None
        for _ in range(100):
            name = _temp_name(dst.name)
            try:
                os.link(src, name, dst_dir_fd=d.fd, follow_symlinks=False)
                tmp = name
                break
            except FileExistsError:
                continue
            except OSError:
                break
        try:
            if tmp is None:
                with open_regular(src) as fin:
                    tmp, fout = d.create_temp(dst.name, mode)
                    with fout:
                        os.fchmod(fout.fileno(), mode)
                        shutil.copyfileobj(fin, fout, 1 << 20)
            d.replace(tmp, dst.name)
        except BaseException:  # a full disk half-way through the copy: leave no temporary file behind
            if tmp is not None:
                d.unlink(tmp)
            raise


def symlink_atomic(target: str, link: Path) -> None:
    """Point ``link`` at ``target`` atomically: a new link under a fresh name renamed over the
    old name (which is replaced itself, never followed). For the mirror's own links only."""
    with Dir(link.parent) as d:
        for _ in range(100):
            name = _temp_name(link.name)
            try:
                os.symlink(target, name, dir_fd=d.fd)
                break
            except FileExistsError:
                continue
        try:
            d.replace(name, link.name)
        except BaseException:
            d.unlink(name)
            raise


def move(src: Path, dst: Path) -> None:
    """Rename ``src`` (a file, link or directory) to ``dst`` on one file system, relative to
    each parent opened once. Neither name is followed."""
    with Dir(src.parent, create=False) as s, Dir(dst.parent) as d:
        s.replace(src.name, dst.name, dst_dir=d)


def hard_link(src: Path, dst: Path) -> None:
    """A new name ``dst`` for the file (or link itself) at ``src``; FileExistsError if taken."""
    with Dir(dst.parent) as d:
        os.link(src, dst.name, dst_dir_fd=d.fd, follow_symlinks=False)


def copy_aside(src: Path, dst: Path) -> None:
    """Keep a copy of ``src`` (a regular file, or a link copied as a link) at the new name
    ``dst``: the publish journal's fallback where hard links are not possible."""
    st = os.lstat(src)
    with Dir(dst.parent) as d:
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst.name, dir_fd=d.fd)
            return
        with open_regular(src) as fin, d.create(dst.name, stat.S_IMODE(st.st_mode)) as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A new private directory (mode 0700, created exclusively) under ``parent``."""
    make_dirs(parent)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def _open_own(path: Path, flags: int, doing: str) -> int:
    """A descriptor of one of gapsync's own files that is opened in place (it cannot be written
    under a temporary name: a lock, a log appended to, a resumable download), created if
    missing: never through a link (``O_NOFOLLOW``), never blocking on a FIFO (``O_NONBLOCK``,
    cleared once the file is known to be regular), and refused unless it is a regular file."""
    make_dirs(path.parent)
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, 0o644)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EMLINK):
            raise _unsafe(path, stat.S_IFLNK, doing) from None
        if e.errno == errno.ENXIO:  # a FIFO with no reader, opened for writing
            raise UnsafeFileError(f"{path}: is a socket or special file, not a regular file") from None
        if e.errno == errno.EISDIR:
            raise _unsafe(path, stat.S_IFDIR, doing) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _unsafe(path, st.st_mode, doing)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def open_state_fd(path: Path, *, append: bool = False) -> Iterator[int]:
    """A read-write descriptor of gapsync's own state file (lock file, audit log)."""
    fd = _open_own(path, os.O_RDWR | (os.O_APPEND if append else 0), "open")
    try:
        yield fd
    finally:
        os.close(fd)


def open_append(path: Path) -> BinaryIO:
    """A file of gapsync's own opened for appending bytes (the channel's history log, a demo
    server's log): appending cannot be done under a temporary name."""
    return os.fdopen(_open_own(path, os.O_WRONLY | os.O_APPEND, "append to"), "ab")


def open_partial(path: Path, *, resume: bool) -> BinaryIO:
    """A download's partial file in gapsync's own cache, to append to (``resume``) or to start
    afresh. Resumable by design, so not a temporary name: the cache's ``partial/`` directory
    holds nothing else."""
    fd = _open_own(path, os.O_WRONLY | (os.O_APPEND if resume else 0), "write")
    if not resume:
        os.ftruncate(fd, 0)
    return os.fdopen(fd, "ab" if resume else "wb")


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a directory of gapsync's own (a channel's TUF client state) to the new path ``dst``
    in scratch space, links copied as links (``dst`` must not exist: every file in it is new)."""
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, "already exists", str(dst))
    shutil.copytree(src, dst, symlinks=True)


@contextmanager
def temp_dir(prefix: str, parent: Path | None = None) -> Iterator[Path]:
    """A private scratch directory (0700, created exclusively: nothing can be planted in it
    before us), removed with everything in it at the end."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# -- kernel copy ---------------------------------------------------------------------------------

# How ``copy_range`` moves bytes, best first; a method the kernel or file system refuses is
# dropped for the rest of the process (tests set this to exercise each fallback).
COPY_METHODS = ["copy_file_range", "sendfile", "readwrite"]
_COPY_FALLBACK_ERRNOS = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.ETXTBSY, errno.EPERM,
                         getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}
COPY_STEP = 64 << 20  # bytes per kernel call: a Ctrl-C or a fault point is never far away


def copy_range(src_fd: int, src_offset: int, dst: AtomicFile | BinaryIO | int, dst_offset: int, length: int) -> int:
    """Copy ``length`` bytes of ``src_fd`` from ``src_offset`` to ``dst`` at ``dst_offset`` in the
    kernel (``copy_file_range``: no trip through user space, a reflink where the file system
    shares extents; else ``sendfile``; else ``pread``/``pwrite``), and return how many bytes were
    copied (fewer only when the source ends first). ``dst`` is a file this module created
    (an ``AtomicFile`` or its ``file``): the kernel writes into that descriptor and nothing else,
    so the no-follow, exclusive-create rules above hold. A buffered ``dst`` must be flushed first."""
    out = dst if isinstance(dst, int) else dst.fileno()
    done = 0
    while done < length:
        step = min(COPY_STEP, length - done)
        method = COPY_METHODS[0]
        try:
            if method == "copy_file_range":
                n = os.copy_file_range(src_fd, out, step, src_offset + done, dst_offset + done)
            elif method == "sendfile":
                os.lseek(out, dst_offset + done, os.SEEK_SET)  # sendfile writes at the file position
                n = os.sendfile(out, src_fd, src_offset + done, step)
            else:
                data = os.pread(src_fd, min(step, 4 << 20), src_offset + done)
                n = 0
                while n < len(data):
                    n += os.pwrite(out, data[n:], dst_offset + done + n)
        except OSError as e:
            if e.errno in _COPY_FALLBACK_ERRNOS and method != "readwrite":
                if method in COPY_METHODS:
                    COPY_METHODS.remove(method)
                continue
            raise
        if n == 0:
            break
        done += n
    return done


def reopen_readonly(fd: int) -> int:
    """A second, read-only descriptor of the file ``fd`` is open on (a file this module created
    write-only), through ``/proc/self/fd``: the same inode, no name looked up in a directory that
    someone else may write to. For reading back what was written (``hashing.ReadBackHash``)."""
    return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | _CLOEXEC)


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` of ``fd`` (a file this module created), however many
    calls it takes."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:
            raise OSError(errno.EIO, "pwrite wrote nothing")
        done += n
