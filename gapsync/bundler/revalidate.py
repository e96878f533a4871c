"""A cheap ``sync`` when nothing changed upstream: revalidate the index pages the last
resolution depended on, and skip the resolver when none of them changed.

After a sync resolves, it records, in ``STATE/<channel>/sync-pages.json``, the spec digest, the
lock it resolved (``STATE/<channel>/sync.lock``) and, for the project page of every locked
project, the validators the index gave (``ETag``, ``Last-Modified`` with the answer's ``Date``) and
the sha256 of the page.
The next sync sends each page's conditional GET (``If-None-Match``; ``If-Modified-Since`` only when
the page's ``Last-Modified`` was at least a second older than the answer's ``Date``); a
304, or a 200 with the same bytes (an index without validators), means that page is unchanged.
When every page is unchanged and the spec is the same, the resolution would be the same: the
stored lock is used, the resolver (one uv run per target, tens of seconds for a large
environment) is not run. One changed page, a changed spec, or a missing record: a full resolve.

Why the locked projects' pages are enough: a resolution changes only when a page it read offers
something new (a release, a yank, a file). The pages of locked projects are the ones whose
offers were taken; a project the resolver read but did not lock is one that no locked
requirement needs in any version those unchanged pages list. Images and models are not
revalidated here, so a spec with them resolves in full every time.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gapsync.bundler.http import MAX_INDEX_PAGE, get_document
from gapsync.bundler.lock import Lock
from gapsync.fsutil import write_atomic

ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
RECORD = "sync-pages.json"
LOCK = "sync.lock"


@dataclass
class Revalidation:
    lock_path: Path | None  # the stored lock to reuse; None: resolve
    pages: int = 0
    changed: list[str] | None = None  # projects whose page changed (a sample)
    reason: str = ""
    seen: dict[str, dict] | None = None  # the pages as read now, BEFORE the resolve (for record())


def _strong_last_modified(page: dict) -> bool:
    """Whether a page's ``Last-Modified`` may be sent as ``If-Modified-Since``: only when it is
    at least one second before the ``Date`` of the answer that gave it (RFC 9110 8.8.2.2).
    ``Last-Modified`` has one-second resolution: a page rewritten in the second it was read
    keeps the same value, and a server comparing times would answer 304 to the new page, so
    the release published then would never be seen. Without a usable ``Date``, it is weak too:
    the page is fetched in full and compared by its sha256."""
    from email.utils import parsedate_to_datetime

    try:
        modified = parsedate_to_datetime(str(page["last_modified"]))
        date = parsedate_to_datetime(str(page["date"]))
        return (date - modified).total_seconds() >= 1
    except (KeyError, TypeError, ValueError, IndexError):
        return False


def _page(index_url: str, name: str, old: dict | None) -> dict:
    headers = {"Accept": ACCEPT}
    if old and old.get("etag"):
        headers["If-None-Match"] = old["etag"]
    if old and old.get("last_modified") and _strong_last_modified(old):
        headers["If-Modified-Since"] = old["last_modified"]
    r, body = get_document(f"{index_url}{name}/", MAX_INDEX_PAGE, headers=headers, ok=(200, 304))
    if r.status_code == 304 and old:
        return {**old, "status": 304}
    if r.status_code != 200:
        return {"status": r.status_code}
    return {"etag": r.headers.get("ETag"), "last_modified": r.headers.get("Last-Modified"),
            "date": r.headers.get("Date"), "sha256": hashlib.sha256(body).hexdigest(), "status": 200}


def _applies(spec) -> bool:
    return bool(spec.python) and not spec.images and not spec.models and not getattr(spec, "conda", None) \
        and not getattr(spec, "datasets", ())


def check(channel_dir: Path, spec, jobs: int) -> Revalidation:
    """The stored lock when no page changed since it was resolved, else why not."""
    if not _applies(spec):
        return Revalidation(None, reason="the spec has images, models or conda packages: resolved in full")
    rec_path, lock_path = channel_dir / RECORD, channel_dir / LOCK
    try:
        rec = json.loads(rec_path.read_text())
        pages: dict[str, dict] = rec["pages"]
        if rec["spec_digest"] != spec.digest() or not lock_path.is_file():
            return Revalidation(None, reason="the spec changed since the last resolve")
        if hashlib.sha256(lock_path.read_bytes()).hexdigest() != rec["lock_sha256"]:
            return Revalidation(None, reason="the stored lock changed")
    except (OSError, ValueError, KeyError, TypeError):
        return Revalidation(None, reason="no record of the last resolve")
    index_url = spec.python.index_url
    names = sorted(pages)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        now = dict(zip(names, pool.map(lambda n: _page(index_url, n, pages[n]), names), strict=True))
    changed = [n for n in names if now[n].get("status") not in (200, 304)
               or now[n].get("sha256") != pages[n].get("sha256")]
    if changed:
        return Revalidation(None, len(names), changed[:10], reason=f"{len(changed)} index page(s) changed", seen=now)
    return Revalidation(lock_path, len(names), [], reason="no index page changed")


def record(channel_dir: Path, spec, lock: Lock, jobs: int, seen: dict[str, dict] | None = None) -> None:
    """Keep the lock just resolved and the validators of its projects' pages. Pages read before
    the resolve (``seen``, from check()) are recorded as read then: a release published during
    the resolve changes the page after that, so the next sync sees the change. A project new to
    this lock has its page read now (the one window left: its first resolve)."""
    if not _applies(spec) or not lock.pins:
        return
    names = sorted({f.name for f in lock.files})
    index_url = spec.python.index_url
    seen = {n: p for n, p in (seen or {}).items() if p.get("status") in (200, 304)}
    fresh = [n for n in names if n not in seen]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        pages = {**{n: seen[n] for n in names if n in seen},
                 **dict(zip(fresh, pool.map(lambda n: _page(index_url, n, None), fresh), strict=True))}
    pages = {n: {**p, "status": 200} if p.get("status") == 304 else p for n, p in pages.items()}
    data = lock.dumps().encode()
    write_atomic(channel_dir / LOCK, data)
    doc = {"spec_digest": spec.digest(), "lock_sha256": hashlib.sha256(data).hexdigest(),
           "pages": {n: {k: v for k, v in p.items() if k != "status"} for n, p in pages.items() if p.get("status") == 200}}
    write_atomic(channel_dir / RECORD, json.dumps(doc, indent=1, sort_keys=True).encode())
