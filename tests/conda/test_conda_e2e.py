"""Conda packages across the gap, with real parts: a channel of real packages on 127.0.0.1,
py-rattler's solver on the DMZ, a signed bundle, the air side's static channel, and py-rattler
solving and installing from that channel alone (over ``file://`` and over ``gapsync serve``)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.support.channels import new_channel
from tests.support.cli import GAPSYNC, cli, isolated_env
from tests.support.conda import conda_spec, consume, rattler_index
from tests.support.servers import Server, free_port


@pytest.fixture(scope="module")
def crossed(conda_upstream, tmp_path_factory):
    """One bundle of gs-tool and gs-py for linux-64 and osx-arm64, imported into a mirror."""
    base = tmp_path_factory.mktemp("conda-crossed")
    ch = new_channel(base)
    spec = conda_spec(base / "g.yaml", conda_upstream.url, ["gs-tool", "gs-py"])
    r = cli("resolve", "-f", spec, "-o", base / "g.lock", "--cache", base / "cache")
    assert r.code == 0, r.err
    r = cli("bundle", "create", "-f", spec, "--lock", base / "g.lock", "--state", ch.state, "--key", ch.keys[0],
            "-o", base / "out", "--cache", base / "cache")
    assert r.code == 0, r.err
    mirror = base / "mirror"
    assert cli("trust", "pin", ch.root, "--mirror", mirror).code == 0
    bundle = next((base / "out").glob("*.gapsync"))
    r = cli("import", bundle, "--mirror", mirror)
    assert r.code == 0, r.err
    return base, ch, mirror, bundle, json.loads((base / "g.lock").read_text())


def test_lock_has_every_file_per_platform_with_sha256(crossed, conda_upstream):
    lock = crossed[4]["conda"]
    # gs-tool needs gs-lib <2: the solver must take 1.0 although 2.0 is newer
    assert lock["solved"]["linux-64"] == ["gs-lib=1.0=h0_0", "gs-py=1.0=pyh0_0", "gs-tool=0.1=h0_0",
                                          "python=3.11.0=h0_0_cpython"]
    assert lock["solved"]["osx-arm64"] == lock["solved"]["linux-64"]
    by = {(p["subdir"], p["filename"]): p for p in lock["packages"]}
    assert ("noarch", "gs-py-1.0-pyh0_0.conda") in by and by[("noarch", "gs-py-1.0-pyh0_0.conda")]["platforms"] == \
        ["linux-64", "osx-arm64"]
    assert ("osx-arm64", "gs-tool-0.1-h0_0.tar.bz2") in by and len(lock["packages"]) == 7
    for (subdir, fn), p in by.items():
        data = (conda_upstream.dir / subdir / fn).read_bytes()
        assert p["sha256"] == hashlib.sha256(data).hexdigest() and p["size"] == len(data)
        assert p["channel"] == conda_upstream.url and p["channel_name"] == "upstream"


def test_air_side_channel_matches_rattler_index(crossed, tmp_path):
    """Our repodata.json holds what rattler's own indexer writes for the same files."""
    _, _, mirror, _, _ = crossed
    chan = mirror / "conda" / "upstream"
    assert sorted(p.name for p in chan.iterdir()) == ["channeldata.json", "linux-64", "noarch", "osx-arm64"]
    copy = tmp_path / "reindexed"
    for subdir in ("linux-64", "osx-arm64", "noarch"):
        (copy / subdir).mkdir(parents=True)
        for f in (chan / subdir).iterdir():
            if f.name != "repodata.json":
                (copy / subdir / f.name).write_bytes(f.read_bytes())
    rattler_index(copy)
    for subdir in ("linux-64", "osx-arm64", "noarch"):
        ours = json.loads((chan / subdir / "repodata.json").read_text())
        theirs = json.loads((copy / subdir / "repodata.json").read_text())
        assert ours["info"]["subdir"] == subdir
        for section in ("packages", "packages.conda"):
            assert sorted(ours[section]) == sorted(theirs[section])
            for fn, rec in theirs[section].items():
                for key in ("name", "version", "build", "sha256", "size", "md5", "depends", "subdir", "noarch", "license"):
                    assert ours[section][fn].get(key) == rec.get(key), (fn, key)


def test_installs_from_the_mirror_alone_over_file_url_and_runs(crossed, tmp_path):
    _, _, mirror, _, _ = crossed
    prefix = tmp_path / "env"
    recs = consume((mirror / "conda" / "upstream").as_uri(), "linux-64", prefix, ["gs-tool", "gs-py"], tmp_path / "c")
    assert {r["name"] for r in recs} == {"gs-tool", "gs-lib", "gs-py", "python"}
    assert all(r["url"].startswith((mirror / "conda").as_uri()) for r in recs)
    out = subprocess.run([str(prefix / "bin" / "gs-hello")], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "hello from gs-tool with gs-lib 1.0"
    assert (prefix / "lib" / "python3.11" / "site-packages" / "gs_py" / "__init__.py").read_text() == "VALUE = 42\n"


def test_solves_for_the_other_platform_from_the_mirror_alone(crossed, tmp_path):
    _, _, mirror, _, _ = crossed
    recs = consume((mirror / "conda" / "upstream").as_uri(), "osx-arm64", None, ["gs-tool", "gs-py"], tmp_path / "c")
    assert {(r["name"], r["subdir"]) for r in recs} == {("gs-tool", "osx-arm64"), ("gs-lib", "osx-arm64"),
                                                        ("gs-py", "noarch"), ("python", "osx-arm64")}


def test_installs_over_gapsync_serve(crossed, tmp_path):
    _, _, mirror, _, _ = crossed
    port = free_port()
    server = Server([GAPSYNC, "serve", "--mirror", str(mirror), "--listen", f"127.0.0.1:{port}"],
                    f"http://127.0.0.1:{port}/conda/upstream/noarch/repodata.json", env=isolated_env())
    try:
        prefix = tmp_path / "env"
        recs = consume(f"http://127.0.0.1:{port}/conda/upstream", "linux-64", prefix, ["gs-tool"], tmp_path / "c")
        assert {r["name"] for r in recs} == {"gs-tool", "gs-lib"}
        out = subprocess.run([str(prefix / "bin" / "gs-hello")], capture_output=True, text=True, check=True).stdout
        assert "gs-lib 1.0" in out
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/conda/upstream/channeldata.json") as resp:
            doc = json.load(resp)
        assert doc["packages"]["gs-tool"]["subdirs"] == ["linux-64", "osx-arm64"] and "noarch" in doc["subdirs"]
    finally:
        server.stop()


def test_bundle_targets_and_sbom_cover_conda(crossed):
    """The signed targets say what each conda file is; the bundle's own SBOM (valid CycloneDX
    1.6) lists each conda package version as pkg:conda with its files and license."""
    import tarfile

    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    _, _, mirror, bundle, _ = crossed
    with tarfile.open(bundle) as tf:
        targets = json.loads(tf.extractfile("metadata/targets.json").read())["signed"]["targets"]
        sbom_digest = targets["gapsync/sbom.cdx.json"]["hashes"]["sha256"]
        data = tf.extractfile(f"blobs/sha256/{sbom_digest}").read()
    t = targets["conda/upstream/osx-arm64/gs-tool-0.1-h0_0.tar.bz2"]["custom"]
    assert t["kind"] == "conda" and t["subdir"] == "osx-arm64" and t["depends"] == ["gs-lib >=1,<2"]
    assert t["license"] == "Apache-2.0" and t["record"]["build"] == "h0_0" and t["platforms"] == ["osx-arm64"]
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode()) is None
    comps = {c["bom-ref"]: c for c in json.loads(data)["components"]}
    tool = comps["conda:gs-tool@0.1"]
    assert tool["purl"].startswith("pkg:conda/gs-tool@0.1?channel=")
    assert tool["licenses"][0]["expression"] == "Apache-2.0"
    assert {r["url"] for r in tool["externalReferences"]} >= {"conda/upstream/linux-64/gs-tool-0.1-h0_0.tar.bz2",
                                                                "conda/upstream/osx-arm64/gs-tool-0.1-h0_0.tar.bz2"}
    py = comps["conda:gs-py@1.0"]  # one file: the purl names the build
    assert "build=pyh0_0" in py["purl"] and "subdir=noarch" in py["purl"] and "type=conda" in py["purl"]


def test_second_import_is_nothing_new_and_tree_stable(crossed):
    _, _, mirror, bundle, _ = crossed
    before = (mirror / "conda" / "upstream" / "linux-64" / "repodata.json").read_bytes()
    r = cli("import", bundle, "--mirror", mirror)
    assert r.code in (0, 5), r.err
    assert (mirror / "conda" / "upstream" / "linux-64" / "repodata.json").read_bytes() == before


def test_delta_carries_only_new_packages_and_keeps_the_old_ones(conda_upstream, tmp_path):
    from tests.support.channels import carried, sync

    ch = new_channel(tmp_path, "prod")
    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-tool"], platforms=["linux-64"])
    r = sync(ch, spec, tmp_path / "o1")
    assert r.code == 0, r.err
    b1 = Path(json.loads(r.out)["bundle"])
    r = sync(ch, spec, tmp_path / "o1b")  # the same environment again: nothing new, no bundle
    assert r.code == 5 and json.loads(r.out)["nothing_new"] is True, r.err
    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-tool", "gs-py"], platforms=["linux-64"])
    r = sync(ch, spec, tmp_path / "o2")
    assert r.code == 0, r.err
    v2 = json.loads(r.out)
    assert v2["kind"] == "delta"
    b2 = Path(v2["bundle"])
    assert carried(b2) == ["conda/upstream/linux-64/python-3.11.0-h0_0_cpython.conda",
                           "conda/upstream/noarch/gs-py-1.0-pyh0_0.conda"]
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    assert cli("import", b1, "--mirror", m).code == 0
    r = cli("import", b2, "--mirror", m)
    assert r.code == 0, r.err
    linux = json.loads((m / "conda" / "upstream" / "linux-64" / "repodata.json").read_text())
    assert sorted([*linux["packages"], *linux["packages.conda"]]) == [
        "gs-lib-1.0-h0_0.conda", "gs-tool-0.1-h0_0.tar.bz2", "python-3.11.0-h0_0_cpython.conda"]
    recs = consume((m / "conda" / "upstream").as_uri(), "linux-64", None, ["gs-tool", "gs-py"], tmp_path / "c")
    assert len(recs) == 4


def test_receipt_delta_carries_what_the_air_side_lacks(conda_upstream, tmp_path):
    from tests.support.channels import carried, sync

    ch = new_channel(tmp_path, "prod")
    assert cli("keys", "generate", "--out", tmp_path / "air", "--name", "air").code == 0
    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-tool"], platforms=["linux-64"])
    b1 = Path(json.loads(sync(ch, spec, tmp_path / "o1").out)["bundle"])
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    assert cli("import", b1, "--mirror", m).code == 0
    assert cli("receipt", "--mirror", m, "-o", tmp_path / "r.json", "--key", tmp_path / "air/air.key").code == 0
    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-tool"], platforms=["linux-64", "osx-arm64"])
    r = sync(ch, spec, tmp_path / "o2", "--receipt", tmp_path / "r.json", "--receipt-key", tmp_path / "air/air.pub")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["kind"] == "delta" and carried(Path(doc["bundle"])) == [
        "conda/upstream/osx-arm64/gs-lib-1.0-h0_0.conda", "conda/upstream/osx-arm64/gs-tool-0.1-h0_0.tar.bz2"]
    assert cli("import", Path(doc["bundle"]), "--mirror", m).code == 0
    recs = consume((m / "conda" / "upstream").as_uri(), "osx-arm64", None, ["gs-tool"], tmp_path / "c")
    assert {r["subdir"] for r in recs} == {"osx-arm64"}


def test_volumes_publish_conda_packages_when_their_volume_comes(conda_upstream, tmp_path):
    ch = new_channel(tmp_path, "prod")
    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-tool", "gs-py"])
    # the smallest volume size the format accepts (the metadata and a minimum share of blobs; it
    # depends on the format's overheads): the packages, the SBOM and the advisory snapshot then
    # spread over several volumes
    for kb in range(80, 400, 2):
        r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "out",
                "--cache", tmp_path / "cache", "--max-volume-size", f"{kb}KB")
        if r.code == 0 or "too small" not in r.err and "does not fit" not in r.err:
            break
    assert r.code == 0, r.err
    volumes = sorted((tmp_path / "out").glob("*.gapsync"))
    assert len(volumes) >= 2, volumes
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    for v in reversed(volumes):  # any order
        r = cli("import", v, "--mirror", m)
        assert r.code in (0, 5), r.err
    recs = consume((m / "conda" / "upstream").as_uri(), "linux-64", tmp_path / "env", ["gs-tool", "gs-py"], tmp_path / "c")
    assert len(recs) == 4
    assert (tmp_path / "env" / "bin" / "gs-hello").exists()


def test_inspect_and_report_show_conda_packages(crossed, conda_upstream, tmp_path):
    base, ch, mirror, bundle, _ = crossed
    r = cli("bundle", "inspect", bundle)
    assert r.code == 0, r.err
    assert "conda package" in r.out and "gs-tool-0.1-h0_0.tar.bz2" in r.out and "osx-arm64" in r.out
    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-tool"], platforms=["linux-64"])
    report = tmp_path / "report.html"
    ch2 = new_channel(tmp_path / "ch")
    r = cli("bundle", "create", "-f", spec, "--state", ch2.state, "--key", ch2.keys[0], "-o", tmp_path / "out",
            "--cache", tmp_path / "c", "--report", report)
    assert r.code == 0, r.err
    page = report.read_text()
    assert "conda:gs-tool@0.1" in page and "linux-64/gs-tool-0.1-h0_0.tar.bz2" in page and conda_upstream.url in page


def test_the_same_spec_and_channel_give_a_byte_identical_lock(crossed, conda_upstream, tmp_path):
    base = crossed[0]
    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-tool", "gs-py"])
    r = cli("resolve", "-f", spec, "-o", tmp_path / "again.lock", "--cache", tmp_path / "c")
    assert r.code == 0, r.err
    assert (tmp_path / "again.lock").read_bytes() == (base / "g.lock").read_bytes()
