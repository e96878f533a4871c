"""Models end to end with the real huggingface_hub client against the Hub stand-in: pin, bundle,
import into a Hugging Face cache layout, load offline, serve the Hub API; hostile hubs."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from gapsync.bundler.cache import BlobCache
from tests.support.channels import new_channel
from tests.support.cli import GAPSYNC, cli
from tests.support.models import OTHER, TINY, offline_env
from tests.support.servers import Server, free_port, static_server

OFFLINE_READ = r"""
import json, sys, hashlib, os
from huggingface_hub import snapshot_download, hf_hub_download
repo, rev = sys.argv[1], sys.argv[2]
path = snapshot_download(repo, revision=rev)
files = {}
for root, _, names in os.walk(path):
    for n in names:
        p = os.path.join(root, n)
        files[os.path.relpath(p, path)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
out = {"path": path, "files": files}
if "model.safetensors" in files:
    from safetensors.numpy import load_file
    t = load_file(hf_hub_download(repo, "model.safetensors", revision=rev))
    out["tensors"] = sorted(t)
print(json.dumps(out))
"""


def read_offline(cache: Path, repo: str, rev: str, env: dict | None = None) -> dict:
    r = subprocess.run([sys.executable, "-c", OFFLINE_READ, repo, rev], capture_output=True, text=True,
                       env=env or offline_env(cache))
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.splitlines()[-1])


def model_spec(path: Path, hub_url: str, rev: str = "main", extra: str = "", repo: str = TINY) -> Path:
    path.write_text(f"name: mod\nchannel: prod\nmodels:\n  - hf: {repo}\n    revision: {rev}\n    endpoint: {hub_url}\n{extra}")
    return path


@pytest.fixture(scope="module")
def hub_world(fake_hub, tmp_path_factory):
    base = tmp_path_factory.mktemp("hub-world")
    ch = new_channel(base, "prod")
    spec = model_spec(base / "g.yaml", fake_hub.url, "main", "    exclude: ['onnx/*']\n")
    lock = base / "g.lock"
    r = cli("resolve", "-f", spec, "-o", lock, "--cache", base / "cache")
    assert r.code == 0, r.err
    r = cli("bundle", "create", "-f", spec, "--lock", lock, "--state", ch.state, "--key", ch.keys[0], "-o", base / "o1",
            "--cache", base / "cache")
    assert r.code == 0, r.err
    b1 = next((base / "o1").glob("*.gapsync"))
    spec2 = model_spec(base / "g2.yaml", fake_hub.url, "v1.0")
    assert cli("bundle", "create", "-f", spec2, "--state", ch.state, "--key", ch.keys[0], "-o", base / "o2",
               "--cache", base / "cache").code == 0
    b2 = next((base / "o2").glob("*.gapsync"))
    mirror = base / "mirror"
    assert cli("trust", "pin", ch.root, "--mirror", mirror).code == 0
    assert cli("import", b1, "--mirror", mirror).code == 0
    return SimpleNamespace(**vars(ch), lock=json.loads(lock.read_text()), b1=b1, b2=b2, mirror=mirror, hub=fake_hub)


def test_resolve_pins_commit_and_every_file_by_sha256(hub_world):
    repo = hub_world.hub.repos[TINY]
    [m] = hub_world.lock["models"]
    assert m["commit"] == repo.commit("main") and m["revision"] == "main"
    files = {f["path"]: f for f in m["files"]}
    assert set(files) == set(repo.paths("main")) - {"onnx/model.onnx"}  # excluded
    for path, f in files.items():
        assert f["sha256"] == repo.sha256(path) and f["size"] == repo.size(path)
        assert f["etag"] == repo.etag(path) and f["lfs"] == repo.lfs(path)
    assert m["meta"]["license"] == "apache-2.0" and m["meta"]["library"] == "sentence-transformers"
    assert "safetensors" in m["meta"]["formats"]


def test_imported_model_loads_offline_with_huggingface_hub(hub_world):
    repo = hub_world.hub.repos[TINY]
    got = read_offline(hub_world.mirror / "models/hf", TINY, "main")
    assert got["files"] == {p: repo.sha256(p) for p in repo.paths("main") if p != "onnx/model.onnx"}
    assert got["tensors"]  # safetensors read the weights
    assert f"snapshots/{repo.commit('main')}" in got["path"]


def test_second_bundle_adds_a_revision_without_disturbing_the_first(hub_world, tmp_path):
    import shutil

    m = tmp_path / "mirror"
    shutil.copytree(hub_world.mirror, m, symlinks=True)
    r = cli("import", hub_world.b2, "--mirror", m)
    assert r.code == 0, r.err
    repo = hub_world.hub.repos[TINY]
    main, v1 = read_offline(m / "models/hf", TINY, "main"), read_offline(m / "models/hf", TINY, "v1.0")
    assert v1["files"] == {p: repo.sha256(p, "v1.0") for p in repo.paths("v1.0")}
    assert main["files"]["config.json"] != v1["files"]["config.json"]
    blobs = list((m / "models/hf/models--acme--tiny-bert/blobs").iterdir())
    assert len(blobs) == len({repo.etag(p, r) for r in ("main", "v1.0") for p in repo.paths(r)})  # shared files once
    with __import__("tarfile").open(hub_world.b2) as tf:  # and the bundle carried each file once
        carried = [n for n in tf.getnames() if n.startswith("blobs/")]
    assert len(carried) == len(set(carried))


def test_serve_answers_the_hub_api(hub_world, tmp_path):
    port = free_port()
    srv = Server([GAPSYNC, "serve", "--mirror", str(hub_world.mirror), "--listen", f"127.0.0.1:{port}"],
                 f"http://127.0.0.1:{port}/api/models/{TINY}")
    try:
        env = {**offline_env(tmp_path / "fresh"), "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{port}"}
        got = read_offline(tmp_path / "fresh", TINY, "main", env=env)
        repo = hub_world.hub.repos[TINY]
        assert got["files"] == {p: repo.sha256(p) for p in repo.paths("main") if p != "onnx/model.onnx"}
        # the cache it filled now works offline too
        assert read_offline(tmp_path / "fresh", TINY, "main")["files"] == got["files"]
    finally:
        srv.stop()


def test_inspect_lists_models(hub_world):
    r = cli("bundle", "inspect", hub_world.b1)
    assert "acme/tiny-bert" in r.out and "Apache-2.0" in r.out and "safetensors" in r.out  # the card's id, as SPDX
    doc = json.loads(cli("bundle", "inspect", hub_world.b1, "--json").out)
    [a] = [a for a in doc["artifacts"] if a["kind"] == "model"]
    assert a["commit"] == hub_world.hub.repos[TINY].commit("main") and a["size"] > 65_000


def test_token_from_environment_is_sent_to_the_hub_not_to_the_cdn(make_hub, tmp_path, monkeypatch):
    hub = make_hub(token="hf_secret")
    spec = model_spec(tmp_path / "g.yaml", hub.url, repo=OTHER)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
    assert r.code == 1 and "HF_TOKEN" in r.err, r.err
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    ch = new_channel(tmp_path, "prod")
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o", "--cache", tmp_path / "c")
    assert r.code == 0, r.err
    log = hub.log()
    assert all(e["auth"] for e in log if e["host"].startswith("127.0.0.1") and e["status"] < 400 and not e["path"].startswith("/_"))
    assert all(not e["auth"] for e in log if e["host"].startswith("localhost"))


def test_revision_moved_between_resolve_and_create_changes_nothing(make_hub, tmp_path):
    hub = make_hub()
    repo = hub.repos[TINY]
    spec = model_spec(tmp_path / "g.yaml", hub.url)
    lock = tmp_path / "l"
    assert cli("resolve", "-f", spec, "-o", lock, "--cache", tmp_path / "c").code == 0
    hub.move(TINY, "main", repo.commit("v1.0"))
    ch = new_channel(tmp_path, "prod")
    r = cli("bundle", "create", "-f", spec, "--lock", lock, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o",
            "--cache", tmp_path / "c", "--json")
    assert r.code == 0, r.err
    [a] = [a for a in json.loads(r.out)["artifacts"] if a["kind"] == "model"]
    assert a["commit"] == json.loads(lock.read_text())["models"][0]["commit"] != repo.commit("main")


def test_hub_serving_other_bytes_is_refused_and_nothing_cached(make_hub, tmp_path):
    hub = make_hub(mode="wrong-sha")
    ch = new_channel(tmp_path, "prod")
    spec = model_spec(tmp_path / "g.yaml", hub.url)
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o", "--cache", tmp_path / "c")
    assert r.code == 3 and "does not match" in r.err and len(r.err.strip().splitlines()) == 1
    cache = BlobCache(tmp_path / "c")
    repo = hub.repos[TINY]
    for p in repo.paths("main"):
        if repo.lfs(p):
            assert not cache.has(repo.sha256(p))
    assert not list((tmp_path / "c/partial").glob("*.part"))


@pytest.mark.parametrize("mode, code, words", [("traversal", 1, ["unsafe file name", "../evil.txt"]),  # the Hub's fault
                                               ("many-files", 2, ["more than 20000 files"])])  # narrow the spec
def test_hostile_trees_are_refused(make_hub, tmp_path, mode, code, words):
    hub = make_hub(mode=mode)
    spec = model_spec(tmp_path / "g.yaml", hub.url)
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
    assert r.code == code, (r.code, r.err)
    for w in words:
        assert w in r.err
    assert not (tmp_path / "l").exists()


def test_url_model_pinned_by_sha256(tmp_path):
    root = tmp_path / "srv"
    (root / "simple").mkdir(parents=True)
    (root / "files").mkdir()
    data = b"skops-model-bytes" * 100
    (root / "files/churn.skops").write_bytes(data)
    srv = static_server(root)
    try:
        url = srv.url.replace("/simple/", "/files/churn.skops")
        ch = new_channel(tmp_path, "prod")
        good, bad = hashlib.sha256(data).hexdigest(), "ab" * 32
        for sha, code in ((bad, 3), (good, 0)):
            spec = tmp_path / "g.yaml"
            spec.write_text(f"name: u\nchannel: prod\nmodels:\n  - url: {url}\n    sha256: {sha}\n")
            r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / f"o{code}",
                    "--cache", tmp_path / "c")
            assert r.code == code, r.err
    finally:
        srv.stop()
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    assert cli("import", next((tmp_path / "o0").glob("*.gapsync")), "--mirror", m).code == 0
    assert read_offline(m / "models/hf", "url/churn.skops", "main")["files"] == {"churn.skops": good}


def test_path_model_changed_after_resolve_is_refused(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "weights.bin").write_bytes(b"\x00" * 1000)
    spec = tmp_path / "g.yaml"
    spec.write_text("name: p\nchannel: prod\nmodels:\n  - path: ./model\n    name: team/local\n")
    ch = new_channel(tmp_path, "prod")
    assert cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c").code == 0
    (d / "weights.bin").write_bytes(b"\x01" * 1000)
    r = cli("bundle", "create", "-f", spec, "--lock", tmp_path / "l", "--state", ch.state, "--key", ch.keys[0],
            "-o", tmp_path / "o", "--cache", tmp_path / "c")
    assert r.code == 3 and "changed since gapsync resolve" in r.err
    (d / "link").symlink_to(d / "weights.bin")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l2")
    assert r.code == 2 and "links" in r.err


@pytest.mark.slow
def test_real_minilm_model_crosses_and_loads_offline(minilm_repo, fake_hub, tmp_path):
    ch = new_channel(tmp_path, "prod")
    spec = model_spec(tmp_path / "g.yaml", fake_hub.url, repo=minilm_repo.repo_id)
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o", "--cache", tmp_path / "c")
    assert r.code == 0, r.err
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    assert cli("import", next((tmp_path / "o").glob("*.gapsync")), "--mirror", m).code == 0
    got = read_offline(m / "models/hf", minilm_repo.repo_id, "main")
    assert got["files"]["model.safetensors"] == minilm_repo.sha256("model.safetensors")
    assert len(got["tensors"]) > 50
