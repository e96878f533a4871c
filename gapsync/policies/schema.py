"""The policy file: what may cross. Loaded strictly (unknown keys are errors, with file, line and
key), so a typo never quietly weakens a policy. Field by field in docs/policy.md.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from gapsync.model import Action, Severity
from gapsync.yamlfile import Located, check_keys, expect, load_located, read_text

SHIPPED = Path(__file__).parent
SEVERITIES = {s.value: s for s in Severity if s is not Severity.UNKNOWN} | {"none": None}
ACTIONS = {a.value: a for a in Action}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.I)
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


@dataclass(frozen=True)
class Blocked:
    kind: str  # python | oci | model | *
    name: str  # glob on the PEP 503 / image / model name
    versions: SpecifierSet | None = None  # python only: a PEP 440 range
    reason: str = ""

    def matches(self, kind: str, name: str, version: str) -> bool:
        if self.kind not in ("*", kind) or not fnmatch.fnmatchcase(name, self.name):
            return False
        if self.versions is None:
            return True
        try:
            return self.versions.contains(version, prereleases=True)
        except Exception:
            return True  # a version that cannot be compared is treated as inside the range


@dataclass(frozen=True)
class Waiver:
    id: str  # an advisory id or alias, a rule id (pickle.global.unsafe, license.unknown, blocked, ...)
    package: str  # a glob on the artifact name
    until: date
    reason: str
    approved_by: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "package": self.package, "until": self.until.isoformat(), "reason": self.reason,
                "approved_by": self.approved_by}


@dataclass(frozen=True)
class Policy:
    name: str
    source: str  # the file it came from
    sha256: str
    vuln_block_at: Severity | None = Severity.CRITICAL
    vuln_warn_at: Severity | None = Severity.LOW
    vuln_unknown_severity: Action = Action.WARN
    vuln_not_checked: Action = Action.WARN
    vuln_no_database: Action = Action.BLOCK  # fail closed: what could not be checked does not cross unseen
    # advisories: the database's newest advisory older than this is "stale" (None: never)
    advisories_max_age: timedelta | None = timedelta(days=30)
    advisories_stale: Action = Action.WARN
    license_allow: tuple[str, ...] = ()
    license_deny: tuple[str, ...] = ()
    license_unknown: Action = Action.WARN
    model_block_at: Severity | None = Severity.HIGH
    model_warn_at: Severity | None = Severity.MEDIUM
    model_required_formats: tuple[str, ...] = ()
    scan_pickles_in_packages: bool = False
    # models.scan_budget: overrides of gapsync.scanner.budget.BudgetLimits, as (field, value) pairs
    model_scan_budget: tuple[tuple[str, Any], ...] = ()
    # datasets.loading_scripts: what a Hub dataset repo with a loading script (*.py: code) gets
    dataset_loading_scripts: Action = Action.BLOCK
    # conda: channel URLs (without the scheme) as globs; an empty allow list allows any channel
    conda_channels_allow: tuple[str, ...] = ()
    # terms restrict mirroring: block unless waived (a policy without a conda section gets these too)
    conda_channels_restricted: tuple[str, ...] = ("repo.anaconda.com/*", "repo.continuum.io/*", "conda.anaconda.org/anaconda",
                                                  "conda.anaconda.org/main", "conda.anaconda.org/r",
                                                  "conda.anaconda.org/msys2", "conda.anaconda.org/free")
    blocked: tuple[Blocked, ...] = ()
    max_artifact_size: int | None = None
    max_file_size: int | None = None
    waivers: tuple[Waiver, ...] = field(default_factory=tuple)
    # images.require_signature: {keys: [...]}: an image crosses only with a signature that verifies
    # under one of these public keys (PEM text, ECDSA P-256 or Ed25519; gapsync/scanner/artifacts/signatures.py)
    image_require_signature: bool = False
    image_signature_keys: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "sha256": self.sha256}


# models.scan_budget: the scanner's budgets per artifact (gapsync/scanner/budget.py, docs/policy.md)
_BUDGET_INTS = ("parse_steps", "entries", "decompressed_ratio", "depth", "pickle_objects")
_BUDGET_SIZES = ("decompressed_bytes",)
_BUDGET_SECONDS = ("cpu_seconds", "cpu_seconds_per_gib")


def _scan_budget(loc: Located, value: Any) -> tuple[tuple[str, Any], ...]:
    key = ("models", "scan_budget")
    expect(loc, key, value, dict, "a mapping of budgets")
    check_keys(loc, key, value, set(_BUDGET_INTS + _BUDGET_SIZES + _BUDGET_SECONDS))
    out: list[tuple[str, int | float]] = []
    for name, v in value.items():
        if name in _BUDGET_SIZES:
            try:
                out.append((name, parse_size(v)))
            except ValueError as e:
                raise loc.error((*key, name), str(e)) from e
        elif name in _BUDGET_INTS:
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise loc.error((*key, name), f"{v!r}: expected a positive whole number")
            out.append((name, v))
        else:
            if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                raise loc.error((*key, name), f"{v!r}: expected a positive number of seconds")
            out.append((name, float(v)))
    return tuple(sorted(out))


def parse_size(value: Any) -> int:
    if isinstance(value, int) and value > 0:
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ValueError(f"{value!r}: expected a size like 500MB or 10GiB")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "b").lower()])


def parse_duration(value: Any) -> timedelta | None:
    """``12h``, ``30d``, ``2w``; ``none`` (or YAML null) for no limit."""
    if value is None or str(value).strip().lower() == "none":
        return None
    m = _DURATION_RE.match(str(value))
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"{value!r}: expected a duration like 12h, 30d or 2w, or none")
    n = int(m.group(1))
    return {"h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n)}[m.group(2)]


def shipped(name: str) -> Path:
    """``default`` and ``strict`` name the policies shipped in gapsync/policies/."""
    return SHIPPED / f"{name}.yaml"


def load_policy(spec: str | Path | None) -> Policy:
    """A path, or the name of a shipped policy (``default``, ``strict``); None means ``default``."""
    path = Path(spec) if spec is not None and (Path(spec).exists() or "/" in str(spec) or str(spec).endswith(".yaml")) \
        else shipped(str(spec or "default"))
    text = read_text(path, "policy")
    data, loc = load_located(path, text)
    return _parse(data, loc, path, hashlib.sha256(text.encode()).hexdigest())


def _severity(loc: Located, keys: tuple[str | int, ...], value: Any) -> Severity | None:
    if value is None or str(value).lower() not in SEVERITIES:
        raise loc.error(keys, f"{value!r}: expected one of {', '.join(SEVERITIES)}")
    return SEVERITIES[str(value).lower()]


def _action(loc: Located, keys: tuple[str | int, ...], value: Any) -> Action:
    if str(value).lower() not in ACTIONS:
        raise loc.error(keys, f"{value!r}: expected allow, warn or block")
    return ACTIONS[str(value).lower()]


def _strings(loc: Located, keys: tuple[str | int, ...], value: Any) -> tuple[str, ...]:
    expect(loc, keys, value, list, "a list of strings")
    for i, v in enumerate(value):
        expect(loc, (*keys, i), v, str, "a string")
    return tuple(value)


def _parse(data: Any, loc: Located, path: Path, digest: str) -> Policy:
    if not isinstance(data, dict):
        raise loc.error((), "expected a mapping (see docs/policy.md)")
    data = dict(data)
    conda_section = data.pop("conda", None)  # parsed by _parse_conda, at the end
    images_section = data.pop("images", None)  # parsed by _parse_images, at the end
    check_keys(loc, (), data, {"name", "vulnerabilities", "advisories", "licenses", "models", "datasets", "blocked",
                               "max_size", "waivers"})
    kw: dict[str, Any] = {"name": str(data.get("name", path.stem)), "source": str(path), "sha256": digest}
    v = data.get("vulnerabilities") or {}
    expect(loc, ("vulnerabilities",), v, dict, "a mapping")
    check_keys(loc, ("vulnerabilities",), v, {"block_at", "warn_at", "unknown_severity", "not_checked", "no_database"})
    for key, attr in (("block_at", "vuln_block_at"), ("warn_at", "vuln_warn_at")):
        if key in v:
            kw[attr] = _severity(loc, ("vulnerabilities", key), v[key])
    for key, attr in (("unknown_severity", "vuln_unknown_severity"), ("not_checked", "vuln_not_checked"),
                      ("no_database", "vuln_no_database")):
        if key in v:
            kw[attr] = _action(loc, ("vulnerabilities", key), v[key])
    _parse_advisories(data, loc, kw)
    lic = data.get("licenses") or {}
    expect(loc, ("licenses",), lic, dict, "a mapping")
    check_keys(loc, ("licenses",), lic, {"allow", "deny", "unknown"})
    if "allow" in lic:
        kw["license_allow"] = _strings(loc, ("licenses", "allow"), lic["allow"])
    if "deny" in lic:
        kw["license_deny"] = _strings(loc, ("licenses", "deny"), lic["deny"])
    if "unknown" in lic:
        kw["license_unknown"] = _action(loc, ("licenses", "unknown"), lic["unknown"])
    mo = data.get("models") or {}
    expect(loc, ("models",), mo, dict, "a mapping")
    check_keys(loc, ("models",), mo, {"block_at", "warn_at", "required_formats", "scan_pickles_in_packages",
                                      "scan_budget"})
    for key, attr in (("block_at", "model_block_at"), ("warn_at", "model_warn_at")):
        if key in mo:
            kw[attr] = _severity(loc, ("models", key), mo[key])
    if "required_formats" in mo:
        kw["model_required_formats"] = _strings(loc, ("models", "required_formats"), mo["required_formats"])
    if "scan_pickles_in_packages" in mo:
        kw["scan_pickles_in_packages"] = expect(loc, ("models", "scan_pickles_in_packages"), mo["scan_pickles_in_packages"],
                                                bool, "true or false")
    if "scan_budget" in mo:
        kw["model_scan_budget"] = _scan_budget(loc, mo["scan_budget"])
    ds = data.get("datasets") or {}
    expect(loc, ("datasets",), ds, dict, "a mapping {loading_scripts}")
    check_keys(loc, ("datasets",), ds, {"loading_scripts"})
    if "loading_scripts" in ds:
        kw["dataset_loading_scripts"] = _action(loc, ("datasets", "loading_scripts"), ds["loading_scripts"])
    blocked = []
    for i, b in enumerate(expect(loc, ("blocked",), data.get("blocked") or [], list, "a list")):
        k = ("blocked", i)
        expect(loc, k, b, dict, "a mapping {kind, name, versions, reason}")
        check_keys(loc, k, b, {"kind", "name", "versions", "reason"})
        kind = b.get("kind", "*")
        if kind not in ("python", "oci", "model", "dataset", "conda", "*"):
            raise loc.error((*k, "kind"), f"{kind!r}: expected python, oci, model, dataset, conda or *")
        name = expect(loc, (*k, "name"), b.get("name"), str, "a name or glob")
        versions = None
        if b.get("versions") is not None:
            try:
                versions = SpecifierSet(str(b["versions"]))
            except InvalidSpecifier as e:
                raise loc.error((*k, "versions"), f"{b['versions']!r}: not a PEP 440 range ({e})") from e
        blocked.append(Blocked(kind, name.lower() if kind == "python" else name, versions, str(b.get("reason", ""))))
    kw["blocked"] = tuple(blocked)
    ms = data.get("max_size") or {}
    expect(loc, ("max_size",), ms, dict, "a mapping {artifact, file}")
    check_keys(loc, ("max_size",), ms, {"artifact", "file"})
    for key, attr in (("artifact", "max_artifact_size"), ("file", "max_file_size")):
        if key in ms:
            try:
                kw[attr] = parse_size(ms[key])
            except ValueError as e:
                raise loc.error(("max_size", key), str(e)) from e
    waivers = []
    for i, w in enumerate(expect(loc, ("waivers",), data.get("waivers") or [], list, "a list")):
        k = ("waivers", i)
        expect(loc, k, w, dict, "a mapping {id, package, until, reason, approved_by}")
        check_keys(loc, k, w, {"id", "package", "until", "reason", "approved_by"})
        for req in ("id", "package", "until", "reason", "approved_by"):
            if req not in w:
                raise loc.error(k, f"a waiver needs {req}")
        until = w["until"]
        if isinstance(until, str):
            try:
                until = date.fromisoformat(until)
            except ValueError as e:
                raise loc.error((*k, "until"), f"{until!r}: expected a date like 2026-12-31") from e
        if not isinstance(until, date):
            raise loc.error((*k, "until"), "expected a date like 2026-12-31")
        waivers.append(Waiver(str(w["id"]), str(w["package"]), until, str(w["reason"]), str(w["approved_by"])))
    kw["waivers"] = tuple(waivers)
    _parse_conda(conda_section, loc, kw)
    _parse_images(images_section, loc, kw, path)
    return Policy(**kw)


def _parse_images(im: Any, loc: Located, kw: dict[str, Any], path: Path) -> None:
    """``images: {require_signature: {keys: [FILE.pub or PEM text, ...]}}`` (false: not required).
    Key files are read here (relative to the policy file), so the keys are fixed with the policy."""
    from gapsync.scanner.artifacts.signatures import KeyError_, PublicKey

    im = im or {}
    expect(loc, ("images",), im, dict, "a mapping {require_signature}")
    check_keys(loc, ("images",), im, {"require_signature"})
    rs = im.get("require_signature", False)
    if rs is False:
        return
    k = ("images", "require_signature")
    expect(loc, k, rs, dict, "false, or a mapping {keys: [public key files or PEM]}")
    check_keys(loc, k, rs, {"keys"})
    pems = []
    for i, key in enumerate(expect(loc, (*k, "keys"), rs.get("keys"), list, "a list of public keys")):
        expect(loc, (*k, "keys", i), key, str, "a public key file or PEM text")
        if "-----BEGIN" in key:
            pem = key.encode()
        else:
            f = (path.parent / key)
            if not f.is_file() or f.is_symlink() or f.stat().st_size > 64 * 1024:
                raise loc.error((*k, "keys", i), f"{key!r}: not a regular file of a public key")
            pem = f.read_bytes()
        try:
            PublicKey.from_pem(pem)
        except KeyError_ as e:
            raise loc.error((*k, "keys", i), f"{key[:60]!r}: {e}") from None
        pems.append(pem.decode())
    if not pems:
        raise loc.error((*k, "keys"), "name at least one public key")
    kw["image_require_signature"] = True
    kw["image_signature_keys"] = tuple(pems)


def _parse_conda(co: Any, loc: Located, kw: dict[str, Any]) -> None:
    """``conda: {channels: {allow: [...], restricted: [...]}}``: channel URLs (scheme left out)
    as globs, e.g. ``conda.anaconda.org/conda-forge``, ``repo.anaconda.com/*``."""
    co = co or {}
    expect(loc, ("conda",), co, dict, "a mapping {channels}")
    check_keys(loc, ("conda",), co, {"channels"})
    ch = co.get("channels") or {}
    expect(loc, ("conda", "channels"), ch, dict, "a mapping {allow, restricted}")
    check_keys(loc, ("conda", "channels"), ch, {"allow", "restricted"})
    for key, attr in (("allow", "conda_channels_allow"), ("restricted", "conda_channels_restricted")):
        if key in ch:
            kw[attr] = tuple(re.sub(r"^[a-z]+://", "", v).rstrip("/")
                             for v in _strings(loc, ("conda", "channels", key), ch[key] or []))


def _parse_advisories(data: dict[str, Any], loc: Located, kw: dict[str, Any]) -> None:
    """``advisories: {max_age: 30d, stale: warn}``: how old the advisory database may be."""
    adv = data.get("advisories") or {}
    expect(loc, ("advisories",), adv, dict, "a mapping {max_age, stale}")
    check_keys(loc, ("advisories",), adv, {"max_age", "stale"})
    if "max_age" in adv:
        try:
            kw["advisories_max_age"] = parse_duration(adv["max_age"])
        except ValueError as e:
            raise loc.error(("advisories", "max_age"), str(e)) from e
    if "stale" in adv:
        kw["advisories_stale"] = _action(loc, ("advisories", "stale"), adv["stale"])
