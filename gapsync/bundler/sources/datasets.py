"""Dataset repositories on the Hugging Face Hub (the spec's ``datasets:`` list).

A dataset repo is read exactly as a model repo is (``huggingface.py``: pinned to a commit, files
listed and checked, bytes fetched by commit), with ``repo_type="dataset"``; it is a source of its
own because it fills the lock's ``datasets`` list and becomes a ``dataset`` artifact, laid out
as ``datasets--org--name`` on the air side and judged by the policy for loading scripts.
"""

from __future__ import annotations

from typing import ClassVar

from gapsync.bundler.fetch import FetchItem
from gapsync.bundler.lock import Lock, LockedModel
from gapsync.bundler.sources import huggingface
from gapsync.bundler.sources.base import FetchContext, ResolveContext
from gapsync.bundler.spec import ModelSpec


class HubDatasetSource:
    name: ClassVar[str] = "hf-dataset"

    def resolve(self, entry: ModelSpec, ctx: ResolveContext) -> Lock:
        return Lock(ctx.lock.spec_digest, datasets=[huggingface.resolve(entry, ctx.cache, ctx.jobs)])

    def fetch(self, record: LockedModel, ctx: FetchContext) -> list[FetchItem]:
        return huggingface.fetch_items(record)
