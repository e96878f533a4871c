"""Exact vulnerability matching against the OSV snapshot, and the ``vulns`` scanner.

Why exact, and why these rules (``gapsync/demo/data/README.md`` explains each with the tools that
got it wrong): names are PEP 503 on both sides; versions are ``packaging.version.Version``
objects compared directly (never ``SpecifierSet.contains`` with its pre-release defaults, which
changed between packaging 25 and 26); only ECOSYSTEM ranges count (GIT ranges hold commit hashes,
and often come first, so no loop stops at the first range); events are sorted by version with
``introduced: "0"`` as minus infinity, because the source lists branches out of order. At equal
versions a ``fixed``/``last_affected`` sorts before an ``introduced``: the data has branches that
restart at the previous branch's fix (pyspark PYSEC-2023-72: ``3.1.1→3.2.0`` and ``3.2.0→3.2.2``),
and walking ``introduced`` first would call 3.2.0 safe. A version is affected when it is in a
range or in ``versions[]`` (as a string, and as a parsed version: ``2015.04.28 == 2015.4.28``).

What cannot be decided is said, never assumed away: an installed version that is not PEP 440 is
only compared as a string with ``versions[]``, and an advisory whose range bound is not PEP 440
(``fixed: "2019-09-12"``) cannot be evaluated; both make the result "not-checked" (unless
something else makes it "affected"), never "clean". Withdrawn advisories are dropped at load.
Results for one package are grouped by overlapping ``{id} ∪ aliases`` (transitively, never
across packages), the PYSEC id first, every id kept.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from packaging.utils import canonicalize_name, canonicalize_version
from packaging.version import InvalidVersion, Version

from gapsync.model import Finding, Severity
from gapsync.scanner.subject import ScanSubject

ECOSYSTEM = "PyPI"
AFFECTED, NOT_AFFECTED, UNKNOWN = "affected", "clean", "not-checked"
_INTRODUCED, _CLOSE = 1, 0  # tie order at equal versions: fixed/last_affected before introduced


VersionCache = dict[str, tuple[Version | None, str | None]]


@functools.lru_cache(maxsize=65536)
def _id_key(adv_id: str) -> tuple:
    """PYSEC-2018-9 before PYSEC-2018-19: ids sorted by their numbers, not as strings."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", adv_id))


def parse_version(s: str, cache: VersionCache | None = None) -> Version | None:
    """``Version(s)`` or None when ``s`` is not PEP 440."""
    return parse(s, cache)[0]


def parse(s: str, cache: VersionCache | None = None) -> tuple[Version | None, str | None]:
    """(``Version(s)``, its canonical string) or (None, None) when ``s`` is not PEP 440.

    The canonical string (``canonicalize_version``: ``2015.04.28`` -> ``2015.4.28``, ``1.0.0`` ->
    ``1``) is equal exactly when the versions are, so listed versions become a set of plain
    strings. ``cache`` saves re-parsing: the snapshot's 140,000 ``versions[]`` entries are only
    ~13,000 distinct strings.
    """
    if cache is not None:
        hit = cache.get(s)
        if hit is not None:
            return hit
    try:
        v = Version(s)
        out: tuple[Version | None, str | None] = (v, canonicalize_version(v, strip_trailing_zero=True))
    except InvalidVersion:
        out = (None, None)
    if cache is not None:
        cache[s] = out
    return out


@dataclass(slots=True)
class Range:
    """One ECOSYSTEM range: events sorted for the OSV walk, and its ``limit`` bounds."""

    events: list[tuple[str, Version | None, str]]  # (kind, version or None for "0", raw string)
    limits: list[Version | None]  # None is "*" (no limit)

    def contains(self, v: Version) -> bool:
        affected = False
        for kind, ver, _ in self.events:
            if kind == "introduced":
                if ver is None or v >= ver:
                    affected = True
            elif kind == "fixed":  # exclusive: the fixed version itself is safe
                if v >= ver:  # type: ignore[operator]
                    affected = False
            elif v > ver:  # type: ignore[operator]  # last_affected: inclusive
                affected = False
        if affected and self.limits:
            affected = any(lim is None or v < lim for lim in self.limits)
        return affected

    def fix_for(self, v: Version) -> list[str]:
        """The fix of the branch holding ``v``: the first closing event above it (none when that
        is a ``last_affected`` or the range is open-ended)."""
        for kind, ver, raw in self.events:
            if kind == "fixed" and ver > v:  # type: ignore[operator]
                return [raw]
            if kind == "last_affected" and ver >= v:  # type: ignore[operator]
                return []
        return []


@dataclass(slots=True)
class CompiledAdvisory:
    """One advisory as it applies to one package, ready to match."""

    id: str
    aliases: tuple[str, ...]
    ranges: list[Range]
    versions: frozenset[str]  # listed versions, verbatim
    parsed: frozenset[str]  # canonical strings of the listed versions that are PEP 440
    problems: list[str]  # why some of it cannot be evaluated (bad range bounds, no data)
    record: dict[str, Any]
    _rating: tuple[Severity, str | None, Decimal] | None = None
    _summary: str | None = None

    @property
    def summary(self) -> str:
        if self._summary is None:
            self._summary = summary_of(self.record)
        return self._summary

    @property
    def rating(self) -> tuple[Severity, str | None, Decimal]:
        """(severity, CVSS vector, base score), computed once."""
        if self._rating is None:
            self._rating = severity_of(self.record)
        return self._rating

    def evaluate(self, raw: str, v: Version | None, canon: str | None) -> tuple[str, list[str]]:
        """(AFFECTED | NOT_AFFECTED | UNKNOWN, fix versions of the branch holding ``v``);
        ``canon`` is ``v``'s canonical string."""
        if v is None:
            return (AFFECTED, []) if raw in self.versions else (UNKNOWN, [])
        inside = [r for r in self.ranges if r.contains(v)]
        if inside:
            return AFFECTED, [f for r in inside for f in r.fix_for(v)]
        if raw in self.versions or canon in self.parsed:
            return AFFECTED, self._next_fix(v)
        return (UNKNOWN, []) if self.problems else (NOT_AFFECTED, [])

    def _next_fix(self, v: Version) -> list[str]:
        """For a version listed but outside every range: the lowest fix above it, if any."""
        above = [(ver, raw) for r in self.ranges for kind, ver, raw in r.events
                 if kind == "fixed" and ver is not None and ver > v]
        return [min(above)[1]] if above else []


def compile_record(rec: dict[str, Any], cache: VersionCache, only: str | None = None) -> dict[str, CompiledAdvisory]:
    """The record's PyPI ``affected`` entries, per PEP 503 name (entries for one name merged);
    ``only``: compile just that name."""
    out: dict[str, CompiledAdvisory] = {}
    for aff in rec.get("affected", []):
        if not aff.get("package") or aff["package"]["ecosystem"] != ECOSYSTEM:
            continue
        name = canonicalize_name(aff["package"]["name"])
        if only is not None and name != only:
            continue
        adv = out.get(name)
        if adv is None:
            adv = out[name] = CompiledAdvisory(rec["id"], tuple(rec.get("aliases", [])), [], frozenset(),
                                               frozenset(), [], rec)
        listed = aff.get("versions", [])
        if listed:
            adv.versions |= frozenset(listed)
            adv.parsed |= {c for _, c in (cache.get(s) or parse(s, cache) for s in listed) if c is not None}
        for rng in aff.get("ranges", []):
            if rng["type"] == "ECOSYSTEM":
                _add_range(adv, rng["events"], cache)
    for adv in out.values():
        if not adv.ranges and not adv.versions and not adv.problems:
            adv.problems.append("no ECOSYSTEM range and no versions list")
    return out


def _add_range(adv: CompiledAdvisory, events: list[dict[str, str]], cache: VersionCache) -> None:
    keyed: list[tuple[tuple[Any, ...], tuple[str, Version | None, str]]] = []  # (sort key, event)
    limits: list[Version | None] = []
    for ev in events:
        ((kind, raw),) = ev.items()
        if kind == "introduced" and raw == "0":
            keyed.append(((0,), (kind, None, raw)))
            continue
        if kind == "limit" and raw == "*":
            limits.append(None)
            continue
        ver = parse_version(raw, cache)
        if ver is None:
            adv.problems.append(f"range bound {kind} {raw!r} is not PEP 440")
            return
        if kind == "limit":
            limits.append(ver)
        else:
            keyed.append(((1, ver, _INTRODUCED if kind == "introduced" else _CLOSE), (kind, ver, raw)))
    keyed.sort(key=lambda kv: kv[0])  # stable: equal keys keep the source's order
    adv.ranges.append(Range([e for _, e in keyed], limits))


class Advisories(Protocol):
    """What matching needs of a loaded database: the live advisories of one package, compiled,
    and the shared version cache. :class:`gapsync.advisories.AdvisoryDB` is one; the scanner
    names only this, so it never imports the store (which reads files and downloads)."""

    version_cache: VersionCache

    def advisories_for(self, name: str) -> list[CompiledAdvisory]: ...

    def match(self, name: str, version: str) -> MatchResult: ...


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vuln:
    """One vulnerability of one package: a group of advisories that share an id or alias."""

    id: str  # the primary id: a PYSEC id when the group has one
    aliases: list[str]  # every other id of the group (other PYSEC records too), sorted
    fixed: list[str]  # fix versions of the installed version's branch; [] when none is known
    severity: Severity
    cvss: str | None  # the CVSS vector the severity comes from
    summary: str

    @property
    def ids(self) -> list[str]:
        return [self.id, *self.aliases]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "aliases": self.aliases, "fixed": self.fixed, "severity": self.severity.value,
                "cvss": self.cvss, "summary": self.summary}


@dataclass(frozen=True)
class MatchResult:
    """``status`` is "affected" when any advisory matched, else "not-checked" when something
    could not be compared (``reason`` says what, ``unchecked`` lists the advisories), else
    "clean". An affected result can still carry a reason: report both."""

    status: str
    vulns: list[Vuln]
    unchecked: list[str] = field(default_factory=list)
    reason: str | None = None


def match(db: Advisories, name: str, version: str) -> MatchResult:
    """Match one installed ``name==version`` against every live advisory of that package."""
    advisories = db.advisories_for(name)
    v, canon = parse(version.strip(), db.version_cache)
    hits: list[tuple[CompiledAdvisory, list[str]]] = []
    unchecked: list[str] = []
    problems: list[str] = []
    for adv in advisories:
        state, fixes = adv.evaluate(version.strip(), v, canon)
        if state == AFFECTED:
            hits.append((adv, fixes))
        elif state == UNKNOWN:
            unchecked.append(adv.id)
            problems.extend(f"{adv.id}: {p}" for p in adv.problems)
    reason = None
    if v is None and advisories:  # with no advisory for the package, no version of it can be affected
        reason = f"version {version!r} is not PEP 440: compared as a string with the listed versions only"
    elif problems:
        reason = "advisory could not be evaluated: " + "; ".join(problems)
    vulns = group(hits)
    status = AFFECTED if vulns else (UNKNOWN if reason else NOT_AFFECTED)
    return MatchResult(status, vulns, sorted(unchecked, key=_id_key), reason)


@functools.lru_cache(maxsize=65536)
def _primary_key(adv_id: str) -> tuple:
    """Which record of a group names it: PYSEC (this database's own ids), then GHSA, then others."""
    return (0 if adv_id.startswith("PYSEC-") else 1 if adv_id.startswith("GHSA-") else 2, _id_key(adv_id))


@functools.lru_cache(maxsize=65536)
def _alias_key(adv_id: str) -> tuple:
    """How aliases are listed: other PYSEC ids first, then CVE, GHSA and the rest."""
    prefix = adv_id.split("-", 1)[0]
    return ({"PYSEC": 0, "CVE": 1, "GHSA": 2}.get(prefix, 3), _id_key(adv_id))


def group(hits: list[tuple[CompiledAdvisory, list[str]]]) -> list[Vuln]:
    """Merge the matched advisories of ONE package whose ``{id} ∪ aliases`` overlap, transitively
    (union-find over ids)."""
    parent = list(range(len(hits)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, (adv, _) in enumerate(hits):
        for ident in (adv.id, *adv.aliases):
            if ident in owner:
                parent[root(i)] = root(owner[ident])
            else:
                owner[ident] = i
    groups: dict[int, list[int]] = {}
    for i in range(len(hits)):
        groups.setdefault(root(i), []).append(i)
    vulns = [_merge([hits[i] for i in members]) for members in groups.values()]
    return sorted(vulns, key=lambda x: _primary_key(x.id))


def _merge(members: list[tuple[CompiledAdvisory, list[str]]]) -> Vuln:
    primary = min((adv for adv, _ in members), key=lambda a: _primary_key(a.id))
    ids = {i for adv, _ in members for i in (adv.id, *adv.aliases)} - {primary.id}
    fixes = {f for _, fx in members for f in fx}
    severity, vector, _score = max((adv.rating for adv, _ in members), key=lambda r: (r[0].rank, r[2]))
    return Vuln(primary.id, sorted(ids, key=_alias_key), sorted(fixes, key=_fix_key), severity, vector,
                primary.summary)


@functools.lru_cache(maxsize=65536)
def _fix_key(s: str) -> tuple:
    v = parse_version(s)
    return (0, v, s) if v is not None else (1, s, s)


def severity_of(rec: dict[str, Any]) -> tuple[Severity, str | None, Decimal]:
    """(severity, vector, base score) from the record's CVSS v3 vector (v4 when it has only
    that); UNKNOWN when it has none or the vector does not parse: the policy decides unknown."""
    by_type = {s.get("type"): s["score"] for s in rec.get("severity", [])}
    for kind in ("CVSS_V3", "CVSS_V4"):
        vector = by_type.get(kind)
        if vector is None:
            continue
        score = _base_score(kind, vector)
        if score is None:
            return Severity.UNKNOWN, vector, Decimal(-1)
        return _band(score), vector, score
    return Severity.UNKNOWN, None, Decimal(-1)


def _base_score(kind: str, vector: str) -> Decimal | None:
    import cvss

    try:
        calc = cvss.CVSS3(vector) if kind == "CVSS_V3" else cvss.CVSS4(vector)
        return Decimal(str(calc.base_score))
    except (cvss.CVSSError, ValueError, KeyError, IndexError):
        return None


def _band(score: Decimal) -> Severity:
    if score >= 9:
        return Severity.CRITICAL
    if score >= 7:
        return Severity.HIGH
    if score >= 4:
        return Severity.MEDIUM
    return Severity.LOW if score > 0 else Severity.INFO


def summary_of(rec: dict[str, Any]) -> str:
    """``summary`` when the record has one (2 of 2,661 do), else the first line of ``details``."""
    text = rec.get("summary") or rec.get("details") or ""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= 240 else line[:239] + "…"


# --- the scanner ---------------------------------------------------------------------------


def scan_subject(db: Advisories, subject: ScanSubject) -> list[Finding]:
    """Findings for one artifact: a Python package by its name and version, an OCI image by the
    packages installed in its layers (read as streams, never unpacked). Other kinds: none."""
    if subject.kind == "python":
        file = subject.files[0].name if subject.files else None
        return findings_for(db, subject.name, subject.version, file=file)
    if subject.kind == "oci":
        return _scan_image(db, subject)
    return []


def _scan_image(db: Advisories, subject: ScanSubject) -> list[Finding]:
    from gapsync.scanner.artifacts.dist_info import installed_dists, is_layer

    layers = [(f.name, f.path) for f in subject.files if is_layer(f.path, f.media_type)]
    dists, errors = installed_dists(layers)
    out: list[Finding] = [
        Finding("vulns", "vulns.not-checked", Severity.UNKNOWN,
                f"{e.layer}: cannot read the layer ({e.reason}); the Python packages in it were not checked",
                file=e.layer, evidence={"package": None, "version": None, "reason": e.reason})
        for e in errors]
    for d in dists:
        if not d.name:
            out.append(Finding("vulns", "vulns.not-checked", Severity.UNKNOWN,
                               f"{d.path}: package metadata without a Name; not checked", file=d.layer,
                               location=d.path, evidence={"package": None, "version": d.version,
                                                          "reason": "no Name in the metadata"}))
            continue
        out.extend(findings_for(db, d.name, d.version, file=d.layer, location=d.path))
    return out


def findings_for(db: Advisories, name: str, version: str, *, file: str | None = None,
                 location: str | None = None) -> list[Finding]:
    """One finding per vulnerability of ``name==version``, and one "vulns.not-checked"
    finding (severity UNKNOWN) when something could not be compared."""
    result = db.match(name, version)
    out = [Finding("vulns", v.id, v.severity, _message(name, version, v), file=file, location=location,
                   evidence={"package": name, "version": version, "id": v.id, "aliases": v.aliases,
                             "fixed": v.fixed, "cvss": v.cvss, "summary": v.summary})
           for v in result.vulns]
    if result.reason:
        out.append(Finding("vulns", "vulns.not-checked", Severity.UNKNOWN, f"{name} {version}: {result.reason}",
                           file=file, location=location,
                           evidence={"package": name, "version": version, "reason": result.reason,
                                     "advisories": result.unchecked}))
    return out


def _message(name: str, version: str, v: Vuln) -> str:
    also = f" ({', '.join(v.aliases)})" if v.aliases else ""
    fix = f"fixed in {', '.join(v.fixed)}" if v.fixed else "no fixed version known"
    return f"{name} {version}: {v.id}{also} {fix}"

