"""Scanning and policy across the gap: the DMZ blocks (exit 4) or leaves out (--allow-partial),
the evidence travels signed in the bundle (bundle.json, SBOM, advisories, policy), and the air
side scans again with the bundle's advisory database under its own, stricter policy."""

from __future__ import annotations

import json
import pickletools
import tarfile
from pathlib import Path

import pytest

from tests.support.channels import new_channel, write_spec
from tests.support.cli import cli
from tests.support.data import ADVISORIES  # noqa: E402
from tests.support.servers import static_server
from tests.support.trees import snapshot
from tests.support.wheels import make_wheel, write_index


def members(bundle: Path) -> dict[str, bytes]:
    out = {}
    with tarfile.open(bundle) as tf:
        targets = json.loads(tf.extractfile("metadata/targets.json").read())["signed"]["targets"]
        for path, t in targets.items():
            if path.startswith("gapsync/"):
                out[path] = tf.extractfile(f"blobs/sha256/{t['hashes']['sha256']}").read()
    return out


def create(ch, spec, out, *extra):
    return cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", out, "--cache", ch.base / "cache", *extra)


def test_blocked_package_stops_the_bundle_or_is_left_out(world, tmp_path):
    ch = new_channel(tmp_path, "prod")
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha", "gamma"])
    pol = tmp_path / "p.yaml"
    pol.write_text("blocked:\n  - {kind: python, name: beta, versions: '<3', reason: internal ban}\n")
    r = create(ch, spec, tmp_path / "o1", "--policy", pol, "--report", tmp_path / "r.html")
    assert r.code == 4 and "python:beta@2.0" in r.err and "internal ban" in r.err
    assert not (tmp_path / "o1").exists() or not list((tmp_path / "o1").iterdir())
    assert (ch.state / "prod/targets.json").exists() is False  # the channel did not advance
    html = (tmp_path / "r.html").read_text()
    assert "python:beta@2.0" in html and "internal ban" in html
    r = create(ch, spec, tmp_path / "o2", "--policy", pol, "--allow-partial", "--json")
    assert r.code == 0, r.err
    b = Path(json.loads(r.out)["bundle"])
    with tarfile.open(b) as tf:
        targets = json.loads(tf.extractfile("metadata/targets.json").read())["signed"]["targets"]
    assert not any(p.startswith("python/beta/") for p in targets) and "python/alpha/alpha-1.0-py3-none-any.whl" in targets
    info = json.loads(members(b)["gapsync/bundle.json"])
    [d] = [d for d in info["decisions"] if d["artifact"] == "python:beta@2.0"]
    assert d["action"] == "block" and d["reasons"][0]["rule"] == "blocked"
    assert {a["name"]: a["decision"] for a in info["artifacts"]}["beta"] == "block"
    assert info["policy"]["name"] == "p" or info["policy"]["source"].endswith("p.yaml")
    assert "gapsync/sbom.cdx.json" in targets and "gapsync/policy.yaml" in targets


def _evil_pickle() -> bytes:
    """A pickle that would call os.system if loaded; it is only written and scanned, never loaded."""
    return pickletools.optimize(b"\x80\x02cos\nsystem\nq\x00X\x06\x00\x00\x00id >&2q\x01\x85q\x02Rq\x03.")


def test_malicious_model_is_blocked_with_its_evidence(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "model.pkl").write_bytes(_evil_pickle())
    (d / "config.json").write_text("{}")
    spec = tmp_path / "g.yaml"
    spec.write_text("name: m\nchannel: prod\nmodels:\n  - path: ./model\n    name: team/evil\n")
    ch = new_channel(tmp_path, "prod")
    r = create(ch, spec, tmp_path / "o", "--report", tmp_path / "r.html")
    assert r.code == 4 and "model:team/evil@main" in r.err
    assert "os.system" in (tmp_path / "r.html").read_text() or "os system" in (tmp_path / "r.html").read_text()


@pytest.fixture(scope="module")
def vuln_index(tmp_path_factory):
    """An index with a package that has advisories (paramiko 2.0.0, as examples.json lists)."""
    root = tmp_path_factory.mktemp("vuln-index")
    make_wheel(root / "files", "paramiko", "2.0.0", license_="LGPL-2.1-or-later")
    make_wheel(root / "files", "clean-pkg", "1.0", license_="MIT")
    write_index(root)
    srv = static_server(root)
    yield srv.url
    srv.stop()


def test_advisories_travel_in_the_bundle_and_the_air_side_is_stricter(vuln_index, tmp_path):
    store = tmp_path / "adv"
    r = cli("advisories", "import", ADVISORIES, "--store", store)
    assert r.code == 0, r.err
    ch = new_channel(tmp_path, "prod")
    spec = write_spec(tmp_path / "g.yaml", vuln_index, ["paramiko==2.0.0", "clean-pkg"], pythons=("3.11",))
    r = create(ch, spec, tmp_path / "o", "--advisories", store, "--json")
    assert r.code == 0, r.err  # the default policy warns about advisories without a severity
    b = Path(json.loads(r.out)["bundle"])
    got = members(b)
    info = json.loads(got["gapsync/bundle.json"])
    ids = {f["rule"] for f in info["findings"] if f["artifact"] == "python:paramiko@2.0.0" and f["scanner"] == "vulns"}
    assert {"PYSEC-2018-19", "PYSEC-2018-69", "PYSEC-2022-166"} <= ids
    assert not any(f["scanner"] == "vulns" for f in info["findings"] if f["artifact"] == "python:clean-pkg@1.0")
    assert info["advisories"]["advisories"] > 2000 and "gapsync/advisories.osv.jsonl.gz" in got
    sbom = json.loads(got["gapsync/sbom.cdx.json"])
    assert sbom["specVersion"] == "1.6" and any(v["id"] == "PYSEC-2018-19" for v in sbom.get("vulnerabilities", []))
    # the air side: default policy imports; a strict policy blocks and publishes nothing
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    before = snapshot(m)
    r = cli("import", b, "--mirror", m, "--policy", "strict")
    assert r.code == 4 and "python:paramiko@2.0.0" in r.err
    assert snapshot(m) == before
    r = cli("import", b, "--mirror", m, "--policy", "strict", "--allow-partial", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["blocked"] == ["python:paramiko@2.0.0"]
    assert (m / "pypi/files/clean_pkg-1.0-py3-none-any.whl").exists()
    assert not (m / "pypi/files/paramiko-2.0.0-py3-none-any.whl").exists()
    log = [json.loads(x) for x in (m / ".gapsync/audit.log").read_text().splitlines()]
    assert log[-2]["result"] == "blocked" and log[-1]["details"]["blocked"] == ["python:paramiko@2.0.0"]


def test_scan_runs_every_scanner_on_a_spec_and_on_a_bundle(world, tmp_path):
    pol = tmp_path / "p.yaml"
    pol.write_text("blocked:\n  - {kind: python, name: delta}\n")
    r = cli("scan", "--spec", world.spec2, "--policy", pol, "--cache", world.base / "cache", "--json")
    assert r.code == 4, r.err
    doc = json.loads(r.out)
    assert doc["blocked"] == ["python:delta@1.0"] and "python:alpha@1.0" in {d["artifact"] for d in doc["decisions"]}
    r = cli("scan", world.b2, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert "signatures not checked" in doc["scanned"] and doc["licenses"]["python:alpha@1.0"] == "MIT"
    r = cli("scan", world.b2, "--policy", pol, "--report", tmp_path / "r.html")
    assert r.code == 4 and "python:delta@1.0" in r.out and "python:delta@1.0" in (tmp_path / "r.html").read_text()
    assert cli("scan").code == 2


def test_pickles_inside_packages_are_scanned_when_the_policy_asks(tmp_path):
    import zipfile

    root = tmp_path / "idx"
    w = make_wheel(root / "files", "datapkg", "1.0")
    with zipfile.ZipFile(w, "a") as z:
        z.writestr("datapkg/table.pkl", _evil_pickle())
    write_index(root)
    srv = static_server(root)
    try:
        spec = write_spec(tmp_path / "g.yaml", srv.url, ["datapkg"], pythons=("3.11",))
        ch = new_channel(tmp_path, "prod")
        assert create(ch, spec, tmp_path / "o1").code == 0  # default policy: packages are not model-scanned
        pol = tmp_path / "p.yaml"
        pol.write_text("models: {scan_pickles_in_packages: true}\n")
        r = create(ch, spec, tmp_path / "o2", "--policy", pol)
        assert r.code == 4 and "python:datapkg@1.0" in r.err
    finally:
        srv.stop()
