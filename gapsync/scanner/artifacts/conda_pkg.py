"""Conda packages read as streams, never extracted: metadata, licenses, unsafe paths, pickles.

A ``.tar.bz2`` package is a bzip2 tar; a ``.conda`` package is a zip holding ``metadata.json``
and two zstd-compressed tars (``info-<stem>.tar.zst``, ``pkg-<stem>.tar.zst``). Both are read
member by member: ``info/index.json`` (name, version, build, subdir) and ``info/about.json``
(license) are read into memory under a size cap; with ``pickles`` every regular file is handed
to the model scanner's dispatcher, as wheels and image layers are.

Findings (scanner ``conda``; high and critical block, see policies/evaluate.py):
- ``conda.unreadable`` (high): the archive cannot be read (damaged, not a package, a budget
  exceeded): what cannot be scanned does not cross;
- ``conda.metadata_mismatch`` (high): ``info/index.json`` names another package than the
  channel's record and the file name (a package swapped under a trusted name);
- ``conda.unsafe_path`` (high): a member whose name is absolute or climbs out with ``..``, or a
  link that points out of the environment: conda and rattler would write outside the prefix;
- ``conda.special_file`` (high): a device or FIFO member.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gapsync.model import Finding, Severity

SCANNER = "conda"
MAX_JSON = 1 << 20  # info/index.json, info/about.json
MAX_HEADER = 1 << 20  # one pax or GNU long-name header's data
MAX_MEMBERS = 200_000
MAX_UNPACKED = 64 << 30  # bytes read out of one package's tars (a decompression bomb costs time, bounded)
ZIP_MEMBERS = 16  # a .conda holds 3


@dataclass
class PackageFacts:
    index: dict[str, Any] | None = None
    about: dict[str, Any] | None = None
    findings: list[Finding] = field(default_factory=list)


def _finding(file: str, rule: str, message: str, location: str | None = None, **evidence: Any) -> Finding:
    return Finding(scanner=SCANNER, rule=rule, severity=Severity.HIGH, message=message, file=file,
                   location=location, evidence=evidence)


class _Budget:
    def __init__(self) -> None:
        self.members = 0
        self.bytes = 0


def _unsafe_name(name: str) -> bool:
    parts = name.split("/")
    return name.startswith("/") or ".." in parts or "\\" in name or "\x00" in name


def _link_escapes(member: tarfile.TarInfo) -> bool:
    target = member.linkname
    if target.startswith("/") or "\x00" in target:
        return True
    base = posixpath.dirname(member.name) if member.issym() else ""
    return posixpath.normpath(posixpath.join(base, target)).startswith("..")


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a pax or GNU long-name header's whole data into memory: a hostile package
    would declare gigabytes of it (bz2 and zstd compress such a block to almost nothing)."""

    def _proc_pax(self, tf):
        if self.size > MAX_HEADER:
            raise tarfile.HeaderError(f"a pax header of {self.size} bytes (more than {MAX_HEADER})")
        return super()._proc_pax(tf)

    def _proc_gnulong(self, tf):
        if self.size > MAX_HEADER:
            raise tarfile.HeaderError(f"a long-name header of {self.size} bytes (more than {MAX_HEADER})")
        return super()._proc_gnulong(tf)


def _scan_tar(stream: IO[bytes], display: str, where: str, facts: PackageFacts, budget: _Budget,
              on_file: Callable[[IO[bytes], str, int], list[Finding]] | None) -> None:
    with tarfile.open(fileobj=stream, mode="r|", tarinfo=_BoundedTarInfo) as tf:
        for m in tf:
            budget.members += 1
            if budget.members > MAX_MEMBERS:
                raise ValueError(f"more than {MAX_MEMBERS} members")
            loc = f"{where}!{m.name}" if where else m.name
            if _unsafe_name(m.name):
                facts.findings.append(_finding(display, "conda.unsafe_path", f"member {m.name!r} would be written "
                                               "outside the environment", loc))
                continue
            if m.issym() or m.islnk():
                if _link_escapes(m):
                    facts.findings.append(_finding(display, "conda.unsafe_path", f"link {m.name!r} -> {m.linkname!r} "
                                                   "points outside the environment", loc))
                continue
            if m.ischr() or m.isblk() or m.isfifo():
                facts.findings.append(_finding(display, "conda.special_file", f"member {m.name!r} is a device or FIFO", loc))
                continue
            if not m.isreg():
                continue
            budget.bytes += m.size
            if budget.bytes > MAX_UNPACKED:
                raise ValueError(f"more than {MAX_UNPACKED} bytes unpacked")
            f = tf.extractfile(m)
            if f is None:
                continue
            if m.name in ("info/index.json", "info/about.json"):
                data = f.read(MAX_JSON + 1)
                if len(data) > MAX_JSON:
                    raise ValueError(f"{m.name} larger than {MAX_JSON} bytes")
                try:
                    doc = json.loads(data)
                except (ValueError, RecursionError) as e:
                    raise ValueError(f"{m.name} is not JSON ({e})") from e
                if not isinstance(doc, dict):
                    raise ValueError(f"{m.name} is not a JSON object")
                setattr(facts, "index" if m.name.endswith("index.json") else "about", doc)
            elif on_file is not None and m.size:
                facts.findings += on_file(f, loc, m.size)


def read_package(path: Path, display: str, pickles: bool = False) -> PackageFacts:
    """Read one package file (``display``: ``[subdir/]name-version-build.conda|.tar.bz2``); never
    raises for bad bytes (they become a ``conda.unreadable`` finding after what was read before
    the damage)."""
    import zstandard

    base = posixpath.basename(display)

    facts = PackageFacts()
    budget = _Budget()
    on_file = _pickle_scanner(display) if pickles else None
    try:
        if base.endswith(".tar.bz2"):
            import bz2

            with bz2.open(path, "rb") as raw:
                _scan_tar(raw, display, "", facts, budget, on_file)
        elif base.endswith(".conda"):
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
                if len(infos) > ZIP_MEMBERS:
                    raise ValueError(f"{len(infos)} zip members; a .conda has 3")
                names = [i.filename for i in infos]
                stem = base.removesuffix(".conda")
                for part in ("info", "pkg"):
                    inner = f"{part}-{stem}.tar.zst"
                    if inner not in names:
                        raise ValueError(f"no {inner} inside")
                    with zf.open(inner) as zst:
                        reader = zstandard.ZstdDecompressor().stream_reader(zst, read_across_frames=True)
                        _scan_tar(reader, display, inner, facts, budget, on_file)
        else:
            raise ValueError("not a .conda or .tar.bz2 file")
        if facts.index is None:
            raise ValueError("no info/index.json")
    except (OSError, EOFError, ValueError, tarfile.TarError, zipfile.BadZipFile, zstandard.ZstdError,
            NotImplementedError, RuntimeError) as e:
        facts.findings.append(_finding(display, "conda.unreadable", f"not a readable conda package ({e}); "
                                       "it was not fully scanned"))
    return facts


def _pickle_scanner(display: str) -> Callable[[IO[bytes], str, int], list[Finding]]:
    from gapsync.scanner.base import Where
    from gapsync.scanner.models import scan_stream

    def scan(f: IO[bytes], location: str, size: int) -> list[Finding]:
        _, found = scan_stream(f, Where(display, tuple(location.split("!")), size, 1))
        return [x for x in found if x.rule != "format.unrecognised"]

    return scan


def check_record(facts: PackageFacts, display: str, expected: dict[str, Any]) -> list[Finding]:
    """``info/index.json`` against what the channel's record and the file name say."""
    idx = facts.index
    if idx is None:
        return []
    wrong = {k: (idx.get(k), v) for k, v in expected.items() if v is not None and str(idx.get(k)) != str(v)}
    if not wrong:
        return []
    detail = ", ".join(f"{k} {a!r} (expected {b!r})" for k, (a, b) in sorted(wrong.items()))
    return [_finding(display, "conda.metadata_mismatch", f"info/index.json says {detail}", "info/index.json")]


def license_of(facts: list[PackageFacts], record_license: str | None) -> str | None:
    """The package's declared license: ``info/index.json`` (what conda-build writes), else
    ``info/about.json``, else the channel's record."""
    for f in facts:
        for doc in (f.index, f.about):
            value = (doc or {}).get("license")
            if isinstance(value, str) and value.strip():
                return value
    return record_license


def scan_subject(subject, pickles: bool) -> tuple[list[Finding], str | None]:
    """Every file of a conda artifact: findings, and the raw license for the license scanner."""
    found: list[Finding] = []
    facts = []
    expected = subject.meta.get("expected") or {}
    for f in subject.files:
        pf = read_package(f.path, f.name, pickles)
        found += pf.findings
        found += check_record(pf, f.name, expected.get(f.name, {}))
        facts.append(pf)
    return found, license_of(facts, subject.meta.get("record_license"))
