"""Static conda channels under MIRROR/conda: one per upstream channel, as conda, mamba, pixi and
py-rattler read them.

    MIRROR/conda/<channel>/<subdir>/repodata.json     the subdir's index (repodata_version 1)
    MIRROR/conda/<channel>/<subdir>/<name>-<version>-<build>.conda|.tar.bz2
    MIRROR/conda/<channel>/noarch/repodata.json       always there (clients ask for noarch first)
    MIRROR/conda/<channel>/channeldata.json           names, subdirs and latest versions (conda search)
    MIRROR/.gapsync/conda/<channel>/<subdir>.json     the inventory the repodata is rendered from

repodata.json is written to the format of conda-index and ``rattler.index`` (``info.subdir``,
``packages`` for .tar.bz2, ``packages.conda`` for .conda, ``removed``, ``repodata_version``), from
the signed repodata record each target carries: the upstream channel's record, patches
included, which an index rebuilt from the packages' own ``info/index.json`` would lose. The
record's sha256 and size must equal the signed blob's. A later bundle adds packages to a
channel without losing what earlier bundles brought; a file name that is already published with
other bytes is refused (a name belongs to who published it first). Files go in before the
repodata that names them, every write through the publish journal, so a failed import is undone.
Any web server can serve the tree; ``gapsync serve`` serves it under ``/conda/``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from gapsync import faults, fsutil
from gapsync.bundle.records import CondaPackage
from gapsync.errors import BundleFormatError, PublishError
from gapsync.mirror.journal import DIRECT, DirectWriter
from gapsync.mirror.layout import MirrorLayout
from gapsync.model import Target

SUBDIRS = frozenset({"noarch", "linux-64", "linux-aarch64", "linux-ppc64le", "linux-s390x", "linux-32", "osx-64",
                     "osx-arm64", "win-64", "win-32", "win-arm64", "emscripten-wasm32", "wasi-wasm32"})
CHANNEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NAME_RE = re.compile(r"^[a-z0-9_][a-z0-9._-]{0,127}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+!]{0,63}$")
BUILD_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+]{0,63}$")
KEY_RE = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
# record keys that would make a client fetch the file from elsewhere (conda reads a record's url)
LOCATION_KEYS = frozenset({"url", "fn", "channel", "base_url"})
EXTENSIONS = (".conda", ".tar.bz2")
MAX_INVENTORY = 1 << 30  # one subdir's inventory (conda-forge's whole linux-64 repodata is ~0.3 GB)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and len(v) < 1024 for v in value)


class CondaChannel:
    kinds: ClassVar[frozenset[str]] = frozenset({"conda"})

    def __init__(self, layout: MirrorLayout):
        self.layout = layout
        self.root = layout.conda_root
        self.inventory_dir = layout.conda_inventory_dir
        self._inventories: dict[tuple[str, str], dict] = {}

    # -- naming (the only place where names from a bundle become paths) ------------------
    @staticmethod
    def _where(t: Target) -> tuple[str, str, str]:
        """(channel, subdir, file name), checked against each other and the target path."""
        c = CondaPackage.from_target(t)
        channel, subdir, fn = c.channel_name or "", c.subdir or "", c.filename
        name, version, build = c.name, c.version, c.build or ""
        if not CHANNEL_RE.match(channel) or channel in (".", ".."):
            raise BundleFormatError(f"target {t.path!r}: bad conda channel name {channel!r}")
        if subdir not in SUBDIRS:
            raise BundleFormatError(f"target {t.path!r}: unknown conda subdir {subdir!r}")
        if not (NAME_RE.match(name) and VERSION_RE.match(version) and BUILD_RE.match(build)):
            raise BundleFormatError(f"target {t.path!r}: bad package name, version or build ({name!r}, {version!r}, {build!r})")
        if fn not in (f"{name}-{version}-{build}{ext}" for ext in EXTENSIONS):
            raise BundleFormatError(f"target {t.path!r}: file name {fn!r} is not {name}-{version}-{build}.conda|.tar.bz2")
        if t.path != f"conda/{channel}/{subdir}/{fn}":
            raise BundleFormatError(f"target {t.path!r}: path does not match its channel, subdir and file name")
        return channel, subdir, fn

    @classmethod
    def _record(cls, t: Target) -> dict[str, Any]:
        """The repodata entry for this file: the signed record, checked, with the signed sha256 and size."""
        c = CondaPackage.from_target(t)
        rec = c.record
        if not isinstance(rec, dict) or not all(isinstance(k, str) and KEY_RE.match(k) for k in rec):
            raise BundleFormatError(f"target {t.path!r}: no repodata record, or one with odd keys")
        if LOCATION_KEYS & rec.keys():
            raise BundleFormatError(f"target {t.path!r}: the record names a location ({', '.join(sorted(LOCATION_KEYS & rec.keys()))}); "
                                    "the channel serves the file beside its repodata")
        for key, value in (("name", c.name), ("version", c.version), ("build", c.build), ("subdir", c.subdir)):
            if rec.get(key) != value:
                raise BundleFormatError(f"target {t.path!r}: the record's {key} {rec.get(key)!r} is not the target's "
                                        f"{value!r}")
        if rec.get("sha256", t.blob.digest) != t.blob.digest or rec.get("size", t.blob.size) != t.blob.size:
            raise BundleFormatError(f"target {t.path!r}: the record's sha256 or size is not the file's")
        for key in ("depends", "constrains", "track_features_list"):
            if key in rec and not _strings(rec[key]):
                raise BundleFormatError(f"target {t.path!r}: the record's {key} is not a list of strings")
        return {**rec, "sha256": t.blob.digest, "size": t.blob.size}

    def _inventory(self, channel: str, subdir: str) -> dict:
        key = (channel, subdir)
        if key not in self._inventories:
            p = self.inventory_dir / channel / f"{subdir}.json"
            inv: Any = {"packages": {}, "packages.conda": {}}
            if p.exists() or p.is_symlink():
                try:
                    inv = json.loads(fsutil.read_regular(p, MAX_INVENTORY))
                except (OSError, ValueError, RecursionError) as e:
                    raise PublishError(f"{p}: the conda inventory cannot be read ({e}); nothing was published") from e
            if not (isinstance(inv, dict) and all(isinstance(inv.get(k), dict) for k in ("packages", "packages.conda"))):
                raise PublishError(f"{p}: the conda inventory is damaged; nothing was published")
            self._inventories[key] = inv
        return self._inventories[key]

    @staticmethod
    def _section(fn: str) -> str:
        return "packages.conda" if fn.endswith(".conda") else "packages"

    # -- the interface --------------------------------------------------------------------
    def check(self, targets: list[Target]) -> None:
        seen: dict[str, str] = {}
        for t in targets:
            channel, subdir, fn = self._where(t)
            self._record(t)
            path = f"{channel}/{subdir}/{fn}"
            if seen.setdefault(path, t.blob.digest) != t.blob.digest:
                raise BundleFormatError(f"conda/{path}: two targets with different bytes")
            have = self._inventory(channel, subdir)[self._section(fn)].get(fn)
            if have and have.get("sha256") != t.blob.digest:
                raise PublishError(f"conda/{path}: the mirror already has a different file with this name "
                                   f"(sha256 {str(have.get('sha256'))[:16]}…, bundle {t.blob.digest[:16]}…)")

    def is_published(self, t: Target) -> bool:
        channel, subdir, fn = self._where(t)
        try:
            return (self.layout.conda_file(channel, subdir, fn).stat().st_size == t.blob.size
                    and self._inventory(channel, subdir)[self._section(fn)].get(fn, {}).get("sha256") == t.blob.digest)
        except FileNotFoundError:
            return False

    def publish(self, targets: list[Target], blob_path: Callable[[str], Path], fs: DirectWriter = DIRECT) -> list[str]:
        if not targets:
            return []
        self.check(targets)
        touched: dict[str, set[str]] = {}
        published = []
        for t in sorted(targets, key=lambda t: t.path):  # files first: repodata never names a missing file
            channel, subdir, fn = self._where(t)
            dst = self.layout.conda_file(channel, subdir, fn)
            if not (dst.exists() and dst.stat().st_size == t.blob.size):
                fs.link_or_copy(blob_path(t.blob.digest), dst)
                faults.point("publish.conda.file")
            self._inventory(channel, subdir)[self._section(fn)][fn] = self._record(t)
            touched.setdefault(channel, set()).add(subdir)
            published.append(f"conda/{channel}/{subdir}/{fn}")
        for channel, subdirs in sorted(touched.items()):
            for subdir in sorted(subdirs | {"noarch"}):
                inv = self._inventory(channel, subdir)
                if subdir in subdirs or not self.layout.conda_file(channel, subdir, "repodata.json").exists():
                    self._render(fs, channel, subdir, inv)
                    fs.write_atomic(self.inventory_dir / channel / f"{subdir}.json",
                                    json.dumps(inv, indent=1, sort_keys=True).encode())
                    faults.point("publish.conda.repodata")
            self._render_channeldata(fs, channel)
        return sorted(published)

    # -- rendering ------------------------------------------------------------------------
    def _render(self, fs: DirectWriter, channel: str, subdir: str, inv: dict) -> None:
        doc = {"info": {"subdir": subdir}, "packages": dict(sorted(inv["packages"].items())),
               "packages.conda": dict(sorted(inv["packages.conda"].items())), "removed": [], "repodata_version": 1}
        fs.write_atomic(self.layout.conda_file(channel, subdir, "repodata.json"), json.dumps(doc, indent=1, sort_keys=True).encode())

    def _render_channeldata(self, fs: DirectWriter, channel: str) -> None:
        """channeldata.json as conda-index writes it (what ``conda search`` and UIs read)."""
        packages: dict[str, dict[str, Any]] = {}
        subdirs = sorted(p.stem for p in (self.inventory_dir / channel).glob("*.json") if p.stem in SUBDIRS)
        for subdir in subdirs:
            inv = self._inventory(channel, subdir)
            for section in ("packages", "packages.conda"):
                for rec in inv[section].values():
                    entry = packages.setdefault(rec["name"], {"subdirs": [], "version": rec["version"]})
                    if subdir not in entry["subdirs"]:
                        entry["subdirs"].append(subdir)
                    if rec.get("license"):
                        entry["license"] = rec["license"]
                    entry["version"] = max(entry["version"], rec["version"], key=_version_key)
        doc = {"channeldata_version": 1, "packages": dict(sorted(packages.items())), "subdirs": subdirs}
        fs.write_atomic(self.layout.conda_channeldata(channel), json.dumps(doc, indent=1, sort_keys=True).encode())


def _version_key(v: str) -> tuple:
    """Good enough to pick the newest for channeldata (the solver never reads it)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[._-]", v))
