"""The local OSV advisory store: import, update and load the PyPI advisory database.

Why a store of our own: the DMZ scans before bundling and the air side scans again with the very
snapshot that came in the bundle, so the database must be one file that can be hashed, signed,
carried and loaded offline. ``import_db`` takes any OSV export (osv.dev's ``PyPI/all.zip``, or
JSON lines, gzipped or not), keeps the PyPI records unchanged (compact JSON, one per line, sorted
by id, newest ``modified`` wins on duplicate ids) and writes them as ``pypi.osv.jsonl.gz`` (gzip
with a zero mtime, so the same records give the same sha256) next to ``info.json``. Both files
are written atomically: a reader sees the old store or the new one, never half of one.

``AdvisoryDB.load`` reads that file back into an index by PEP 503 name; the matching itself lives
in :mod:`gapsync.scanner.artifacts.vulns` (with the ecosystem name and the id order), which this
store imports and which never imports the store: the scanners stay pure (no file, no network),
and take any object with ``advisories_for``/``match`` (:class:`~gapsync.scanner.artifacts.vulns.Advisories`). Every record is checked on import and again on load, and a bad
one is an :class:`~gapsync.errors.InputError` naming the file and the line (or zip member).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from gapsync import fsutil
from gapsync.errors import FetchError, InputError, VerificationError
from gapsync.fsutil import write_atomic
from gapsync.scanner.artifacts import vulns
from gapsync.scanner.artifacts.vulns import ECOSYSTEM, CompiledAdvisory, MatchResult, VersionCache, _id_key

OSV_PYPI_URL = "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip"
DB_FILE = "pypi.osv.jsonl.gz"
INFO_FILE = "info.json"
MAX_RECORD = 16 << 20  # one advisory larger than this is not an advisory (zip bomb guard)
EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")


def default_store() -> Path:
    """``$GAPSYNC_ADVISORIES`` (``~`` expanded) or ``~/.cache/gapsync/advisories``: the one place
    that reads the variable, for the ``advisories`` commands and every scan alike."""
    env = os.environ.get("GAPSYNC_ADVISORIES")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gapsync" / "advisories"


HOW_TO_LOAD = ("load one with 'gapsync advisories import FILE', or 'gapsync advisories update' where there is "
               "internet")


def freshness(info: dict[str, Any] | None, max_age: timedelta | None, now: datetime) -> dict[str, Any]:
    """How current the database is, for the report and the policy: ``{"state": "missing" |
    "stale" | "current", "age_days", "max_age_days", "why"}``. The age is counted from the
    newest ``modified`` of any record (how current the data is; ``imported_at`` only says when
    a copy was made). A database with no usable date is stale: its age cannot be vouched for."""
    if info is None:
        return {"state": "missing", "age_days": None, "max_age_days": None, "why": "no advisory database"}
    limit = max_age.days if max_age is not None else None
    modified = _parse_time(info.get("modified"))
    if modified is None:
        return {"state": "stale" if max_age is not None else "current", "age_days": None, "max_age_days": limit,
                "why": "the advisory database has no date: its age is unknown"}
    age = now - modified
    days = max(0, age.days)
    stale = max_age is not None and age > max_age
    why = (f"the advisory database is {days} days old (newest advisory modified {modified.date().isoformat()}; "
           f"the policy allows {_age_text(max_age)})") if stale else None
    return {"state": "stale" if stale else "current", "age_days": days, "max_age_days": limit, "why": why}


def _age_text(max_age: timedelta | None) -> str:
    if max_age is None:
        return "any age"
    if max_age.days and not max_age.seconds:
        return f"{max_age.days} days"
    return f"{int(max_age.total_seconds() // 3600)} hours"


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def notice_text(fresh: dict[str, Any], action: str, policy: str) -> str | None:
    """The one line a command prints when vulnerabilities were not checked or were checked
    against a stale database; None when there is nothing to say."""
    verbs = {"block": "blocks", "warn": "warns about", "allow": "allows"}
    if fresh["state"] == "missing":
        return (f"no advisory database: Python packages were NOT checked for vulnerabilities and the policy "
                f"{policy} {verbs[action]} them; {HOW_TO_LOAD}")
    if fresh["state"] == "stale":
        return (f"{fresh['why']}: vulnerabilities published since are missed and the policy {policy} "
                f"{verbs[action]} every package checked with it; update it with 'gapsync advisories update', or "
                f"'gapsync advisories import FILE' with a newer export")
    return None


def notice(text: str) -> None:
    """Print ``text`` as ONE line on stderr: plain on a terminal and from scripts, a JSON event
    in the scheduled job's log format (gapsync.log) off a terminal."""
    import sys

    from gapsync.log import event, progress_logs

    if progress_logs():
        event("advisories", level="warning", message=text)
    else:
        sys.stderr.write(f"gapsync: warning: {text}\n")
        sys.stderr.flush()


@dataclass(frozen=True)
class DbInfo:
    """What ``info.json`` says about the stored snapshot (and what a bundle records about it)."""

    source: str | None  # the file or URL it was imported from
    imported_at: str | None  # RFC 3339, UTC
    modified: str | None  # the newest ``modified`` of any record: how current the data is
    advisories: int
    withdrawn: int
    packages: int  # distinct PEP 503 names
    sha256: str
    size: int
    file: str = DB_FILE
    skipped: int = 0  # records without a PyPI package (import only)
    duplicates: int = 0  # records dropped for an id seen again with a newer ``modified`` (import only)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DbInfo:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


# --- reading OSV exports -------------------------------------------------------------------


def check_record(rec: Any) -> str | None:
    """Why ``rec`` is not an OSV record this code can rely on, or None. Only the fields that
    matching reads are checked, so a record from a newer schema with extra fields still passes."""
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    if not isinstance(rec.get("id"), str) or not rec["id"]:
        return "no 'id'"
    for key in ("modified", "withdrawn", "details", "summary"):
        if key in rec and not isinstance(rec[key], str):
            return f"{rec['id']}: '{key}' is not a string"
    if not _str_list(rec.get("aliases", [])):
        return f"{rec['id']}: 'aliases' is not a list of strings"
    sev = rec.get("severity", [])
    if not isinstance(sev, list) or not all(isinstance(s, dict) and isinstance(s.get("score"), str) for s in sev):
        return f"{rec['id']}: 'severity' is not a list of {{type, score}}"
    affected = rec.get("affected", [])
    if not isinstance(affected, list):
        return f"{rec['id']}: 'affected' is not a list"
    for i, aff in enumerate(affected):
        problem = _check_affected(aff)
        if problem:
            return f"{rec['id']}: affected[{i}]: {problem}"
    return None


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and set(map(type, value)) <= {str}


def _check_affected(aff: Any) -> str | None:
    if not isinstance(aff, dict):
        return "not an object"
    pkg = aff.get("package")  # OSV allows an entry without a package (GIT-only); it matches nothing here
    if pkg is not None and (not isinstance(pkg, dict) or not isinstance(pkg.get("name"), str)
                            or not isinstance(pkg.get("ecosystem"), str)):
        return "no package {name, ecosystem}"
    if not _str_list(aff.get("versions", [])):
        return "'versions' is not a list of strings"
    ranges = aff.get("ranges", [])
    if not isinstance(ranges, list):
        return "'ranges' is not a list"
    for j, rng in enumerate(ranges):
        if not isinstance(rng, dict) or not isinstance(rng.get("type"), str) or not isinstance(rng.get("events"), list):
            return f"ranges[{j}]: no {{type, events}}"
        for ev in rng["events"]:
            if not (isinstance(ev, dict) and len(ev) == 1 and next(iter(ev)) in EVENT_KINDS
                    and isinstance(next(iter(ev.values())), str)):
                return f"ranges[{j}]: bad event {ev!r}"
    return None


def pypi_names(rec: dict[str, Any]) -> set[str]:
    """The PEP 503 names of the PyPI packages a record is about (both sides canonicalized: the
    data does not always keep OSV's own normalization rule, e.g. ``jw.util``)."""
    return {canonicalize_name(a["package"]["name"]) for a in rec.get("affected", [])
            if a.get("package") and a["package"]["ecosystem"] == ECOSYSTEM}


def read_export(source: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(where, record)`` from a zip of JSON files or JSON lines (gzipped or not);
    ``where`` is "line N" or "member NAME", for error messages."""
    try:
        with open(source, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise InputError(f"{source}: cannot read ({e.strerror or e})") from e
    if magic.startswith(b"PK\x03\x04") or magic.startswith(b"PK\x05\x06"):
        yield from _read_zip(source)
    elif magic.startswith(b"\x1f\x8b"):
        yield from _read_lines(source, gzip.open(source, "rb"))
    else:
        yield from _read_lines(source, open(source, "rb"))


def _read_zip(source: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"{source}: not a readable zip ({e})") from e
    with zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.endswith(".json"):
                continue
            where = f"member {info.filename}"
            if info.file_size > MAX_RECORD:
                raise InputError(f"{source} {where}: {info.file_size} bytes is too large for one advisory")
            try:
                data = zf.read(info)
                rec = json.loads(data)
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise InputError(f"{source} {where}: cannot read ({e})") from e
            except (ValueError, UnicodeDecodeError) as e:
                raise InputError(f"{source} {where}: not valid JSON ({e})") from e
            yield where, rec


def _read_lines(source: Path, stream: io.BufferedIOBase) -> Iterator[tuple[str, dict[str, Any]]]:
    with stream:
        n = 0
        try:
            for n, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except (ValueError, UnicodeDecodeError) as e:
                    raise InputError(f"{source} line {n}: not valid JSON ({e})") from e
                yield f"line {n}", rec
        except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
            raise InputError(f"{source} after line {n}: cannot read ({e})") from e


# --- the store -----------------------------------------------------------------------------


def import_db(source: Path, store: Path, *, source_name: str | None = None) -> DbInfo:
    """Load the OSV export at ``source`` into ``store`` (replacing what was there) and return
    its :class:`DbInfo`. Nothing is written unless every record is well-formed."""
    # id -> (modified, withdrawn, names, compact JSON): only the text is kept, not the parsed
    # record, so a large export (osv.dev's has tens of thousands of records) costs its size in memory.
    kept: dict[str, tuple[str, bool, frozenset[str], str]] = {}
    skipped = duplicates = 0
    for where, rec in read_export(source):
        problem = check_record(rec)
        if problem:
            raise InputError(f"{source} {where}: {problem}")
        names = frozenset(pypi_names(rec))
        if not names:
            skipped += 1
            continue
        modified = rec.get("modified", "")
        old = kept.get(rec["id"])
        if old is not None:
            duplicates += 1
            if old[0] > modified:
                continue
        kept[rec["id"]] = (modified, bool(rec.get("withdrawn")), names,
                           json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
    if not kept:
        raise InputError(f"{source}: no PyPI advisories in this file")
    text = "".join(kept[k][3] + "\n" for k in sorted(kept, key=_id_key))
    data = gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)
    info = DbInfo(
        source=source_name or str(Path(source).resolve()),
        imported_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        modified=max(m for m, _, _, _ in kept.values()) or None,
        advisories=len(kept),
        withdrawn=sum(1 for _, w, _, _ in kept.values() if w),
        packages=len(frozenset().union(*(n for _, _, n, _ in kept.values()))),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        skipped=skipped,
        duplicates=duplicates,
    )
    store.mkdir(parents=True, exist_ok=True)
    write_atomic(store / DB_FILE, data)
    write_atomic(store / INFO_FILE, (json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n").encode())
    return info


def update(store: Path, *, url: str = OSV_PYPI_URL, timeout: float = 60.0) -> DbInfo:
    """Download the OSV PyPI export from ``url`` and import it into ``store``."""
    import requests

    with fsutil.Dir(store) as d:
        name, f = d.create_temp("download.zip")  # O_CREAT|O_EXCL|O_NOFOLLOW in the store opened once
    tmp = store / name
    try:
        try:
            with f, requests.get(url, stream=True, timeout=timeout) as r:
                if r.status_code != 200:
                    raise FetchError(f"cannot download {url}: HTTP {r.status_code} {r.reason}")
                for chunk in r.iter_content(1 << 20):
                    f.write(chunk)
        except requests.RequestException as e:
            raise FetchError(f"cannot download {url}: {type(e).__name__}: {e} (without internet here, fetch the "
                             "file elsewhere and run 'gapsync advisories import FILE')") from e
        except OSError as e:
            raise FetchError(f"cannot write the download of {url} into {store}: {e}") from e
        return import_db(Path(tmp), store, source_name=url)
    finally:
        Path(tmp).unlink(missing_ok=True)


def read_info(store: Path) -> DbInfo | None:
    """The store's ``info.json``, or None when there is none."""
    path = store / INFO_FILE
    if not path.exists():
        return None
    try:
        return DbInfo.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, OSError) as e:
        raise InputError(f"{path}: not a valid info.json ({e})") from e


# --- the loaded database -------------------------------------------------------------------


class AdvisoryDB:
    """The advisories of one snapshot, indexed by PEP 503 name. Withdrawn records are kept for
    the counts but never matched."""

    def __init__(self, records: list[dict[str, Any]], path: Path | None = None, info: DbInfo | None = None,
                 sha256: str | None = None, size: int | None = None) -> None:
        self.path = path
        self.records = records
        self._stored_info = info
        self._sha256, self._size = sha256, size
        # Live records by name; each package's are compiled on first use (a scan touches few).
        self._raw: dict[str, list[dict[str, Any]]] = {}
        self._compiled: dict[str, list[CompiledAdvisory]] = {}
        self.version_cache: VersionCache = {}  # version string -> (Version, canonical), shared
        for rec in records:
            if not rec.get("withdrawn"):
                for name in pypi_names(rec):
                    self._raw.setdefault(name, []).append(rec)

    @classmethod
    def load(cls, path: Path) -> AdvisoryDB:
        """Load a store directory or its ``pypi.osv.jsonl.gz``. When an ``info.json`` sits next
        to the file, the file's sha256 must be the one recorded there (VerificationError)."""
        path = Path(path)
        file = path / DB_FILE if path.is_dir() else path
        if not file.exists():
            raise InputError(f"no advisory database at {path}: run 'gapsync advisories import FILE' "
                             "or 'gapsync advisories update' first")
        raw = file.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        info = read_info(file.parent) if file.name == DB_FILE else None
        if info is not None and info.sha256 != digest:
            raise VerificationError(f"{file}: sha256 {digest} is not the {info.sha256} that "
                                    f"{file.parent / INFO_FILE} records; import the database again")
        try:
            text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        except (OSError, EOFError) as e:
            raise InputError(f"{file}: not a readable gzip file ({e})") from e
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (ValueError, UnicodeDecodeError) as e:
                raise InputError(f"{file} line {n}: not valid JSON ({e})") from e
            problem = check_record(rec)
            if problem:
                raise InputError(f"{file} line {n}: {problem}")
            records.append(rec)
        return cls(records, path=file, info=info, sha256=digest, size=len(raw))

    def packages(self) -> list[str]:
        """The PEP 503 names that have at least one live (not withdrawn) advisory."""
        return sorted(self._raw)

    def advisories_for(self, name: str) -> list[CompiledAdvisory]:
        """The live advisories of one package, compiled for matching."""
        name = canonicalize_name(name)
        compiled = self._compiled.get(name)
        if compiled is None:
            compiled = [vulns.compile_record(rec, self.version_cache, only=name)[name] for rec in self._raw.get(name, [])]
            self._compiled[name] = compiled
        return compiled

    def match(self, name: str, version: str) -> MatchResult:
        """Which live advisories affect ``name`` at ``version`` (see :mod:`gapsync.scanner.artifacts.vulns`)."""
        return vulns.match(self, name, version)

    def info(self) -> dict[str, Any]:
        """The snapshot's summary for bundle.json and ``advisories info``: where it came from,
        how current it is, its counts and the sha256 of the file the scan used."""
        stored = self._stored_info
        names: set[str] = set()
        for rec in self.records:
            names |= pypi_names(rec)
        return {
            "file": self.path.name if self.path else None,
            "sha256": self._sha256,
            "size": self._size,
            "source": stored.source if stored else None,
            "imported_at": stored.imported_at if stored else None,
            "modified": max((r.get("modified", "") for r in self.records), default="") or None,
            "advisories": len(self.records),
            "withdrawn": sum(1 for r in self.records if r.get("withdrawn")),
            "packages": len(names),
        }
