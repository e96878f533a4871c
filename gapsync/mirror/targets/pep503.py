"""A static Python package index under MIRROR/pypi: PEP 503 HTML and PEP 691 JSON pages with
sha256 fragments, ``data-requires-python``, yanked markers and PEP 658/714 metadata files.

Any web server can serve it; ``gapsync serve`` adds PEP 691 content negotiation. The pages are
rendered from an inventory (``.gapsync/pypi/<project>.json``), so a later bundle adds files to a
project without losing what earlier bundles brought; every page and file is replaced atomically,
so a reader never sees a half-written page.

The union index (``pypi/simple``) holds every file any target of any channel needs, so a client
there gets the newest file it can use, not the approved one. Beside it, each channel gets one
**target view** per target interpreter: ``pypi/targets/<channel>/<target-id>/simple/``, holding
exactly the files the signed release locked for that target (the ``tags`` of each signed python
target), nothing older and nothing newer. A view is pages only: its links are relative links to
the same files under ``pypi/files`` (no second copy), so it works from any web server, from
``gapsync serve`` and from ``file://``. Views are rewritten from each release's signed target
list through the same publish journal, so a failed publish undoes them too; projects and targets
a release no longer names leave the view.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from packaging.utils import canonicalize_name

from gapsync import faults, fsutil
from gapsync.bundle.records import PythonFile, PythonMetadata
from gapsync.errors import BundleFormatError, PublishError
from gapsync.mirror.journal import DIRECT, DirectWriter
from gapsync.mirror.layout import MirrorLayout
from gapsync.model import Target
from gapsync.names import PROJECT_RE, SAFE_FILENAME

# a target id as gapsync.bundler.platforms.PythonTarget.id makes it: cp311-manylinux_2_17_x86_64
TARGET_ID_RE = re.compile(r"^cp3[0-9]{1,2}-[a-z0-9_]{1,64}$")
CHANNEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def _record(t: Target) -> PythonFile | PythonMetadata:
    return PythonFile.from_target(t) if t.kind == "python" else PythonMetadata.from_target(t)


class Pep503Index:
    kinds: ClassVar[frozenset[str]] = frozenset({"python", "python-metadata"})

    def __init__(self, layout: MirrorLayout):
        self.layout = layout
        self.simple = layout.pypi_simple
        self.files = layout.pypi_files
        self.inventory_dir = layout.pypi_inventory_dir
        self._inventories: dict[str, dict] = {}
        self._fs: DirectWriter = DIRECT  # publish's writer (the import's journal), for the render steps
        self.channel: str | None = None  # the channel whose release is being published (set by the importer)
        self.views = layout.pypi_views

    # -- naming (the only place where names from a bundle become paths) ------------------
    @staticmethod
    def _project(t: Target) -> str:
        name = _record(t).name
        if not PROJECT_RE.match(name) or canonicalize_name(name) != name:
            raise BundleFormatError(f"target {t.path!r}: bad project name {name!r}")
        return name

    def _file_name(self, t: Target) -> str:
        rec = _record(t)
        fn = rec.filename if isinstance(rec, PythonFile) else rec.of + ".metadata"
        if not SAFE_FILENAME.match(fn) or ".." in fn:
            raise BundleFormatError(f"target {t.path!r}: unsafe file name {fn!r}")
        expected = f"python/{self._project(t)}/{fn}"
        if t.path != expected:
            raise BundleFormatError(f"target {t.path!r}: path does not match its file name (expected {expected!r})")
        return fn

    def _inventory(self, project: str) -> dict:
        if project not in self._inventories:
            p = self.inventory_dir / f"{project}.json"
            self._inventories[project] = fsutil.read_json(p, {"name": project, "files": {}})
        return self._inventories[project]

    # -- the interface --------------------------------------------------------------------
    def check(self, targets: list[Target]) -> None:
        for t in targets:
            fn = self._file_name(t)
            if t.kind == "python":
                self._target_ids(t)
            inv = self._inventory(self._project(t))
            rec = inv["files"].get(fn.removesuffix(".metadata")) if t.kind == "python" else None
            if rec and rec["sha256"] != t.blob.digest:
                raise PublishError(f"{fn}: the mirror already has a different file with this name "
                                   f"(sha256 {rec['sha256'][:16]}…, bundle {t.blob.digest[:16]}…)")

    @staticmethod
    def _target_ids(t: Target) -> list[str]:
        """The signed target ids a file was locked for (they become directory names: checked)."""
        tags = list(PythonFile.from_target(t).tags)
        if not all(TARGET_ID_RE.match(x) for x in tags):
            raise BundleFormatError(f"target {t.path!r}: bad target ids {tags!r}")
        return tags

    def view_dir(self, channel: str, target_id: str) -> Path:
        if not CHANNEL_RE.match(channel) or not TARGET_ID_RE.match(target_id):
            raise ValueError(f"bad channel or target id: {channel!r}, {target_id!r}")
        return self.views / channel / target_id / "simple"

    def is_published(self, t: Target) -> bool:
        """The file and its inventory record are there. (Target views are not looked at: a mirror
        imported before views existed gets them with the channel's next version.)"""
        dst = self.files / self._file_name(t)
        try:
            return dst.stat().st_size == t.blob.size and (
                t.kind != "python" or self._inventory(self._project(t))["files"].get(dst.name, {}).get("sha256") == t.blob.digest)
        except FileNotFoundError:
            return False

    def publish(self, targets: list[Target], blob_path: Callable[[str], Path], fs: DirectWriter) -> list[str]:
        self.check(targets)
        self._fs = fs
        by_project: dict[str, list[Target]] = {}
        for t in targets:
            by_project.setdefault(self._project(t), []).append(t)
        meta_digest = {PythonMetadata.from_target(t).of: t.blob.digest for t in targets if t.kind == "python-metadata"}
        published = []
        # files first (metadata before its wheel), then pages: a page never names a missing file
        for t in sorted(targets, key=lambda t: t.kind != "python-metadata"):
            dst = self.files / self._file_name(t)
            if not (dst.exists() and dst.stat().st_size == t.blob.size):
                fs.link_or_copy(blob_path(t.blob.digest), dst)
                faults.point("publish.pep503.file")
        for project, ts in sorted(by_project.items()):
            inv = self._inventory(project)
            for t in ts:
                if t.kind != "python":
                    continue
                fn = self._file_name(t)
                rec = PythonFile.from_target(t)
                inv["files"][fn] = {"sha256": t.blob.digest, "size": t.blob.size, "version": rec.version,
                                    "requires_python": rec.requires_python,
                                    "yanked": rec.yanked, "metadata_sha256": meta_digest.get(fn)}
                published.append(fn)
            self._render_project(project, inv)
            faults.point("publish.pep503.page")
            fs.write_atomic(self.inventory_dir / f"{project}.json", json.dumps(inv, indent=1, sort_keys=True).encode())
        self._render_root()
        if self.channel and any(t.kind == "python" for t in targets):
            self._render_views(self.channel, [t for t in targets if t.kind == "python"])
        return sorted(published)

    # -- target views -----------------------------------------------------------------------
    def _render_views(self, channel: str, targets: list[Target]) -> None:
        """Make the channel's views say exactly what this release locked for each target: pages
        for its files, nothing else (projects and targets it no longer names are removed)."""
        wanted: dict[str, dict[str, set[str]]] = {}
        for t in targets:
            for tid in self._target_ids(t):
                wanted.setdefault(tid, {}).setdefault(self._project(t), set()).add(self._file_name(t))
        base = self.views / channel
        for tid, projects in sorted(wanted.items()):
            simple = self.view_dir(channel, tid)
            for project, names in sorted(projects.items()):
                inv = self._inventory(project)
                files = {fn: inv["files"][fn] for fn in names}
                self._render_project(project, {"name": project, "files": files}, out=simple / project,
                                     files_href="../../../../../files/")
            for old in sorted(simple.iterdir()) if simple.is_dir() else []:
                if old.is_dir() and old.name not in projects:
                    self._fs.remove_tree(old)
            self._render_root(sorted(projects), out=simple)
        for old in sorted(base.iterdir()) if base.is_dir() else []:
            if old.is_dir() and old.name not in wanted:
                self._fs.remove_tree(old)
        doc = {"channel": channel, "targets": {tid: {p: sorted(n) for p, n in sorted(ps.items())}
                                               for tid, ps in sorted(wanted.items())}}
        self._write(self.layout.pypi_views_record(channel), json.dumps(doc, indent=1, sort_keys=True).encode())

    def _write(self, path: Path, data: bytes) -> None:
        """Write through the journal, unless the file already holds these bytes (a re-import
        rewrites nothing: thousands of view pages stay as they are)."""
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_size == len(data) and path.read_bytes() == data:
                return
        except OSError:
            pass
        self._fs.write_atomic(path, data)

    # -- rendering ------------------------------------------------------------------------
    def _render_project(self, project: str, inv: dict, out: Path | None = None, files_href: str = "../../files/") -> None:
        rows, jfiles, versions = [], [], set()
        for fn, rec in sorted(inv["files"].items()):
            href = f"{files_href}{fn}"
            attrs = [f'href="{html.escape(href)}#sha256={rec["sha256"]}"']
            jf: dict = {"filename": fn, "url": href, "hashes": {"sha256": rec["sha256"]}, "size": rec["size"]}
            if rec.get("requires_python"):
                attrs.append(f'data-requires-python="{html.escape(rec["requires_python"])}"')
                jf["requires-python"] = rec["requires_python"]
            if rec.get("metadata_sha256"):
                attrs.append(f'data-dist-info-metadata="sha256={rec["metadata_sha256"]}"')
                attrs.append(f'data-core-metadata="sha256={rec["metadata_sha256"]}"')
                jf["core-metadata"] = jf["dist-info-metadata"] = {"sha256": rec["metadata_sha256"]}
            if rec.get("yanked") is not None:
                attrs.append(f'data-yanked="{html.escape(rec["yanked"])}"')
                jf["yanked"] = rec["yanked"] or True
            if rec.get("version"):
                versions.add(rec["version"])
            rows.append(f"    <a {' '.join(attrs)}>{html.escape(fn)}</a><br/>\n")
            jfiles.append(jf)
        page = ('<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" content="1.1">\n'
                f"    <title>Links for {html.escape(project)}</title>\n  </head>\n  <body>\n"
                f"    <h1>Links for {html.escape(project)}</h1>\n{''.join(rows)}  </body>\n</html>\n")
        from packaging.version import InvalidVersion, Version

        def vkey(v: str):
            try:
                return (0, Version(v), v)
            except InvalidVersion:
                return (1, None, v)

        doc = {"meta": {"api-version": "1.1"}, "name": project,
               "versions": sorted(versions, key=vkey), "files": jfiles}
        d = out or self.simple / project
        self._write(d / "index.json", json.dumps(doc, indent=1).encode())
        self._write(d / "index.html", page.encode())

    def _render_root(self, projects: list[str] | None = None, out: Path | None = None) -> None:
        if projects is None:
            projects = sorted(p.stem for p in self.inventory_dir.glob("*.json"))
        links = "".join(f'    <a href="{p}/">{p}</a><br/>\n' for p in projects)
        page = ('<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" content="1.1">\n'
                f"    <title>Simple index</title>\n  </head>\n  <body>\n{links}  </body>\n</html>\n")
        doc = {"meta": {"api-version": "1.1"}, "projects": [{"name": p} for p in projects]}
        d = out or self.simple
        self._write(d / "index.json", json.dumps(doc, indent=1).encode())
        self._write(d / "index.html", page.encode())
