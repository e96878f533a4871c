"""Vulnerability matching: every rule of the advisory README (gapsync/demo/data/README.md) on hand-made OSV records, the 8
worked examples on the real snapshot, real wheels from PyPI end to end, and OCI layers."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from gapsync.advisories import AdvisoryDB
from gapsync.model import Severity
from gapsync.scanner.artifacts.dist_info import installed_dists, parse_metadata
from gapsync.scanner.artifacts.vulns import scan_subject
from gapsync.scanner.subject import ScanSubject, SubjectFile

ROOT = Path(__file__).resolve().parents[2]
from tests.support.data import ADVISORIES_DIR  # noqa: E402

SNAPSHOT = ADVISORIES_DIR / "pypa-advisory-db.osv.jsonl.gz"
EXAMPLES = json.loads((ADVISORIES_DIR / "examples.json").read_text())
WHEEL_CACHE = Path(os.environ.get("GAPSYNC_TEST_CACHE", Path.home() / ".cache" / "gapsync-tests")) / "wheels"


def rec(adv_id: str, name: str = "demo", events: list[dict] | None = None, versions: list[str] | None = None,
        aliases: list[str] | None = None, **extra) -> dict:
    """A minimal OSV record for one PyPI package (events=None: no ECOSYSTEM range)."""
    aff: dict = {"package": {"name": name, "ecosystem": "PyPI"}}
    if events is not None:
        aff["ranges"] = [{"type": "ECOSYSTEM", "events": events}]
    if versions is not None:
        aff["versions"] = versions
    return {"id": adv_id, "modified": "2024-01-01T00:00:00Z", "details": f"{adv_id} details\nmore",
            "aliases": aliases or [], "affected": [aff], **extra}


def ids(db: AdvisoryDB, name: str, version: str) -> set[str]:
    return {v.id for v in db.match(name, version).vulns}


def status(db: AdvisoryDB, name: str, version: str) -> str:
    return db.match(name, version).status


# --- ranges ---------------------------------------------------------------------------------


def test_unsorted_events_are_walked_in_version_order():
    # urllib3 PYSEC-2023-192 lists the 2.x branch before the 1.x one
    db = AdvisoryDB([rec("PYSEC-1", events=[{"introduced": "2.0.0"}, {"fixed": "2.0.6"},
                                            {"introduced": "0"}, {"fixed": "1.26.17"}])])
    assert db.match("demo", "1.26.16").vulns[0].fixed == ["1.26.17"]
    assert db.match("demo", "2.0.5").vulns[0].fixed == ["2.0.6"]
    assert db.match("demo", "2.0.0").status == "affected"  # equals an introduced
    for clean in ("1.26.17", "1.27", "2.0.6", "3.0"):
        assert status(db, "demo", clean) == "clean", clean


def test_branch_restarting_at_the_previous_fix():
    # pyspark PYSEC-2023-72: [0,3.1.1) [3.2.0,3.2.2) [3.1.1,3.2.0); 3.2.0 is affected
    db = AdvisoryDB([rec("PYSEC-1", events=[{"introduced": "0"}, {"fixed": "3.1.1"}, {"introduced": "3.2.0"},
                                            {"fixed": "3.2.2"}, {"introduced": "3.1.1"}, {"fixed": "3.2.0"}])])
    assert db.match("demo", "3.2.0").vulns[0].fixed == ["3.2.2"]
    assert db.match("demo", "3.1.1").vulns[0].fixed == ["3.2.0"]
    assert status(db, "demo", "3.2.2") == "clean"


def test_introduced_zero_is_minus_infinity_and_pre_releases_count():
    db = AdvisoryDB([rec("PYSEC-1", events=[{"introduced": "0"}, {"fixed": "2.0"}]),
                     rec("PYSEC-2", name="other", events=[{"introduced": "0.0"}, {"fixed": "2.0"}])])
    for v in ("0.0.0b0", "0.0.0.dev1", "1.9.dev0", "2.0rc1", "2.0.0a1", "0!1.5", "1.0+local"):
        assert ids(db, "demo", v) == {"PYSEC-1"}, v
    for v in ("2.0", "2.0.0", "2.0.post1", "2.0+local", "1!0.1"):
        assert status(db, "demo", v) == "clean", v
    # "0.0" is a real version, not minus infinity: 0.0.0b0 is below it
    assert status(db, "other", "0.0.0b0") == "clean"
    assert ids(db, "other", "0.0") == {"PYSEC-2"}


def test_last_affected_is_inclusive_and_has_no_fix():
    db = AdvisoryDB([rec("PYSEC-1", events=[{"introduced": "0"}, {"last_affected": "1.11.0"}])])
    v = db.match("demo", "1.11.0").vulns[0]
    assert v.fixed == []
    assert status(db, "demo", "1.11.0.post1") == "clean"
    assert status(db, "demo", "1.11.1") == "clean"


def test_limit_bounds_an_open_range():
    db = AdvisoryDB([rec("PYSEC-1", events=[{"introduced": "1.0"}, {"limit": "2.0"}]),
                     rec("PYSEC-2", name="star", events=[{"introduced": "1.0"}, {"limit": "*"}])])
    assert ids(db, "demo", "1.5") == {"PYSEC-1"}
    assert status(db, "demo", "2.0") == "clean" and status(db, "demo", "0.9") == "clean"
    assert ids(db, "star", "99") == {"PYSEC-2"}


def test_open_ended_range_affects_every_later_release():
    db = AdvisoryDB([rec("PYSEC-1", events=[{"introduced": "1.2"}])])
    assert db.match("demo", "999.0").vulns[0].fixed == []
    assert status(db, "demo", "1.1") == "clean"


def test_fix_versions_are_those_of_the_installed_branch():
    # Trivy #2227 listed every fix of a multi-branch range
    db = AdvisoryDB([rec("PYSEC-1", events=[{"introduced": "0"}, {"fixed": "2.2.3"}, {"introduced": "2.3.0"},
                                            {"fixed": "2.3.2"}, {"introduced": "3.0.0"}, {"fixed": "3.1.3"}])])
    assert db.match("demo", "2.3.1").vulns[0].fixed == ["2.3.2"]
    assert db.match("demo", "3.1.2").vulns[0].fixed == ["3.1.3"]
    assert status(db, "demo", "3.1.3") == "clean" and status(db, "demo", "2.2.5") == "clean"


def test_git_ranges_are_ignored_even_when_they_come_first():
    r = rec("PYSEC-1", events=[{"introduced": "0"}, {"fixed": "1.5"}])
    r["affected"][0]["ranges"].insert(0, {"type": "GIT", "repo": "https://example.org/x",
                                          "events": [{"introduced": "0"}, {"fixed": "abcdef123"}]})
    git_only = rec("PYSEC-2", name="gitonly")
    git_only["affected"][0]["ranges"] = [{"type": "GIT", "repo": "r", "events": [{"introduced": "0"}]}]
    db = AdvisoryDB([r, git_only])
    assert ids(db, "demo", "1.4") == {"PYSEC-1"} and status(db, "demo", "1.5") == "clean"
    # nothing to compare with: not-checked, never clean
    res = db.match("gitonly", "1.0")
    assert res.status == "not-checked" and res.unchecked == ["PYSEC-2"] and "no ECOSYSTEM range" in res.reason


# --- versions lists and versions that are not PEP 440 ---------------------------------------


def test_versions_list_is_matched_as_strings_and_parsed():
    db = AdvisoryDB([rec("PYSEC-1", versions=["1.0", "2015.04.28", "3.1.0.rc1", "0.1-bulbasaur"])])
    for v in ("1.0", "1", "1.0.0", "2015.4.28", "2015.04.28", "3.1rc1", "0.1-bulbasaur"):
        assert ids(db, "demo", v) == {"PYSEC-1"}, v
    for v in ("1.0.post1", "1.1", "2015.4.29"):
        assert status(db, "demo", v) == "clean", v


def test_listed_version_outside_the_range_is_affected_with_the_next_fix():
    # gevent PYSEC-2023-177 lists its own fix version 23.9.0
    db = AdvisoryDB([rec("PYSEC-1", events=[{"introduced": "0"}, {"fixed": "23.9.0"}], versions=["23.9.0"])])
    assert db.match("demo", "23.9.0").status == "affected"
    assert db.match("demo", "22.0").vulns[0].fixed == ["23.9.0"]


def test_version_that_is_not_pep440_is_never_clean():
    db = AdvisoryDB([rec("PYSEC-1", events=[{"introduced": "0"}, {"fixed": "2.1.1"}],
                         versions=["2.0.0-final", "2.1.0"])])
    hit = db.match("demo", "2.0.0-final")
    assert hit.status == "affected" and [v.id for v in hit.vulns] == ["PYSEC-1"] and hit.reason
    miss = db.match("demo", "2.0.0-custom")
    assert miss.status == "not-checked" and miss.vulns == [] and miss.unchecked == ["PYSEC-1"]
    assert "not PEP 440" in miss.reason
    assert db.match("unknown-package", "weird version").status == "clean"  # no advisory names it: nothing to miss
    assert db.match("unknown-package", "1.0").status == "clean"


def test_range_bound_that_is_not_pep440_makes_the_advisory_not_checked():
    # steam PYSEC-2019-125 has fixed: "2019-09-12"
    db = AdvisoryDB([rec("PYSEC-1", events=[{"introduced": "0"}, {"fixed": "2019-09-12"}], versions=["0.5"])])
    res = db.match("demo", "1.0")
    assert res.status == "not-checked" and res.unchecked == ["PYSEC-1"] and "2019-09-12" in res.reason
    assert db.match("demo", "0.5").status == "affected"  # the list still answers


# --- withdrawn, names, aliases --------------------------------------------------------------


def test_withdrawn_advisories_are_never_reported():
    db = AdvisoryDB([rec("PYSEC-1", events=[{"introduced": "0"}], withdrawn="2023-01-01T00:00:00Z"),
                     rec("PYSEC-2", events=[{"introduced": "0"}, {"fixed": "1.0"}])])
    assert ids(db, "demo", "0.5") == {"PYSEC-2"}
    assert status(db, "demo", "5.0") == "clean"
    assert db.info()["withdrawn"] == 1 and db.info()["advisories"] == 2


def test_names_are_canonicalized_on_both_sides():
    db = AdvisoryDB([rec("PYSEC-2020-341", name="jw.util", events=[{"introduced": "0"}, {"fixed": "2.3"}]),
                     rec("PYSEC-2", name="Jupyter_Server", events=[{"introduced": "0"}, {"fixed": "2.7.2"}])])
    for name in ("jw.util", "jw-util", "JW_Util", "jw__util"):
        assert ids(db, name, "2.2") == {"PYSEC-2020-341"}, name
    assert ids(db, "jupyter-server", "2.7.1") == ids(db, "JUPYTER.server", "2.7.1") == {"PYSEC-2"}
    assert "jw-util" in db.packages()


def test_aliases_are_grouped_transitively_within_one_package():
    ev = [{"introduced": "0"}, {"fixed": "9"}]
    db = AdvisoryDB([
        rec("PYSEC-2021-104", events=ev, aliases=["CVE-1", "GHSA-x"]),
        rec("PYSEC-2021-88", events=ev, aliases=["CVE-1"]),
        rec("GHSA-y", events=ev, aliases=["GHSA-x", "CVE-2"]),  # joins through GHSA-x
        rec("PYSEC-2021-99", events=ev, aliases=["CVE-3"]),  # unrelated
        rec("PYSEC-2021-100", name="other", events=ev, aliases=["CVE-1"]),  # same CVE, other package
    ])
    res = db.match("demo", "1.0")
    assert [v.id for v in res.vulns] == ["PYSEC-2021-88", "PYSEC-2021-99"]
    merged = res.vulns[0]
    assert merged.aliases == ["PYSEC-2021-104", "CVE-1", "CVE-2", "GHSA-x", "GHSA-y"]
    assert ids(db, "other", "1.0") == {"PYSEC-2021-100"}
    assert [v.aliases for v in db.match("other", "1.0").vulns] == [["CVE-1"]]


def test_group_takes_the_worst_severity_and_every_fix():
    db = AdvisoryDB([
        rec("PYSEC-1", events=[{"introduced": "0"}, {"fixed": "1.1"}], aliases=["CVE-1"]),
        rec("GHSA-a", events=[{"introduced": "0"}, {"fixed": "1.2"}], aliases=["CVE-1"],
            severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]),
    ])
    (v,) = db.match("demo", "1.0").vulns
    assert v.id == "PYSEC-1" and v.severity is Severity.CRITICAL and v.fixed == ["1.1", "1.2"]
    assert v.cvss.startswith("CVSS:3.1/")


@pytest.mark.parametrize(("vector", "severity"), [
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", Severity.CRITICAL),  # 9.8
    ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", Severity.HIGH),  # 7.5
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", Severity.MEDIUM),  # 6.1
    ("CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", Severity.LOW),  # 1.8
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", Severity.INFO),  # 0.0
    ("not a vector", Severity.UNKNOWN),
    (None, Severity.UNKNOWN),
])
def test_severity_from_the_cvss_v3_base_score(vector, severity):
    extra = {"severity": [{"type": "CVSS_V3", "score": vector}]} if vector else {}
    db = AdvisoryDB([rec("PYSEC-1", events=[{"introduced": "0"}], **extra)])
    (v,) = db.match("demo", "1.0").vulns
    assert v.severity is severity and v.cvss == vector
    assert v.summary == "PYSEC-1 details"


def test_other_ecosystems_and_packages_in_one_record():
    r = rec("GHSA-1", name="demo", events=[{"introduced": "0"}, {"fixed": "2"}])
    r["affected"].append({"package": {"name": "demo", "ecosystem": "npm"},
                          "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}]})
    r["affected"].append({"package": {"name": "demo", "ecosystem": "PyPI"},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "5"}, {"fixed": "6"}]}]})
    r["affected"].append({"package": {"name": "demo-plugin", "ecosystem": "PyPI"}, "versions": ["1.0"]})
    db = AdvisoryDB([r])
    assert status(db, "demo", "1") == "affected" and status(db, "demo", "5.5") == "affected"
    assert status(db, "demo", "3") == "clean" and status(db, "demo", "6") == "clean"
    assert status(db, "demo-plugin", "1.0") == "affected" and status(db, "demo-plugin", "1.1") == "clean"


# --- the real snapshot ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_db() -> AdvisoryDB:
    return AdvisoryDB.load(SNAPSHOT)


def _all_ids(res) -> set[str]:
    return {i for v in res.vulns for i in v.ids}


@pytest.mark.parametrize("case", EXAMPLES["cases"], ids=lambda c: f"{c['name']}=={c['version']}")
def test_worked_examples_exactly(real_db, case):
    res = real_db.match(case["name"], case["version"])
    expected = set(case["advisories"])
    assert {v.id for v in res.vulns} == expected  # no extra, none missing
    assert {i for i in _all_ids(res) if i.startswith("PYSEC-")} == expected
    assert not _all_ids(res) & set(case.get("must_not", []))
    assert res.status == ("affected" if case["affected"] else "clean") and res.reason is None
    for v in res.vulns:  # aliases as the examples' alias_map lists them
        assert set(EXAMPLES["alias_map"][v.id]) <= set(v.aliases)


def test_snapshot_edge_cases(real_db):
    assert "PYSEC-2023-72" in {v.id for v in real_db.match("pyspark", "3.2.0").vulns}
    assert "PYSEC-2022-42972" in {v.id for v in real_db.match("apache-iotdb", "0.13.0").vulns}
    assert real_db.match("py", "1.11.0").vulns[0].id == "PYSEC-2022-42969"
    assert real_db.match("py", "1.11.0").vulns[0].fixed == []
    assert "PYSEC-2020-341" in {v.id for v in real_db.match("jw-util", "1.0").vulns}
    assert real_db.match("urllib3", "1.26.16").vulns[0].fixed == ["1.26.17"]
    assert real_db.match("urllib3", "2.0.5").vulns[0].fixed == ["2.0.6"]
    assert {"PYSEC-2023-53", "PYSEC-2023-54"} <= {v.id for v in real_db.match("vantage6", "0.0.0b0").vulns}
    zope = real_db.match("zope", "4.0")
    assert {"PYSEC-2021-88", "PYSEC-2021-104", "PYSEC-2021-368", "PYSEC-2021-875"} <= _all_ids(zope)
    steam = real_db.match("steam", "1.0")
    assert steam.status == "not-checked" and steam.unchecked == ["PYSEC-2019-125"]
    cherry = real_db.match("CherryPy", "2.0.0-final")
    assert cherry.status == "affected" and "PYSEC-2006-1" in _all_ids(cherry) and cherry.reason


def test_withdrawn_snapshot_advisories_never_match(real_db):
    withdrawn = {"PYSEC-2019-144", "PYSEC-2020-221", "PYSEC-2021-13", "PYSEC-2021-125", "PYSEC-2022-15",
                 "PYSEC-2022-43055", "PYSEC-2022-43059", "PYSEC-2023-73", "PYSEC-2023-101", "PYSEC-2023-141"}
    assert {r["id"] for r in real_db.records if r.get("withdrawn")} == withdrawn
    for name, version in [("redis", "4.5.3"), ("selenium", "4.0.0"), ("pynetbox", "7.0.0"), ("redis", "0.1")]:
        assert not _all_ids(real_db.match(name, version)) & withdrawn


def test_ranges_and_lists_disagree_only_where_the_readme_says(real_db):
    """Every listed PEP 440 version must be inside a range, except in the 4 advisories the
    README names (this is what sorting the events, fixes first at ties, buys)."""
    from gapsync.scanner.artifacts.vulns import parse_version

    disagree = set()
    for name in real_db.packages():
        for adv in real_db.advisories_for(name):
            for s in adv.versions:
                v = parse_version(s)
                if v is not None and not any(r.contains(v) for r in adv.ranges):
                    disagree.add(adv.id)
    assert disagree == {"PYSEC-2023-61", "PYSEC-2023-177", "PYSEC-2021-114", "PYSEC-2024-1"}


# --- scan_subject: real wheels from PyPI ----------------------------------------------------

WHEELS = [("paramiko", "2.0.0"), ("GitPython", "3.1.30"), ("certifi", "2015.04.28"), ("jupyter_server", "2.7.1"),
          ("pynetbox", "7.0.0"), ("bleach", "6.1.0")]


def download_wheel(name: str, version: str) -> Path:
    """A real wheel from PyPI, cached; skip the test when PyPI cannot be reached."""
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    norm = name.lower().replace("-", "_")
    for p in WHEEL_CACHE.glob("*.whl"):
        stem = p.name.split("-")
        if stem[0].lower() == norm and stem[1] == version:
            return p
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--isolated", "--only-binary=:all:",
                        "-d", str(WHEEL_CACHE), f"{name}=={version}"], capture_output=True, text=True, env=env,
                       timeout=300)
    for p in WHEEL_CACHE.glob("*.whl"):
        stem = p.name.split("-")
        if stem[0].lower() == norm and stem[1] == version:
            return p
    pytest.skip(f"cannot download {name}=={version} from PyPI: {r.stderr.strip()[-300:]}")


def wheel_subject(wheel: Path) -> ScanSubject:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        name, version = parse_metadata(zf.read(meta))
    from packaging.utils import canonicalize_name

    data = wheel.read_bytes()
    return ScanSubject("python", canonicalize_name(name), version,
                       [SubjectFile(wheel.name, hashlib.sha256(data).hexdigest(), len(data), wheel)])


@pytest.mark.parametrize(("name", "version"), WHEELS)
def test_scan_subject_real_wheels(real_db, name, version):
    case = next(c for c in EXAMPLES["cases"] if c["name"] == name)
    wheel = download_wheel(name, version)
    subject = wheel_subject(wheel)
    findings = scan_subject(real_db, subject)
    assert {f.rule for f in findings} == set(case["advisories"])
    for f in findings:
        assert f.scanner == "vulns" and f.file == wheel.name and "\n" not in f.message
        assert f.message.startswith(f"{subject.name} {subject.version}: {f.rule} (")
        assert f.evidence["id"] == f.rule and f.evidence["package"] == subject.name
        assert set(f.evidence) >= {"package", "version", "id", "aliases", "fixed", "cvss"}
        assert f.message.endswith("fixed in " + ", ".join(f.evidence["fixed"]))


def test_scan_subject_message_and_severity(real_db):
    subject = ScanSubject("python", "gitpython", "3.1.30")
    by_rule = {f.rule: f for f in scan_subject(real_db, subject)}
    f = by_rule["PYSEC-2024-4"]
    assert f.message == "gitpython 3.1.30: PYSEC-2024-4 (CVE-2024-22190, GHSA-2mqj-m65w-jghx) fixed in 3.1.41"
    assert f.severity is Severity.HIGH and f.evidence["cvss"].startswith("CVSS:3.")
    assert by_rule["PYSEC-2023-137"].severity is Severity.UNKNOWN  # no CVSS in the record
    odd = scan_subject(real_db, ScanSubject("python", "steam", "1.0"))
    assert [(x.rule, x.severity) for x in odd] == [("vulns.not-checked", Severity.UNKNOWN)]
    assert odd[0].evidence["advisories"] == ["PYSEC-2019-125"]
    assert scan_subject(real_db, ScanSubject("model", "org/name", "main")) == []


# --- scan_subject: Python packages inside OCI layers ----------------------------------------


def _meta(name: str, version: str, kind: str = "2.1") -> bytes:
    return f"Metadata-Version: {kind}\nName: {name}\nVersion: {version}\nSummary: x\n\nlong description\n".encode()


def _tar(entries: list[tuple[str, bytes | None]], compression: str = "gz") -> bytes:
    """A layer: (path, bytes) regular files, (path, None) directories."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for path, data in entries:
            info = tarfile.TarInfo(path)
            if data is None:
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    if compression == "gz":
        return gzip.compress(raw)
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(raw)
    return raw


def _layer(tmp_path: Path, name: str, data: bytes, media_type: str | None) -> SubjectFile:
    p = tmp_path / name
    p.write_bytes(data)
    return SubjectFile(f"layer {name}", hashlib.sha256(data).hexdigest(), len(data), p, media_type)


SITE = "usr/lib/python3.11/site-packages"
GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


def test_oci_layers_dist_info_and_egg_info(real_db, tmp_path):
    base = _tar([
        (SITE, None),
        (f"{SITE}/paramiko-2.0.0.dist-info/METADATA", _meta("paramiko", "2.0.0")),
        (f"{SITE}/paramiko-2.0.0.dist-info/RECORD", b""),
        (f"./{SITE}/html5lib-0.9999999.egg-info/PKG-INFO", _meta("html5lib", "0.9999999", "1.1")),
        ("usr/lib/python3/dist-packages/certifi-2015.04.28.egg-info", _meta("certifi", "2015.04.28", "1.0")),
        (f"{SITE}/bleach-6.1.0.dist-info/METADATA", _meta("bleach", "6.1.0")),
        (f"{SITE}/GitPython-3.1.30.dist-info/METADATA", _meta("GitPython", "3.1.30")),
        (f"{SITE}/pynetbox/__init__.py", b"# METADATA Name: x\n"),
    ])
    # the next layer upgrades GitPython: the old dist-info is whited out
    upgrade = _tar([(f"{SITE}/.wh.GitPython-3.1.30.dist-info", b""),
                    (f"{SITE}/GitPython-3.1.41.dist-info/METADATA", _meta("GitPython", "3.1.41"))], "zstd")
    config = tmp_path / "config.json"
    config.write_bytes(b"{}")
    subject = ScanSubject("oci", "registry.example/app", "1.0", [
        _layer(tmp_path, "a.tar.gz", base, GZ),
        SubjectFile("config", "0" * 64, 2, config, "application/vnd.oci.image.config.v1+json"),
        _layer(tmp_path, "b.tar.zst", upgrade, "application/vnd.oci.image.layer.v1.tar+zstd"),
    ])
    findings = scan_subject(real_db, subject)
    got = {(f.evidence["package"], f.rule) for f in findings}
    assert got == {("paramiko", "PYSEC-2018-19"), ("paramiko", "PYSEC-2018-69"), ("paramiko", "PYSEC-2022-166"),
                   ("html5lib", "PYSEC-2017-14"), ("html5lib", "PYSEC-2017-15"), ("certifi", "PYSEC-2023-135")}
    para = next(f for f in findings if f.rule == "PYSEC-2018-19")
    assert para.file == "layer a.tar.gz" and para.location == f"{SITE}/paramiko-2.0.0.dist-info/METADATA"
    html = next(f for f in findings if f.rule == "PYSEC-2017-14")
    assert html.location == f"{SITE}/html5lib-0.9999999.egg-info/PKG-INFO"


def test_whiteouts_opaque_dirs_and_plain_tar(tmp_path):
    a = _tar([(f"{SITE}/x-1.0.dist-info/METADATA", _meta("x", "1.0")),
              (f"opt/venv/{SITE}/y-1.0.dist-info/METADATA", _meta("y", "1.0"))], "none")
    b = _tar([(f"opt/venv/{SITE}/.wh..wh..opq", b""),
              (f"opt/venv/{SITE}/y-2.0.dist-info/METADATA", _meta("y", "2.0")),
              ("root/.wh.nothing", b"")], "gz")
    layers = [("a", tmp_path / "a"), ("b", tmp_path / "b")]
    layers[0][1].write_bytes(a)
    layers[1][1].write_bytes(b)
    dists, errors = installed_dists(layers)
    assert errors == []
    assert sorted((d.name, d.version, d.layer) for d in dists) == [("x", "1.0", "a"), ("y", "2.0", "b")]


def test_unreadable_layer_is_not_checked_and_the_rest_is_scanned(tmp_path):
    db = AdvisoryDB([rec("PYSEC-1", name="demo", events=[{"introduced": "0"}, {"fixed": "2"}])])
    good = _layer(tmp_path, "good", _tar([(f"{SITE}/demo-1.0.dist-info/METADATA", _meta("Demo", "1.0")),
                                          (f"{SITE}/nameless-1.0.dist-info/METADATA", b"Version: 1.0\n\n")]), GZ)
    bad = _layer(tmp_path, "bad", gzip.compress(b"this is not a tar archive" * 100)[:-20], GZ)
    findings = scan_subject(db, ScanSubject("oci", "img", "1", [good, bad]))
    rules = sorted((f.rule, f.file) for f in findings)
    assert rules == [("PYSEC-1", "layer good"), ("vulns.not-checked", "layer bad"), ("vulns.not-checked", "layer good")]
    assert all(f.severity is Severity.UNKNOWN for f in findings if f.rule == "vulns.not-checked")


def test_python_subject_with_invalid_version_gets_a_not_checked_finding():
    db = AdvisoryDB([rec("PYSEC-1", events=[{"introduced": "0"}, {"fixed": "2"}], versions=["1.0"])])
    findings = scan_subject(db, ScanSubject("python", "demo", "1.0-custom"))
    assert [(f.rule, f.severity) for f in findings] == [("vulns.not-checked", Severity.UNKNOWN)]
    assert findings[0].evidence == {"package": "demo", "version": "1.0-custom",
                                    "reason": findings[0].evidence["reason"], "advisories": ["PYSEC-1"]}


# --- the scanner without the store ---------------------------------------------------------


def test_the_matcher_takes_data_not_the_store():
    """vulns matches against anything with ``advisories_for``/``match``/``version_cache`` (its
    Advisories protocol): a plain in-memory source gives the same findings as the store, and
    importing the scanner does not import the store (it reads files and downloads)."""
    from gapsync.scanner.artifacts import vulns

    records = [rec("PYSEC-2024-1", events=[{"introduced": "0"}, {"fixed": "2.0"}], aliases=["CVE-2024-1"]),
               rec("GHSA-xxxx-yyyy-zzzz", events=[{"introduced": "1.0"}, {"fixed": "1.5"}], aliases=["CVE-2024-1"])]

    class InMemory:
        def __init__(self) -> None:
            self.version_cache: vulns.VersionCache = {}

        def advisories_for(self, name: str) -> list[vulns.CompiledAdvisory]:
            return [vulns.compile_record(r, self.version_cache, only=name)[name] for r in records
                    if name in {a["package"]["name"] for a in r["affected"]}]

        def match(self, name: str, version: str) -> vulns.MatchResult:
            return vulns.match(self, name, version)

    subject = ScanSubject("python", "demo", "1.2", [SubjectFile("demo-1.2-py3-none-any.whl", "0" * 64, 1, Path("x"))])
    mine = scan_subject(InMemory(), subject)
    store = scan_subject(AdvisoryDB(records), subject)
    assert [f.to_dict() for f in mine] == [f.to_dict() for f in store]
    assert [(f.rule, f.evidence["aliases"], f.evidence["fixed"]) for f in mine] == \
        [("PYSEC-2024-1", ["CVE-2024-1", "GHSA-xxxx-yyyy-zzzz"], ["1.5", "2.0"])]
    code = ("import sys; import gapsync.scanner.artifacts.vulns, gapsync.scanner.models; "
            "import gapsync.scanner.artifacts.distributions, gapsync.scanner.artifacts.licenses; "
            "assert 'gapsync.advisories' not in sys.modules, 'the scanner imported the store'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
