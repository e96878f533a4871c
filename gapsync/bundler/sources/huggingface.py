"""Models from the Hugging Face Hub (or any server speaking its API), through ``huggingface_hub``.

``resolve`` pins the revision to its commit with ``HfApi.model_info`` and lists the files with
``HfApi.list_repo_tree`` at that commit; LFS files come with their sha256, regular files (small:
configs, tokenizers) are downloaded to learn theirs, and checked against the git blob id the Hub
announced. The bytes of large files are fetched at ``bundle create`` by gapsync's downloader
(parallel, resumable, verified into the shared cache) from the URLs and with the auth headers
that ``huggingface_hub`` builds (``HF_ENDPOINT``, ``HF_TOKEN``), by commit, so a branch that
moves in between changes nothing.
"""

from __future__ import annotations

import os
from typing import Any

import requests

from gapsync.bundler.cache import BlobCache
from gapsync.bundler.fetch import FetchItem, fetch_all
from gapsync.bundler.http import TIMEOUT, session
from gapsync.bundler.lock import LockedModel
from gapsync.bundler.sources.model_files import MAX_FILES, formats_of, git_blob_sha1, safe_model_path
from gapsync.bundler.spec import ModelSpec
from gapsync.errors import DigestMismatchError, FetchError, InputError

MAX_REGULAR_FILE = 50 * 1024 * 1024  # regular (non-LFS) git files are small; hashed at resolve


def _endpoint(spec: ModelSpec) -> str:
    return (spec.location or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _headers() -> dict[str, str]:
    from huggingface_hub.utils import build_hf_headers

    return build_hf_headers(library_name="gapsync")


def file_url(endpoint: str, repo: str, commit: str, path: str) -> str:
    from huggingface_hub import hf_hub_url

    return hf_hub_url(repo, path, revision=commit, endpoint=endpoint)


def opener(url: str):
    headers = _headers()

    def open_from(start: int) -> requests.Response:
        h = dict(headers)
        if start:
            h["Range"] = f"bytes={start}-"
        # requests drops Authorization when the Hub redirects to its CDN (another host)
        return session().get(url, headers=h, stream=True, timeout=TIMEOUT)

    return open_from


def resolve(spec: ModelSpec, cache: BlobCache, jobs: int = 8) -> LockedModel:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import filter_repo_objects

    endpoint = _endpoint(spec)
    api = HfApi(endpoint=endpoint, library_name="gapsync")
    where = f"hf:{spec.name}@{spec.revision}"
    try:
        info = api.model_info(spec.name, revision=spec.revision)
        commit = info.sha
        if not commit or len(commit) != 40:
            raise FetchError(f"{where}: the Hub answered no commit for the revision")
        entries = []
        for e in api.list_repo_tree(spec.name, revision=commit, recursive=True):
            if isinstance(e, RepoFile):
                entries.append(e)
                if len(entries) > MAX_FILES:
                    raise InputError(f"{where}: more than {MAX_FILES} files; narrow it with include:")
    except RepositoryNotFoundError as e:
        raise FetchError(f"{where}: repository not found (or a token is needed: set HF_TOKEN)") from e
    except RevisionNotFoundError as e:
        raise InputError(f"{where}: revision not found") from e
    except HfHubHTTPError as e:
        raise FetchError(f"{where}: {str(e).splitlines()[0]}") from e
    except requests.RequestException as e:
        raise FetchError(f"{where}: {e}") from e
    chosen = list(filter_repo_objects(entries, allow_patterns=list(spec.include) or None,
                                      ignore_patterns=list(spec.exclude) or None, key=lambda e: e.path))
    if not chosen:
        raise InputError(f"{where}: no file matches include/exclude")
    files: list[dict[str, Any]] = []
    regular = []
    for e in chosen:
        safe_model_path(e.path, where)
        if e.lfs:
            files.append({"path": e.path, "sha256": e.lfs.sha256, "size": e.lfs.size, "etag": e.lfs.sha256, "lfs": True})
        else:
            if e.size > MAX_REGULAR_FILE:
                raise InputError(f"{where}: regular (non-LFS) file {e.path} of {e.size} bytes")
            regular.append(e)
    if regular:  # learn their sha256 by fetching them (they are needed anyway), check the git id
        results = fetch_all(cache, [FetchItem(file_url(endpoint, spec.name, commit, e.path), None, e.size,
                                              f"{spec.name}/{e.path}", opener=opener(file_url(endpoint, spec.name, commit, e.path)))
                                    for e in regular], jobs)
        by_url = {r.item.url: r for r in results}
        for e in regular:
            r = by_url[file_url(endpoint, spec.name, commit, e.path)]
            data = cache.path(r.sha256).read_bytes()
            if git_blob_sha1(data) != e.blob_id:
                raise DigestMismatchError(f"{where}: {e.path} does not match the git blob id the Hub announced")
            files.append({"path": e.path, "sha256": r.sha256, "size": r.size, "etag": e.blob_id, "lfs": False})
    card = info.card_data.to_dict() if getattr(info, "card_data", None) else {}
    license_ = card.get("license") or next((t.split(":", 1)[1] for t in (info.tags or []) if t.startswith("license:")), None)
    meta = {"origin": endpoint, "license": license_, "library": card.get("library_name") or getattr(info, "library_name", None),
            "pipeline_tag": getattr(info, "pipeline_tag", None), "formats": formats_of([f["path"] for f in files]),
            "include": list(spec.include), "exclude": list(spec.exclude)}
    return LockedModel("hf", spec.name, spec.revision or "main", commit, files, meta)


def fetch_items(model: LockedModel) -> list[FetchItem]:
    endpoint = model.meta["origin"]
    items = []
    for f in model.files:
        url = file_url(endpoint, model.name, model.commit, f["path"])
        items.append(FetchItem(url, f["sha256"], f["size"], f"{model.name}/{f['path']}", opener=opener(url)))
    return items
