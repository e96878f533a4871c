"""The policy as a pure function: one artifact's facts and findings in, a Decision out.

No I/O and a fixed ``now``, so both sides of the gap (and the tests, with a fixed clock) get
the same answer from the same inputs. Every rule that fires adds a reason; a waiver that matches
a reason (its id is the finding's rule or one of the advisory's aliases, its package glob
matches the artifact, and ``until`` is not past) turns that reason into an allow and is
recorded; an expired waiver is recorded as expired and changes nothing.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime
from typing import Any

from gapsync.model import Action, Decision, Finding, Severity
from gapsync.policies.schema import Policy
from gapsync.scanner.subject import ScanSubject


def _at_least(sev: Severity, threshold: Severity | None) -> bool:
    return threshold is not None and sev is not Severity.UNKNOWN and sev.rank >= threshold.rank


def _reason(rule: str, action: Action, message: str, finding: Finding | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"rule": rule, "action": action.value, "message": message}
    if finding is not None:
        r["finding"] = finding.rule
        r["ids"] = sorted({finding.rule, *finding.evidence.get("aliases", [])})
    return r


def license_allowed(expression: str, allow: tuple[str, ...], deny: tuple[str, ...]) -> bool:
    """OR: one acceptable choice is enough; AND: every part must be acceptable."""
    from license_expression import get_spdx_licensing

    licensing = get_spdx_licensing()
    deny_l = {d.lower() for d in deny}
    allow_l = {a.lower() for a in allow}

    def ok(node: Any) -> bool:  # a license_expression node (the library is untyped)
        if isinstance(node, licensing.OR):
            return any(ok(a) for a in node.args)
        if isinstance(node, licensing.AND):
            return all(ok(a) for a in node.args)
        key = str(getattr(node, "key", node)).lower()
        return key not in deny_l and (not allow_l or key in allow_l)

    try:
        return ok(licensing.parse(expression))
    except Exception:
        return False


NO_DATABASE = ("not checked for vulnerabilities: no advisory database (load one with 'gapsync advisories import FILE', "
               "or 'gapsync advisories update' where there is internet)")


def evaluate(policy: Policy, subject: ScanSubject, findings: list[Finding], *, license_spdx: str | None,
             vulns_checked: bool, now: datetime, stale: str | None = None) -> Decision:
    """``stale``: why the advisory database is older than the policy's ``advisories.max_age``
    (None when it is not, or when there is none)."""
    reasons: list[dict[str, Any]] = []
    name, version = subject.name, subject.version
    for b in policy.blocked:
        if b.matches(subject.kind, name, version):
            reasons.append(_reason("blocked", Action.BLOCK, f"{name} {version} is blocked by the policy"
                                   + (f": {b.reason}" if b.reason else "")))
    if policy.max_artifact_size and subject.size > policy.max_artifact_size:
        reasons.append(_reason("max_size.artifact", Action.BLOCK,
                               f"{subject.size} bytes, more than the policy's {policy.max_artifact_size}"))
    for sf in subject.files:
        if policy.max_file_size and sf.size > policy.max_file_size:
            reasons.append(_reason("max_size.file", Action.BLOCK, f"{sf.name}: {sf.size} bytes, more than {policy.max_file_size}"))
    if subject.kind in ("python", "oci") and not vulns_checked:
        reasons.append(_reason("vulnerabilities.no_database", policy.vuln_no_database, NO_DATABASE))
    if subject.kind in ("python", "oci") and vulns_checked and stale:
        reasons.append(_reason("advisories.stale", policy.advisories_stale, stale))
    for f in findings:
        if f.scanner == "vulns":
            if f.rule == "vulns.not-checked":
                reasons.append(_reason("vulnerabilities.not_checked", policy.vuln_not_checked, f.message, f))
            elif f.severity is Severity.UNKNOWN:
                reasons.append(_reason("vulnerabilities.unknown_severity", policy.vuln_unknown_severity, f.message, f))
            elif _at_least(f.severity, policy.vuln_block_at):
                reasons.append(_reason("vulnerabilities.block_at", Action.BLOCK, f"{f.severity.value}: {f.message}", f))
            elif _at_least(f.severity, policy.vuln_warn_at):
                reasons.append(_reason("vulnerabilities.warn_at", Action.WARN, f"{f.severity.value}: {f.message}", f))
        elif f.scanner == "model":
            if _at_least(f.severity, policy.model_block_at):
                reasons.append(_reason("models.block_at", Action.BLOCK, f"{f.severity.value}: {f.message}", f))
            elif _at_least(f.severity, policy.model_warn_at) or f.severity is Severity.UNKNOWN:
                reasons.append(_reason("models.warn_at", Action.WARN, f"{f.severity.value}: {f.message}", f))
        elif f.scanner == "license" and f.rule == "license.unknown" and subject.kind != "oci":
            reasons.append(_reason("licenses.unknown", policy.license_unknown, f.message, f))
    if subject.kind == "conda":
        reasons += _conda_reasons(policy, subject, findings)
    if subject.kind == "oci" and subject.meta.get("signatures") is not None:
        reasons += _signature_reasons(policy, subject)
    if license_spdx and (policy.license_allow or policy.license_deny):
        if not license_allowed(license_spdx, policy.license_allow, policy.license_deny):
            reasons.append(_reason("licenses.allow_deny", Action.BLOCK, f"license {license_spdx} is not allowed by the policy"))
    if subject.kind == "dataset":
        reasons += _dataset_reasons(policy, subject)
    if subject.kind == "model" and policy.model_required_formats:
        formats = set(subject.meta.get("formats") or [])
        if not formats & set(policy.model_required_formats):
            reasons.append(_reason("models.required_formats", Action.BLOCK,
                                   f"formats {sorted(formats) or 'none'}; the policy requires one of {list(policy.model_required_formats)}"))
    return _apply_waivers(policy, subject, reasons, now)


def _dataset_reasons(policy: Policy, subject: ScanSubject) -> list[dict[str, Any]]:
    """A dataset repo's loading script (``*.py``) is code that ``datasets`` would run to load it
    (older versions run it, newer ones refuse it): the policy decides (``datasets.loading_scripts``,
    default block); a waiver with id ``datasets.loading_script`` lets a reviewed one through."""
    scripts = sorted(f.name for f in subject.files if f.name.lower().endswith(".py"))
    if not scripts or policy.dataset_loading_scripts is Action.ALLOW:
        return []
    return [_reason("datasets.loading_script", policy.dataset_loading_scripts,
                    f"loading script {', '.join(scripts[:5])}{' ...' if len(scripts) > 5 else ''}: code that runs when the "
                    "dataset is loaded; waive datasets.loading_script for this dataset once the script is reviewed")]


def _conda_reasons(policy: Policy, subject: ScanSubject, findings: list[Finding]) -> list[dict[str, Any]]:
    """Where a conda package comes from, and what reading it found. A channel whose terms restrict
    mirroring (Anaconda's repository: its terms of service require a paid licence for commercial
    use, and mirroring it is such use) is blocked unless a waiver with id
    ``conda.channel.restricted`` records the licence or agreement."""
    out = []
    for url in subject.meta.get("channels") or []:
        bare = url.split("://", 1)[-1].rstrip("/")
        if policy.conda_channels_allow and not any(fnmatch.fnmatchcase(bare, g) for g in policy.conda_channels_allow):
            out.append(_reason("conda.channels.allow", Action.BLOCK, f"channel {url} is not in the policy's conda.channels.allow"))
        if any(fnmatch.fnmatchcase(bare, g) for g in policy.conda_channels_restricted):
            out.append(_reason("conda.channel.restricted", Action.BLOCK,
                               f"channel {url}: its terms restrict mirroring (conda.channels.restricted); "
                               "waive conda.channel.restricted once you have the right to mirror it"))
    for f in findings:
        if f.scanner == "conda":
            action = Action.BLOCK if f.severity.rank >= Severity.HIGH.rank else Action.WARN
            out.append(_reason("conda.package", action, f"{f.file}: {f.message}", f))
    return out


def _signature_reasons(policy: Policy, subject: ScanSubject) -> list[dict[str, Any]]:
    """``images.require_signature``: an image (not an artifact: charts, signatures) crosses only
    with a signature that names its digest and verifies under one of the policy's keys. What
    verified, under which key, is an allow reason (the report and the SBOM show it)."""
    from gapsync.scanner.artifacts.signatures import PublicKey, verify

    if subject.meta.get("artifact_type") or not policy.image_signature_keys:
        return []
    keys = [PublicKey.from_pem(p.encode()) for p in policy.image_signature_keys]
    found = subject.meta.get("signatures") or []
    ok, why = verify(str(subject.meta.get("digest")), found, keys)
    why = [*subject.meta.get("signature_problems", []), *why]
    if ok:
        return [_reason("images.signature", Action.ALLOW, f"signature verified with key {v['key']} ({v['source']})")
                for v in ok]
    if not policy.image_require_signature:
        return []
    if not found:
        return [_reason("images.require_signature", Action.BLOCK,
                        f"unsigned: no signature of {subject.meta.get('digest')} came with the image "
                        "(cosign tag sha256-<hex>.sig or a referrer)")]
    return [_reason("images.require_signature", Action.BLOCK, "no valid signature: " + "; ".join(why[:3]))]


def _apply_waivers(policy: Policy, subject: ScanSubject, reasons: list[dict[str, Any]], now: datetime) -> Decision:
    used: list[dict[str, Any]] = []
    today = now.date()
    for r in reasons:
        if r["action"] == Action.ALLOW.value:
            continue
        ids = set(r.get("ids") or []) | {r["rule"]}
        for w in policy.waivers:
            if w.id not in ids or not fnmatch.fnmatchcase(subject.name, w.package):
                continue
            if today > w.until:
                r["waiver_expired"] = w.to_dict()
                continue
            r["waived_from"] = r["action"]
            r["action"] = Action.ALLOW.value
            if w.to_dict() not in used:
                used.append(w.to_dict())
            break
    action = max((Action(r["action"]) for r in reasons), key=lambda a: a.rank, default=Action.ALLOW)
    return Decision(subject.key, action, tuple(reasons), tuple(used))
