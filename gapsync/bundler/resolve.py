"""Resolve a whole spec into a lock, and a lock into what must be fetched for it.

Both walks are the same for every kind: each spec entry (each locked record) goes to the
source ``build_source`` picks for it (``bundler/sources/base.py``); nothing here knows the kinds.
"""

from __future__ import annotations

from gapsync.bundler.cache import BlobCache
from gapsync.bundler.fetch import FetchItem
from gapsync.bundler.lock import Lock
from gapsync.bundler.sources.base import (
    FetchContext,
    ResolveContext,
    build_source,
    lock_records,
    spec_entries,
)
from gapsync.bundler.sources.oci import ImagePlan
from gapsync.bundler.spec import Spec


def resolve_spec(spec: Spec, cache: BlobCache, jobs: int = 8) -> Lock:
    """Every entry of the spec, in its order, merged into one lock."""
    lock = Lock(spec_digest=spec.digest())
    ctx = ResolveContext(spec, cache, jobs, lock)
    for entry in spec_entries(spec):
        lock.merge(build_source(entry).resolve(entry, ctx))
    return lock


def plan_fetch(spec: Spec, lock: Lock, cache: BlobCache) -> tuple[list[FetchItem], list[ImagePlan]]:
    """What fetching the lock into the cache needs: the downloads (local bytes are copied in, or
    pointed at, on the way), and each image's plan (its manifests and blobs) for the targets."""
    ctx = FetchContext(spec, cache)
    items: list[FetchItem] = []
    for record in lock_records(lock):
        items += build_source(record).fetch(record, ctx)
    return items, ctx.plans
