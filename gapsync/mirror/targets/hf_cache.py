"""Models in a Hugging Face cache layout under MIRROR/models/hf, the directory to point
``HF_HUB_CACHE`` at on the air-gapped side (with ``HF_HUB_OFFLINE=1``):

    models--<org>--<name>/blobs/<etag>               hard links to the verified blob store
    models--<org>--<name>/snapshots/<commit>/<path>  relative symlinks to ../../blobs/<etag>
    models--<org>--<name>/refs/<revision>            the commit, no newline

as ``huggingface_hub`` writes it itself (etag: the sha256 for LFS files, the git blob sha1 for
regular files), so ``snapshot_download(repo, revision=…)`` and ``hf_hub_download`` find the files
offline. Models from URLs, paths and MLflow get the same layout under their names. Revisions
from several bundles sit side by side; a later bundle that moved a branch moves its ref.
The index of what is there (for ``gapsync serve``'s Hub API) is ``.gapsync/models/index.json``.

Hub dataset repos (target kind ``dataset``) go into the same cache directory as
``datasets--<org>--<name>/...`` (one ``HF_HUB_CACHE`` holds both, as on a connected machine), and
under ``"datasets"`` in the index.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from gapsync import faults, fsutil
from gapsync.bundle.records import ModelTarget
from gapsync.errors import BundleFormatError
from gapsync.mirror.journal import DirectWriter
from gapsync.mirror.layout import MirrorLayout
from gapsync.model import SHA256_RE, Target
from gapsync.names import (
    COMMIT_RE,
    ETAG_RE,
    BadName,
    check_model_commit,
    check_model_name,
    check_model_revision,
    check_model_tree,
    safe_model_path,
)


def repo_folder(name: str, kind: str = "model") -> str:
    """``models--org--name`` or, for a dataset, ``datasets--org--name`` (huggingface_hub's repo_folder_name)."""
    return ("datasets--" if kind == "dataset" else "models--") + name.replace("/", "--")


REPO_KINDS = ("model", "dataset")  # the targets that name a snapshot (the rest are their files)
INDEX_SECTION = {"model": "models", "dataset": "datasets"}


class HfCache:
    kinds: ClassVar[frozenset[str]] = frozenset({"model", "dataset", "model-blob"})

    def __init__(self, layout: MirrorLayout):
        self.layout = layout
        self.root = layout.hf_root
        self.index_path = layout.models_index

    def read_index(self) -> dict:
        # a link or FIFO planted at the index is refused, never followed (a FIFO would hang the
        # import while it holds the mirror lock)
        return fsutil.read_json(self.index_path, {"models": {}})

    def manifest(self, digest: str, blob_path: Callable[[str], Path] | None = None) -> dict:
        return fsutil.read_json((blob_path or self.layout.blob_path)(digest))

    def check(self, targets: list[Target]) -> None:
        for t in targets:
            if t.kind == "model-blob":
                if t.path != f"model/blob/sha256/{t.blob.digest}":
                    raise BundleFormatError(f"target {t.path!r}: path does not match its digest")
                continue
            c = ModelTarget.from_target(t)
            name, rev, commit = c.name, c.revision, c.commit
            try:  # the rules resolve applied at the DMZ (gapsync/names.py)
                check_model_name(name), check_model_revision(rev), check_model_commit(commit)
            except BadName as e:
                raise BundleFormatError(f"target {t.path!r}: bad model name, revision or commit ({e})") from None
            if t.path != f"{t.kind}/{c.source}/{name}@{rev}" or (t.kind == "dataset" and c.source != "hf"):
                raise BundleFormatError(f"target {t.path!r}: path does not match the {t.kind}")

    def _check_manifest(self, t: Target, doc: dict, digests: set[str]) -> None:
        c = ModelTarget.from_target(t)
        if doc.get("name") != c.name or doc.get("commit") != c.commit:
            raise BundleFormatError(f"target {t.path!r}: manifest names another model or commit")
        if doc.get("repo_type", "model") != t.kind:
            raise BundleFormatError(f"target {t.path!r}: manifest is a {doc.get('repo_type', 'model')}'s, the target a {t.kind}")
        try:
            check_model_tree(str(f.get("path", "")) for f in doc.get("files", []))
        except BadName as e:  # `a` and `a/b`: no file system can lay that out
            raise BundleFormatError(f"target {t.path!r}: {e}") from None
        for f in doc.get("files", []):
            safe_model_path(str(f.get("path", "")), t.path, BundleFormatError)
            if not SHA256_RE.match(str(f.get("sha256"))) or not ETAG_RE.match(str(f.get("etag"))):
                raise BundleFormatError(f"target {t.path!r}: file {f.get('path')!r} has a bad digest or etag")
            if f["sha256"] not in digests:
                raise BundleFormatError(f"target {t.path!r}: file {f['path']!r} is not a target of this bundle")

    def is_published(self, t: Target) -> bool:
        if t.kind == "model-blob":
            return True  # published through the model that names it
        c = ModelTarget.from_target(t)
        entry = self.read_index().get(INDEX_SECTION[t.kind], {}).get(c.name, {})
        return entry.get("refs", {}).get(c.revision) == c.commit and entry.get("commits", {}).get(c.commit) == t.blob.digest

    def publish(self, targets: list[Target], blob_path: Callable[[str], Path], fs: DirectWriter) -> list[str]:
        self.check(targets)
        digests = {t.blob.digest for t in targets if t.kind == "model-blob"}
        models = [t for t in targets if t.kind in REPO_KINDS]
        docs = []
        for t in models:  # check every manifest before writing anything
            try:
                doc = self.manifest(t.blob.digest, blob_path)
            except ValueError as e:
                raise BundleFormatError(f"target {t.path!r}: manifest is not JSON") from e
            self._check_manifest(t, doc, digests)
            docs.append((t, doc))
        index = self.read_index()
        published = []
        for t, doc in docs:
            c = ModelTarget.from_target(t)
            name, rev, commit = c.name, c.revision, c.commit
            repo = self.root / repo_folder(name, t.kind)
            for f in doc["files"]:  # blobs, then the snapshot links that name them, then the ref
                blob = repo / "blobs" / f["etag"]
                if not (blob.exists() and blob.stat().st_size == f["size"]):
                    fs.link_or_copy(blob_path(f["sha256"]), blob)
                    faults.point("publish.hf.blob")
                link = repo / "snapshots" / commit / f["path"]
                target = os.path.relpath(blob, link.parent)
                if not (link.is_symlink() and os.readlink(link) == target):
                    fs.symlink(target, link)
            faults.point("publish.hf.snapshot")
            if not COMMIT_RE.fullmatch(rev) or rev != commit:
                fs.write_atomic(repo / "refs" / rev, commit.encode())
            entry = index.setdefault(INDEX_SECTION[t.kind], {}).setdefault(name, {"refs": {}, "commits": {}})
            entry["refs"][rev] = commit
            entry["commits"][commit] = t.blob.digest
            published.append(f"{name}@{rev}")
        if docs:
            fs.write_atomic(self.index_path, json.dumps(index, indent=1, sort_keys=True).encode())
        return sorted(published)
