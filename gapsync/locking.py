"""Advisory file locks so that two gapsync runs never write one mirror or state at once."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gapsync import fsutil
from gapsync.errors import LockedError


def _note_stale(fd: int, what: str) -> None:
    """A pid left in the lock file by a process that died: the lock was free (the kernel dropped
    it), say so in the log so an operator sees that the previous run did not finish."""
    try:
        old = int(os.pread(fd, 32, 0).decode().strip() or 0)
    except (OSError, ValueError):
        return
    if old and old != os.getpid():
        try:
            os.kill(old, 0)
        except ProcessLookupError:
            from gapsync.log import event

            event("lock.taken_over", level="warning", lock=what, dead_pid=old)
        except PermissionError:
            pass


@contextmanager
def exclusive(path: Path, what: str, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold an exclusive flock on ``path``. The kernel drops it when a process dies, so a lock
    left by a killed run is never stale."""
    # the lock file is opened O_NOFOLLOW|O_NONBLOCK and must be a regular file (fsutil): a link
    # or FIFO planted at its name is refused at once, never followed or blocked on
    with fsutil.open_state_fd(path) as fd:
        yield from _hold(fd, what, wait_seconds)


def _hold(fd: int, what: str, wait_seconds: float) -> Iterator[None]:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = ""
                try:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                except OSError:
                    pass
                raise LockedError(f"{what} is in use by another gapsync process{f' (pid {holder})' if holder else ''}; try again when it has finished") from None
            time.sleep(0.2)
    _note_stale(fd, what)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    try:
        yield
    finally:
        os.ftruncate(fd, 0)  # a clean exit leaves no pid: only a run that died leaves one behind
