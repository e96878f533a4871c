"""A client for any Python package index: PEP 691 JSON when offered, PEP 503 HTML otherwise.

Only the project pages are read; the JSON API of PyPI (``/pypi/<name>/json``) is not used, so
private indexes (pypiserver, devpi, Artifactory, Nexus) work the same way as PyPI.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin

import requests
from packaging.utils import canonicalize_name

from gapsync.bundler.http import TIMEOUT, session
from gapsync.errors import FetchError

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


def _meta_hash(value) -> str | None:
    if isinstance(value, dict):
        return value.get("sha256")
    if isinstance(value, str) and value.startswith("sha256="):
        return value.split("=", 1)[1]
    return None


def project_files(index_url: str, project: str) -> list[IndexFile]:
    name = canonicalize_name(project)
    page = urljoin(index_url, f"{name}/")
    try:
        r = session().get(page, headers={"Accept": ACCEPT}, timeout=TIMEOUT)
    except requests.RequestException as e:
        raise FetchError(f"{page}: {e}") from e
    if r.status_code == 404:
        raise FetchError(f"{page}: project {project!r} not found on the index")
    if r.status_code != 200:
        raise FetchError(f"{page}: HTTP {r.status_code}")
    ctype = r.headers.get("Content-Type", "").split(";")[0].strip()
    if ctype == "application/vnd.pypi.simple.v1+json":
        return _from_json(r.url, r.json())
    return _from_html(r.url, r.text)


def _from_json(page_url: str, data: dict) -> list[IndexFile]:
    out = []
    for f in data.get("files", []):
        url, frag = urldefrag(urljoin(page_url, f["url"]))
        yanked = f.get("yanked", False)
        out.append(IndexFile(
            filename=f["filename"], url=url, sha256=(f.get("hashes") or {}).get("sha256"),
            requires_python=f.get("requires-python") or None,
            yanked=(yanked if isinstance(yanked, str) else ("" if yanked else None)),
            size=f.get("size") if isinstance(f.get("size"), int) else None,
            core_metadata_sha256=_meta_hash(f.get("core-metadata", f.get("dist-info-metadata")))))
    return out


def _from_html(page_url: str, text: str) -> list[IndexFile]:
    p = _LinkParser()
    p.feed(text)
    base = urljoin(page_url, p.base) if p.base else page_url
    out = []
    for a in p.links:
        href = a.get("href")
        if not href:
            continue
        url, frag = urldefrag(urljoin(base, href))
        sha = frag.split("=", 1)[1] if frag.startswith("sha256=") else None
        filename = url.rsplit("/", 1)[-1]
        from urllib.parse import unquote

        filename = unquote(filename)
        yanked = a.get("data-yanked")
        out.append(IndexFile(
            filename=filename, url=url, sha256=sha, requires_python=a.get("data-requires-python") or None,
            yanked=(yanked or "") if "data-yanked" in a else None, size=None,
            core_metadata_sha256=_meta_hash(a.get("data-core-metadata") or a.get("data-dist-info-metadata"))))
    return out
