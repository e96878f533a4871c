"""``gapsync scan`` of wheels, sdists, directories of them and requirements files (issue 14 §6):
the advisories of the release the metadata names, its license and the pickles inside, through
the scan ``bundle create`` runs, with the repository's advisory snapshot. Nothing is built,
installed or run: an sdist's setup.py that would leave a mark is never executed."""

from __future__ import annotations

import io
import json
import os
import pickletools
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.support.cli import cli
from tests.support.data import ADVISORIES
from tests.support.wheels import make_wheel

JINJA_IDS = ["PYSEC-2019-217", "PYSEC-2021-66"]  # the two advisories that name Jinja2 2.10


def scan(*args) -> tuple[int, dict, str]:
    r = cli("scan", *args, "--advisories", ADVISORIES, "--json")
    return r.code, (json.loads(r.out) if r.out.strip() else {}), r.err


def evil_pickle() -> bytes:
    """Would call os.system if loaded; only written and scanned, never loaded."""
    return pickletools.optimize(b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.")


def make_sdist(out: Path, filename: str, pkg_info: str | None, *, fmt: str = "tar") -> Path:
    """An sdist whose setup.py would write a file next to it if anything ran it."""
    top = filename.removesuffix(".tar.gz").removesuffix(".zip")
    marker = out / "SETUP_PY_RAN"
    files = {f"{top}/setup.py": f"open({str(marker)!r}, 'w').write('ran')\n".encode()}
    if pkg_info is not None:
        files[f"{top}/PKG-INFO"] = pkg_info.encode()
    out.mkdir(parents=True, exist_ok=True)
    path = out / filename
    if fmt == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
    else:
        with tarfile.open(path, "w:gz") as tf:
            for name, data in files.items():
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return path


def test_a_wheel_gets_the_advisories_of_its_metadata_release(tmp_path):
    w = make_wheel(tmp_path, "Jinja2", "2.10", tag="py2.py3-none-any", license_="BSD-3-Clause")
    assert w.name == "Jinja2-2.10-py2.py3-none-any.whl"
    code, doc, err = scan(w)
    [d] = doc["distributions"]
    assert (d["name"], d["version"], d["source"]) == ("jinja2", "2.10", "metadata")
    assert d["advisories"] == JINJA_IDS and d["license"] == "BSD-3-Clause"
    assert code == 0  # the default policy warns about advisories without a severity
    assert doc["licenses"]["python:jinja2@2.10"] == "BSD-3-Clause"
    # the same decision bundle create makes: the advisories are warned about, as in a bundle
    [dec] = doc["decisions"]
    assert dec["action"] == "warn" and {"vulnerabilities.unknown_severity"} <= {r["rule"] for r in dec["reasons"]}
    # text output names them too
    r = cli("scan", w, "--advisories", ADVISORIES)
    assert "PYSEC-2019-217" in r.out and "jinja2 2.10" in r.out and "2 advisories" in r.err
    # a policy that blocks advisories without a severity blocks it (exit 4)
    pol = tmp_path / "p.yaml"
    pol.write_text("vulnerabilities: {unknown_severity: block}\n")
    code, doc, _ = scan(w, "--policy", pol)
    assert code == 4 and doc["blocked"] == ["python:jinja2@2.10"]


def test_a_fixed_release_is_clean(tmp_path):
    code, doc, _ = scan(make_wheel(tmp_path, "Jinja2", "3.1.4"))
    assert code == 0 and doc["distributions"][0]["advisories"] == []


def test_a_renamed_wheel_is_checked_as_what_its_metadata_says(tmp_path):
    """Jinja2 2.10 under a fixed release's file name: pip installs 2.10's METADATA."""
    w = make_wheel(tmp_path, "Jinja2", "2.10")
    disguised = w.rename(tmp_path / "Jinja2-3.1.4-py3-none-any.whl")
    code, doc, _ = scan(disguised)
    by_source = {d["source"]: d for d in doc["distributions"]}
    assert by_source["metadata"]["version"] == "2.10" and by_source["metadata"]["advisories"] == JINJA_IDS
    assert by_source["file name"]["version"] == "3.1.4" and by_source["file name"]["advisories"] == []
    assert "both are checked" in by_source["metadata"]["note"]


def test_pickles_inside_a_wheel_are_scanned_and_block(tmp_path):
    w = make_wheel(tmp_path, "datapkg", "1.0")
    with zipfile.ZipFile(w, "a") as z:
        z.writestr("datapkg/table.pkl", evil_pickle())
    code, doc, _ = scan(w)
    assert code == 4 and doc["blocked"] == ["python:datapkg@1.0"]
    assert any(f["scanner"] == "model" and f["severity"] == "critical" and "table.pkl" in (f["location"] or "")
               for f in doc["findings"])


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_an_sdist_is_read_from_its_pkg_info_and_never_built(tmp_path, fmt):
    ext = ".zip" if fmt == "zip" else ".tar.gz"
    # the file name claims a fixed release: the PKG-INFO inside is what pip would build
    sd = make_sdist(tmp_path, f"jinja2-3.1.4{ext}", "Metadata-Version: 2.2\nName: Jinja2\nVersion: 2.10\n"
                    "License-Expression: BSD-3-Clause\n\n", fmt=fmt)
    code, doc, _ = scan(sd)
    meta = next(d for d in doc["distributions"] if d["source"] == "metadata")
    assert (meta["name"], meta["version"], meta["advisories"]) == ("jinja2", "2.10", JINJA_IDS)
    assert meta["license"] == "BSD-3-Clause"
    assert not (tmp_path / "SETUP_PY_RAN").exists()


def test_an_sdist_without_pkg_info_falls_back_to_its_file_name(tmp_path):
    sd = make_sdist(tmp_path, "jinja2-2.10.tar.gz", None)
    code, doc, _ = scan(sd)
    [d] = doc["distributions"]
    assert (d["source"], d["version"], d["advisories"]) == ("file name", "2.10", JINJA_IDS)
    assert "PKG-INFO not read" in d["note"]
    assert not (tmp_path / "SETUP_PY_RAN").exists()


def test_what_cannot_be_identified_is_refused_with_one_line(tmp_path):
    bad = tmp_path / "Jinja2-2.10-py3-none-any.whl"
    bad.write_bytes(b"not a zip at all")
    r = cli("scan", bad, "--advisories", ADVISORIES)
    assert r.code == 2 and "cannot read the wheel's metadata" in r.err and str(bad) in r.err
    assert "Traceback" not in r.err and "internal error" not in r.err
    two = make_wheel(tmp_path / "two", "Jinja2", "2.10")
    with zipfile.ZipFile(two, "a") as z:  # a second METADATA: which one would count?
        z.writestr("other-1.0.dist-info/METADATA", "Name: other\nVersion: 1.0\n\n")
    r = cli("scan", two, "--advisories", ADVISORIES)
    assert r.code == 2 and "expected one .dist-info/METADATA" in r.err



def test_archives_that_are_not_sdists_stay_the_model_scanner_s(tmp_path):
    """A model archive named like an sdist (resnet-50.tar.gz) holds no PKG-INFO and no source
    tree: it is scanned as before (--fail-on), in a directory of wheels as alone."""
    for name in ("resnet-50.tar.gz", "weights.zip"):
        d = tmp_path / name.split(".")[0]
        d.mkdir()
        archive = d / name
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive, "w") as zf:
                zf.writestr("resnet/model.pkl", evil_pickle())
        else:
            with tarfile.open(archive, "w:gz") as tf:
                data = evil_pickle()
                ti = tarfile.TarInfo("resnet/model.pkl")
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
        r = cli("scan", archive, "--advisories", ADVISORIES, "--json")
        doc = json.loads(r.out)
        assert r.code == 4 and "distributions" not in doc and doc["fail_on"] == "high", name
        assert any(f["rule"] == "pickle.global.denied" for f in doc["findings"])
        make_wheel(d, "Jinja2", "3.1.4")
        r = cli("scan", d, "--advisories", ADVISORIES, "--json")
        doc = json.loads(r.out)
        assert [x["name"] for x in doc["distributions"]] == ["jinja2"]
        assert doc["other_files"]["scanned"] == 1 and r.code == 4, name


def test_a_directory_of_distributions_and_other_files(tmp_path):
    d = tmp_path / "dists"
    make_wheel(d, "Jinja2", "2.10")
    make_wheel(d / "sub", "paramiko", "2.0.0", license_="LGPL-2.1-or-later")
    make_sdist(d, "jinja2-3.1.4.tar.gz", "Metadata-Version: 2.2\nName: Jinja2\nVersion: 3.1.4\n\n")
    (d / "model.pkl").write_bytes(evil_pickle())
    (d / "link.whl").symlink_to(tmp_path / "elsewhere.whl")
    os.mkfifo(d / "fifo.whl")
    code, doc, _ = scan(d)
    got = {(x["name"], x["version"]): x["advisories"] for x in doc["distributions"]}
    assert got[("jinja2", "2.10")] == JINJA_IDS and got[("jinja2", "3.1.4")] == []
    assert {"PYSEC-2018-19", "PYSEC-2018-69", "PYSEC-2022-166"} <= set(got[("paramiko", "2.0.0")])
    other = doc["other_files"]
    assert other["scanned"] == 1 and any(f["rule"] == "pickle.global.denied" for f in other["findings"])
    assert sorted(Path(p).name for p in other["not_read"]) == ["fifo.whl", "link.whl"]
    assert code == 4  # the malicious pickle beside the wheels, at --fail-on high
    assert doc["blocked"] == []  # the distributions themselves are only warned about


def test_requirements_file_pins_unpinned_lines_and_includes(tmp_path):
    (tmp_path / "base.txt").write_text(
        "# shared pins\n"
        "paramiko==2.0.0 \\\n    --hash=sha256:0000000000000000000000000000000000000000000000000000000000000000\n")
    req = tmp_path / "requirements.txt"
    req.write_text(
        "--index-url https://pypi.org/simple\n"
        "Jinja2[i18n]==2.10 ; python_version >= '3'  # pinned, with extras and a marker\n"
        "flask>=2.0\n"
        "requests\n"
        "-e git+https://example.invalid/x.git#egg=localpkg\n"
        "-r base.txt\n"
        "jinja2===3.1.4\n")
    code, doc, err = scan("-r", req)
    by_line = {Path(e["line"].rsplit(":", 1)[0]).name + ":" + e["line"].rsplit(":", 1)[1]: e
               for e in doc["distributions"]}
    assert by_line["requirements.txt:2"]["advisories"] == JINJA_IDS
    assert by_line["requirements.txt:2"]["marker"] == 'python_version >= "3"'
    assert by_line["requirements.txt:7"]["advisories"] == []
    assert {"PYSEC-2018-19", "PYSEC-2018-69"} <= set(by_line["base.txt:2"]["advisories"])
    for line, what in (("requirements.txt:3", "not pinned (>=2.0)"), ("requirements.txt:4", "not pinned (any version)"),
                       ("requirements.txt:5", "editable")):
        assert what in by_line[line]["not_pinned"] and by_line[line]["decision"] == "warn", line
    assert "index-url" not in json.dumps(doc["distributions"])
    assert code == 0
    # the policy decides what "not checked" means: strict blocks it
    code, doc, _ = scan("-r", req, "--policy", "strict")
    assert code == 4 and any("flask" in k for k in doc["blocked"])
    # text output
    r = cli("scan", "-r", req, "--advisories", ADVISORIES)
    assert "not pinned" in r.out and "PYSEC-2019-217" in r.out and "3 not pinned (not checked)" in r.err


def test_requirements_includes_that_cannot_be_followed_are_errors(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("-r b.txt\n")
    b.write_text("jinja2==2.10\n-r a.txt\n")
    r = cli("scan", "-r", a, "--advisories", ADVISORIES)
    assert r.code == 2 and "-r cycle" in r.err
    a.write_text("-r missing.txt\n")
    r = cli("scan", "-r", a, "--advisories", ADVISORIES)
    assert r.code == 2 and "missing.txt" in r.err
    a.write_text("jinja2==2.10\nthis is not a requirement!\n")
    r = cli("scan", "-r", a, "--advisories", ADVISORIES)
    assert r.code == 2 and f"{a}:2" in r.err
    assert cli("scan", "-r", a, a).code == 2  # one of PATH, --spec, -r


def test_no_database_blocks_the_distribution_with_one_line(tmp_path):
    w = make_wheel(tmp_path, "Jinja2", "2.10")
    empty = tmp_path / "no-advisories"
    empty.mkdir()
    r = cli("scan", w, "--advisories", empty, "--json")
    assert r.code == 4 and json.loads(r.out)["blocked"] == ["python:jinja2@2.10"]
    assert json.loads(r.out)["distributions"][0]["advisories"] is None  # not checked is not "no advisories"
    lines = [ln for ln in r.err.splitlines() if "gapsync advisories import" in ln]
    assert len(lines) == 1 and "gapsync advisories update" in lines[0] and "NOT checked" in lines[0]
    r = cli("scan", w, "--advisories", empty)
    [row] = [ln for ln in r.out.splitlines() if ln.startswith("Jinja2-2.10")]
    assert r.code == 4 and row.split()[-1] == "CHECKED" and row.split()[-2] == "NOT"


def test_the_pkg_info_search_stops_at_its_budget(tmp_path, monkeypatch):
    """A large member before PKG-INFO (a gzip bomb, at full size) is not decompressed to its end:
    the sdist is then known by its file name only, and says so."""
    from gapsync.scanner.artifacts import distributions

    monkeypatch.setattr(distributions, "MAX_SDIST_BYTES", 1 << 20)
    path = tmp_path / "jinja2-2.10.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, data in (("jinja2-2.10/setup.py", b"raise SystemExit\n"), ("jinja2-2.10/big.bin", bytes(4 << 20)),
                           ("jinja2-2.10/PKG-INFO", b"Metadata-Version: 2.2\nName: other\nVersion: 9\n\n")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    d = distributions.read_distribution(path)
    assert (d.source, d.name, d.version) == ("file name", "jinja2", "2.10")
    assert "no PKG-INFO in the first 1 MiB" in d.note
