"""Where things live under MIRROR. Only this module builds paths from names: every other module
asks a ``MirrorLayout`` (a property or method per place below) and never joins a mirror path by
hand, so the tree can be read here in one piece.

    MIRROR/pypi/simple/...            the static PEP 503/691 index (servable by any web server)
    MIRROR/pypi/files/...             wheels, sdists and their PEP 658 .metadata files
    MIRROR/pypi/targets/<ch>/<tid>/   per-target views of a channel (their own simple/)
    MIRROR/oci/                       one OCI image layout (index.json, blobs/sha256/)
    MIRROR/charts/                    the static Helm chart repository (index.yaml + archives)
    MIRROR/models/hf/                 the Hugging Face cache (models--org--name, datasets--org--name)
    MIRROR/conda/<channel>/<subdir>/  static conda channels (repodata + packages), see conda_file()
    MIRROR/ns/<name>/                 a namespaced channel's own trees, laid out as the top (claims.py)
    MIRROR/.gapsync/blobs/sha256/ab/  every verified blob once; published files are hard links
    MIRROR/.gapsync/parts/            parts of blobs that span volumes, until the blob is whole
    MIRROR/.gapsync/trust/<channel>/  pinned.json, state.json, current -> md-<N> (TUF client state)
    MIRROR/.gapsync/staging/          per-import scratch space, removed at the end
    MIRROR/.gapsync/pypi/<project>.json   the PEP 503 index's inventory of each project
    MIRROR/.gapsync/pypi-views/<ch>.json  which files each target view of a channel lists
    MIRROR/.gapsync/conda/            the conda channels' inventories
    MIRROR/.gapsync/models/index.json the models and datasets published into the HF cache
    MIRROR/.gapsync/audit.log(.head)  the hash-chained audit log
    MIRROR/.gapsync/lock              held during import
    MIRROR/.gapsync/claims.json       which channel owns each published name (gapsync/mirror/claims.py)
    MIRROR/.gapsync/namespaces.json   channels given their own namespace, published under MIRROR/ns/<name>/

A namespaced channel's trees (``NamespaceLayout`` in claims.py) have the same names below
MIRROR/ns/<name>/, with their inventories under its own ``.gapsync/``; the blob store stays one.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from gapsync import fsutil
from gapsync.errors import InputError, TrustError
from gapsync.mirror.journal import DIRECT, DirectWriter
from gapsync.model import SHA256_RE

CHANNEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
MAX_STATE_FILE = 64 << 20  # pinned.json, state.json: the mirror's own, read whole
# conda channel directories: one safe path component each (fullmatch: no trailing newline, no '.'/'..')
CONDA_CHANNEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CONDA_SUBDIR_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")  # noarch, linux-64, osx-arm64, win-64 ...
CONDA_FILE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+!-]{0,254}")  # repodata.json(.zst), *.conda, *.tar.bz2
PINNED = "pinned.json"


@dataclass
class ChannelState:
    version: int = 0
    last_import: str | None = None  # this machine's clock at the last import (ISO 8601)
    bundles: list[dict] | None = None

    def to_dict(self) -> dict:
        return {"version": self.version, "last_import": self.last_import, "bundles": self.bundles or []}


class MirrorLayout:
    def __init__(self, root: Path):
        self.root = root
        self.meta = root / ".gapsync"
        self.pypi = root / "pypi"

    # -- basics ---------------------------------------------------------------------------
    def ensure(self) -> None:
        for d in (self.blobs_dir, self.staging_dir, self.trust_dir):
            d.mkdir(parents=True, exist_ok=True)

    @property
    def lock_path(self) -> Path:
        return self.meta / "lock"

    @property
    def audit_path(self) -> Path:
        return self.meta / "audit.log"

    @property
    def claims_path(self) -> Path:
        return self.meta / "claims.json"

    @property
    def namespaces_path(self) -> Path:
        return self.meta / "namespaces.json"

    @property
    def staging_dir(self) -> Path:
        return self.meta / "staging"

    @property
    def parts_dir(self) -> Path:
        """Parts of blobs that span volumes (gapsync/mirror/parts.py), kept until the blob is whole."""
        return self.meta / "parts"

    @property
    def trust_dir(self) -> Path:
        return self.meta / "trust"

    def namespace_root(self, name: str) -> Path:
        """MIRROR/ns/<name>/: a namespaced channel's trees (the name is checked by claims.NamespaceLayout)."""
        return self.root / "ns" / name

    # -- published trees and their inventories --------------------------------------------
    @property
    def pypi_simple(self) -> Path:
        return self.pypi / "simple"

    @property
    def pypi_files(self) -> Path:
        return self.pypi / "files"

    @property
    def pypi_views(self) -> Path:
        """MIRROR/pypi/targets/: per-target views, <channel>/<target id>/simple/."""
        return self.pypi / "targets"

    @property
    def pypi_inventory_dir(self) -> Path:
        """.gapsync/pypi/<project>.json: the PEP 503 index's record of each project's files."""
        return self.meta / "pypi"

    def pypi_views_record(self, channel: str) -> Path:
        """.gapsync/pypi-views/<channel>.json: the files each target view of ``channel`` lists."""
        return self.meta / "pypi-views" / f"{channel}.json"

    @property
    def oci_root(self) -> Path:
        return self.root / "oci"

    @property
    def oci_index(self) -> Path:
        return self.oci_root / "index.json"

    @property
    def oci_layout_file(self) -> Path:
        """The ``oci-layout`` marker file of the image layout spec."""
        return self.oci_root / "oci-layout"

    @property
    def oci_blobs_dir(self) -> Path:
        """The OCI layout's blobs/sha256/ (hard links into the blob store)."""
        return self.oci_root / "blobs" / "sha256"

    @property
    def charts_index(self) -> Path:
        return self.charts_root / "index.yaml"

    @property
    def charts_root(self) -> Path:
        return self.root / "charts"

    @property
    def hf_root(self) -> Path:
        """The Hugging Face cache (``HF_HUB_CACHE``): models--org--name, datasets--org--name."""
        return self.root / "models" / "hf"

    @property
    def models_index(self) -> Path:
        return self.meta / "models" / "index.json"

    @property
    def conda_root(self) -> Path:
        return self.root / "conda"

    @property
    def conda_inventory_dir(self) -> Path:
        return self.meta / "conda"

    def relative(self, path: Path) -> tuple[str, ...]:
        """``path`` (one of this layout's) as components below the mirror, for opening it
        relative to a directory descriptor of the mirror (gapsync serve)."""
        return path.relative_to(self.root).parts

    def require(self) -> None:
        if not self.trust_dir.is_dir() or not self.channels():
            raise InputError(f"{self.root}: not a gapsync mirror with a pinned channel (run gapsync trust pin ROOT.json --mirror {self.root})")

    # -- blobs ----------------------------------------------------------------------------
    @property
    def blobs_dir(self) -> Path:
        return self.meta / "blobs" / "sha256"

    def blob_path(self, digest: str) -> Path:
        if not SHA256_RE.match(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.blobs_dir / digest[:2] / digest

    def blob_digests(self) -> list[str]:
        """The digests of every blob in the store, sorted (for the receipt)."""
        return sorted(p.name for p in self.blobs_dir.glob("*/*") if p.is_file() and len(p.name) == 64)

    def has_blob(self, digest: str, size: int) -> bool:
        try:
            return self.blob_path(digest).stat().st_size == size
        except FileNotFoundError:
            return False

    # -- conda channels --------------------------------------------------------------------
    def conda_channeldata(self, channel: str) -> Path:
        """MIRROR/conda/<channel>/channeldata.json (ValueError unless ``channel`` is one safe name)."""
        if not CONDA_CHANNEL_RE.fullmatch(channel):
            raise ValueError(f"not a conda channel name: {channel!r}")
        return self.conda_root / channel / "channeldata.json"

    def conda_file(self, channel: str, subdir: str, name: str) -> Path:
        """MIRROR/conda/<channel>/<subdir>/<name>, the static channel file that ``gapsync serve``
        answers at /conda/<channel>/<subdir>/<name>. Each part must be one safe path component
        (ValueError otherwise), so a name from a request or a bundle never leaves the channel."""
        if not (CONDA_CHANNEL_RE.fullmatch(channel) and CONDA_SUBDIR_RE.fullmatch(subdir) and CONDA_FILE_RE.fullmatch(name)):
            raise ValueError(f"not a conda channel file: {channel!r}/{subdir!r}/{name!r}")
        return self.conda_root / channel / subdir / name

    def new_staging(self) -> Path:
        self.ensure()
        return fsutil.make_temp_dir(self.staging_dir, "import-")

    # -- channels -------------------------------------------------------------------------
    def channels(self) -> list[str]:
        d = self.trust_dir
        return sorted(p.name for p in d.iterdir() if (p / PINNED).is_file()) if d.is_dir() else []

    def channel_dir(self, channel: str) -> Path:
        if not CHANNEL_RE.match(channel):
            raise TrustError(f"bad channel name {channel!r}")
        return self.trust_dir / channel

    def pinned_path(self, channel: str) -> Path:
        """The channel's pinned root record (channel, fingerprint, pinned_at): ``gapsync trust pin``."""
        return self.channel_dir(channel) / PINNED

    def state_path(self, channel: str) -> Path:
        return self.channel_dir(channel) / "state.json"

    def pinned(self, channel: str) -> dict:
        p = self.pinned_path(channel)
        if not p.is_file():
            pinned = ", ".join(self.channels()) or "none"
            raise TrustError(f"bundle is for channel {channel!r}, which is not pinned in {self.root} (pinned: {pinned})")
        return json.loads(fsutil.read_regular(p, MAX_STATE_FILE))

    def tuf_dir(self, channel: str) -> Path:
        return self.channel_dir(channel) / "current"

    def state(self, channel: str) -> ChannelState:
        p = self.state_path(channel)
        if not p.exists():
            return ChannelState(bundles=[])
        d = json.loads(fsutil.read_regular(p, MAX_STATE_FILE))
        return ChannelState(d.get("version", 0), d.get("last_import"), d.get("bundles", []))

    def write_state(self, channel: str, state: ChannelState, fs: DirectWriter = DIRECT) -> None:
        fs.write_atomic(self.state_path(channel), json.dumps(state.to_dict(), indent=1).encode())

    def commit_tuf(self, channel: str, new_dir: Path, version: int, fs: DirectWriter = DIRECT) -> None:
        """Swap the channel's TUF client state to ``new_dir`` with one atomic symlink rename
        (through ``fs``, an import's publish journal, so that a failed import can swap it back)."""
        cdir = self.channel_dir(channel)
        final = fsutil.make_temp_dir(cdir, f"md-{version}-")
        final.rmdir()
        fs.move_in(new_dir, final)
        old = os.readlink(cdir / "current") if (cdir / "current").is_symlink() else None
        fs.symlink(final.name, cdir / "current")
        if old and old != final.name:
            fs.remove_tree(cdir / old)

