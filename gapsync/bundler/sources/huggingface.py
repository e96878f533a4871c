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
from typing import Any, ClassVar

import requests

from gapsync.bundle.model_files import MAX_FILES, formats_of, git_blob_sha1
from gapsync.bundler.cache import BlobCache
from gapsync.bundler.fetch import FetchItem, fetch_all
from gapsync.bundler.http import MAX_JSON_ANSWER, TIMEOUT, remember_credentials, session
from gapsync.bundler.lock import Lock, LockedModel
from gapsync.bundler.sources.base import FetchContext, ResolveContext
from gapsync.bundler.spec import ModelSpec
from gapsync.errors import DigestMismatchError, FetchError, InputError, UpstreamError
from gapsync.names import COMMIT_RE, SHA256_HEX, BadName, check_model
from gapsync.redact import redact_text, redact_url

DATA_FORMATS = {"parquet": "parquet", "csv": "csv", "tsv": "csv", "json": "json", "jsonl": "json", "arrow": "arrow",
                "txt": "text", "py": "loading-script"}  # a dataset's formats, by extension (bundle.json, SBOM)
MAX_REGULAR_FILE = 50 * 1024 * 1024  # regular (non-LFS) git files are small; hashed at resolve
MAX_HUB_ANSWER = MAX_JSON_ANSWER  # one Hub API answer (model info, one page of a tree listing)


class HubAnswerTooLarge(Exception):
    """A Hub API answer went past its cap while huggingface_hub was reading it."""


def _capped_client_factory():
    """huggingface_hub's client, with a transport that caps every ``/api/`` answer (model info,
    tree listings) at MAX_HUB_ANSWER bytes while it streams: the library reads answers whole
    before parsing them, so the cap has to sit under it. Answers are asked for uncompressed
    (a compressed one is refused), so the cap counts the bytes that are parsed."""
    import httpx2
    from huggingface_hub.utils._http import hf_request_event_hook

    class CappedStream(httpx2.SyncByteStream):
        def __init__(self, inner, url: str):
            self.inner, self.url = inner, url

        def __iter__(self):
            n = 0
            for chunk in self.inner:
                n += len(chunk)
                if n > MAX_HUB_ANSWER:
                    raise HubAnswerTooLarge(f"{redact_url(self.url)}: answer larger than the {MAX_HUB_ANSWER}-byte cap; refused")
                yield chunk

        def close(self) -> None:
            self.inner.close()

    class CappedTransport(httpx2.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx2.HTTPTransport()

        def handle_request(self, request):
            api = "/api/" in request.url.path
            if api:
                request.headers["Accept-Encoding"] = "identity"
            resp = self.inner.handle_request(request)
            if not api:
                return resp
            url = str(request.url)
            enc = resp.headers.get("Content-Encoding", "identity").lower()
            try:
                declared = int(resp.headers.get("Content-Length", "-1"))
            except ValueError:
                declared = -1
            if enc not in ("", "identity") or declared > MAX_HUB_ANSWER:
                resp.close()
                raise HubAnswerTooLarge(f"{redact_url(url)}: answer of {declared} bytes ({enc}) is over the "
                                        f"{MAX_HUB_ANSWER}-byte cap or compressed though asked not to be; refused")
            return httpx2.Response(resp.status_code, headers=resp.headers, stream=CappedStream(resp.stream, url),
                                   extensions=resp.extensions, request=request)

        def close(self) -> None:
            self.inner.close()

    return httpx2.Client(transport=CappedTransport(), event_hooks={"request": [hf_request_event_hook]},
                         follow_redirects=True, timeout=None)


_client_set = False


def _use_capped_client() -> None:
    global _client_set
    if not _client_set:
        from huggingface_hub import set_client_factory

        set_client_factory(_capped_client_factory)
        _client_set = True


def _endpoint(spec: ModelSpec) -> str:
    return (spec.location or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _headers() -> dict[str, str]:
    from huggingface_hub.utils import build_hf_headers

    return build_hf_headers(library_name="gapsync")


def file_url(endpoint: str, repo: str, commit: str, path: str, repo_type: str = "model") -> str:
    """The resolve URL (``/datasets/`` before the repo for a dataset). Files the Hub stores with
    Xet are fetched through it too: what huggingface_hub does when hf_xet is absent (docs/operator-guide.md)."""
    from huggingface_hub import hf_hub_url

    return hf_hub_url(repo, path, revision=commit, endpoint=endpoint, repo_type=None if repo_type == "model" else repo_type)


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

    _use_capped_client()
    endpoint = _endpoint(spec)
    api = HfApi(endpoint=endpoint, library_name="gapsync")
    rtype = getattr(spec, "repo_type", "model")
    where = f"hf:{'datasets/' if rtype == 'dataset' else ''}{spec.name}@{spec.revision} ({redact_url(endpoint)})"
    try:
        info = api.repo_info(spec.name, revision=spec.revision, repo_type=rtype)
        commit = info.sha
        if not isinstance(commit, str) or not COMMIT_RE.match(commit):
            raise UpstreamError(f"{where}: the Hub answered no commit (40 lower-case hex) for the revision")
        entries = []
        for e in api.list_repo_tree(spec.name, revision=commit, recursive=True, repo_type=rtype):
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
        raise FetchError(f"{where}: {redact_text(str(e))}") from e
    except HubAnswerTooLarge as e:
        raise UpstreamError(f"{where}: {e}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # a listing or info of the wrong shape
        raise UpstreamError(f"{where}: the Hub's answer is not what its API documents ({type(e).__name__}: "
                            f"{redact_text(str(e))[:200]})") from None
    chosen = list(filter_repo_objects(entries, allow_patterns=list(spec.include) or None,
                                      ignore_patterns=list(spec.exclude) or None, key=lambda e: e.path))
    if not chosen:
        raise InputError(f"{where}: no file matches include/exclude")
    _check_listing(chosen, spec, commit, where)
    files: list[dict[str, Any]] = []
    regular = []
    for entry in chosen:
        if entry.lfs:
            files.append({"path": entry.path, "sha256": entry.lfs.sha256, "size": entry.lfs.size, "etag": entry.lfs.sha256, "lfs": True})
        else:
            if entry.size > MAX_REGULAR_FILE:
                raise InputError(f"{where}: regular (non-LFS) file {entry.path} of {entry.size} bytes")
            regular.append(entry)
    if regular:  # learn their sha256 by fetching them (they are needed anyway), check the git id
        results = fetch_all(cache, [FetchItem(file_url(endpoint, spec.name, commit, entry.path, rtype), None, entry.size,
                                              f"{spec.name}/{entry.path}", opener=opener(file_url(endpoint, spec.name, commit, entry.path, rtype)))
                                    for entry in regular], jobs)
        by_url = {r.item.url: r for r in results}
        for entry in regular:
            r = by_url[file_url(endpoint, spec.name, commit, entry.path, rtype)]
            data = cache.path(r.sha256).read_bytes()
            if git_blob_sha1(data) != entry.blob_id:
                raise DigestMismatchError(f"{where}: {entry.path} does not match the git blob id the Hub announced")
            files.append({"path": entry.path, "sha256": r.sha256, "size": r.size, "etag": entry.blob_id, "lfs": False})
    card_data = getattr(info, "card_data", None)  # a model's or a dataset's card (repo_info answers either)
    card = card_data.to_dict() if card_data else {}
    tags: list[str] = getattr(info, "tags", None) or []
    license_ = card.get("license") or next((t.split(":", 1)[1] for t in tags if t.startswith("license:")), None)
    meta: dict[str, Any] = {"origin": remember_credentials(endpoint), "license": license_, "library": card.get("library_name") or getattr(info, "library_name", None),
            "pipeline_tag": getattr(info, "pipeline_tag", None), "formats": formats_of([f["path"] for f in files]),
            "include": list(spec.include), "exclude": list(spec.exclude)}
    if rtype == "dataset":  # loading scripts are code: the policy looks for them (policies/evaluate.py)
        meta["scripts"] = sorted(f["path"] for f in files if f["path"].endswith(".py"))
        meta["formats"] = sorted({*meta["formats"], *(DATA_FORMATS[x] for f in files
                                                       if (x := f["path"].lower().rsplit(".", 1)[-1]) in DATA_FORMATS)})
    return LockedModel("hf", spec.name, spec.revision or "main", commit, files, meta, repo_type=rtype)


def _check_listing(entries: list, spec: ModelSpec, commit: str, where: str) -> None:
    """The Hub's listing, checked with the air side's rules (gapsync/names.py) and for shape
    before anything is fetched: names the cache can hold, one tree (no `a` beside `a/b`),
    lower-case digests, sizes that are byte counts."""
    try:
        check_model(spec.name, spec.revision or "main", commit, [e.path for e in entries])
    except BadName as e:
        raise UpstreamError(f"{where}: {e}; the air side would refuse it, so nothing is locked") from None
    for entry in entries:
        size = entry.lfs.size if entry.lfs else entry.size
        digest_ok = (isinstance(entry.lfs.sha256, str) and SHA256_HEX.match(entry.lfs.sha256)) if entry.lfs else \
            (isinstance(entry.blob_id, str) and COMMIT_RE.match(entry.blob_id))
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or not digest_ok:
            raise UpstreamError(f"{where}: listing entry {entry.path!r} has a bad size or digest")


def fetch_items(model: LockedModel) -> list[FetchItem]:
    endpoint = model.meta["origin"]
    items = []
    for f in model.files:
        url = file_url(endpoint, model.name, model.commit, f["path"], model.repo_type)
        items.append(FetchItem(url, f["sha256"], f["size"], f"{model.name}/{f['path']}", opener=opener(url)))
    return items


class HubModelSource:
    """A model repository on the Hub (or a server speaking its API): pinned to a commit at
    resolve, its files downloaded at create by the parallel downloader (datasets: datasets.py)."""

    name: ClassVar[str] = "hf"

    def resolve(self, entry: ModelSpec, ctx: ResolveContext) -> Lock:
        return Lock(ctx.lock.spec_digest, models=[resolve(entry, ctx.cache, ctx.jobs)])

    def fetch(self, record: LockedModel, ctx: FetchContext) -> list[FetchItem]:
        return fetch_items(record)
