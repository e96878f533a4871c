"""Python packages from any PEP 503 index: resolve a spec to exact files, one resolution per
target interpreter.

The version resolution is uv's (``uv pip compile --python-platform --python-version``), which
evaluates environment markers for the target rather than for this host. The choice of file for
each pinned version is ours, made with ``packaging.tags`` in the order pip would prefer, so
that the lock names exactly the files the air-gapped pip will ask for.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from gapsync import fsutil
from gapsync.bundler.cache import BlobCache
from gapsync.bundler.fetch import FetchItem, fetch_all
from gapsync.bundler.http import remember_credentials
from gapsync.bundler.lock import Lock, LockedFile
from gapsync.bundler.per_target import resolve_targets
from gapsync.bundler.platforms import PythonTarget
from gapsync.bundler.sources.base import FetchContext, ResolveContext
from gapsync.bundler.sources.index_proxy import IndexProxy
from gapsync.bundler.sources.simple_index import IndexFile, project_files
from gapsync.bundler.spec import PythonSpec, Spec
from gapsync.errors import FetchError, GapsyncError, InputError, UpstreamError
from gapsync.names import BadName, check_python_filename, check_python_project
from gapsync.redact import redact_text, redact_url

_PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
_UV_ENV_KEEP = {"UV_NATIVE_TLS", "UV_HTTP_TIMEOUT", "UV_CONCURRENT_DOWNLOADS", "UV_OFFLINE"}


def _uv_bin() -> str:
    """uv ships as a wheel with its binary in the environment's scripts directory."""
    import shutil

    beside = Path(sys.executable).with_name("uv")
    if beside.is_file():
        return str(beside)
    try:  # uv's own finder fails on some Pythons (sysconfig EXE unset), so it comes second
        from uv import find_uv_bin

        return find_uv_bin()
    except Exception:
        found = shutil.which("uv")
        if found:
            return found
    raise FetchError("uv (the resolver) is not installed: pip install uv")


def uv_compile(spec: Spec, target: PythonTarget, cache: BlobCache, constraints: tuple[str, ...] = (),
               index_url: str | None = None) -> list[tuple[str, str]]:
    """``index_url``: where uv reads the index (resolve gives it the capping loopback proxy)."""
    py = spec.python
    assert py is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") or k in _UV_ENV_KEEP}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    if index_url is not None:  # the loopback proxy: never through an HTTP proxy from the environment
        env["NO_PROXY"] = env["no_proxy"] = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1"]))
    with fsutil.temp_dir("gapsync-resolve-") as tmp:
        req_in = Path(tmp) / "requirements.in"
        fsutil.write_new(req_in, "".join(f"{r}\n" for r in py.requirements).encode())
        cmd = [_uv_bin(), "pip", "compile", "--no-config", "--no-header", "--no-annotate", "--quiet",
               "--color", "never", "--python", sys.executable, "--python-version", target.python,
               "--python-platform", target.uv_platform, "--index-url", index_url or py.index_url,
               "--cache-dir", str(cache.root / "uv"), "--refresh",  # revalidate: a release minutes old must be seen
               str(req_in), *map(str, py.requirements_files)]
        if constraints:  # python.same_versions: the versions other targets got (gapsync/bundler/per_target.py)
            fsutil.write_new(Path(tmp) / "constraints.txt", "".join(f"{c}\n" for c in constraints).encode())
            cmd += ["--constraint", str(Path(tmp) / "constraints.txt")]
        if not py.sdists:
            cmd += ["--only-binary", ":all:"]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(spec.path.parent))
    if r.returncode != 0:
        lines = [ln.strip() for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("warning")]
        msg = " ".join(lines)[-600:] or f"uv exited {r.returncode}"
        msg = redact_text(msg)  # uv prints the index URL it was given, user info and all
        if index_url is not None:  # uv names the proxy: name the index
            p, real = urlsplit(index_url), urlsplit(redact_url(py.index_url))
            msg = msg.replace(f"{p.scheme}://{p.netloc}", f"{real.scheme}://{real.netloc}")
        if re.search(r"(Failed to fetch|network|connect|timed out|dns error)", msg, re.I):
            raise FetchError(f"{redact_url(py.index_url)}: cannot reach the index while resolving for {target.id}: {msg}")
        raise InputError(f"{spec.path}: requirements cannot be resolved for {target.id}: {msg}")
    pins = []
    for line in r.stdout.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-", "--")):
            continue
        m = _PIN_RE.match(line)
        if not m:
            raise InputError(f"{spec.path}: unexpected resolver output for {target.id}: {line!r}")
        pins.append((str(canonicalize_name(m.group(1))), m.group(2)))
    return sorted(pins)


def _python_ok(requires_python: str | None, target: PythonTarget) -> bool:
    if not requires_python:
        return True
    try:
        return SpecifierSet(requires_python).contains(Version(target.python), prereleases=True)
    except InvalidSpecifier:
        return True  # as pip does: an unparsable requires-python does not exclude a file


def select_files(files: list[IndexFile], name: str, version: str, target: PythonTarget,
                 sdists: bool) -> list[IndexFile]:
    """The best wheel for the target (pip's preference order), plus the sdist when asked."""
    want = Version(version)
    best: tuple[tuple[int, int, str], IndexFile] | None = None
    sdist: IndexFile | None = None
    for f in files:
        if not _python_ok(f.requires_python, target):
            continue
        try:
            if f.filename.endswith(".whl"):
                wname, wver, build, wtags = parse_wheel_filename(f.filename)
                if canonicalize_name(wname) != name or wver != want:
                    continue
                prio = min((target.tag_priority.get(t, 1 << 30) for t in wtags), default=1 << 30)
                if prio == 1 << 30:
                    continue
                key = (prio, -(build[0] if build else 0), f.filename)
                if best is None or key < best[0]:
                    best = (key, f)
            else:
                sname, sver = parse_sdist_filename(f.filename)
                if canonicalize_name(sname) == name and sver == want:
                    if sdist is None or f.filename.endswith(".tar.gz"):
                        sdist = f
        except (InvalidWheelFilename, InvalidSdistFilename, ValueError):
            continue
    chosen = [best[1]] if best else []
    if sdists and sdist is not None:
        chosen.append(sdist)
    return chosen


def resolve(spec: Spec, cache: BlobCache, jobs: int = 8) -> Lock:
    py = spec.python
    assert py is not None
    index_url = remember_credentials(py.index_url)  # recorded without user info; sent to its origin only
    seen_pages: dict[str, list[IndexFile]] = {}

    def fits(t: PythonTarget, pins: list[tuple[str, str]]) -> bool:
        """same_versions: a common version uv accepts (uv ignores Requires-Python upper bounds)
        must also have a file this target installs, or the target keeps its own version."""
        for n, v in pins:
            if n not in seen_pages:
                seen_pages[n] = project_files(index_url, n)
            if not select_files(seen_pages[n], n, v, t, py.sdists):
                return False
        return True

    with IndexProxy(index_url) as proxy:  # uv reads every page through gapsync's capped reader
        try:
            per_target = resolve_targets(
                py.targets, lambda t, constraints: uv_compile(spec, t, cache, constraints, proxy.url), jobs,
                same_versions=py.same_versions, accept=fits)
        except GapsyncError:
            if proxy.refused:  # uv failed because a page was cut off: say so, not uv's echo of it
                raise UpstreamError(proxy.refused[0]) from None
            raise
        if proxy.refused:  # uv got past a page it could not read (an optional candidate): fail closed
            raise UpstreamError(proxy.refused[0])
    names = sorted({n for pins in per_target.values() for n, _ in pins})
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        pages = dict(zip(names, pool.map(lambda n: project_files(index_url, n), names), strict=True))
    chosen: dict[str, LockedFile] = {}
    for target in py.targets:
        for name, version in per_target[target.id]:
            files = select_files(pages[name], name, version, target, py.sdists)
            if not files:
                hint = "" if py.sdists else " (set sdists: true to carry the source distribution)"
                raise InputError(f"{spec.path}: no file of {name}=={version} fits {target.id}{hint}")
            for f in files:
                _check_names(index_url, name, f)
                lf = chosen.get(f.filename)
                if lf is None:
                    lf = chosen[f.filename] = LockedFile(
                        name=name, version=version, filename=f.filename, url=f.url, sha256=f.sha256 or "",
                        size=f.size, requires_python=f.requires_python, yanked=f.yanked, targets=[])
                lf.targets.append(target.id)
    missing = [lf for lf in chosen.values() if not lf.sha256]
    if missing:  # an index without hashes: learn them by downloading (the bytes are needed anyway)
        results = fetch_all(cache, [FetchItem(lf.url, None, lf.size, lf.filename) for lf in missing], jobs)
        by_url = {r.item.url: r for r in results}
        for lf in missing:
            lf.sha256, lf.size = by_url[lf.url].sha256, by_url[lf.url].size
    for lf in chosen.values():
        lf.targets.sort()
    pins = {tid: [f"{n}=={v}" for n, v in pins] for tid, pins in per_target.items()}
    return Lock(spec_digest=spec.digest(), index_url=index_url, pins=pins, files=list(chosen.values()))


def _check_names(index_url: str, project: str, f: IndexFile) -> None:
    """The importer's rules for a published file (gapsync/names.py), applied before the file is
    locked: a name the air side would refuse stops resolve here, naming the index."""
    try:
        check_python_project(project)
        check_python_filename(f.filename)
    except BadName as e:
        raise UpstreamError(f"{index_url}{project}/: {e}; the air side would refuse it, so it is not locked "
                            "(pin another version, or ask the index owner)") from None


class PypiSource:
    """The ``python:`` section is one entry: uv resolves all its requirements together, once per
    target, and the files are chosen per target from the same index pages."""

    name: ClassVar[str] = "pypi"

    def resolve(self, entry: PythonSpec, ctx: ResolveContext) -> Lock:
        assert entry is ctx.spec.python  # uv reads the requirement files beside the spec
        return resolve(ctx.spec, ctx.cache, ctx.jobs)

    def fetch(self, record: LockedFile, ctx: FetchContext) -> list[FetchItem]:
        return [FetchItem(record.url, record.sha256, record.size, record.filename)]
