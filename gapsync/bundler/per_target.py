"""Resolving one requirement set for several target interpreters: all targets at once (one uv
process each, in a thread pool), progress per target on a terminal, and the versions that
differ between targets.

Targets resolved on their own may get different versions of one project (a release that needs a
newer Python, or has no wheel for one platform): that is correct, but a site that wants one
version everywhere says ``python.same_versions: true``. Then, for every project the targets
disagree on, the *lowest* version any target got is tried on every target as a constraint
(``uv pip compile --constraint``): it is the one the most limited target can install, so it is
the version most likely to exist for all. A target on which the constrained resolution fails
keeps its own version and the difference is reported. Pinning one project can move another, so
this repeats (at most ``MAX_ROUNDS`` times) until nothing changes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from packaging.version import InvalidVersion, Version

from gapsync.bundler.platforms import PythonTarget
from gapsync.errors import InputError

Pins = list[tuple[str, str]]  # [(normalized name, version)], sorted
MAX_ROUNDS = 3


def differences(pins: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, str]]:
    """project -> {target id: version} for every project the targets got in different versions.
    Accepts pins as (name, version) pairs or as "name==version" strings (the lock's form)."""
    seen: dict[str, dict[str, str]] = {}
    for tid, ps in pins.items():
        for p in ps:
            name, version = p.split("==", 1) if isinstance(p, str) else p
            seen.setdefault(name, {})[tid] = version
    return {n: dict(sorted(v.items())) for n, v in sorted(seen.items()) if len(set(v.values())) > 1}


def describe(diffs: dict[str, dict[str, str]], limit: int = 8) -> list[str]:
    """One line per project: ``pandas: 2.3.2 (cp311-…), 3.1.1 (cp312-…, cp312-win_amd64)``."""
    lines = []
    for name, per in list(diffs.items())[:limit]:
        by_version: dict[str, list[str]] = {}
        for tid, v in per.items():
            by_version.setdefault(v, []).append(tid)
        lines.append(f"{name}: " + ", ".join(f"{v} ({', '.join(t)})" for v, t in sorted(by_version.items(), key=lambda x: _vkey(x[0]))))
    if len(diffs) > limit:
        lines.append(f"… and {len(diffs) - limit} more")
    return lines


def _vkey(v: str):
    try:
        return (0, Version(v))
    except InvalidVersion:
        return (1, v)


class _Progress:
    """Per-target status on one terminal line (stderr); silent in a pipe, a timer or a test."""

    def __init__(self, targets: Sequence[PythonTarget]):
        self.enabled = sys.stderr.isatty() and not os.environ.get("GAPSYNC_QUIET")
        self.state = {t.id: "…" for t in targets}
        self.start = time.monotonic()
        self.lock = threading.Lock()

    def update(self, tid: str, text: str) -> None:
        if not self.enabled:
            return
        with self.lock:
            self.state[tid] = text
            done = sum(1 for s in self.state.values() if s != "…")
            parts = ", ".join(f"{t} {s}" for t, s in self.state.items())
            sys.stderr.write(f"\r\x1b[Kresolving {done}/{len(self.state)} [{time.monotonic() - self.start:.0f}s]: {parts}")
            if done == len(self.state):
                sys.stderr.write("\n")
            sys.stderr.flush()


def resolve_targets(targets: Sequence[PythonTarget], compile_one: Callable[[PythonTarget, tuple[str, ...]], Pins],
                    jobs: int, same_versions: bool = False,
                    accept: Callable[[PythonTarget, Pins], bool] | None = None) -> dict[str, Pins]:
    """Every target resolved concurrently; with ``same_versions``, aligned as the module says.
    ``accept`` vets a constrained result (has every pin a file for the target?): refused, the
    target keeps its own versions."""
    progress = _Progress(targets)

    def one(t: PythonTarget, constraints: tuple[str, ...] = ()) -> Pins:
        t0 = time.monotonic()
        progress.update(t.id, "…")
        try:
            pins = compile_one(t, constraints)
        except BaseException:
            progress.update(t.id, "failed")
            raise
        progress.update(t.id, f"{len(pins)} pins {time.monotonic() - t0:.1f}s")
        return pins

    workers = max(1, min(jobs, len(targets)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        per_target = dict(zip([t.id for t in targets], pool.map(one, targets), strict=True))
        if not same_versions:
            return per_target
        by_id = {t.id: t for t in targets}
        refused: set[tuple[str, str]] = set()  # (target id, project) where the common version does not resolve
        for _ in range(MAX_ROUNDS):
            diffs = {n: per for n, per in differences(per_target).items()
                     if any((tid, n) not in refused for tid in per)}
            if not diffs:
                break
            lowest = {n: min(per.values(), key=_vkey) for n, per in diffs.items()}
            todo: dict[str, tuple[str, ...]] = {}
            for n, per in diffs.items():
                for tid, v in per.items():
                    if v != lowest[n] and (tid, n) not in refused:
                        todo.setdefault(tid, ())
            for tid in todo:  # every aligned project constrains this target, the refused ones excepted
                todo[tid] = tuple(f"{n}=={v}" for n, v in sorted(lowest.items()) if (tid, n) not in refused)
            if not todo:
                break

            changed = False
            for tid, pins in pool.map(lambda item: _attempt(one, by_id[item[0]], item[1], accept), list(todo.items())):
                if pins is None:
                    refused.update((tid, n) for n in lowest)
                elif pins != per_target[tid]:
                    per_target[tid], changed = pins, True
            if not changed:
                break
    return per_target


def _attempt(one: Callable[[PythonTarget, tuple[str, ...]], Pins], t: PythonTarget, constraints: tuple[str, ...],
             accept: Callable[[PythonTarget, Pins], bool] | None) -> tuple[str, Pins | None]:
    try:
        pins = one(t, constraints)
    except InputError:  # the common versions do not resolve together on this target
        return t.id, None
    return t.id, pins if accept is None or accept(t, pins) else None
