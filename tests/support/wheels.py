"""Tiny real wheels and static PEP 503 indexes of them (the tests' external Python zone)."""

from __future__ import annotations

import base64
import hashlib
import html
import zipfile
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename


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
