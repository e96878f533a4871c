"""The three zones with real parts: a static index over HTTP, `gapsync serve`, pip and uv."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

import pytest

from tests.support.cli import ARCH, GAPSYNC, cli, isolated_env
from tests.support.servers import Server, free_port
from tests.support.trees import snapshot


@pytest.fixture(scope="module")
def served_v2(world, tmp_path_factory):
    m = tmp_path_factory.mktemp("served") / "mirror"
    assert cli("trust", "pin", world.root, "--mirror", m).code == 0
    r = cli("import", world.b2, "--mirror", m)
    assert r.code == 0, r.err
    port = free_port()
    server = Server([GAPSYNC, "serve", "--mirror", str(m), "--listen", f"127.0.0.1:{port}"],
                    f"http://127.0.0.1:{port}/simple/")
    yield m, f"http://127.0.0.1:{port}"
    server.stop()


def test_pip_installs_from_served_mirror_alone(served_v2, tmp_path):
    _, url = served_v2
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin/pip"), "install", "--isolated", "--no-cache-dir", "--index-url", f"{url}/simple/",
                        "alpha", "gamma", "native"], capture_output=True, text=True, env=isolated_env())
    assert r.returncode == 0, r.stdout + r.stderr
    frozen = subprocess.run([str(venv / "bin/pip"), "freeze", "--isolated"], capture_output=True, text=True,
                            env=isolated_env()).stdout
    assert "alpha==1.0" in frozen and "beta==2.0" in frozen and "native==1.0" in frozen
    assert "winonly" not in frozen  # the marker said win32 only
    # newpy needs Python >= 3.12: pip on 3.11 must see data-requires-python and refuse it
    r = subprocess.run([str(venv / "bin/pip"), "install", "--isolated", "--no-cache-dir", "--index-url", f"{url}/simple/",
                        "newpy"], capture_output=True, text=True, env=isolated_env())
    assert r.returncode != 0 and "Requires-Python" in (r.stdout + r.stderr)


def test_uv_installs_from_served_mirror_alone(served_v2, tmp_path):
    _, url = served_v2
    uv = str(Path(sys.executable).with_name("uv"))
    env = isolated_env(UV_CACHE_DIR=str(tmp_path / "uvcache"))
    subprocess.run([uv, "venv", "--no-config", "--python", sys.executable, str(tmp_path / "v")], check=True, env=env,
                   capture_output=True)
    r = subprocess.run([uv, "pip", "install", "--no-config", "--python", str(tmp_path / "v/bin/python"),
                        "--index-url", f"{url}/simple/", "alpha", "gamma", "native"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "+ beta==2.0" in r.stderr and "+ native==1.0" in r.stderr


def test_served_index_speaks_pep691_and_pep503(served_v2):
    m, url = served_v2
    req = urllib.request.Request(f"{url}/simple/newpy/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req) as resp:
        assert resp.headers["Content-Type"].startswith("application/vnd.pypi.simple.v1+json")
        doc = json.load(resp)
    f = doc["files"][0]
    assert doc["meta"]["api-version"] == "1.1" and doc["versions"] == ["1.0"]
    assert f["requires-python"] == ">=3.12" and f["size"] > 0
    with urllib.request.urlopen(f"{url}/files/{f['filename']}.metadata") as resp:
        assert hashlib.sha256(resp.read()).hexdigest() == f["core-metadata"]["sha256"]
    with urllib.request.urlopen(f"{url}/files/{f['filename']}") as resp:
        assert hashlib.sha256(resp.read()).hexdigest() == f["hashes"]["sha256"]
    with urllib.request.urlopen(f"{url}/simple/newpy/") as resp:  # no Accept: HTML
        page = resp.read().decode()
    assert 'data-requires-python="&gt;=3.12"' in page and "data-core-metadata=" in page
    # a non-normalized name redirects to the normalized page
    with urllib.request.urlopen(f"{url}/simple/NewPy") as resp:
        assert resp.url.endswith("/simple/newpy/")


def test_index_holds_exactly_what_the_targets_need(served_v2):
    m, _ = served_v2
    files = sorted(p.name for p in (m / "pypi/files").iterdir() if not p.name.endswith(".metadata"))
    assert "beta-3.0-py3-none-any.whl" not in files  # yanked upstream
    assert "beta-2.0-py3-none-any.whl" in files
    assert "delta-1.0-py3-none-any.whl" in files  # needed by gamma on 3.12 only
    assert not any(f.startswith("winonly") for f in files)
    assert not any("win_amd64" in f for f in files)
    assert sum(f.startswith("native-") for f in files) == 2  # cp311 and cp312
    projects = json.loads((m / "pypi/simple/index.json").read_text())["projects"]
    assert {p["name"] for p in projects} == {"alpha", "beta", "gamma", "delta", "native", "newpy"}
    # published files are hard links to the verified blob store: no second copy of the bytes
    whl = m / "pypi/files/alpha-1.0-py3-none-any.whl"
    assert whl.stat().st_nlink == 2


def test_bundle_layout_is_v1(world):
    with tarfile.open(world.b2) as tf:
        names = tf.getnames()
        targets = json.loads(tf.extractfile("metadata/targets.json").read())["signed"]
    assert names[:4] == ["metadata/1.root.json", "metadata/timestamp.json", "metadata/snapshot.json", "metadata/targets.json"]
    assert all(n.startswith("blobs/sha256/") for n in names[4:])
    digests = [n.rsplit("/", 1)[1] for n in names[4:]]
    assert len(digests) == len(set(digests))
    tmap = targets["targets"]
    assert set(digests) == {t["hashes"]["sha256"] for t in tmap.values()}  # every blob a target, every target carried
    alpha = tmap["python/alpha/alpha-1.0-py3-none-any.whl"]
    assert alpha["custom"]["kind"] == "python" and alpha["custom"]["tags"] == [
        f"cp311-manylinux_2_17_{ARCH}", f"cp312-manylinux_2_17_{ARCH}"]
    assert "gapsync/bundle.json" in tmap and targets["x-gapsync"]["channel"] == "prod"
    assert targets["version"] == 2


def test_import_v1_then_v2_adds_then_nothing_new_then_replay_refused(world, mirror):
    r = cli("import", world.b1, "--mirror", mirror, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["version"] == 1
    assert not (mirror / "pypi/simple/newpy").exists()
    r = cli("import", world.b2, "--mirror", mirror)
    assert r.code == 0, r.err
    assert (mirror / "pypi/simple/newpy/index.html").exists() and (mirror / "pypi/simple/alpha/index.html").exists()
    before = snapshot(mirror)
    r = cli("import", world.b2, "--mirror", mirror)
    assert r.code == 5 and "nothing new" in r.out
    r = cli("import", world.b1, "--mirror", mirror)
    assert r.code == 3 and "older or replayed" in r.err and str(world.b1) in r.err
    assert snapshot(mirror) == before
    log = (mirror / ".gapsync/audit.log").read_text().splitlines()
    assert json.loads(log[-1])["result"] == "refused" and json.loads(log[-2])["result"] == "nothing-new"


def test_verify_checks_everything_and_publishes_nothing(world, mirror):
    before = snapshot(mirror)
    r = cli("bundle", "verify", world.b2, "--mirror", mirror, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    with tarfile.open(world.b2) as tf:
        carried = [n for n in tf.getnames() if n.startswith("blobs/")]
    assert doc["result"] == "verified" and doc["blobs_read"] == len(carried)  # every blob hashed
    assert snapshot(mirror) == before
    # verify does not advance trust: the older v1 still imports afterwards
    assert cli("import", world.b1, "--mirror", mirror).code == 0


def test_inspect_lists_artifacts_without_trusting(world):
    r = cli("bundle", "inspect", world.b2, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["verified"] is False and doc["channel"] == "prod" and doc["version"] == 2
    names = {(a["name"], a["version"]) for a in doc["artifacts"]}
    assert ("newpy", "1.0") in names and ("beta", "2.0") in names
    r = cli("bundle", "inspect", world.b2)
    assert "NOT verified" in r.out and "newpy" in r.out


def test_stock_minisign_verifies_each_bundle(world, minisign_bin, tmp_path):
    for b in (world.b1, world.b2):
        r = subprocess.run([minisign_bin, "-Vm", str(b), "-p", str(world.pub[0])], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert f"file:{b.name}" in r.stdout
    bad = tmp_path / world.b1.name
    data = bytearray(world.b1.read_bytes())
    data[len(data) // 2] ^= 1
    bad.write_bytes(bytes(data))
    (tmp_path / (bad.name + ".minisig")).write_bytes(world.b1.with_name(world.b1.name + ".minisig").read_bytes())
    r = subprocess.run([minisign_bin, "-Vm", str(bad), "-p", str(world.pub[0])], capture_output=True, text=True)
    assert r.returncode != 0


def test_audit_logs_on_both_sides_verify(world, mirror):
    assert cli("import", world.b2, "--mirror", mirror).code == 0
    r = cli("audit", "verify", "--mirror", mirror)
    assert r.code == 0 and "chain intact" in r.out
    r = cli("audit", "verify", "--state", world.state)
    assert r.code == 0, r.err
    entries = [json.loads(ln) for ln in (world.state / "audit.log").read_text().splitlines()]
    assert [e["action"] for e in entries][:3] == ["channel.init", "bundle.create", "bundle.create"]


def test_import_says_what_was_new_and_what_was_already_there(world, mirror):
    r = cli("import", world.b1, "--mirror", mirror)
    assert r.code == 0 and "; 6 new, 0 already present" in r.out, r.out
    r = cli("import", world.b2, "--mirror", mirror)  # v2 = v1 + newpy
    assert r.code == 0 and "; 1 new, 6 already present" in r.out, r.out
