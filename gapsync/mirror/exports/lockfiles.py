"""``gapsync export``: what one target interpreter was approved to install, as hashed
requirements (``pip install --require-hashes -r``) or a PEP 751 ``pylock.toml`` (``uv pip sync``,
``uv pip install -r``).

The list comes from signed data, not from the mirror's mutable files: the channel's current
``targets.json`` (the one the last import verified, kept in the TUF client state) is checked
again against the trusted root's targets keys, and each python target's signed ``tags`` name the
targets it was locked for. Files this side's policy blocked (``import --allow-partial``) are not
in the mirror: they are left out, and the export says which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

from packaging.utils import canonicalize_name

from gapsync import __version__, fsutil
from gapsync.bundle.records import PythonFile
from gapsync.errors import BundleFormatError, InputError, TrustError
from gapsync.mirror.layout import MirrorLayout
from gapsync.mirror.targets.pep503 import TARGET_ID_RE, Pep503Index
from gapsync.model import Target


@dataclass(frozen=True)
class ExportedFile:
    name: str
    version: str
    filename: str
    sha256: str
    size: int
    requires_python: str | None


@dataclass
class Export:
    channel: str
    version: int  # the channel's version these files were signed in
    target: str
    files: list[ExportedFile]
    omitted: list[str] = field(default_factory=list)  # locked for the target, not published here (blocked)

    def to_dict(self) -> dict:
        return {"channel": self.channel, "version": self.version, "target": self.target,
                "files": [f.__dict__ for f in self.files], "omitted": self.omitted}


def signed_targets(layout: MirrorLayout, channel: str) -> tuple[int, list[Target]]:
    """The channel's targets as last imported, checked again against the trusted root."""
    from tuf.api.metadata import Metadata, Root, Targets

    from gapsync.mirror.trust import channel_of, signed_bytes

    tuf = layout.tuf_dir(channel)
    try:
        root = Metadata[Root].from_file(str(tuf / "root.json")).signed
        tmd = Metadata[Targets].from_file(str(tuf / "targets.json"))
        root.verify_delegate(Targets.type, signed_bytes(tmd), tmd.signatures)
    except FileNotFoundError as e:
        raise InputError(f"{layout.root}: channel {channel} has no imported release yet (import a bundle first)") from e
    except Exception as e:  # python-tuf raises several families for a damaged or edited file
        raise TrustError(f"{tuf / 'targets.json'}: the channel's stored targets metadata does not verify "
                         f"against its trusted root ({type(e).__name__}: {e})") from e
    if channel_of(tmd) != channel:
        raise TrustError(f"{tuf / 'targets.json'}: belongs to channel {channel_of(tmd)!r}, not {channel!r}")
    out = []
    for path, tf in sorted(tmd.signed.targets.items()):
        from gapsync.model import BlobRef

        sha = tf.hashes.get("sha256")
        if sha:
            out.append(Target(path, BlobRef(sha, tf.length), tf.custom if isinstance(tf.custom, dict) else {}))
    return tmd.signed.version, out


def channel_targets(layout: MirrorLayout) -> dict[str, list[str]]:
    """channel -> the target ids its published views hold (for messages and the default channel)."""
    from gapsync.mirror.claims import published_layout

    out: dict[str, list[str]] = {}
    for ch in layout.channels():
        p = published_layout(layout, ch).pypi_views_record(ch)  # a namespaced channel's own trees
        if p.is_file() or p.is_symlink():
            out[ch] = sorted(fsutil.read_json(p).get("targets", {}))
    return out


def export_target(mirror: Path, target: str, channel: str | None = None) -> Export:
    layout = MirrorLayout(mirror)
    layout.require()
    if not TARGET_ID_RE.match(target):
        raise InputError(f"{target!r}: not a target id (like cp311-manylinux_2_17_x86_64)")
    views = channel_targets(layout)
    if channel is None:
        having = [ch for ch, tids in views.items() if target in tids]
        if len(having) != 1:
            known = "; ".join(f"{ch}: {', '.join(t)}" for ch, t in views.items()) or "none"
            why = "is in several channels, name one with --channel" if having else "is not a target of any imported channel"
            raise InputError(f"{mirror}: target {target} {why} (targets: {known})")
        channel = having[0]
    from gapsync.mirror.claims import published_layout

    version, targets = signed_targets(layout, channel)
    index = Pep503Index(published_layout(layout, channel))
    files, omitted = [], []
    for t in targets:
        if t.kind != "python":
            continue
        try:  # the stored metadata verified; its record was checked at import (a file edited since is refused)
            py = PythonFile.from_target(t)
        except BundleFormatError as e:
            raise TrustError(f"{layout.root}: channel {channel}: {e}") from None
        if target not in py.tags:
            continue
        name, fn = py.name, py.filename
        if canonicalize_name(name) != name:
            raise TrustError(f"{t.path}: bad project name {name!r} in the signed metadata")
        rec = index._inventory(name)["files"].get(fn)  # published (not blocked) with these very bytes?
        if not rec or rec.get("sha256") != t.blob.digest:
            omitted.append(fn)
            continue
        files.append(ExportedFile(name, py.version, fn, t.blob.digest, t.blob.size, py.requires_python))
    if not files and not omitted:
        raise InputError(f"{mirror}: channel {channel} version {version} has no files for target {target}")
    return Export(channel, version, target, sorted(files, key=lambda f: (f.name, f.filename)), omitted)


def files_url_for(index_url: str) -> str:
    """Where the files are, seen from an index URL of this mirror (a target view or the union)."""
    base = index_url if index_url.endswith("/") else index_url + "/"
    parts = base.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-4] == "targets" and parts[-1] == "simple":
        return urljoin(base, "../../../../files/")
    return urljoin(base, "../files/")


def render_requirements(e: Export, index_url: str | None) -> str:
    lines = [f"# gapsync {__version__} export: channel {e.channel} version {e.version}, target {e.target}",
             "# install with: pip install --require-hashes --no-deps -r THIS_FILE (pip checks every hash)"]
    if index_url:
        lines.append(f"--index-url {index_url}")
    by_pin: dict[tuple[str, str], list[ExportedFile]] = {}
    for f in e.files:
        by_pin.setdefault((f.name, f.version), []).append(f)
    for (name, version), fs in sorted(by_pin.items()):
        hashes = " \\\n    ".join(f"--hash=sha256:{f.sha256}" for f in fs)
        lines.append(f"{name}=={version} \\\n    {hashes}")
    return "\n".join(lines) + "\n"


def _q(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def _environment_marker(target: str) -> str:
    """The PEP 508 marker of a target id (lock ``environments``): installers refuse the lock elsewhere."""
    py, plat = target.split("-", 1)
    minor = f"{py[2]}.{py[3:]}"
    parts = [f"python_version == '{minor}'"]
    if plat.startswith(("manylinux", "musllinux", "linux")):
        parts.append("sys_platform == 'linux'")
        machine = next((a for a in ("x86_64", "aarch64", "i686", "ppc64le", "s390x", "armv7l") if plat.endswith(a)), None)
        if machine:
            parts.append(f"platform_machine == '{machine}'")
    elif plat.startswith("win"):
        parts.append("sys_platform == 'win32'")
    elif plat.startswith("macosx"):
        parts.append("sys_platform == 'darwin'")
    return " and ".join(parts)


def render_pylock(e: Export, files_url: str) -> str:
    """PEP 751 (lock-version 1.0): one package per project, its wheels and sdist with url, size
    and sha256; ``environments`` pins the lock to the target's interpreter and platform."""
    out = ["lock-version = \"1.0\"", f"environments = [{_q(_environment_marker(e.target))}]",
           f"created-by = {_q('gapsync')}", ""]
    by_pin: dict[tuple[str, str], list[ExportedFile]] = {}
    for f in e.files:
        by_pin.setdefault((f.name, f.version), []).append(f)
    for (name, version), fs in sorted(by_pin.items()):
        out += ["[[packages]]", f"name = {_q(name)}", f"version = {_q(version)}"]
        rps = {f.requires_python for f in fs if f.requires_python}
        if len(rps) == 1:
            out.append(f"requires-python = {_q(rps.pop())}")
        wheels = [f for f in fs if f.filename.endswith(".whl")]
        sdists = [f for f in fs if not f.filename.endswith(".whl")]
        if sdists:
            s = sdists[0]
            out.append(f"sdist = {{ name = {_q(s.filename)}, url = {_q(urljoin(files_url, s.filename))}, "
                       f"size = {s.size}, hashes = {{ sha256 = {_q(s.sha256)} }} }}")
        if wheels:
            out.append("wheels = [")
            out += [f"  {{ name = {_q(w.filename)}, url = {_q(urljoin(files_url, w.filename))}, size = {w.size}, "
                    f"hashes = {{ sha256 = {_q(w.sha256)} }} }}," for w in wheels]
            out.append("]")
        out.append("")
    out += ["[tool.gapsync]", f"channel = {_q(e.channel)}", f"version = {e.version}", f"target = {_q(e.target)}", ""]
    return "\n".join(out)
