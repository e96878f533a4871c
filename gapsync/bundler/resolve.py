"""Resolve a whole spec into a lock: Python packages per target, images per platform."""

from __future__ import annotations

from gapsync.bundler.cache import BlobCache
from gapsync.bundler.lock import Lock
from gapsync.bundler.sources import oci, pypi
from gapsync.bundler.spec import Spec


def resolve_spec(spec: Spec, cache: BlobCache, jobs: int = 8) -> Lock:
    lock = pypi.resolve(spec, cache, jobs) if spec.python else Lock(spec_digest=spec.digest())
    if spec.images:
        lock.images = oci.resolve(spec.images, [str(r) for r in spec.images.refs], jobs)
    return lock
