"""Scanning the files of a directory in several processes.

Why processes: the pickle analysis is pure Python, so threads would share one core; a model
directory of many shards, or a folder of a thousand small pickles, is scanned in about half the
time on two cores. Why ``fork`` and JSON over a pipe rather than ``multiprocessing``: the
workers already hold the imported scanner, so a fork costs about a millisecond, and the findings
come back as the same JSON that ``gapsync scan --json`` prints: nothing crosses between the
processes as a pickle (this tool never unpickles anything, its own results included).

A worker that dies (killed, out of memory) loses nothing: its share is scanned again in the
parent, so every file is reported as if the scan had been sequential. The result does not depend
on the number of workers: findings come back in the walk's order, as the same JSON (evidence
values that JSON has no type for come back as their ``str``, as ``--json`` prints them). An
error or an interrupt in the parent kills and reaps the workers still running.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gapsync.model import Finding, Severity

MIN_FILES_PER_WORKER = 16  # below this a fork costs more than it saves

ScanOne = Callable[[Path, str], list[Finding]]


def worker_count(jobs: int, files: int) -> int:
    """How many processes to use for ``files`` files (1: scan in this process)."""
    if jobs <= 1 or not hasattr(os, "fork") or threading.active_count() > 1:
        return 1  # a fork copies only the calling thread: locks held by the others stay held
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(jobs, cpus, files // MIN_FILES_PER_WORKER))


def scan_files(files: Sequence[tuple[Path, str]], scan_one: ScanOne, workers: int) -> list[list[Finding]]:
    """``scan_one`` applied to every file, in ``workers`` processes; results in ``files``' order.

    Must be called from a process with a single thread (a fork copies only the calling thread).
    """
    if workers <= 1:
        return [scan_one(p, d) for p, d in files]
    shares = _shares(files, workers)
    children: list[tuple[int, int, list[int]]] = []  # (pid, read end, indexes), not yet collected
    mine = list(shares[0])
    try:
        for share in shares[1:]:
            try:
                r, w = os.pipe()
            except OSError:  # out of file descriptors: this process scans the share itself
                mine += share
                continue
            try:
                pid = os.fork()
            except OSError:  # out of processes or memory: likewise
                os.close(r)
                os.close(w)
                mine += share
                continue
            if pid == 0:  # the worker: scan, write one JSON document, leave without cleanup handlers
                os.close(r)
                code = 0
                try:
                    doc = {str(i): [f.to_dict() for f in scan_one(*files[i])] for i in share}
                    data = json.dumps(doc, default=str).encode()
                    with os.fdopen(w, "wb") as out:
                        out.write(data)
                except BaseException:  # noqa: BLE001 (the parent rescans this share)
                    code = 1
                os._exit(code)
            os.close(w)
            children.append((pid, r, share))
        results: dict[int, list[Finding]] = {i: scan_one(*files[i]) for i in mine}
        while children:
            pid, r, share = children[0]
            got = _collect(pid, r)
            children.pop(0)
            for i in share:
                results[i] = got[i] if got is not None and i in got else scan_one(*files[i])
    finally:  # an error or an interrupt in this process: no worker is left running or unwaited
        for pid, r, _ in children:
            _stop(pid, r)
    return [results[i] for i in range(len(files))]


def _stop(pid: int, fd: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    try:
        os.close(fd)
    except OSError:
        pass


def _collect(pid: int, fd: int) -> dict[int, list[Finding]] | None:
    """A worker's findings, or None when it did not finish (its share is then rescanned).
    The pipe is read to its end before the wait: a worker blocks on a full pipe until then."""
    chunks = []
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            while chunk := f.read(1 << 20):
                chunks.append(chunk)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        return None
    try:
        doc = json.loads(b"".join(chunks))
        return {int(i): [_finding(d) for d in found] for i, found in doc.items()}
    except (ValueError, KeyError, TypeError):
        return None


def _finding(d: dict[str, Any]) -> Finding:
    return Finding(scanner=d["scanner"], rule=d["rule"], severity=Severity(d["severity"]), message=d["message"],
                   file=d["file"], location=d["location"], offset=d["offset"], evidence=d["evidence"])


def _shares(files: Sequence[tuple[Path, str]], workers: int) -> list[list[int]]:
    """Split the files into ``workers`` shares of about equal bytes (largest first, to the lightest)."""
    sizes = []
    for i, (p, _) in enumerate(files):
        try:
            sizes.append((p.stat().st_size, i))
        except OSError:
            sizes.append((0, i))
    shares: list[list[int]] = [[] for _ in range(workers)]
    load = [0] * workers
    for size, i in sorted(sizes, reverse=True):
        k = load.index(min(load))
        shares[k].append(i)
        load[k] += size + 4096  # a file costs something even when small
    return [sorted(s) for s in shares]
