"""Helm charts as a static chart repository: MIRROR/charts/index.yaml plus the archives
(``<name>-<version>.tgz``), which ``gapsync serve`` answers at ``/charts/`` and any web server can
serve (``helm repo add mirror http://HOST/charts``). The same charts are OCI artifacts in the
OCI layout (``helm pull oci://…`` from ``serve`` or from a registry filled by ``push``); this
target is driven by :class:`OciLayout` so a chart counts once in an import's summary.

The archive is the chart's content layer, a hard link to the verified blob store: the bytes are
the upstream archive's, so ``index.yaml``'s digest is the upstream repository's. A published
chart version is immutable: another archive under the same name and version is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import yaml

from gapsync.bundle.records import ChartInfo, OciImage
from gapsync.errors import BundleFormatError
from gapsync.mirror.journal import DirectWriter
from gapsync.mirror.layout import MirrorLayout
from gapsync.model import SHA256_RE, Target

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
CHART_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,127}$")
MAX_INDEX = 64 << 20


def chart_targets(targets: list[Target]) -> list[tuple[Target, ChartInfo]]:
    """The Helm charts among the targets, with their facts."""
    out = []
    for t in targets:
        if t.kind == "oci-image":
            image = OciImage.from_target(t)
            if image.artifact_type == HELM_CONFIG and image.chart is not None:
                out.append((t, image.chart))
    return out


def archive_name(chart: ChartInfo) -> str:
    return f"{chart.name}-{chart.version}.tgz"


class ChartRepo:
    def __init__(self, layout: MirrorLayout):
        self.root = layout.charts_root
        self.index_path = layout.charts_index

    def check(self, targets: list[Target]) -> None:
        seen: dict[str, str] = {}
        for t, c in chart_targets(targets):
            name, version, archive = c.name, c.version, c.archive
            if not (isinstance(name, str) and CHART_NAME_RE.match(name) and isinstance(version, str)
                    and VERSION_RE.match(version) and isinstance(archive, str) and SHA256_RE.match(archive)):
                raise BundleFormatError(f"target {t.path!r}: bad chart name, version or archive digest")
            if f"sha256:{archive}" not in OciImage.from_target(t).blobs:
                raise BundleFormatError(f"target {t.path!r}: the chart archive is not one of the artifact's blobs")
            file = archive_name(c)
            if seen.setdefault(file, archive) != archive or self._published_digest(name, version) not in (None, archive):
                raise BundleFormatError(f"target {t.path!r}: chart {name} {version} is already published with "
                                        "another archive (a chart version is immutable)")

    def _index(self) -> dict:
        p = self.index_path
        if not p.is_file() or p.is_symlink():
            return {"apiVersion": "v1", "entries": {}}
        if p.stat().st_size > MAX_INDEX:
            raise BundleFormatError(f"{p}: larger than {MAX_INDEX} bytes")
        doc = yaml.safe_load(p.read_bytes()) or {}
        if not isinstance(doc, dict) or not isinstance(doc.get("entries") or {}, dict):
            raise BundleFormatError(f"{p}: not a chart repository index")
        doc.setdefault("entries", {})
        return doc

    def _published_digest(self, name: str, version: str) -> str | None:
        for e in self._index()["entries"].get(name) or []:
            if isinstance(e, dict) and str(e.get("version")) == version:
                return str(e.get("digest"))
        return None

    def is_published(self, t: Target) -> bool:
        c = OciImage.from_target(t).chart or ChartInfo()
        return (self.root / archive_name(c)).is_file() and self._published_digest(str(c.name), str(c.version)) == c.archive

    def publish(self, targets: list[Target], blob_path: Callable[[str], Path], fs: DirectWriter) -> list[str]:
        charts = chart_targets(targets)
        if not charts:
            return []
        self.check(targets)
        fs.mkdirs(self.root)
        index = self._index()
        published = []
        for _t, c in sorted(charts, key=lambda tc: tc[0].path):
            name, version, archive = str(c.name), str(c.version), str(c.archive)  # check() above: strings
            dst = self.root / archive_name(c)
            if not dst.exists():
                fs.link_or_copy(blob_path(archive), dst)
            entry = {"apiVersion": c.api_version or "v2", "name": name, "version": version,
                     "digest": archive, "urls": [archive_name(c)]}
            if c.app_version:
                entry["appVersion"] = c.app_version
            if c.description:
                entry["description"] = c.description
            versions = [e for e in index["entries"].get(name) or [] if str(e.get("version")) != version]
            index["entries"][name] = sorted([*versions, entry], key=lambda e: str(e.get("version")), reverse=True)
            published.append(f"chart {name}-{version}")
        # the archives before the index that names them
        fs.write_atomic(self.index_path, yaml.safe_dump(index, sort_keys=True).encode())
        return published
