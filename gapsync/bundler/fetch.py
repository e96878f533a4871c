"""The downloader: many files in parallel over a bounded pool, each verified while it streams,
resumed from a partial file after an interruption, and never fetched when the cache has it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import requests

from gapsync import faults, fsutil
from gapsync.bundler.cache import BlobCache
from gapsync.bundler.http import TIMEOUT, session
from gapsync.errors import DigestMismatchError, FetchError, GapsyncError
from gapsync.hashing import CHUNK, WriteBehind, copy_verified

if TYPE_CHECKING:
    from gapsync.bundle.archive import BodySlot

DEFAULT_JOBS = 8


@dataclass(frozen=True)
class FetchItem:
    url: str
    sha256: str | None  # None: learn the digest by downloading (index without hashes)
    size: int | None
    what: str  # how to name it in messages, e.g. a file name
    # how to open the stream from a byte offset, when a plain GET of ``url`` is not enough
    # (a registry blob needs a token); None: GET ``url`` with a Range header
    opener: Callable[[int], requests.Response] | None = field(default=None, compare=False, hash=False)


@dataclass
class FetchResult:
    item: FetchItem
    sha256: str
    size: int
    downloaded: int  # bytes that crossed the network in this run (0 when cached)


def _chunks(resp: requests.Response, on_bytes: Callable[[int], None] | None = None) -> Iterable[bytes]:
    try:
        for chunk in resp.iter_content(CHUNK):
            if on_bytes:
                on_bytes(len(chunk))
            yield chunk
            faults.point("fetch.chunk")
    except requests.RequestException as e:
        raise FetchError(f"{resp.url}: connection lost ({e}); run again to resume") from e


class Tee(Protocol):
    """Where a download also writes its bytes (``fetch_all(tee=...)``): a ``BundleBody``'s slot.
    ``write`` must not fail the download; ``finish`` is called once the bytes are verified.
    ``held``: the only place they go (``--no-cache``, ``_fetch_held``), not the cache."""

    held: bool

    def write(self, data: bytes, /) -> object: ...
    def finish(self) -> None: ...


class Tees(Protocol):
    """What ``fetch_all`` asks where a download also goes (``bundler.create``'s body tee)."""

    def __call__(self, item: FetchItem, /) -> Tee | None: ...

    def lane(self, item: FetchItem, /) -> AbstractContextManager[object]:
        """Held around the whole download of ``item``, from before its request: a bound on how
        many downloads write into the bundle side by side."""
        ...

    def ordered(self, item: FetchItem, /) -> bool:
        """Whether ``item`` waits for a lane (``fetch_all`` starts those after the others)."""
        ...


def fetch_one(cache: BlobCache, item: FetchItem, on_bytes: Callable[[int], None] | None = None,
              tee: Tees | None = None) -> FetchResult:
    """Fetch one item into the cache (resuming a partial download). ``tee``: asked, for a blob
    downloaded from its first byte, for a second place to write the bytes to as they arrive
    (the bundle being made: ``BundleBody.slot``); told ``finish`` once they are verified."""
    if item.sha256 and cache.has(item.sha256):
        size = cache.size(item.sha256)
        return FetchResult(item, item.sha256, size, 0)
    if tee is None:
        return _fetch_one(cache, item, on_bytes, None)
    with tee.lane(item):
        return _fetch_one(cache, item, on_bytes, tee)


def _fetch_one(cache: BlobCache, item: FetchItem, on_bytes: Callable[[int], None] | None,
               tee: Tees | None) -> FetchResult:
    key = item.sha256 or hashlib.sha256(item.url.encode()).hexdigest() + ".unverified"
    part = cache.partial_path(key)
    hasher = hashlib.sha256()
    have = 0
    if item.sha256 and part.exists():
        with fsutil.open_regular(part) as f:
            while chunk := f.read(CHUNK):
                hasher.update(chunk)
                have += len(chunk)
        if item.size is not None and have > item.size:
            part.unlink()
            hasher, have = hashlib.sha256(), 0
    else:
        part.unlink(missing_ok=True)
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        resp = item.opener(have) if item.opener else session().get(item.url, stream=True, timeout=TIMEOUT, headers=headers)
    except requests.RequestException as e:
        raise FetchError(f"{item.url}: {e}") from e
    with resp:
        if have and resp.status_code == 200:  # server ignored Range: start again
            hasher, have = hashlib.sha256(), 0
            mode = "wb"
        elif resp.status_code in (200, 206):
            mode = "ab" if have else "wb"
        elif resp.status_code == 416 and have:
            part.unlink(missing_ok=True)
            return _fetch_one(cache, item, on_bytes, tee)
        else:
            raise FetchError(f"{item.url}: HTTP {resp.status_code}")
        second = tee(item) if tee is not None and not have and item.sha256 and item.size is not None else None
        if second is not None and second.held:
            return _fetch_held(cache, item, resp, second, on_bytes)  # type: ignore[arg-type]
        try:
            with fsutil.open_partial(part, resume=mode == "ab") as f:
                digest, size = copy_verified(_chunks(resp, on_bytes), WriteBehind(f, have, second), what=item.what,
                                             sha256=item.sha256, size=item.size, hasher=hasher, already=have)
        except DigestMismatchError:
            part.unlink(missing_ok=True)  # never keep bytes that failed their check
            raise
        if second is not None:
            second.finish()
    cache.adopt(part, digest)
    return FetchResult(item, digest, size, size - have)


def _fetch_held(cache: BlobCache, item: FetchItem, resp: requests.Response, slot: BodySlot,
                on_bytes: Callable[[int], None] | None) -> FetchResult:
    """``bundle create --no-cache``: the bundle's body is the only place the bytes go (no
    partial file, no cache entry). They are hashed as they pass, as any download's; the blob is
    then held (``BlobCache.hold``: read back from the body by the scanners). A write that fails
    fails the download, since there is no other copy; a download cut short is not resumed (as
    ``pip --no-cache-dir``): the re-run downloads it again."""
    copy_verified(_chunks(resp, on_bytes), slot, what=item.what, sha256=item.sha256, size=item.size)
    slot.finish()
    if not slot.complete:
        raise FetchError(f"{item.what}: could not be written into the bundle "
                         f"({slot.body.broken or 'the write failed'}); nothing was kept")
    cache.hold(item.sha256, slot.held_path())  # type: ignore[arg-type]
    return FetchResult(item, item.sha256, item.size, item.size)  # type: ignore[arg-type]


def fetch_all(cache: BlobCache, items: list[FetchItem], jobs: int = DEFAULT_JOBS,
              progress: Callable[[FetchResult, int, int], None] | None = None,
              tee: Tees | None = None) -> list[FetchResult]:
    """Fetch every item (each blob once: by digest when known, else by URL); the first failure
    is raised after the others finish (no download is running when this returns or raises).
    ``progress=tty_progress`` shows byte progress (see ``ByteMeter``); any other callable is
    called once per finished file. ``tee``: see ``fetch_one``; the downloads that wait for one of
    its lanes are started after the others, so that a worker waiting for a lane does not hold up
    a small file queued behind it."""
    unique = list({i.sha256 or i.url: i for i in items}.values())
    if tee is not None:
        unique.sort(key=tee.ordered)  # stable: False (the others) first
    results: list[FetchResult] = []
    errors: list[GapsyncError] = []
    meter = ByteMeter([i for i in unique if not (i.sha256 and cache.has(i.sha256))]) if progress is tty_progress else None
    on_bytes = meter.add if meter else None
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(fetch_one, cache, i, on_bytes, tee): i for i in unique}
            for fut in as_completed(futures):
                try:
                    r = fut.result()
                except GapsyncError as e:
                    errors.append(e)
                    continue
                results.append(r)
                if meter:
                    meter.file_done(r)
                elif progress:
                    progress(r, len(results), len(unique))
    finally:
        if meter:
            meter.close(failed=bool(errors))
    if errors:
        raise errors[0]
    return results


class ByteMeter:
    """Download progress in bytes. On a terminal: a tqdm bar with rate and ETA (stderr). Off a
    terminal, in the scheduled job or with GAPSYNC_LOG_FORMAT=json: JSON lines as ``sync`` logs
    them (gapsync.log), a ``fetch.start``, a ``fetch.progress`` at most every ``EVERY`` seconds,
    a ``fetch.done``; otherwise nothing, so a scripted failure stays one line.
    Nothing at all when every file is cached, or with GAPSYNC_QUIET set."""

    EVERY = 10.0

    def __init__(self, pending: list[FetchItem]):
        from gapsync.log import progress_logs

        self.files = len(pending)
        self.total = None if any(i.size is None for i in pending) else sum(i.size or 0 for i in pending)  # None: unknown
        self.done_files = self.done_bytes = 0
        self.lock = threading.Lock()
        self.start = self.last = time.monotonic()
        quiet = bool(os.environ.get("GAPSYNC_QUIET")) or not pending
        self.bar = None
        self.json = not quiet and progress_logs()
        if not quiet and not self.json and sys.stderr.isatty():
            import shutil

            from tqdm import tqdm

            size = shutil.get_terminal_size((100, 24))  # a pty may say 0x0: tqdm would draw nothing
            self.bar = tqdm(total=self.total or None, unit="B", unit_scale=True, unit_divisor=1000, file=sys.stderr,
                            desc=f"downloading {self.files} files", ncols=size.columns or 100, nrows=size.lines or 24,
                            leave=True)
        if self.json:
            from gapsync.log import event

            event("fetch.start", files=self.files, bytes=self.total)

    def add(self, n: int) -> None:
        with self.lock:
            self.done_bytes += n
            if self.bar is not None:
                self.bar.update(n)
            elif self.json and time.monotonic() - self.last >= self.EVERY:
                self.last = time.monotonic()
                self._event("fetch.progress")

    def file_done(self, r: FetchResult) -> None:
        with self.lock:
            if r.downloaded:
                self.done_files += 1
            if self.bar is not None:
                self.bar.set_postfix_str(f"{self.done_files}/{self.files} files", refresh=False)

    def _event(self, name: str, **extra) -> None:
        from gapsync.log import event

        elapsed = time.monotonic() - self.start
        rate = self.done_bytes / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done_bytes) / rate if rate and self.total and self.total > self.done_bytes else None
        event(name, files_done=self.done_files, files=self.files, bytes_done=self.done_bytes, bytes=self.total,
              rate_bytes_s=round(rate), eta_s=None if eta is None else round(eta, 1), seconds=round(elapsed, 1), **extra)

    def close(self, failed: bool = False) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.json:
            self._event("fetch.failed" if failed else "fetch.done", level="warning" if failed else "info")


def tty_progress(r: FetchResult, done: int, total: int) -> None:
    """The marker for ``fetch_all(progress=tty_progress)``: byte progress (``ByteMeter``)."""
