"""The scanner interface and the walk over a file or a directory.

A scanner turns bytes into :class:`~gapsync.model.Finding` objects. It reads and parses; it never
imports, unpickles or executes what it reads. ``scan_path`` is the one driver: it walks a file
or a directory (without following symlinks out of it) and hands each regular file to every
scanner. Exceptions from a scanner on one file become an ``internal`` finding for that file, so
one hostile file can neither crash a scan nor hide the files after it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from gapsync.errors import InputError
from gapsync.model import Finding, Severity

if TYPE_CHECKING:
    from gapsync.scanner.budget import Budget

MAX_DEPTH = 8  # containers inside containers (zip in zip, nested pickles); deeper is a finding


class Scanner(Protocol):
    """Something that reads one file's bytes and reports findings about them."""

    name: ClassVar[str]

    def scan_file(self, path: Path, display_name: str) -> Iterator[Finding]:
        """Findings for the file at ``path``; ``display_name`` is how findings name it."""
        ...


class Where:
    """Where the bytes being scanned come from: the file, and the path inside it (zip entries).

    ``inner`` is a tuple of names from the outermost container inwards; findings show it
    joined with ``!`` (``model.zip!archive/data.pkl``). ``size`` is the length of these bytes
    when known (a zip entry's uncompressed size), used to validate length fields. ``budget`` is
    the artifact's scan budget, shared by everything inside it; ``label`` the name a loader would
    give these bytes when it differs from the last inner name (``model.pkl`` for the inside of
    ``model.pkl.zst``), so that compression a loader infers from a name is tried too.

    A plain slotted class, treated as immutable: one is made per container entry, and a frozen
    dataclass of six fields costs several microseconds to build.
    """

    __slots__ = ("file", "inner", "size", "depth", "budget", "label")

    def __init__(self, file: str, inner: tuple[str, ...] = (), size: int | None = None, depth: int = 0,
                 budget: Budget | None = None, label: str | None = None) -> None:
        self.file, self.inner, self.size, self.depth, self.budget, self.label = file, inner, size, depth, budget, label

    def __repr__(self) -> str:
        return f"Where({self.file!r}, {self.inner!r}, size={self.size}, depth={self.depth})"

    @property
    def location(self) -> str | None:
        return "!".join(self.inner) if self.inner else None

    @property
    def name(self) -> str:
        """The file or entry name a loader sees for these bytes."""
        if self.label is not None:
            return self.label
        return self.inner[-1] if self.inner else self.file

    def named(self, label: str) -> Where:
        return Where(self.file, self.inner, self.size, self.depth, self.budget, label)

    def child(self, name: str, size: int | None = None) -> Where:
        return Where(self.file, (*self.inner, name), size, self.depth + 1, self.budget)


def finding(where: Where, rule: str, severity: Severity, message: str, offset: int | None = None,
            **evidence: Any) -> Finding:
    """Build a model-scanner finding at ``where`` (the one place that fills the common fields)."""
    return Finding(scanner="model", rule=rule, severity=severity, message=message, file=where.file,
                   location=where.location, offset=offset, evidence=evidence)


@dataclass
class ScanReport:
    """The findings of one scan, and what was scanned."""

    root: str
    files: int = 0
    findings: list[Finding] = field(default_factory=list)

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)

    def at_least(self, severity: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity.rank >= severity.rank]

    def to_dict(self) -> dict[str, Any]:
        worst = self.worst()
        return {"root": self.root, "files": self.files, "worst": worst.value if worst else None,
                "findings": [f.to_dict() for f in self.findings]}




def scan_path(path: Path, scanners: Iterable[Scanner] | None = None, jobs: int = 1) -> ScanReport:
    """Scan a file or every file under a directory with ``scanners`` (default: the model scanner).

    ``jobs`` > 1 scans a directory's files in that many processes at most (one per CPU; see
    :mod:`gapsync.scanner.parallel`); call it so only from a single-threaded process. The report
    is the same whatever ``jobs`` is.
    """
    if not path.exists() and not path.is_symlink():
        raise InputError(f"{path}: no such file or directory")
    if scanners is None:
        from gapsync.scanner.models import ModelScanner

        scanners = [ModelScanner()]
    scanners = list(scanners)
    entries = list(_walk_with_links(path))
    files = [(file, display) for file, display in entries if file is not None]
    if jobs > 1:
        from gapsync.scanner.parallel import scan_files, worker_count

        found = iter(scan_files(files, lambda p, d: _scan_file(scanners, p, d), worker_count(jobs, len(files))))
    else:
        found = (_scan_file(scanners, p, d) for p, d in files)
    report = ScanReport(root=str(path))
    for file, display in entries:
        if file is None:
            report.findings.append(finding(Where(display), "file.symlink", Severity.MEDIUM,
                                           "symbolic link not followed: it may point outside the model"))
            continue
        report.files += 1
        report.findings.extend(next(found))
    return report


def _scan_file(scanners: list[Scanner], file: Path, display: str) -> list[Finding]:
    out: list[Finding] = []
    for scanner in scanners:
        try:
            out.extend(scanner.scan_file(file, display))
        except OSError as e:
            out.append(finding(Where(display), "file.unreadable", Severity.MEDIUM, f"cannot read the file: {e}"))
        except RecursionError:
            out.append(finding(Where(display), "scan.too_deep", Severity.HIGH, "nesting too deep to analyse"))
        except Exception as e:  # a scanner bug must not pass a file silently
            out.append(finding(Where(display), "scan.internal_error", Severity.HIGH,
                               f"scanner failed on this file ({type(e).__name__}: {e}); it was not fully scanned"))
    return out


def _walk_with_links(path: Path) -> Iterator[tuple[Path | None, str]]:
    if path.is_symlink():
        yield None, str(path)
        return
    if path.is_file():
        yield path, str(path)
        return
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        dirnames.sort()
        for name in sorted(dirnames):
            p = Path(dirpath) / name
            if p.is_symlink():
                yield None, str(p)
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_symlink():
                yield None, str(p)
            elif p.is_file():
                yield p, str(p)
