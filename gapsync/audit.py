"""A hash-chained JSON-lines audit log, used by both sides.

Each line holds ``prev`` (the hash of the line before) and ``hash`` (sha256 of its own canonical
JSON without ``hash``). Editing a line breaks its hash; deleting or reordering lines breaks the
chain; cutting lines off the end is caught by the head file (``<log>.head``), which records the
last sequence number and hash. Appends are serialized with flock and fsynced.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gapsync import fsutil
from gapsync.canonical import canonical_json
from gapsync.redact import redact_value

GENESIS = "0" * 64


def _canonical(entry: dict[str, Any]) -> bytes:
    return canonical_json(entry, ensure_ascii=False)  # the chain on disk is in this form (gapsync/canonical.py)


def _actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class AuditLog:
    def __init__(self, path: Path):
        self.path = path
        self.head_path = path.with_name(path.name + ".head")

    def check(self) -> None:
        """Open the log as ``append`` will (created if missing; a link or FIFO at its name is
        ``UnsafeFileError``), so that a run refuses before it changes anything rather than
        after, when it could not record what it did."""
        with fsutil.open_state_fd(self.path, append=True):
            pass

    def append(self, action: str, result: str, **details: Any) -> dict[str, Any]:
        """One entry, all or nothing: the line goes in with one write and is cut back off if
        that fails (a full disk must not leave half a line that breaks every later entry); the
        head file follows only once the line is durable."""
        # O_NOFOLLOW, never blocking on a FIFO, refused unless a regular file (fsutil)
        with fsutil.open_state_fd(self.path, append=True) as fd:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with os.fdopen(os.dup(fd), "rb") as f:
                seq, prev = self._last(f)
            entry = {"seq": seq + 1, "time": datetime.now(UTC).isoformat(timespec="seconds"),
                     "actor": _actor(), "action": action, "result": result,
                     "details": redact_value(details), "prev": prev}  # no URL's credentials are recorded
            entry["hash"] = hashlib.sha256(_canonical(entry)).hexdigest()
            line = _canonical(entry) + b"\n"
            end = os.lseek(fd, 0, os.SEEK_END)
            try:
                if os.write(fd, line) != len(line):
                    raise OSError(28, "short write")
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, end)
                raise
            # a failed head write leaves the old head: verify reads a head that lags by one as
            # "written, head not yet"
            fsutil.write_atomic(self.head_path, (json.dumps({"seq": entry["seq"], "hash": entry["hash"]}) + "\n").encode())
        return entry

    @staticmethod
    def _last(f) -> tuple[int, str]:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        if end == 0:
            return 0, GENESIS
        back = min(end, 65536)
        f.seek(end - back)
        lines = f.read(back).rstrip(b"\n").split(b"\n")
        last = json.loads(lines[-1])
        return int(last["seq"]), str(last["hash"])


@dataclass
class AuditReport:
    entries: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(path: Path) -> AuditReport:
    problems: list[str] = []
    prev, seq, n = GENESIS, 0, 0
    last_but_one = GENESIS
    if not path.exists():
        return AuditReport(0, [f"{path}: no audit log"])
    with fsutil.open_regular(path) as f:
        for lineno, raw in enumerate(f, 1):
            n += 1
            try:
                entry = json.loads(raw)
                claimed = entry.pop("hash")
            except (ValueError, KeyError, AttributeError):
                problems.append(f"{path}:{lineno}: not an audit entry")
                continue
            if hashlib.sha256(_canonical(entry)).hexdigest() != claimed:
                problems.append(f"{path}:{lineno}: entry {entry.get('seq')} was edited (hash mismatch)")
            if entry.get("prev") != prev:
                problems.append(f"{path}:{lineno}: chain broken before entry {entry.get('seq')} (an entry was removed or reordered)")
            if entry.get("seq") != seq + 1:
                problems.append(f"{path}:{lineno}: sequence jumps from {seq} to {entry.get('seq')}")
            last_but_one = prev
            prev, seq = claimed, entry.get("seq", seq + 1)
    head = path.with_name(path.name + ".head")
    if head.exists():
        try:
            h = json.loads(fsutil.read_regular(head, 4096))
            lagging = h.get("seq") == seq - 1 and h.get("hash") == last_but_one  # the head write failed after the line
            if (h.get("seq") != seq or h.get("hash") != prev) and not lagging:
                problems.append(f"{path}: ends at entry {seq} but the head file records entry {h.get('seq')} (entries cut off the end)")
        except ValueError:
            problems.append(f"{head}: unreadable head file")
    elif n:
        problems.append(f"{head}: head file missing")
    return AuditReport(n, problems)
