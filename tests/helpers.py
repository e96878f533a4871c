"""Test helpers: tiny real wheels, static PEP 503 indexes, servers stopped by PID, tree snapshots."""

from __future__ import annotations

import base64
import hashlib
import html
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

from gapsync.demo import free_port, wait_http

HERE = Path(__file__).resolve().parent


def make_wheel(out: Path, name: str, version: str, *, requires: tuple[str, ...] = (), requires_python: str | None = None,
               tag: str = "py3-none-any", payload: bytes = b"", license_: str | None = "MIT") -> Path:
    """A real, installable wheel: module, METADATA, WHEEL and RECORD with hashes."""
    dist = name.replace("-", "_")
    fn = f"{dist}-{version}-{tag}.whl"
    di = f"{dist}-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if license_:
        meta.append(f"License: {license_}")
    if requires_python:
        meta.append(f"Requires-Python: {requires_python}")
    meta += [f"Requires-Dist: {r}" for r in requires]
    files = {
        f"{dist}/__init__.py": f"__version__ = {version!r}\n".encode(),
        f"{di}/METADATA": ("\n".join(meta) + "\n\n").encode(),
        f"{di}/WHEEL": f"Wheel-Version: 1.0\nGenerator: gapsync-tests\nRoot-Is-Purelib: true\nTag: {tag}\n".encode(),
    }
    if payload:
        files[f"{dist}/data.bin"] = payload
    record = []
    for p, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{p},sha256={digest},{len(data)}")
    record.append(f"{di}/RECORD,,")
    files[f"{di}/RECORD"] = ("\n".join(record) + "\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out / fn, "w", zipfile.ZIP_DEFLATED) as zf:
        for p, data in files.items():
            zi = zipfile.ZipInfo(p, date_time=(2020, 1, 1, 0, 0, 0))
            zf.writestr(zi, data)
    return out / fn


def write_index(root: Path, *, yanked: dict[str, str] | None = None, requires_python_attr: bool = True,
                hashes: bool = True) -> None:
    """PEP 503 pages under root/simple for every wheel in root/files (links ../../files/X#sha256=)."""
    yanked = yanked or {}
    projects: dict[str, list[Path]] = {}
    for w in sorted((root / "files").glob("*.whl")):
        projects.setdefault(canonicalize_name(parse_wheel_filename(w.name)[0]), []).append(w)
    for name, wheels in projects.items():
        rows = []
        for w in wheels:
            frag = f"#sha256={hashlib.sha256(w.read_bytes()).hexdigest()}" if hashes else ""
            attrs = f'href="../../files/{w.name}{frag}"'
            if hashes:  # PEP 658/714, as PyPI serves them: resolvers read metadata without the wheel
                with zipfile.ZipFile(w) as zf:
                    core = next(zf.read(n) for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
                w.with_name(w.name + ".metadata").write_bytes(core)
                md = hashlib.sha256(core).hexdigest()
                attrs += f' data-dist-info-metadata="sha256={md}" data-core-metadata="sha256={md}"'
            if requires_python_attr:
                with zipfile.ZipFile(w) as zf:
                    meta = next(zf.read(n) for n in zf.namelist() if n.endswith(".dist-info/METADATA")).decode()
                rp = next((ln.split(":", 1)[1].strip() for ln in meta.splitlines() if ln.startswith("Requires-Python:")), None)
                if rp:
                    attrs += f' data-requires-python="{html.escape(rp)}"'
            if w.name in yanked:
                attrs += f' data-yanked="{html.escape(yanked[w.name])}"'
            rows.append(f"<a {attrs}>{w.name}</a><br/>\n")
        d = root / "simple" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "".join(rows) + "</body></html>\n")
    (root / "simple" / "index.html").write_text("".join(f'<a href="{n}/">{n}</a>\n' for n in projects))


class Server:
    """A subprocess server on 127.0.0.1, stopped by PID. Waited for as long as a cold start takes
    (up to 120 s); if it dies or never answers, the error shows the tail of its log."""

    def __init__(self, argv: list[str], url: str, cwd: Path | None = None, env: dict | None = None,
                 seconds: float = 120):
        import tempfile

        self.url = url
        fd, log = tempfile.mkstemp(prefix="gapsync-test-server-", suffix=".log")
        self.log = Path(log)
        with os.fdopen(fd, "wb") as out:
            self.proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_http(url, seconds, proc=self.proc, log=self.log)
        except BaseException:
            self.stop()  # never leak a server that did not come up
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.log.unlink(missing_ok=True)


def static_server(root: Path, *extra: str) -> Server:
    port = free_port()
    return Server([sys.executable, str(HERE / "support" / "servers" / "static_http.py"), str(root), str(port), *extra],
                  f"http://127.0.0.1:{port}/simple/")


def snapshot(root: Path, ignore: tuple[str, ...] = (".gapsync/audit.log", ".gapsync/audit.log.head", ".gapsync/lock")) -> dict:
    """Every file, link and directory under root with its bytes (or link target), for byte-for-byte compares."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames + filenames):
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if rel in ignore:
                continue
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_file():
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
            elif p.is_dir():
                out[rel] = ("dir", None)
    return out
