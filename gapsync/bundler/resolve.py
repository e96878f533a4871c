"""Resolve a whole spec into a lock: Python packages per target, images per platform."""

from __future__ import annotations

from gapsync.bundler.cache import BlobCache
from gapsync.bundler.lock import Lock, LockedModel
from gapsync.bundler.sources import huggingface, model_local, oci, pypi
from gapsync.bundler.spec import ModelSpec, Spec


def resolve_spec(spec: Spec, cache: BlobCache, jobs: int = 8) -> Lock:
    lock = pypi.resolve(spec, cache, jobs) if spec.python else Lock(spec_digest=spec.digest())
    if spec.images:
        lock.images = oci.resolve(spec.images, _raw_refs(spec), cache, jobs)
    if getattr(spec, "charts", None):  # charts are OCI artifacts in the lock, with the images they name
        from gapsync.bundler.sources import charts

        have = {(i.name, i.digest) for i in lock.images}
        lock.images += [i for i in charts.resolve(spec, cache, jobs) if (i.name, i.digest) not in have]
    lock.models = [resolve_model(m, cache, jobs) for m in spec.models]
    lock.datasets = [huggingface.resolve(d, cache, jobs) for d in spec.datasets]  # Hub dataset repos
    if spec.conda:
        from gapsync.bundler.sources import conda

        lock.conda = conda.resolve(spec.conda, cache.root / "partial")
    return lock


def resolve_model(m: ModelSpec, cache: BlobCache, jobs: int) -> LockedModel:
    if m.source == "hf":
        return huggingface.resolve(m, cache, jobs)
    if m.source == "url":
        return model_local.resolve_url(m)
    if m.source == "path":
        return model_local.resolve_path(m)
    from gapsync.bundler.sources import mlflow_models

    return mlflow_models.resolve(m, cache)


def _raw_refs(spec: Spec) -> list[str]:
    """How each image was written, for the lock: the reference, or ``KIND:LOCATION[:REF] as NAME``."""
    assert spec.images
    out = []
    for i, r in enumerate(spec.images.refs):
        src = spec.images.source_of(i)
        out.append(str(r) if src is None else f"{src.kind}:{src.location}{':' + src.ref if src.ref else ''} as {r}")
    return out
