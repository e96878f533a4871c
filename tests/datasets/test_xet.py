"""Files the Hub stores with Xet: the stand-in announces them as the Hub does (``X-Xet-Hash`` and a
``rel="xet-auth"`` link on resolve, ``xetHash`` in the tree, an ``xet-read-token`` endpoint), and
gapsync fetches their bytes through the resolve URL (the fallback huggingface_hub itself takes when
hf_xet is absent or disabled), checked against the sha256 the listing announced."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.support.channels import new_channel
from tests.support.cli import cli
from tests.support.datasets import PARQUET, SNAPSHOT, Hub, clean_env, run_py, write_datasets
from tests.support.models import TINY, build_default_repos

ANNOUNCED = r"""
import json, sys
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
endpoint, repo = sys.argv[1], sys.argv[2]
api = HfApi(endpoint=endpoint)
tree = {e.path: getattr(e, "xet_hash", None) for e in api.list_repo_tree(repo, repo_type="dataset", recursive=True)
        if hasattr(e, "lfs")}
meta = get_hf_file_metadata(hf_hub_url(repo, "data/test.parquet", repo_type="dataset", endpoint=endpoint))
print(json.dumps({"tree": tree, "xet_hash": meta.xet_file_data.file_hash if meta.xet_file_data else None,
                  "refresh": meta.xet_file_data.refresh_route if meta.xet_file_data else None, "etag": meta.etag}))
"""


@pytest.fixture
def xet_hub(tmp_path):
    root = tmp_path / "hub" / "root"
    write_datasets(root)
    build_default_repos(root)
    hub = Hub(root, xet=True)
    yield hub
    hub.stop()


def spec(tmp_path, hub) -> object:
    p = tmp_path / "g.yaml"
    p.write_text(f"name: x\nchannel: prod\nmodels:\n  - hf: {TINY}\n    endpoint: {hub.url}\n"
                 f"datasets:\n  - hf: {PARQUET}\n    endpoint: {hub.url}\n")
    return p


def test_the_stand_in_announces_xet_as_the_hub_does(xet_hub, tmp_path):
    got = run_py(ANNOUNCED, [xet_hub.url, PARQUET], clean_env(), tmp_path)
    assert got["xet_hash"] and len(got["xet_hash"]) == 64  # huggingface_hub parsed XetFileData from the answer
    assert got["refresh"].endswith(f"/api/datasets/{PARQUET}/xet-read-token/" + got["refresh"].rsplit("/", 1)[-1])
    assert got["tree"]["data/test.parquet"] == got["xet_hash"] and got["tree"]["README.md"] is None


def test_xet_backed_files_cross_through_the_resolve_url(xet_hub, tmp_path):
    ch = new_channel(tmp_path, "prod")
    lock = tmp_path / "g.lock"
    r = cli("resolve", "-f", spec(tmp_path, xet_hub), "-o", lock, "--cache", tmp_path / "c")
    assert r.code == 0, r.err
    r = cli("bundle", "create", "-f", tmp_path / "g.yaml", "--lock", lock, "--state", ch.state, "--key", ch.keys[0],
            "-o", tmp_path / "o", "--cache", tmp_path / "c")
    assert r.code == 0, r.err
    log = xet_hub.log()
    assert any(e["path"].startswith("/xet-bridge/datasets/") and e["status"] == 200 for e in log)
    assert any(e["path"].startswith("/xet-bridge/acme/tiny-bert/") and e["status"] == 200 for e in log)
    assert not any("xet-read-token" in e["path"] or e["path"].startswith("/no-xet-cas") for e in log)
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    assert cli("import", next((tmp_path / "o").glob("*.gapsync")), "--mirror", m).code == 0
    locked = {f["path"]: f["sha256"] for f in json.loads(lock.read_text())["datasets"][0]["files"]}
    base = xet_hub.root / "datasets" / PARQUET / "revisions"
    rev = next(base.iterdir())
    assert locked == {p.relative_to(rev).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                      for p in rev.rglob("*") if p.is_file()}
    # the real client, hf_xet disabled, takes the same fallback and gets the same bytes
    ref = run_py(SNAPSHOT, [PARQUET, "main"], clean_env(HF_ENDPOINT=xet_hub.url, HF_HUB_DISABLE_XET="1",
                                                        HF_HUB_CACHE=str(tmp_path / "ref")), tmp_path)
    assert ref["files"] == locked
    offline = run_py(SNAPSHOT, [PARQUET, "main"], clean_env(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(m / "models" / "hf")),
                     tmp_path)
    assert offline["files"] == locked


def test_xet_bytes_that_differ_from_the_announced_sha256_are_refused(tmp_path):
    root = tmp_path / "hub" / "root"
    write_datasets(root)
    hub = Hub(root, xet=True, mode="wrong-sha")
    try:
        p = tmp_path / "g.yaml"
        p.write_text(f"name: x\nchannel: prod\ndatasets:\n  - hf: {PARQUET}\n    endpoint: {hub.url}\n")
        ch = new_channel(tmp_path, "prod")
        r = cli("bundle", "create", "-f", p, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o",
                "--cache", tmp_path / "c")
        assert r.code == 3 and "does not match" in r.err
        assert not list((tmp_path / "o").glob("*.gapsync"))
    finally:
        hub.stop()
