"""Conda packages: the ``conda:`` section of the spec, solved per platform with py-rattler (the
solver pixi uses), locked to exact package files, fetched into the content-addressed cache.

Why our own repodata download: the channel's ``<subdir>/repodata.json`` (or its ``.zst``) is read
through gapsync's bounded HTTP code (timeouts, retries, a size cap, plain HTTP to loopback only)
into a scratch file, and py-rattler's ``SparseRepoData`` reads it from there, so rattler never
goes to the network and never keeps a cache of its own. The solve is per platform, each time
with the platform's ``noarch`` subdir and a fixed set of virtual packages (``__unix``,
``__linux``/``__glibc``, ``__osx``, ``__win``, ``__archspec``), because the DMZ host is not the
air side's machine: its own detected virtual packages would be wrong.

What is locked: every package file with its channel, subdir, file name, sha256, size, and the
channel's repodata record of it verbatim (``record``). The record, not the package's own
``info/index.json``, is what the air side's ``repodata.json`` is written from: channels such as
conda-forge patch their repodata (corrected dependencies) and an index rebuilt from the packages
would lose those patches.

rattler is imported inside the functions: ``gapsync --help`` and the other kinds never load it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from gapsync import fsutil
from gapsync.bundler.fetch import FetchItem
from gapsync.bundler.lock import Lock
from gapsync.bundler.sources.base import FetchContext, ResolveContext
from gapsync.errors import FetchError, InputError
from gapsync.model import SHA256_RE, artifact_key
from gapsync.yamlfile import Located, check_keys, expect

PLATFORMS = ("linux-64", "linux-aarch64", "linux-ppc64le", "osx-64", "osx-arm64", "win-64", "win-arm64")
DEFAULT_CHANNEL_ALIAS = "https://conda.anaconda.org/"
CHANNEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PACKAGE_NAME_RE = re.compile(r"^[a-z0-9_][a-z0-9._-]{0,127}$")
# name-version-build.ext: what the air side publishes a file as
FILENAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+!-]{0,250}\.(conda|tar\.bz2)$")
LOOPBACK_HOST = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|\[::1\]|::1)$")
MAX_REPODATA = 2 << 30  # bytes of one subdir's repodata.json, decompressed (conda-forge linux-64: ~0.3 GB)
SOLVE_TIMEOUT_S = 300

# The air side's machines, not the DMZ host's: virtual packages assumed per platform. Recent
# enough for current conda-forge builds; a spec can override them (virtual_packages:).
DEFAULT_VIRTUAL = {
    "linux": ["__unix=0=0", "__linux=5.15=0", "__glibc=2.28=0"],
    "osx": ["__unix=0=0", "__osx=13.0=0"],
    "win": ["__win=0=0"],
}
ARCHSPEC = {"linux-64": "x86_64", "linux-aarch64": "aarch64", "linux-ppc64le": "ppc64le", "osx-64": "x86_64",
            "osx-arm64": "arm64", "win-64": "x86_64", "win-arm64": "arm64"}


@dataclass(frozen=True)
class CondaChannel:
    url: str  # no trailing slash
    name: str  # the directory on the air side: MIRROR/conda/<name>/

    def canonical(self) -> dict[str, str]:
        return {"url": self.url, "name": self.name}


@dataclass(frozen=True)
class CondaSpec:
    channels: tuple[CondaChannel, ...]
    specs: tuple[str, ...]
    platforms: tuple[str, ...]
    virtual_packages: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (platform, ["__glibc=2.17=0", ...])

    def canonical(self) -> dict[str, Any]:
        return {"channels": [c.canonical() for c in self.channels], "specs": list(self.specs),
                "platforms": list(self.platforms), "virtual_packages": {p: list(v) for p, v in self.virtual_packages}}

    def virtual_for(self, platform: str) -> list[str]:
        for p, v in self.virtual_packages:
            if p == platform:
                return list(v)
        family = platform.split("-", 1)[0]
        return [*DEFAULT_VIRTUAL[family], f"__archspec=1={ARCHSPEC[platform]}"]


# -- the spec section ------------------------------------------------------------------------

def channel_from(value: str) -> CondaChannel:
    """A channel as written: a name (``conda-forge``: under conda.anaconda.org) or a URL. Plain
    HTTP only to a loopback host (the tests' channels); ``defaults`` is a conda alias for several
    repo.anaconda.com channels whose terms restrict mirroring, so it must be named explicitly."""
    value = value.strip()
    if value == "defaults":
        raise ValueError("'defaults' is an alias; name the channels' URLs (https://repo.anaconda.com/pkgs/main ...) "
                         "and check their terms: the policy blocks repo.anaconda.com unless waived")
    if "://" not in value:
        if not CHANNEL_NAME_RE.match(value):
            raise ValueError(f"{value!r}: expected a channel name (conda-forge) or an https URL")
        value = DEFAULT_CHANNEL_ALIAS + value
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{value!r}: expected an https URL")
    if parts.scheme == "http" and not LOOPBACK_HOST.match(parts.hostname):
        raise ValueError(f"{value!r}: plain HTTP is only allowed to a loopback channel (127.0.0.1, localhost)")
    if parts.query or parts.fragment:
        raise ValueError(f"{value!r}: a channel URL has no query or fragment")
    from gapsync.bundler.http import remember_credentials

    # user info or an anaconda.org /t/<token>/ kept for its origin, never recorded (lock, metadata)
    url = remember_credentials(value.rstrip("/"))
    name = url.rsplit("/", 1)[-1] if parts.path.strip("/") else parts.hostname
    if not CHANNEL_NAME_RE.match(name):
        raise ValueError(f"{value!r}: its last path segment {name!r} cannot name a channel directory")
    return CondaChannel(url, name)


def load_section(loc: Located, raw: Any) -> CondaSpec:
    """The ``conda:`` section; errors name the file, line and key like the rest of the spec."""
    k = ("conda",)
    expect(loc, k, raw, dict, "a mapping with channels, specs and platforms")
    check_keys(loc, k, raw, {"channels", "specs", "platforms", "virtual_packages"})
    chans = raw.get("channels", ["conda-forge"])
    expect(loc, (*k, "channels"), chans, list, "a list of channel names or URLs")
    channels: list[CondaChannel] = []
    for i, c in enumerate(chans):
        expect(loc, (*k, "channels", i), c, str, "a channel name or URL")
        try:
            channels.append(channel_from(c))
        except ValueError as e:
            raise loc.error((*k, "channels", i), str(e)) from e
    if not channels:
        raise loc.error((*k, "channels"), "name at least one channel")
    names = [c.name for c in channels]
    if len(set(names)) != len(names):
        raise loc.error((*k, "channels"), f"two channels end in the same name ({', '.join(names)}): the air side "
                        "keeps one directory per channel name")
    specs = raw.get("specs")
    expect(loc, (*k, "specs"), specs, list, "a list of match specs, e.g. ['python 3.11.*', 'numpy >=2']")
    if not specs:
        raise loc.error((*k, "specs"), "no match specs")
    from rattler import MatchSpec

    for i, s in enumerate(specs):
        expect(loc, (*k, "specs", i), s, str, "a match spec")
        try:
            MatchSpec(s)
        except Exception as e:  # rattler raises its own InvalidMatchSpecError
            raise loc.error((*k, "specs", i), f"{s!r}: not a match spec ({str(e).splitlines()[0][:160]})") from e
    plats = raw.get("platforms", ["linux-64"])
    expect(loc, (*k, "platforms"), plats, list, "a list like [linux-64, osx-arm64]")
    for i, p in enumerate(plats):
        expect(loc, (*k, "platforms", i), p, str, "a conda platform")
        if p == "noarch":
            raise loc.error((*k, "platforms", i), "noarch is always included; list the machines' platforms")
        if p not in PLATFORMS:
            raise loc.error((*k, "platforms", i), f"{p!r}: expected one of {', '.join(PLATFORMS)}")
    if not plats or len(set(plats)) != len(plats):
        raise loc.error((*k, "platforms"), "name each platform once, at least one")
    vp = raw.get("virtual_packages", {})
    expect(loc, (*k, "virtual_packages"), vp, dict, "a mapping platform -> ['__glibc=2.17=0', ...]")
    virtual = []
    for p, v in vp.items():
        if p not in plats:
            raise loc.error((*k, "virtual_packages", p), f"{p!r} is not one of the platforms")
        expect(loc, (*k, "virtual_packages", p), v, list, "a list like ['__unix=0=0', '__glibc=2.17=0']")
        for j, s in enumerate(v):
            expect(loc, (*k, "virtual_packages", p, j), s, str, "NAME=VERSION=BUILD")
            if not re.fullmatch(r"__[a-z0-9_]+=[A-Za-z0-9._]+=[A-Za-z0-9._]+", s):
                raise loc.error((*k, "virtual_packages", p, j), f"{s!r}: expected NAME=VERSION=BUILD, e.g. __glibc=2.17=0")
        virtual.append((p, tuple(v)))
    return CondaSpec(tuple(channels), tuple(specs), tuple(plats), tuple(sorted(virtual)))


# -- resolving ---------------------------------------------------------------------------------

def _download_repodata(url: str, dest: Path) -> bool:
    """``<subdir>/repodata.json`` into ``dest``, from the ``.zst`` when the channel has one; False
    when the channel has neither (a subdir it does not publish). Bounded by MAX_REPODATA."""
    import requests
    import zstandard

    from gapsync.bundler.http import TIMEOUT, session

    for suffix in (".zst", ""):
        try:
            resp = session().get(url + suffix, stream=True, timeout=TIMEOUT)
        except requests.RequestException as e:
            raise FetchError(f"{url}{suffix}: {e}") from e
        with resp:
            if resp.status_code in (403, 404):
                continue
            if resp.status_code != 200:
                raise FetchError(f"{url}{suffix}: HTTP {resp.status_code}")
            try:
                with fsutil.atomic_file(dest) as out:
                    if suffix:
                        resp.raw.decode_content = True  # a gzip transfer encoding around the .zst, undone first
                        _copy_capped(_zstd_chunks(resp.raw), out, url + suffix)
                    else:
                        _copy_capped(resp.iter_content(1 << 20), out, url)
            except (requests.RequestException, zstandard.ZstdError) as e:
                raise FetchError(f"{url}{suffix}: download failed ({e}); run again") from e
            return True
    return False


def _zstd_chunks(raw):
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    while chunk := reader.read(1 << 20):
        yield chunk


def _copy_capped(chunks, out, what: str) -> None:
    n = 0
    for chunk in chunks:
        n += len(chunk)
        if n > MAX_REPODATA:
            raise FetchError(f"{what}: repodata larger than {MAX_REPODATA} bytes; refused")
        out.write(chunk)


def _virtual(specs: list[str]):
    from rattler import BuildString, GenericVirtualPackage, PackageName, Version

    out = []
    for s in specs:
        name, version, build = s.split("=")
        out.append(GenericVirtualPackage(PackageName(name), Version(version), BuildString(build)))
    return out


def resolve(spec: CondaSpec, scratch: Path | None = None) -> dict[str, Any]:
    """Solve every platform from the channels' repodata; return the lock's ``conda`` section."""
    import asyncio

    with fsutil.temp_dir("gapsync-conda-", scratch) as tmp:
        repodata: dict[tuple[str, str], Path] = {}
        for ch in spec.channels:
            for subdir in sorted({"noarch", *spec.platforms}):
                dest = Path(tmp) / f"{ch.name}.{subdir}.json"
                if _download_repodata(f"{ch.url}/{subdir}/repodata.json", dest):
                    repodata[(ch.name, subdir)] = dest
            if (ch.name, "noarch") not in repodata and not any((ch.name, p) in repodata for p in spec.platforms):
                raise FetchError(f"{ch.url}: not a conda channel (no repodata.json for noarch or "
                                 f"{', '.join(spec.platforms)})")
        packages: dict[str, dict[str, Any]] = {}  # by url
        solved: dict[str, list[str]] = {}
        for platform in spec.platforms:
            records = asyncio.run(_solve(spec, platform, repodata))
            solved[platform] = sorted(f"{r['name']}={r['version']}={r['build']}" for r in records)
            for r in records:
                pkg = packages.setdefault(r["url"], r)
                pkg.setdefault("platforms", [])
                if platform not in pkg["platforms"]:
                    pkg["platforms"].append(platform)
    return {"channels": [c.canonical() for c in spec.channels], "specs": list(spec.specs),
            "platforms": list(spec.platforms), "solved": solved,
            "packages": sorted(packages.values(), key=lambda p: (p["channel_name"], p["subdir"], p["filename"]))}


async def _solve(spec: CondaSpec, platform: str, repodata: dict[tuple[str, str], Path]) -> list[dict[str, Any]]:
    import datetime
    import json

    from rattler import Channel, ChannelPriority, SparseRepoData
    from rattler.solver import solve_with_sparse_repodata

    by_url = {c.url: c for c in spec.channels}
    sources = []
    for ch in spec.channels:  # channel order is priority order, as conda and pixi read it
        for subdir in (platform, "noarch"):
            if (ch.name, subdir) in repodata:
                try:
                    sources.append(SparseRepoData(Channel(ch.url + "/"), subdir, str(repodata[(ch.name, subdir)])))
                except Exception as e:  # rattler's own error types: a document it cannot read
                    for s in sources:
                        s.close()
                    raise FetchError(f"{ch.url}/{subdir}/repodata.json: not a repodata document rattler can read "
                                     f"({' '.join(str(e).split())[:200]})") from e
    try:
        records = await solve_with_sparse_repodata(
            list(spec.specs), sources, virtual_packages=_virtual(spec.virtual_for(platform)),
            channel_priority=ChannelPriority.Strict, timeout=datetime.timedelta(seconds=SOLVE_TIMEOUT_S))
    except Exception as e:  # rattler's SolverError and friends: an unsatisfiable spec is the user's to fix
        raise InputError(f"conda: cannot solve {', '.join(spec.specs)} for {platform}: "
                         f"{' '.join(str(e).split())[:600]}") from e
    finally:
        for s in sources:
            s.close()
    out = []
    for r in records:
        rec = json.loads(r.to_json())
        url, fn, channel = rec.pop("url"), rec.pop("fn"), rec.pop("channel", None)
        owner = by_url.get(str(channel or "").rstrip("/")) or next(
            (c for c in spec.channels if url.startswith(c.url + "/")), None)
        if owner is None:
            raise FetchError(f"{url}: the solver chose a package from no channel of the spec")
        sha = rec.get("sha256")
        if not isinstance(sha, str) or not SHA256_RE.match(sha):
            raise FetchError(f"{url}: the channel's repodata gives no sha256 for {fn}; gapsync locks every file by sha256")
        if not FILENAME_RE.match(fn) or rec.get("subdir") not in (platform, "noarch"):
            raise FetchError(f"{url}: unexpected file name or subdir in the channel's repodata ({fn!r}, {rec.get('subdir')!r})")
        if url != f"{owner.url}/{rec['subdir']}/{fn}":
            raise FetchError(f"{url}: a package outside its channel {owner.url} (repodata may not point elsewhere)")
        out.append({"channel": owner.url, "channel_name": owner.name, "subdir": rec["subdir"], "filename": fn, "url": url,
                    "name": rec["name"], "version": rec["version"], "build": rec["build"], "sha256": sha,
                    "size": rec.get("size"), "record": rec})
    return out


def check_locked(section: dict[str, Any]) -> None:
    """A lock is a file people can edit: its conda entries must name safe channels, subdirs and
    file names, and URLs under their channel, before anything is fetched or becomes a target."""
    packages = section.get("packages")
    if not isinstance(packages, list):
        raise InputError("lock: conda.packages is not a list")
    for p in packages:
        if not isinstance(p, dict):
            raise InputError("lock: a conda package entry is not a mapping")
        fn, subdir, name = str(p.get("filename")), str(p.get("subdir")), str(p.get("channel_name"))
        ok = (FILENAME_RE.match(fn) and subdir in ("noarch", *PLATFORMS) and CHANNEL_NAME_RE.match(name)
              and isinstance(p.get("channel"), str) and p.get("url") == f"{p['channel']}/{subdir}/{fn}"
              and fn.startswith(f"{p.get('name')}-{p.get('version')}-{p.get('build')}.")
              and isinstance(p.get("record"), dict) and (p.get("size") is None or isinstance(p.get("size"), int)))
        if not ok:
            raise InputError(f"lock: conda package {fn!r} ({subdir!r}, channel {name!r}) is not a consistent entry; "
                             "run gapsync resolve again")
        try:
            channel_from(p["channel"])
        except ValueError as e:
            raise InputError(f"lock: conda package {fn!r}: {e}") from e


def fetch_items(section: dict[str, Any] | None) -> list[FetchItem]:
    """Every locked package file, by sha256 (the cache has each once)."""
    if not section:
        return []
    check_locked(section)
    return [FetchItem(p["url"], p["sha256"], p.get("size"), p["filename"]) for p in section.get("packages", [])]


def package_key(p: dict[str, Any]) -> str:
    """The artifact a package file belongs to: one per name and version, all builds and subdirs."""
    return artifact_key("conda", p["name"], p["version"])


def target_path(p: dict[str, Any]) -> str:
    return f"conda/{p['channel_name']}/{p['subdir']}/{p['filename']}"


class CondaSource:
    """The ``conda:`` section is one entry (rattler solves all its specs together, per platform),
    and the lock's ``conda`` section one record: its package files, checked before any is fetched."""

    name: ClassVar[str] = "conda"

    def resolve(self, entry: CondaSpec, ctx: ResolveContext) -> Lock:
        return Lock(ctx.lock.spec_digest, conda=resolve(entry, ctx.cache.root / "partial"))

    def fetch(self, record: dict[str, Any], ctx: FetchContext) -> list[FetchItem]:
        return fetch_items(record)
