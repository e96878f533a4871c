"""A client for any Python package index: PEP 691 JSON when offered, PEP 503 HTML otherwise.

Only the project pages are read; the JSON API of PyPI (``/pypi/<name>/json``) is not used, so
private indexes (pypiserver, devpi, Artifactory, Nexus) work the same way as PyPI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import unquote, urldefrag, urljoin

from packaging.utils import canonicalize_name

from gapsync.bundler.http import MAX_INDEX_PAGE, get_document, remember_credentials
from gapsync.errors import FetchError, UpstreamError
from gapsync.names import BadName, check_sha256
from gapsync.redact import redact_url

ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
          "text/html;q=0.01")


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str
    sha256: str | None
    requires_python: str | None
    yanked: str | None  # None: not yanked; "" : yanked without a reason
    size: int | None
    core_metadata_sha256: str | None


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []
        self._current: dict[str, str | None] | None = None
        self.base: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "base":
            self.base = dict(attrs).get("href")
        if tag == "a":
            self._current = dict(attrs)
            self._current["_text"] = ""
            self.links.append(self._current)

    def handle_data(self, data):
        if self._current is not None:
            self._current["_text"] = (self._current.get("_text") or "") + data

    def handle_endtag(self, tag):
        if tag == "a":
            self._current = None


def _meta_hash(value, where: str) -> str | None:
    if isinstance(value, dict):
        h = value.get("sha256")
        return None if h is None else _sha256(h, where)
    if isinstance(value, str) and value.startswith("sha256="):
        return _sha256(value.split("=", 1)[1], where)
    return None


def _sha256(value: object, where: str) -> str:
    try:
        return check_sha256(value)
    except BadName as e:
        raise UpstreamError(f"{where}: {e}") from None


def project_files(index_url: str, project: str) -> list[IndexFile]:
    """The files a project page lists. The page is read with a size cap, and every entry is
    checked for shape (PEP 691 JSON: ``files`` a list of objects with a string ``filename`` and
    ``url``, hashes in lower-case hex); a page that breaks them is refused, one line naming it."""
    name = canonicalize_name(project)
    page = urljoin(index_url, f"{name}/")
    r, body = get_document(page, MAX_INDEX_PAGE, headers={"Accept": ACCEPT}, ok=(200,))
    if r.status_code == 404:
        raise FetchError(f"{redact_url(page)}: project {project!r} not found on the index")
    if r.status_code != 200:
        raise FetchError(f"{redact_url(page)}: HTTP {r.status_code}")
    ctype = r.headers.get("Content-Type", "").split(";")[0].strip()
    if ctype == "application/vnd.pypi.simple.v1+json":
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as e:
            raise UpstreamError(f"{redact_url(r.url)}: index page is not valid JSON ({type(e).__name__})") from None
        return _from_json(r.url, doc)
    return _from_html(r.url, body.decode(r.encoding or "utf-8", errors="replace"))


def _from_json(page_url: str, data: object) -> list[IndexFile]:
    where = redact_url(page_url)
    if not isinstance(data, dict):
        raise UpstreamError(f"{where}: index page is a JSON {type(data).__name__}, not an object")
    files = data.get("files")
    if not isinstance(files, list):
        raise UpstreamError(f"{where}: index page's 'files' is {type(files).__name__}, not a list")
    out = []
    for i, f in enumerate(files):
        if not isinstance(f, dict):
            raise UpstreamError(f"{where}: files[{i}] is a JSON {type(f).__name__}, not an object")
        fn, href = f.get("filename"), f.get("url")
        if not isinstance(fn, str) or not fn:
            raise UpstreamError(f"{where}: files[{i}] has no 'filename' string")
        what = f"{where}: {fn}"
        if not isinstance(href, str) or not href:
            raise UpstreamError(f"{what}: entry has no 'url' string")
        hashes = f.get("hashes") or {}
        if not isinstance(hashes, dict):
            raise UpstreamError(f"{what}: 'hashes' is {type(hashes).__name__}, not an object")
        sha = hashes.get("sha256")
        size = f.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise UpstreamError(f"{what}: 'size' {size!r} is not a byte count")
        rp = f.get("requires-python")
        if rp is not None and not isinstance(rp, str):
            raise UpstreamError(f"{what}: 'requires-python' is not a string")
        yanked = f.get("yanked", False)
        if not isinstance(yanked, (bool, str)):
            raise UpstreamError(f"{what}: 'yanked' is neither true/false nor a reason")
        url, frag = urldefrag(urljoin(page_url, href))
        url = remember_credentials(url)  # a file link with user info: kept for its origin, never recorded
        out.append(IndexFile(
            filename=fn, url=url, sha256=None if sha is None else _sha256(sha, what),
            requires_python=rp or None,
            yanked=(yanked if isinstance(yanked, str) else ("" if yanked else None)),
            size=size, core_metadata_sha256=_meta_hash(f.get("core-metadata", f.get("dist-info-metadata")), what)))
    return out


def _from_html(page_url: str, text: str) -> list[IndexFile]:
    where = redact_url(page_url)
    p = _LinkParser()
    p.feed(text)
    base = urljoin(page_url, p.base) if p.base else page_url
    out = []
    for a in p.links:
        href = a.get("href")
        if not href:
            continue
        url, frag = urldefrag(urljoin(base, href))
        url = remember_credentials(url)
        filename = unquote(url.rsplit("/", 1)[-1])
        what = f"{where}: {filename}"
        sha = _sha256(frag.split("=", 1)[1], what) if frag.startswith("sha256=") else None
        yanked = a.get("data-yanked")
        out.append(IndexFile(
            filename=filename, url=url, sha256=sha, requires_python=a.get("data-requires-python") or None,
            yanked=(yanked or "") if "data-yanked" in a else None, size=None,
            core_metadata_sha256=_meta_hash(a.get("data-core-metadata") or a.get("data-dist-info-metadata"), what)))
    return out
