"""The downloader: many files in parallel over a bounded pool, each verified while it streams,
resumed from a partial file after an interruption, and never fetched when the cache has it.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

import requests

from gapsync import faults, fsutil
from gapsync.bundler.cache import BlobCache
from gapsync.bundler.http import TIMEOUT, session
from gapsync.errors import DigestMismatchError, FetchError, GapsyncError
from gapsync.hashing import CHUNK, copy_verified

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


def _chunks(resp: requests.Response) -> Iterable[bytes]:
    try:
        for chunk in resp.iter_content(CHUNK):
            yield chunk
            faults.point("fetch.chunk")
    except requests.RequestException as e:
        raise FetchError(f"{resp.url}: connection lost ({e}); run again to resume") from e


def fetch_one(cache: BlobCache, item: FetchItem) -> FetchResult:
    if item.sha256 and cache.has(item.sha256):
        size = cache.path(item.sha256).stat().st_size
        return FetchResult(item, item.sha256, size, 0)
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
            return fetch_one(cache, item)
        else:
            raise FetchError(f"{item.url}: HTTP {resp.status_code}")
        try:
            with fsutil.open_partial(part, resume=mode == "ab") as f:
                digest, size = copy_verified(_chunks(resp), f, what=item.what, sha256=item.sha256,
                                             size=item.size, hasher=hasher, already=have)
        except DigestMismatchError:
            part.unlink(missing_ok=True)  # never keep bytes that failed their check
            raise
    cache.adopt(part, digest)
    return FetchResult(item, digest, size, size - have)


def fetch_all(cache: BlobCache, items: list[FetchItem], jobs: int = DEFAULT_JOBS,
              progress: Callable[[FetchResult, int, int], None] | None = None) -> list[FetchResult]:
    """Fetch every item (each blob once: by digest when known, else by URL); the first failure
    is raised after the others finish."""
    unique = list({i.sha256 or i.url: i for i in items}.values())
    results: list[FetchResult] = []
    errors: list[GapsyncError] = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(fetch_one, cache, i): i for i in unique}
        for fut in as_completed(futures):
            try:
                r = fut.result()
            except GapsyncError as e:
                errors.append(e)
                continue
            results.append(r)
            if progress:
                progress(r, len(results), len(unique))
    if errors:
        raise errors[0]
    return results


def tty_progress(r: FetchResult, done: int, total: int) -> None:
    if sys.stderr.isatty() and not os.environ.get("GAPSYNC_QUIET"):
        state = "cached" if r.downloaded == 0 else f"{r.downloaded / 1e6:.1f} MB"
        sys.stderr.write(f"\r\x1b[K[{done}/{total}] {r.item.what} ({state})")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()
