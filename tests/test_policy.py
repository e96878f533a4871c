"""The policy: every rule, waivers that expire by themselves (fixed clock), and bad policy files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gapsync.errors import InputError
from gapsync.model import Action, Finding, Severity
from gapsync.policies.evaluate import evaluate
from gapsync.policies.schema import load_policy
from gapsync.scanner.subject import ScanSubject, SubjectFile

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def policy(tmp_path: Path, text: str):
    p = tmp_path / "policy.yaml"
    p.write_text(text)
    return load_policy(p)


def subject(kind="python", name="requests", version="2.19.0", size=1000, **meta):
    return ScanSubject(kind, name, version, [SubjectFile("f.whl", "a" * 64, size, Path("/dev/null"))], meta)


def vuln(rule="PYSEC-2018-28", sev=Severity.HIGH, aliases=("CVE-2018-18074",)):
    return Finding("vulns", rule, sev, f"requests 2.19.0: {rule}", "f.whl", evidence={"aliases": list(aliases)})


def decide(p, s=None, findings=(), license_spdx="MIT", vulns_checked=True, now=NOW):
    return evaluate(p, s or subject(), list(findings), license_spdx=license_spdx, vulns_checked=vulns_checked, now=now)


def test_shipped_policies_load():
    assert load_policy(None).name == "default" and load_policy("strict").name == "strict"


@pytest.mark.parametrize("sev, expected", [(Severity.CRITICAL, Action.BLOCK), (Severity.HIGH, Action.BLOCK),
                                           (Severity.MEDIUM, Action.WARN), (Severity.LOW, Action.ALLOW)])
def test_vulnerability_thresholds(tmp_path, sev, expected):
    p = policy(tmp_path, "vulnerabilities: {block_at: high, warn_at: medium}\n")
    d = decide(p, findings=[vuln(sev=sev)])
    assert d.action is expected
    if expected is not Action.ALLOW:
        assert d.reasons[0]["finding"] == "PYSEC-2018-28"


def test_unknown_severity_not_checked_and_no_database_are_decided_explicitly(tmp_path):
    p = policy(tmp_path, "vulnerabilities: {unknown_severity: block, not_checked: warn, no_database: block}\n")
    assert decide(p, findings=[vuln(sev=Severity.UNKNOWN)]).action is Action.BLOCK
    nc = Finding("vulns", "vulns.not-checked", Severity.UNKNOWN, "version 2.0-final is not PEP 440")
    d = decide(p, findings=[nc])
    assert d.action is Action.WARN and d.reasons[0]["rule"] == "vulnerabilities.not_checked"
    d = decide(p, vulns_checked=False)
    assert d.action is Action.BLOCK and d.reasons[0]["rule"] == "vulnerabilities.no_database"
    assert decide(p, s=subject(kind="model", name="org/m"), vulns_checked=False).action is Action.ALLOW  # models have no advisories


def test_licenses_allow_deny_and_unknown(tmp_path):
    p = policy(tmp_path, "licenses: {allow: [MIT, Apache-2.0], deny: [AGPL-3.0-only], unknown: block}\n")
    assert decide(p, license_spdx="MIT").action is Action.ALLOW
    assert decide(p, license_spdx="MIT OR GPL-3.0-only").action is Action.ALLOW  # one acceptable choice
    assert decide(p, license_spdx="GPL-3.0-only").action is Action.BLOCK  # not in allow
    assert decide(p, license_spdx="MIT AND AGPL-3.0-only").action is Action.BLOCK
    unknown = Finding("license", "license.unknown", Severity.MEDIUM, "no license")
    d = decide(p, findings=[unknown], license_spdx=None)
    assert d.action is Action.BLOCK and d.reasons[0]["rule"] == "licenses.unknown"


def test_blocked_names_and_version_ranges(tmp_path):
    p = policy(tmp_path, "blocked:\n  - {kind: python, name: pyyaml, versions: '<5.4', reason: CVE-2020-14343}\n"
                         "  - {kind: oci, name: 'docker.io/library/*'}\n  - {kind: model, name: 'evil/*'}\n")
    assert decide(p, s=subject(name="pyyaml", version="5.3.1")).action is Action.BLOCK
    assert decide(p, s=subject(name="pyyaml", version="5.4")).action is Action.ALLOW
    assert decide(p, s=subject(name="pyyaml", version="5.3rc1")).action is Action.BLOCK  # pre-releases are versions too
    assert decide(p, s=subject(name="pyyaml", version="5.4rc1")).action is Action.ALLOW  # PEP 440: <5.4 excludes 5.4 pre-releases
    assert decide(p, s=subject(kind="oci", name="docker.io/library/python", version="3.12")).action is Action.BLOCK
    assert decide(p, s=subject(kind="oci", name="ghcr.io/org/app", version="1")).action is Action.ALLOW
    assert decide(p, s=subject(kind="model", name="evil/model", version="main")).action is Action.BLOCK


def test_model_findings_formats_and_sizes(tmp_path):
    p = policy(tmp_path, "models: {block_at: high, warn_at: medium, required_formats: [safetensors]}\n"
                         "max_size: {artifact: 10KB, file: 2KiB}\n")
    m = subject(kind="model", name="org/m", version="main", size=100, formats=["pytorch"])
    unsafe = Finding("model", "pickle.global.unsafe", Severity.CRITICAL, "os.system", "pytorch_model.bin", "archive/data.pkl", 66)
    d = decide(p, s=m, findings=[unsafe])
    assert d.action is Action.BLOCK and {r["rule"] for r in d.reasons} == {"models.block_at", "models.required_formats"}
    ok = subject(kind="model", name="org/m", version="main", size=100, formats=["safetensors"])
    assert decide(p, s=ok).action is Action.ALLOW
    assert decide(p, s=subject(kind="model", name="org/m", version="main", size=4096, formats=["safetensors"])).action is Action.BLOCK


def test_waivers_apply_by_id_or_alias_and_expire_by_themselves(tmp_path):
    p = policy(tmp_path, "vulnerabilities: {block_at: high}\nwaivers:\n"
                         "  - {id: CVE-2018-18074, package: requests, until: 2026-12-31, reason: not reachable, approved_by: alice}\n")
    d = decide(p, findings=[vuln()])
    assert d.action is Action.ALLOW and d.waivers[0]["approved_by"] == "alice"
    assert d.reasons[0]["waived_from"] == "block"
    later = decide(p, findings=[vuln()], now=datetime(2027, 1, 1, tzinfo=UTC))
    assert later.action is Action.BLOCK and later.reasons[0]["waiver_expired"]["id"] == "CVE-2018-18074"
    assert decide(p, s=subject(name="urllib3"), findings=[vuln()]).action is Action.BLOCK  # another package
    assert decide(p, findings=[vuln(rule="PYSEC-2099-1", aliases=())]).action is Action.BLOCK  # another advisory


def test_stricter_air_side_policy_blocks_what_the_dmz_allowed(tmp_path):
    f = [vuln(sev=Severity.MEDIUM)]
    assert decide(load_policy("default"), findings=f).action is Action.WARN
    assert decide(load_policy("strict"), findings=f, license_spdx="MIT").action is Action.BLOCK


@pytest.mark.parametrize("text, where, words", [
    ("vulnerabilities:\n  block_at: severe\n", ":2:", ["vulnerabilities.block_at", "severe"]),
    ("licenses:\n  alow: [MIT]\n", ":2:", ["licenses.alow", "unknown key"]),
    ("waivers:\n  - {id: X, package: p, until: someday, reason: r, approved_by: a}\n", ":2:", ["waivers[0].until"]),
    ("waivers:\n  - {id: X, package: p, until: 2026-01-01, reason: r}\n", ":2:", ["approved_by"]),
    ("blocked:\n  - {kind: python, name: x, versions: '<<1'}\n", ":2:", ["versions"]),
    ("max_size:\n  file: lots\n", ":2:", ["max_size.file"]),
    ("models: [1]\n", ":1:", ["models"]),
    ("advisories:\n  max_age: a month\n", ":2:", ["advisories.max_age", "30d"]),
    ("advisories:\n  max_age: 0d\n", ":2:", ["advisories.max_age"]),
    ("advisories:\n  stale: shrug\n", ":2:", ["advisories.stale", "allow, warn or block"]),
    ("advisories:\n  maxage: 30d\n", ":2:", ["advisories.maxage", "unknown key"]),
])
def test_bad_policy_names_file_line_and_key(tmp_path, text, where, words):
    p = tmp_path / "policy.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        load_policy(p)
    msg = str(e.value)
    assert f"{p}{where}" in msg, msg
    for w in words:
        assert w in msg, msg


def test_the_shipped_default_fails_closed_without_a_database(tmp_path):
    """Fail closed: the default policy, and any policy file that does not say otherwise, blocks
    a package or an image that could not be checked; the reason names both ways to get one."""
    for p in (load_policy(None), policy(tmp_path, "name: mine\n")):
        d = decide(p, vulns_checked=False)
        assert d.action is Action.BLOCK and d.reasons[0]["rule"] == "vulnerabilities.no_database"
        assert "gapsync advisories import" in d.reasons[0]["message"]
        assert "gapsync advisories update" in d.reasons[0]["message"]
        assert decide(p, s=subject(kind="oci", name="r/img", version="1"), vulns_checked=False).action is Action.BLOCK


def test_advisories_max_age_and_stale(tmp_path):
    from datetime import timedelta

    assert load_policy(None).advisories_max_age == timedelta(days=30)
    assert load_policy(None).advisories_stale is Action.WARN
    p = policy(tmp_path, "advisories: {max_age: 2w, stale: block}\n")
    assert p.advisories_max_age == timedelta(weeks=2)
    d = evaluate(p, subject(), [], license_spdx="MIT", vulns_checked=True, now=NOW, stale="40 days old")
    assert d.action is Action.BLOCK and d.reasons[0]["rule"] == "advisories.stale"
    # models have no advisories: a stale database says nothing about them
    d = evaluate(p, subject(kind="model", name="org/m"), [], license_spdx="MIT", vulns_checked=True, now=NOW,
                 stale="40 days old")
    assert d.action is Action.ALLOW
    assert policy(tmp_path, "advisories: {max_age: none}\n").advisories_max_age is None
    assert policy(tmp_path, "advisories: {max_age: 12h}\n").advisories_max_age == timedelta(hours=12)
