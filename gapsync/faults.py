"""Kill points for the fault tests: ``GAPSYNC_KILL_AT=<name>[:<n>]`` makes the process SIGKILL
itself the n-th time (default 1st) it reaches the named point, so a test can interrupt an import
or a create at an exact step and check that a re-run finishes with the same result. Points are
named after what has just happened (``import.staged-blob``, ``publish.pep503.files`` ...).
Without the variable a point costs one dictionary lookup."""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def point(name: str) -> None:
    spec = os.environ.get("GAPSYNC_KILL_AT")
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
