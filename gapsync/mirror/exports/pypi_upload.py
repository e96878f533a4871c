"""Upload the mirror's Python files into an index server the site already runs (pypiserver,
devpi, Nexus, Artifactory, GitLab, Gitea): ``gapsync push --pypi URL`` and
``gapsync import --pypi-upload URL``.

The protocol is the legacy upload API that twine speaks (and every such server accepts): one
``POST`` of ``multipart/form-data`` to the repository URL with ``:action=file_upload``,
``protocol_version=1``, the file as ``content``, its ``sha256_digest``, ``filetype``
(``bdist_wheel``/``sdist``), ``pyversion`` and the core metadata fields (read from the PEP 658
``.metadata`` file the mirror keeps beside each wheel, parsed as headers, never executed).

- Skipping: each project's simple page is read once; a file listed there with the same sha256 is
  skipped, one listed with another sha256 is a conflict (refused: the server's copy is never
  overwritten). So a re-run after an interruption uploads only what is missing (resumable).
- Checking: after each upload the project page is read again and the file must be listed with
  its sha256 (from the link's ``#sha256=`` fragment, or, where a server gives none, by
  downloading the file and hashing it).
- Credentials: ``GAPSYNC_PYPI_USERNAME``/``GAPSYNC_PYPI_PASSWORD``, else
  ``TWINE_USERNAME``/``TWINE_PASSWORD``, else the ``~/.pypirc`` section whose ``repository``
  is this URL (``GAPSYNC_PYPIRC`` names another file); never the command line, never logged.
- Every file is read from the mirror as a regular file and hashed against the inventory before
  a byte is sent: a damaged mirror is reported, not propagated.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import re
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import requests
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

from gapsync import fsutil
from gapsync.errors import DigestMismatchError, FetchError, InputError, PublishError
from gapsync.fsutil import open_regular
from gapsync.mirror.layout import MirrorLayout

TIMEOUT = (10, 300)
MAX_PAGE = 32 << 20  # a project page larger than this is a hostile or broken server
# core metadata headers -> upload form fields (twine's names; the multi-valued ones repeat)
META_FIELDS = {"Summary": "summary", "Home-page": "home_page", "Author": "author", "Author-email": "author_email",
               "Maintainer": "maintainer", "Maintainer-email": "maintainer_email", "License": "license",
               "Requires-Python": "requires_python", "Keywords": "keywords", "Platform": "platform",
               "Description-Content-Type": "description_content_type", "License-Expression": "license_expression"}
MULTI_FIELDS = {"Classifier": "classifiers", "Requires-Dist": "requires_dist", "Provides-Extra": "provides_extra",
                "Project-URL": "project_urls", "Requires-External": "requires_external",
                "Provides-Dist": "provides_dist", "Obsoletes-Dist": "obsoletes_dist", "License-File": "license_file"}


@dataclass
class UploadReport:
    repository: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already there with the same sha256
    bytes_uploaded: int = 0

    def to_dict(self) -> dict:
        return {"repository": self.repository, "uploaded": self.uploaded, "skipped": self.skipped,
                "bytes_uploaded": self.bytes_uploaded}


@dataclass(frozen=True)
class MirrorFile:
    project: str
    filename: str
    version: str
    sha256: str
    size: int
    files: Path  # the pypi/files directory it is published in (the mirror's, or a channel namespace's)


# -- credentials ----------------------------------------------------------------------------
def _norm(url: str) -> str:
    return url.rstrip("/") + "/"


def credentials(url: str) -> tuple[str, str] | None:
    """(username, password) for ``url``: environment first, then the matching ``.pypirc`` section."""
    for prefix in ("GAPSYNC_PYPI_", "TWINE_"):
        user, password = os.environ.get(prefix + "USERNAME"), os.environ.get(prefix + "PASSWORD")
        if password is not None:
            return user or "__token__", password
    rc = Path(os.environ.get("GAPSYNC_PYPIRC") or Path.home() / ".pypirc")
    if not rc.is_file():
        return None
    cp = configparser.RawConfigParser()  # no interpolation: a '%' in a password is a '%'
    try:
        cp.read(rc, encoding="utf-8")
    except configparser.Error as e:
        raise InputError(f"{rc}: not a valid .pypirc ({str(e).splitlines()[0]})") from e
    for section in cp.sections():
        repo = cp.get(section, "repository", fallback=None)
        if repo and _norm(repo) == _norm(url) and cp.has_option(section, "password"):
            return cp.get(section, "username", fallback="__token__"), cp.get(section, "password")
    return None


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.username or parts.password:
        # no host ("http://user:pw@/") is possible in a URL given by hand: redact all the same
        return parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else "")).geturl()
    return url


# -- the server's project pages ---------------------------------------------------------------
class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


class IndexServer:
    """One repository on one server: its upload URL and the simple index it serves."""

    def __init__(self, url: str, simple_url: str | None = None):
        if not re.match(r"^https?://", url):
            raise InputError(f"{url!r}: expected the repository's http(s) upload URL")
        parts = urlsplit(url)
        if parts.username or parts.password:
            raise InputError(f"{_redact(url)}: credentials do not go in the URL (use ~/.pypirc or GAPSYNC_PYPI_USERNAME/"
                             "GAPSYNC_PYPI_PASSWORD)")
        self.url = _norm(url)
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy or netrc surprises inside the air gap
        creds = credentials(self.url)
        if creds:
            self.session.auth = creds
        self.session.headers["User-Agent"] = "gapsync-upload"
        self._refused: str | None = None  # what the server said to the last upload, when it refused it
        self.simple_url = _norm(simple_url) if simple_url else self._find_simple()

    def _find_simple(self) -> str:
        """pypiserver, Nexus, Artifactory, GitLab: URL/simple/; devpi: URL/+simple/."""
        for cand in (urljoin(self.url, "simple/"), urljoin(self.url, "+simple/")):
            try:
                with self.session.get(cand, timeout=TIMEOUT, stream=True) as r:
                    if r.status_code == 200:
                        return cand
            except requests.RequestException as e:
                raise FetchError(f"{self.url}: cannot reach the index server ({e})") from e
        raise FetchError(f"{self.url}: no simple index at simple/ or +simple/ below it (name it with --pypi-simple-url)")

    def _get(self, url: str) -> requests.Response | None:
        """GET within this server: same-origin redirects are followed (``/simple/Foo`` ->
        ``/simple/foo/``); a redirect to another origin (pypiserver sends a project it lacks to
        pypi.org) means "not here" (None), and the credentials never follow it."""
        origin = urlsplit(self.url)[:2]
        for _ in range(5):
            try:
                r = self.session.get(url, timeout=TIMEOUT, stream=True, headers={"Accept": "text/html"},
                                     allow_redirects=False)
            except requests.RequestException as e:
                raise FetchError(f"{url}: {e}; run again to resume") from e
            if r.status_code not in (301, 302, 303, 307, 308):
                return r
            r.close()
            url = urljoin(url, r.headers.get("Location", ""))
            if urlsplit(url)[:2] != origin:
                return None
        raise FetchError(f"{url}: too many redirects")

    def listed(self, project: str) -> dict[str, tuple[str | None, str]]:
        """filename -> (sha256 from the link or None, absolute file URL) on the project's page."""
        page_url = urljoin(self.simple_url, f"{project}/")
        r = self._get(page_url)
        if r is None:
            return {}
        with r:
            if r.status_code == 404:
                return {}
            if r.status_code in (401, 403):
                raise PublishError(f"{page_url}: HTTP {r.status_code}: the server refused the credentials "
                                   "(set them in ~/.pypirc or GAPSYNC_PYPI_USERNAME/GAPSYNC_PYPI_PASSWORD)")
            if r.status_code != 200:
                raise FetchError(f"{page_url}: HTTP {r.status_code}; run again to resume")
            body = bytearray()
            for chunk in r.iter_content(1 << 16):
                body += chunk
                if len(body) > MAX_PAGE:
                    raise FetchError(f"{page_url}: project page larger than {MAX_PAGE} bytes; refused")
            base = r.url
        parser = _Links()
        parser.feed(body.decode("utf-8", "replace"))
        out = {}
        for href in parser.links:
            absolute = urljoin(base, href)
            path, _, frag = absolute.partition("#")
            name = unquote(path.rsplit("/", 1)[-1])
            m = re.search(r"(?:^|&)sha256=([0-9a-fA-F]{64})", frag)
            out[name] = (m.group(1).lower() if m else None, path)
        return out

    def sha256_of(self, project: str, filename: str) -> str | None:
        """The sha256 the server lists (or serves) for ``filename``; None when not listed."""
        entry = self.listed(project).get(filename)
        if entry is None:
            return None
        digest, url = entry
        if digest:
            return digest
        h = hashlib.sha256()
        r = self._get(url)
        if r is None:
            raise FetchError(f"{url}: the server sends this file elsewhere; cannot check its sha256")
        with r:  # a server without hash fragments: hash what it serves
            if r.status_code != 200:
                raise FetchError(f"{url}: HTTP {r.status_code}")
            for chunk in r.iter_content(1 << 20):
                h.update(chunk)
        return h.hexdigest()

    def upload(self, f: MirrorFile, path: Path, fields: list[tuple[str, str]]) -> None:
        with open_regular(path) as fh:
            try:
                r = self.session.post(self.url, data=fields, files={"content": (f.filename, fh, "application/octet-stream")},
                                      timeout=TIMEOUT, allow_redirects=False)
            except requests.RequestException as e:
                raise FetchError(f"{self.url}: uploading {f.filename} failed ({e}); run again to resume") from e
        if r.status_code in (401, 403):
            raise PublishError(f"{self.url}: HTTP {r.status_code} uploading {f.filename}: the server refused the "
                               "credentials (set them in ~/.pypirc or GAPSYNC_PYPI_USERNAME/GAPSYNC_PYPI_PASSWORD)")
        if r.status_code in (301, 302, 303, 307, 308):
            raise PublishError(f"{self.url}: the server redirects uploads to {r.headers.get('Location')}; "
                               "give that URL (with its trailing slash) instead")
        if r.status_code not in (200, 201) and r.status_code not in (400, 409):
            raise FetchError(f"{self.url}: HTTP {r.status_code} uploading {f.filename}: {r.text[:200]!r}")
        if r.status_code in (400, 409):  # "already exists" on some servers: the check below decides
            self._refused = f"HTTP {r.status_code}: {r.text[:200]!r}"


def _metadata_fields(layout: MirrorLayout, f: MirrorFile) -> list[tuple[str, str]]:
    """The upload form for one file: protocol fields plus the core metadata of its wheel."""
    if f.filename.endswith(".whl"):
        parse_wheel_filename(f.filename)  # refuses a malformed name
        filetype, pyversion = "bdist_wheel", f.filename[:-4].split("-")[-3]  # the python tag, as twine sends it
    else:
        parse_sdist_filename(f.filename)
        filetype, pyversion = "sdist", "source"
    fields = [(":action", "file_upload"), ("protocol_version", "1"), ("filetype", filetype), ("pyversion", pyversion),
              ("sha256_digest", f.sha256), ("name", f.project), ("version", f.version), ("metadata_version", "2.1")]
    meta = f.files / f"{f.filename}.metadata"
    if f.filename.endswith(".whl") and meta.is_file():
        with open_regular(meta) as fh:
            headers = BytesHeaderParser().parse(fh)  # headers only: the description body is not needed
        fields = [(k, v) for k, v in fields if k not in ("name", "version", "metadata_version")]
        fields += [("name", str(headers.get("Name") or f.project)), ("version", str(headers.get("Version") or f.version)),
                   ("metadata_version", str(headers.get("Metadata-Version") or "2.1"))]
        for header, key in META_FIELDS.items():
            if headers.get(header):
                fields.append((key, str(headers[header])))
        for header, key in MULTI_FIELDS.items():
            fields += [(key, str(v)) for v in headers.get_all(header) or []]
    return fields


def _published_layouts(layout: MirrorLayout, channels: set[str] | None = None) -> list[MirrorLayout]:
    """The mirror's top and every channel namespace (``trust pin --namespace``), or those of ``channels``."""
    from gapsync.mirror.claims import published_layout

    out: dict[Path, MirrorLayout] = {} if channels else {layout.root: layout}
    for ch in sorted(channels or layout.channels()):
        view = published_layout(layout, ch)
        out.setdefault(view.root, view)
    return list(out.values())


def mirror_files(layout: MirrorLayout, only: set[str] | None = None, channels: set[str] | None = None) -> list[MirrorFile]:
    """Every Python file the mirror publishes (its inventories), or those named in ``only``; the
    same file in two namespaces is uploaded once (a different one under one name is a conflict)."""
    out: dict[tuple[str, str], MirrorFile] = {}
    for view in _published_layouts(layout, channels):
        for inv_path in sorted(view.pypi_inventory_dir.glob("*.json")):
            inv = fsutil.read_json(inv_path)
            project = str(inv.get("name", inv_path.stem))
            if canonicalize_name(project) != project:
                continue
            for fn, rec in sorted(inv.get("files", {}).items()):
                if only is None or fn in only:
                    f = MirrorFile(project, fn, str(rec.get("version")), rec["sha256"], int(rec["size"]), view.pypi_files)
                    out.setdefault((fn, f.sha256), f)
    by_name: dict[str, MirrorFile] = {}
    for f in out.values():
        if by_name.setdefault(f.filename, f).sha256 != f.sha256:
            raise PublishError(f"{layout.root}: {f.filename} is published with two different sha256 in two namespaces; "
                               "an index server holds one file per name: push one channel's files (import --pypi-upload)")
    return sorted(out.values(), key=lambda f: (f.project, f.filename))


def channel_files(mirror: Path, channels: set[str]) -> set[str]:
    """The Python files the channels' current releases publish (their target views' record)."""
    from gapsync.mirror.claims import published_layout

    out: set[str] = set()
    for ch in channels:
        p = published_layout(MirrorLayout(mirror), ch).pypi_views_record(ch)
        if p.is_file() or p.is_symlink():
            for projects in fsutil.read_json(p).get("targets", {}).values():
                for names in projects.values():
                    out.update(names)
    return out


def _check_local(path: Path, f: MirrorFile) -> None:
    h = hashlib.sha256()
    with open_regular(path) as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    if h.hexdigest() != f.sha256:
        raise DigestMismatchError(f"{path}: sha256 {h.hexdigest()[:16]}… differs from the mirror's inventory "
                                  f"({f.sha256[:16]}…): the mirror is damaged; nothing more was uploaded")


def upload_files(layout: MirrorLayout, url: str, files: list[MirrorFile], simple_url: str | None = None,
                 progress=None) -> UploadReport:
    server = IndexServer(url, simple_url)
    report = UploadReport(server.url)
    by_project: dict[str, list[MirrorFile]] = {}
    for f in files:
        by_project.setdefault(f.project, []).append(f)
    for project, fs in sorted(by_project.items()):
        listed = server.listed(project)
        for f in fs:
            have = listed.get(f.filename)
            digest = have[0] if have else None
            if have and digest is None:
                digest = server.sha256_of(project, f.filename)
            if have and digest == f.sha256:
                report.skipped.append(f.filename)
                continue
            if have:
                raise PublishError(f"{server.url}: {f.filename} is already there with another sha256 "
                                   f"({digest[:16] if digest else '?'}…, mirror {f.sha256[:16]}…); not overwritten")
            path = f.files / f.filename
            _check_local(path, f)
            server._refused = None
            server.upload(f, path, _metadata_fields(layout, f))
            after = server.sha256_of(project, f.filename)
            if after != f.sha256:
                why = f" (the server answered {server._refused})" if server._refused else ""
                raise PublishError(f"{server.url}: after uploading {f.filename} the server lists "
                                   + (f"sha256 {after[:16]}…" if after else "no such file")
                                   + f", expected {f.sha256[:16]}…{why}")
            report.uploaded.append(f.filename)
            report.bytes_uploaded += f.size
            if progress:
                progress(f, len(report.uploaded) + len(report.skipped), len(files))
    return report


def upload_and_audit(mirror: Path, url: str, only: set[str] | None = None, simple_url: str | None = None,
                     progress=None, channels: set[str] | None = None) -> UploadReport:
    """``push --pypi`` and ``import --pypi-upload``: under the mirror's lock, with an audit entry."""
    from gapsync.audit import AuditLog
    from gapsync.errors import GapsyncError
    from gapsync.locking import exclusive

    layout = MirrorLayout(mirror)
    layout.require()
    audit = AuditLog(layout.audit_path)
    try:
        with exclusive(layout.lock_path, f"mirror {mirror}", wait_seconds=5):
            report = upload_files(layout, url, mirror_files(layout, only, channels), simple_url, progress)
    except GapsyncError as e:
        audit.append("pypi.upload", "error", repository=_redact(url), reason=str(e))
        raise
    audit.append("pypi.upload", "ok", repository=report.repository, uploaded=report.uploaded,
                 skipped=len(report.skipped), bytes=report.bytes_uploaded)
    return report
