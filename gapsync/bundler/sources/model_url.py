"""Models that are a URL, with the sha256 the spec pins (``url:``)."""

from __future__ import annotations

from typing import ClassVar

from gapsync.bundle.model_files import formats_of, synthetic_commit
from gapsync.bundler.fetch import FetchItem
from gapsync.bundler.http import remember_credentials
from gapsync.bundler.lock import Lock, LockedModel
from gapsync.bundler.sources.base import FetchContext, ResolveContext
from gapsync.bundler.spec import ModelSpec
from gapsync.names import safe_model_path


def resolve_url(spec: ModelSpec) -> LockedModel:
    assert spec.location and spec.sha256
    url = remember_credentials(spec.location)  # recorded without user info or secret query values
    fname = url.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "model"
    files = [{"path": safe_model_path(fname, url), "sha256": spec.sha256, "size": None, "etag": spec.sha256,
              "lfs": True, "url": url}]
    return LockedModel("url", spec.name, "main", synthetic_commit(files), files,
                       {"origin": url, "license": None, "formats": formats_of([fname])})


def url_items(model: LockedModel) -> list[FetchItem]:
    return [FetchItem(f["url"], f["sha256"], f["size"], f"{model.name}/{f['path']}") for f in model.files]


class UrlSource:
    """A model file at a URL, pinned by the sha256 the spec gives: resolve reads nothing, create
    downloads it and checks that digest."""

    name: ClassVar[str] = "url"

    def resolve(self, entry: ModelSpec, ctx: ResolveContext) -> Lock:
        return Lock(ctx.lock.spec_digest, models=[resolve_url(entry)])

    def fetch(self, record: LockedModel, ctx: FetchContext) -> list[FetchItem]:
        return url_items(record)
