"""Registered model versions from an MLflow tracking server, through the ``mlflow`` client.

MLflow gives no digests, so ``resolve`` downloads the version's artifacts (``download_artifacts``
of ``get_model_version_download_uri``) into the shared cache and pins each file by sha256; the
lock records the run, the source URI, the description and tags, so the lineage travels with the
bytes. ``bundle create`` then finds every file in the cache.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

import yaml

from gapsync import fsutil
from gapsync.bundle.model_files import MAX_FILES, formats_of, synthetic_commit
from gapsync.bundler.cache import BlobCache
from gapsync.bundler.fetch import FetchItem
from gapsync.bundler.http import MAX_JSON_ANSWER, cap_answers
from gapsync.bundler.lock import Lock, LockedModel
from gapsync.bundler.sources.base import FetchContext, ResolveContext
from gapsync.bundler.spec import ModelSpec
from gapsync.errors import FetchError, InputError
from gapsync.hashing import read_chunks
from gapsync.mlflow_client import client, quiet_stdout
from gapsync.names import safe_model_path
from gapsync.redact import redact_url


def resolve(spec: ModelSpec, cache: BlobCache) -> LockedModel:
    with quiet_stdout():
        return _resolve(spec, cache)


def _cap_mlflow_answers() -> None:
    """MLflow's REST answers are read whole by its own requests session: give that session
    gapsync's cap (bundler/http.py ``cap_answers``). MLflow builds it in a private, cached
    function; if that moves in a later MLflow, the answers go uncapped rather than failing."""
    try:
        from mlflow.utils import request_utils
    except ImportError:
        return
    make = getattr(request_utils, "_cached_get_request_session", None)
    if make is None or getattr(make, "_gapsync_capped", False):
        return

    def capped(*args, **kw):
        return cap_answers(make(*args, **kw), MAX_JSON_ANSWER)

    capped._gapsync_capped = True  # type: ignore[attr-defined]
    # MLflow's private session factory replaced by a capping wrapper: deliberately not its lru_cache type
    request_utils._cached_get_request_session = capped  # type: ignore[assignment]


def _resolve(spec: ModelSpec, cache: BlobCache) -> LockedModel:
    import mlflow
    from mlflow.exceptions import MlflowException

    _cap_mlflow_answers()

    where = f"mlflow:{spec.location}/models:/{spec.name}/{spec.revision}"
    c = client(spec.location or "")
    try:
        mv = c.get_model_version(spec.name, spec.revision)
        rm = c.get_registered_model(spec.name)
        uri = c.get_model_version_download_uri(spec.name, spec.revision)
        tmp = fsutil.make_temp_dir(cache.root / "partial", "mlflow-")
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp), tracking_uri=spec.location))
            files = _store(local, cache, where)
            flavors = _flavors(local)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except MlflowException as e:
        raise FetchError(f"{where}: {str(e).splitlines()[0]}") from e
    meta: dict[str, Any] = {
        "origin": redact_url(spec.location or ""), "license": (mv.tags or {}).get("license") or (rm.tags or {}).get("license"),
        "library": ",".join(flavors) or None, "formats": formats_of([f["path"] for f in files]),
        "run_id": mv.run_id, "source_uri": redact_url(mv.source) if isinstance(mv.source, str) else mv.source, "description": mv.description or rm.description or "",
        "version_tags": dict(mv.tags or {}), "model_tags": dict(rm.tags or {}), "source_version": str(mv.version)}
    return LockedModel("mlflow", spec.name, str(spec.revision), synthetic_commit(files), files, meta)


def _store(local: Path, cache: BlobCache, where: str) -> list[dict[str, Any]]:
    files = []
    base = local if local.is_dir() else local.parent
    paths = sorted(p for p in (local.rglob("*") if local.is_dir() else [local]) if p.is_file() or p.is_symlink())
    if len(paths) > MAX_FILES:
        raise InputError(f"{where}: more than {MAX_FILES} artifact files")
    for p in paths:
        if p.is_symlink():
            raise FetchError(f"{where}: artifact {p.name} is a link; refused")
        rel = safe_model_path(p.relative_to(base).as_posix(), where)
        with p.open("rb") as f:
            digest, size = cache.put(read_chunks(f), what=f"{where}/{rel}", sha256=None)
        files.append({"path": rel, "sha256": digest, "size": size, "etag": digest, "lfs": True})
    if not files:
        raise FetchError(f"{where}: the model version has no artifacts")
    return files


def _flavors(local: Path) -> list[str]:
    mlmodel = local / "MLmodel" if local.is_dir() else None
    if mlmodel and mlmodel.is_file():
        try:
            doc = yaml.safe_load(mlmodel.read_text())
            return sorted((doc or {}).get("flavors", {}))
        except (yaml.YAMLError, OSError, AttributeError):
            return []
    return []


class MlflowSource:
    """A registered model version: MLflow gives no digests, so resolve downloads the artifacts
    into the cache to pin them, and fetching has nothing left to do."""

    name: ClassVar[str] = "mlflow"

    def resolve(self, entry: ModelSpec, ctx: ResolveContext) -> Lock:
        return Lock(ctx.lock.spec_digest, models=[resolve(entry, ctx.cache)])

    def fetch(self, record: LockedModel, ctx: FetchContext) -> list[FetchItem]:
        return []  # resolve put every artifact into the cache
