"""Scanning a directory in several processes gives the same report as one process, and a worker
that dies loses nothing."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from gapsync.model import Finding, Severity
from gapsync.scanner import parallel
from gapsync.scanner.base import scan_path
from tests.support.data import CORPUS  # noqa: E402
from tests.support.samples import call_print_p0, stack_global_print, write


def _dir_of_mixed_files(tmp_path: Path) -> Path:
    d = tmp_path / "models"
    for i in range(60):
        if i % 7 == 0:
            data = stack_global_print()
        elif i % 11 == 0:
            data = call_print_p0(f"x{i}")
        else:
            data = b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K" + bytes([i]) + b"s."
        write(d / f"sub{i % 3}", f"m{i}.pkl", data)
    write(d, "notes.txt", b"plain text, not a model\n")
    os.symlink("/etc/passwd", d / "link")
    return d


def test_parallel_report_equals_sequential(tmp_path, monkeypatch):
    d = _dir_of_mixed_files(tmp_path)
    one = scan_path(d).to_dict()  # first: every parser the workers need is imported before the fork
    monkeypatch.setattr(parallel, "MIN_FILES_PER_WORKER", 4)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(threading, "active_count", lambda: 1)  # pytest's session servers run in threads
    assert parallel.worker_count(4, 61) == 4
    many = scan_path(d, jobs=4).to_dict()
    assert json.dumps(one, default=str, sort_keys=True) == json.dumps(many, default=str, sort_keys=True)
    assert one["files"] == 61 and any(f["rule"] == "file.symlink" for f in one["findings"])
    assert sum(f["rule"] == "pickle.global.denied" for f in one["findings"]) >= 9


def test_parallel_report_equals_sequential_on_the_corpus(monkeypatch):
    one = json.dumps(scan_path(CORPUS).to_dict(), default=str, sort_keys=True)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert parallel.worker_count(2, 140) == 2
    assert json.dumps(scan_path(CORPUS, jobs=2).to_dict(), default=str, sort_keys=True) == one


def test_a_worker_that_dies_loses_nothing(tmp_path):
    files = [(write(tmp_path, f"f{i}", b"x"), f"f{i}") for i in range(40)]
    parent = os.getpid()

    def scan_one(p: Path, display: str) -> list[Finding]:
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)  # every worker dies on its first file
        return [Finding("model", "t", Severity.INFO, display, file=display)]

    got = parallel.scan_files(files, scan_one, 3)
    assert [f[0].file for f in got] == [d for _, d in files]


def test_worker_results_come_back_in_walk_order(tmp_path):
    sizes = [5000, 10, 3000, 10, 10, 8000, 1, 1]
    files = [(write(tmp_path, f"f{i}", b"x" * n), f"f{i}") for i, n in enumerate(sizes)]
    got = parallel.scan_files(files, lambda p, d: [Finding("model", "pid", Severity.INFO, str(os.getpid()), file=d)], 2)
    assert [f[0].file for f in got] == [d for _, d in files]
    assert len({f[0].message for f in got}) == 2  # two processes did the work
    shares = parallel._shares(files, 2)
    loads = [sum(sizes[i] for i in s) for s in shares]
    assert max(loads) < 0.8 * sum(sizes)


def test_worker_count(monkeypatch):
    assert parallel.worker_count(1, 10_000) == 1
    assert parallel.worker_count(8, 3) == 1  # a fork costs more than a few files
    assert parallel.worker_count(8, 10_000) <= (os.cpu_count() or 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert parallel.worker_count(8, 10_000) == 2
    monkeypatch.setattr(threading, "active_count", lambda: 3)
    assert parallel.worker_count(8, 10_000) == 1  # never fork a process that runs other threads


def test_output_larger_than_a_pipe_buffer(tmp_path):
    files = [(write(tmp_path, f"f{i}", b"x"), f"f{i}") for i in range(8)]
    long = "y" * 2000

    def scan_one(p: Path, display: str) -> list[Finding]:
        return [Finding("model", "t", Severity.INFO, long, file=display, offset=k) for k in range(300)]

    got = parallel.scan_files(files, scan_one, 2)  # ~600 KB from the worker, a pipe holds 64 KiB
    assert [len(f) for f in got] == [300] * 8 and got[-1][-1].message == long


def test_a_worker_that_writes_garbage_is_rescanned(tmp_path, monkeypatch):
    files = [(write(tmp_path, f"f{i}", b"x"), f"f{i}") for i in range(10)]
    monkeypatch.setattr(parallel.json, "dumps", lambda *a, **k: '{"0": [{"scanner": ')  # only the workers dump
    got = parallel.scan_files(files, lambda p, d: [Finding("model", "t", Severity.INFO, d, file=d)], 2)
    assert [f[0].file for f in got] == [d for _, d in files]


def test_no_fork_available_scans_everything_here(tmp_path, monkeypatch):
    files = [(write(tmp_path, f"f{i}", b"x"), f"f{i}") for i in range(10)]

    def no_fork():
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(parallel.os, "fork", no_fork)
    got = parallel.scan_files(files, lambda p, d: [Finding("model", "pid", Severity.INFO, str(os.getpid()), file=d)], 3)
    assert [f[0].file for f in got] == [d for _, d in files] and {f[0].message for f in got} == {str(os.getpid())}


def test_an_error_in_the_parent_leaves_no_worker_behind(tmp_path, monkeypatch):
    files = [(write(tmp_path, f"f{i}", b"x" * (i + 1)), f"f{i}") for i in range(12)]
    parent, forked = os.getpid(), []
    real_fork = os.fork

    def recording_fork():
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr(parallel.os, "fork", recording_fork)

    def scan_one(p: Path, display: str) -> list[Finding]:
        if os.getpid() == parent:
            raise KeyboardInterrupt  # the operator's Ctrl-C while the parent scans its share
        import time

        time.sleep(30)  # a worker still busy
        return []

    with pytest.raises(KeyboardInterrupt):
        parallel.scan_files(files, scan_one, 3)
    assert len(forked) == 2
    for pid in forked:  # killed and reaped: nothing left to wait for
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
