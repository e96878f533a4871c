"""Hugging Face datasets end to end with the real clients: the Hub stand-in serves parquet, CSV and
JSON Lines dataset repos (several configs, one split per file); one bundle carries them with a
model and packages; on the air side ``datasets.load_dataset`` through ``gapsync serve`` and
offline, and ``snapshot_download(repo_type="dataset")`` offline, read the rows the connected side
read from the stand-in. Loading scripts and pickles are blocked."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.channels import new_channel
from tests.support.cli import ARCH, GAPSYNC, cli
from tests.support.datasets import (
    CONFIGS,
    CSV,
    JSONL,
    LOAD_DATASET,
    PARQUET,
    PICKLED,
    SCRIPTED,
    SNAPSHOT,
    Hub,
    clean_env,
    run_py,
    write_datasets,
)
from tests.support.models import TINY, build_default_repos
from tests.support.servers import Server, free_port

pytest.importorskip("datasets")
GOOD = (PARQUET, CSV, JSONL)


def spec_text(hub_url: str, index_url: str | None, datasets: tuple[str, ...], model: bool = True) -> str:
    out = "name: ds\nchannel: prod\n"
    if index_url:
        out += (f"python:\n  index_url: {index_url}\n  requirements: [alpha]\n"
                f'  targets:\n    - {{python: "3.11", platform: manylinux_2_17_{ARCH}}}\n')
    if model:
        out += f"models:\n  - hf: {TINY}\n    endpoint: {hub_url}\n    exclude: ['onnx/*']\n"
    out += "datasets:\n" + "".join(f"  - hf: {d}\n    endpoint: {hub_url}\n" for d in datasets)
    return out


def load_rows(repo: str, env: dict, cwd: Path, revision: str | None = None) -> dict:
    code = LOAD_DATASET if revision is None else LOAD_DATASET.replace(
        "load_dataset(repo, c)", f"load_dataset(repo, c, revision={revision!r})")
    return run_py(code, [repo, ",".join(CONFIGS[repo])], env, cwd)


@pytest.fixture(scope="module")
def dworld(ext_index, tmp_path_factory):
    base = tmp_path_factory.mktemp("datasets")
    root = base / "hub" / "root"
    commits = write_datasets(root)
    build_default_repos(root)
    hub = Hub(root)
    try:
        ch = new_channel(base, "prod")
        spec = base / "g.yaml"
        spec.write_text(spec_text(hub.url, ext_index.url, GOOD))
        lock = base / "g.lock"
        r = cli("resolve", "-f", spec, "-o", lock, "--cache", base / "cache")
        assert r.code == 0, r.err
        r = cli("bundle", "create", "-f", spec, "--lock", lock, "--state", ch.state, "--key", ch.keys[0], "-o", base / "o1",
                "--cache", base / "cache", "--json")
        assert r.code == 0, r.err
        bundle = next((base / "o1").glob("*.gapsync"))
        mirror = base / "mirror"
        assert cli("trust", "pin", ch.root, "--mirror", mirror).code == 0
        r = cli("import", bundle, "--mirror", mirror)
        assert r.code == 0, r.err
        # what the connected side reads from the stand-in (its own fresh HF_HOME)
        ref = {d: load_rows(d, clean_env(HF_ENDPOINT=hub.url, HF_HOME=str(base / "ref-home")), base) for d in GOOD}
        yield SimpleNamespace(**vars(ch), hub=hub, hub_root=root, commits=commits, spec=spec,
                              lock=json.loads(lock.read_text()), bundle=bundle, mirror=mirror, ref=ref)
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def serve_url(dworld):
    port = free_port()
    srv = Server([GAPSYNC, "serve", "--mirror", str(dworld.mirror), "--listen", f"127.0.0.1:{port}"],
                 f"http://127.0.0.1:{port}/api/datasets/{PARQUET}")
    yield f"http://127.0.0.1:{port}"
    srv.stop()


def test_lock_pins_each_dataset_to_its_commit_with_every_file(dworld):
    locked = {d["name"]: d for d in dworld.lock["datasets"]}
    assert set(locked) == set(GOOD)
    for name, d in locked.items():
        assert d["commit"] == dworld.commits[name] and d["repo_type"] == "dataset"
        repo_dir = dworld.hub_root / "datasets" / name / "revisions" / d["commit"]
        on_disk = {p.relative_to(repo_dir).as_posix(): p for p in repo_dir.rglob("*") if p.is_file()}
        assert {f["path"] for f in d["files"]} == set(on_disk)
        import hashlib

        for f in d["files"]:
            data = on_disk[f["path"]].read_bytes()
            assert f["sha256"] == hashlib.sha256(data).hexdigest() and f["size"] == len(data)
    assert "parquet" in locked[PARQUET]["meta"]["formats"] and locked[PARQUET]["meta"]["license"] == "cc-by-4.0"
    assert [m["name"] for m in dworld.lock["models"]] == [TINY]  # the model beside them, the packages too
    assert dworld.lock["python"]["files"]


def test_cache_layout_for_datasets(dworld):
    hf = dworld.mirror / "models" / "hf"
    for name in GOOD:
        folder = hf / ("datasets--" + name.replace("/", "--"))
        assert (folder / "refs" / "main").read_text() == dworld.commits[name]
        snap = folder / "snapshots" / dworld.commits[name]
        assert (snap / "README.md").is_symlink() and (snap / "README.md").resolve().parent == (folder / "blobs").resolve()
    assert (hf / "models--acme--tiny-bert" / "refs" / "main").is_file()  # the model, in the same cache


def test_load_dataset_through_serve_reads_the_same_rows(dworld, serve_url, tmp_path):
    env = clean_env(HF_ENDPOINT=serve_url, HF_HOME=str(tmp_path / "home"))
    for name in GOOD:
        got = load_rows(name, env, tmp_path)
        assert got == dworld.ref[name], name
        n = sum(len(v) for split in got.values() for v in split.values())
        assert n > 0
    # by commit too, and then by name with the network off: datasets' own cache (filled just now)
    assert load_rows(PARQUET, clean_env(HF_ENDPOINT=serve_url, HF_HOME=str(tmp_path / "h2")), tmp_path,
                     revision=dworld.commits[PARQUET]) == dworld.ref[PARQUET]
    offline = clean_env(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "home"))
    assert load_rows(JSONL, offline, tmp_path) == dworld.ref[JSONL]


def test_snapshot_download_offline_from_the_mirror_cache(dworld, tmp_path):
    env = clean_env(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(dworld.mirror / "models" / "hf"), HF_HOME=str(tmp_path / "h"))
    for name in GOOD:
        got = run_py(SNAPSHOT, [name, "main"], env, tmp_path)
        locked = next(d for d in dworld.lock["datasets"] if d["name"] == name)
        assert got["files"] == {f["path"]: f["sha256"] for f in locked["files"]}
        assert got["path"].endswith(dworld.commits[name])


def test_load_dataset_offline_from_the_mirror_cache(dworld, tmp_path):
    """The documented offline form: snapshot_download (offline, from the mirror's cache) gives the
    snapshot directory, and load_dataset reads that directory (its README configs)."""
    code = LOAD_DATASET.replace("import datasets", "import datasets\nfrom huggingface_hub import snapshot_download").replace(
        "datasets.load_dataset(repo, c)", "datasets.load_dataset(snapshot_download(repo, repo_type='dataset'), c)")
    env = clean_env(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(dworld.mirror / "models" / "hf"), HF_HOME=str(tmp_path / "h"))
    for name in GOOD:
        assert run_py(code, [name, ",".join(CONFIGS[name])], env, tmp_path) == dworld.ref[name], name
    # by name alone, offline, with nothing in datasets' own cache: datasets refuses (what the guide says)
    by_name = clean_env(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(dworld.mirror / "models" / "hf"), HF_HOME=str(tmp_path / "h3"))
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", LOAD_DATASET, CSV, "default"], capture_output=True, text=True, env=by_name,
                       cwd=tmp_path, timeout=300)
    assert r.returncode != 0 and "offline" in r.stderr.lower()


def test_hub_api_for_datasets_at_revision_and_commit(dworld, serve_url, tmp_path):
    code = r"""
import json, sys
from huggingface_hub import HfApi
from huggingface_hub.hf_api import RepoFile, RepoFolder
api = HfApi(endpoint=sys.argv[1])
repo, commit = sys.argv[2], sys.argv[3]
info = api.dataset_info(repo)
info_c = api.dataset_info(repo, revision=commit)
top = list(api.list_repo_tree(repo, repo_type="dataset", revision=commit))
deep = list(api.list_repo_tree(repo, repo_type="dataset", recursive=True))
pi = api.get_paths_info(repo, ["README.md", "data", "nope.txt"], repo_type="dataset", revision="main")
print(json.dumps({"sha": info.sha, "sha_c": info_c.sha, "siblings": sorted(s.rfilename for s in info.siblings),
                  "top": sorted((type(e).__name__, e.path) for e in top),
                  "deep": sorted(e.path for e in deep if isinstance(e, RepoFile)),
                  "lfs": sorted(e.path for e in deep if isinstance(e, RepoFile) and e.lfs),
                  "paths_info": sorted((type(e).__name__, e.path) for e in pi)}))
"""
    got = run_py(code, [serve_url, PARQUET, dworld.commits[PARQUET]], clean_env(), tmp_path)
    locked = next(d for d in dworld.lock["datasets"] if d["name"] == PARQUET)
    assert got["sha"] == got["sha_c"] == dworld.commits[PARQUET]
    assert got["siblings"] == got["deep"] == sorted(f["path"] for f in locked["files"])
    assert got["lfs"] == sorted(f["path"] for f in locked["files"] if f["path"].endswith(".parquet"))
    assert got["top"] == [["RepoFile", ".gitattributes"], ["RepoFile", "README.md"], ["RepoFolder", "data"],
                          ["RepoFolder", "small"]]
    assert got["paths_info"] == [["RepoFile", "README.md"], ["RepoFolder", "data"]]
    import requests

    r = requests.get(f"{serve_url}/api/datasets/{PARQUET}/revision/nope", timeout=10)
    assert r.status_code == 404 and r.headers["X-Error-Code"] == "RevisionNotFound"
    r = requests.get(f"{serve_url}/api/datasets/{TINY}", timeout=10)  # a model is not a dataset
    assert r.status_code == 404 and r.headers["X-Error-Code"] == "RepoNotFound"
    r = requests.get(f"{serve_url}/api/models/{PARQUET}", timeout=10)  # nor the reverse
    assert r.status_code == 404
    r = requests.head(f"{serve_url}/datasets/{PARQUET}/resolve/main/data/test.parquet", timeout=10)
    assert r.status_code == 200 and r.headers["X-Repo-Commit"] == dworld.commits[PARQUET] and "X-Xet-Hash" not in r.headers


def test_bundle_inspect_lists_the_datasets(dworld):
    r = cli("bundle", "inspect", dworld.bundle, "--json")
    assert r.code == 0, r.err
    info = json.loads(r.out)
    text = json.dumps(info)
    for name in GOOD:
        assert name in text
    r = cli("bundle", "inspect", dworld.bundle)
    assert r.code == 0 and "dataset" in r.out and PARQUET in r.out


def test_sbom_has_data_components(dworld, tmp_path):
    from gapsync.mirror.layout import MirrorLayout

    layout = MirrorLayout(dworld.mirror)
    sboms = []
    # the SBOM is a signed target: find it in the mirror's blob store by its JSON shape
    for blob in layout.root.rglob("*"):
        if blob.is_file() and blob.stat().st_size < 5 << 20:
            try:
                doc = json.loads(blob.read_bytes())
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(doc, dict) and doc.get("bomFormat") == "CycloneDX":
                sboms.append(doc)
                from cyclonedx.schema import SchemaVersion
                from cyclonedx.validation.json import JsonStrictValidator

                assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(blob.read_text()) is None
    assert sboms
    comps = {c["bom-ref"]: c for c in sboms[-1]["components"]}
    for name in GOOD:
        c = comps[f"dataset:{name}@main"]
        assert c["type"] == "data" and c["purl"].startswith(f"pkg:huggingface/{name}@") and "repository_type=dataset" in c["purl"]
    assert comps[f"model:{TINY}@main"]["type"] == "machine-learning-model"


def test_loading_script_is_blocked_and_a_waiver_lets_it_through(dworld, tmp_path):
    ch = new_channel(tmp_path, "prod")
    spec = tmp_path / "g.yaml"
    spec.write_text(spec_text(dworld.hub.url, None, (SCRIPTED,), model=False))
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o",
            "--cache", tmp_path / "c")
    assert r.code == 4, r.err
    assert "loading script" in r.err and SCRIPTED in r.err and not list((tmp_path / "o").glob("*.gapsync"))
    policy = tmp_path / "p.yaml"
    policy.write_text("name: waived\nwaivers:\n  - {id: datasets.loading_script, package: acme/scripted-*, until: 2099-01-01,"
                      " reason: script reviewed, approved_by: sec}\n")
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o",
            "--cache", tmp_path / "c", "--policy", policy)
    assert r.code == 0, r.err


def test_pickle_in_a_dataset_is_scanned_like_a_model_file(dworld, tmp_path):
    ch = new_channel(tmp_path, "prod")
    spec = tmp_path / "g.yaml"
    spec.write_text(spec_text(dworld.hub.url, None, (PICKLED, CSV), model=False))
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o",
            "--cache", tmp_path / "c", "--allow-partial", "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["blocked"] == [f"dataset:{PICKLED}@main"]
    assert not Path("/tmp/gapsync-dataset-pwned").exists()
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    assert cli("import", next((tmp_path / "o").glob("*.gapsync")), "--mirror", m).code == 0
    hf = m / "models" / "hf"
    assert (hf / "datasets--acme--csv-data").is_dir() and not (hf / "datasets--acme--pickled-data").exists()


def test_sync_delta_carries_only_what_is_new(dworld, tmp_path):
    """The CSV dataset's main moves to a new commit (one file changed): ``sync`` makes a delta that
    carries that file and the new manifest, not the other datasets' files; the import moves the ref."""
    from gapsync.demo.hub_standin import write_repo
    from tests.support.datasets import csv_bytes, rows

    old = dworld.hub_root / "datasets" / CSV / "revisions" / dworld.commits[CSV]
    files = {p.relative_to(old).as_posix(): p.read_bytes() for p in old.rglob("*") if p.is_file()}
    files["train.csv"] = csv_bytes(rows(13, 4))
    spec = tmp_path / "g.yaml"
    spec.write_text(dworld.spec.read_text())
    r = cli("sync", "-f", spec, "--state", dworld.state, "--key", dworld.keys[0], "-o", tmp_path / "o0",
            "--cache", dworld.base / "cache", "--json")
    assert r.code in (0, 5), r.err  # the first sync records history (a full bundle was made by create)
    new = write_repo(dworld.hub_root / "datasets", CSV, {"main": files})["main"]
    try:
        r = cli("sync", "-f", spec, "--state", dworld.state, "--key", dworld.keys[0], "-o", tmp_path / "o",
                "--cache", dworld.base / "cache", "--json")
        assert r.code == 0, r.err
        out = json.loads(r.out)
        bundle = Path(out["bundle"])
        assert bundle.stat().st_size < 200_000
        import hashlib

        r = cli("bundle", "inspect", bundle, "--json")
        carried = json.dumps(json.loads(r.out))
        assert hashlib.sha256(files["train.csv"]).hexdigest() in carried
        r = cli("import", *sorted((tmp_path / "o0").glob("*.gapsync")), bundle, "--mirror", dworld.mirror)
        assert r.code == 0, r.err
        folder = dworld.mirror / "models" / "hf" / "datasets--acme--csv-data"
        assert (folder / "refs" / "main").read_text() == new
        assert (folder / "snapshots" / new / "train.csv").read_bytes() == files["train.csv"]
    finally:
        write_repo(dworld.hub_root / "datasets", CSV, {"main": {p.relative_to(old).as_posix(): p.read_bytes()
                                                            for p in old.rglob("*") if p.is_file()}})


def test_serve_dataset_routes_refuse_hostile_requests(dworld, serve_url):
    import requests

    base = f"{serve_url}/datasets/{PARQUET}/resolve/main"
    for path in ("/../../../etc/passwd", "/data/%2e%2e/%2e%2e/README.md", "/data/..%2f..%2fREADME.md", "/nope.parquet"):
        r = requests.get(base + path, timeout=10)
        assert r.status_code == 404 and b"root:" not in r.content, path
    r = requests.get(f"{serve_url}/api/datasets/{PARQUET}/tree/main/nope", timeout=10)
    assert r.status_code == 404 and r.headers["X-Error-Code"] == "EntryNotFound"
    r = requests.get(f"{serve_url}/api/datasets/../../etc/passwd", timeout=10)
    assert r.status_code == 404
    # POST only for paths-info; a body over the cap is refused, as is any other write
    r = requests.post(f"{serve_url}/api/datasets/{PARQUET}/tree/main", data={"paths": "README.md"}, timeout=10)
    assert r.status_code == 405
    r = requests.put(f"{serve_url}/api/datasets/{PARQUET}/paths-info/main", data=b"x", timeout=10)
    assert r.status_code == 405
    r = requests.post(f"{serve_url}/api/datasets/{PARQUET}/paths-info/main", data={"paths": ["x" * 1000] * 100}, timeout=10)
    assert r.status_code == 413
    r = requests.post(f"{serve_url}/api/datasets/{PARQUET}/paths-info/main", data=b"\xff\xfe", timeout=10)
    assert r.status_code == 400
    r = requests.post(f"{serve_url}/api/datasets/{PARQUET}/paths-info/main",
                      data={"paths": ["../../../etc/passwd", "/README.md", "data/../README.md"]}, timeout=10)
    assert r.status_code == 200 and [e["path"] for e in r.json()] == ["README.md"]


def test_a_dataset_and_a_model_of_one_name_stay_apart(dworld, tmp_path):
    """``acme/tiny-bert`` as a model and as a dataset (another repo of the same id): two targets,
    two cache folders, two sets of names; neither replaces the other."""
    from gapsync.demo.hub_standin import write_repo
    from tests.support.datasets import csv_bytes, rows

    write_repo(dworld.hub_root / "datasets", TINY, {"main": {"README.md": b"# same id\n", "train.csv": csv_bytes(rows(2, 1))}})
    spec = tmp_path / "g.yaml"
    spec.write_text(spec_text(dworld.hub.url, None, (TINY,)))
    ch = new_channel(tmp_path, "prod")
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o",
            "--cache", tmp_path / "c")
    assert r.code == 0, r.err
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    r = cli("import", next((tmp_path / "o").glob("*.gapsync")), "--mirror", m)
    assert r.code == 0, r.err
    hf = m / "models" / "hf"
    assert (hf / "models--acme--tiny-bert" / "refs" / "main").is_file()
    ds = hf / "datasets--acme--tiny-bert"
    snap = next((ds / "snapshots").iterdir())
    assert sorted(p.name for p in snap.iterdir()) == ["README.md", "train.csv"]


@pytest.mark.parametrize("entry, words", [
    ("  - mlflow: models:/x/1\n", "hf: org/name"),
    ("  - hf: ../etc\n", "not a Hub repository id"),
    ("  - hf: acme/x\n    name: other\n", "name"),
    ("  - hf: acme/x\n  - hf: acme/x\n", "listed twice"),
    ("  - acme/x\n", "a mapping"),
])
def test_bad_dataset_entries_are_refused_with_the_line(tmp_path, entry, words):
    spec = tmp_path / "g.yaml"
    spec.write_text(f"name: d\nchannel: prod\ndatasets:\n{entry}")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l")
    assert r.code == 2 and words in r.err and "g.yaml" in r.err, r.err
    assert not (tmp_path / "l").exists()


def test_hub_listing_with_traversal_names_is_refused_for_datasets(tmp_path):
    root = tmp_path / "hub" / "root"
    write_datasets(root)
    hub = Hub(root, mode="traversal")
    try:
        spec = tmp_path / "g.yaml"
        spec.write_text(spec_text(hub.url, None, (CSV,), model=False))
        r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
        assert r.code == 1 and "../evil.txt" in r.err and not (tmp_path / "l").exists()
    finally:
        hub.stop()


def test_import_refuses_a_dataset_target_whose_manifest_disagrees(tmp_path):
    from gapsync.errors import BundleFormatError
    from gapsync.mirror.layout import MirrorLayout
    from gapsync.mirror.targets.hf_cache import HfCache
    from gapsync.model import BlobRef, Target

    cache = HfCache(MirrorLayout(tmp_path / "m"))
    custom = {"kind": "dataset", "source": "hf", "name": "acme/x", "revision": "main", "commit": "a" * 40}
    with pytest.raises(BundleFormatError, match="path does not match"):
        cache.check([Target("dataset/mlflow/acme/x@main", BlobRef("b" * 64, 10), {**custom, "source": "mlflow"})])
    with pytest.raises(BundleFormatError, match="path does not match"):
        cache.check([Target("model/hf/acme/x@main", BlobRef("b" * 64, 10), custom)])
    t = Target("dataset/hf/acme/x@main", BlobRef("b" * 64, 10), custom)
    cache.check([t])
    doc = {"name": "acme/x", "commit": "a" * 40, "files": []}  # a model's manifest (no repo_type) under a dataset target
    with pytest.raises(BundleFormatError, match="the target a dataset"):
        cache._check_manifest(t, doc, set())
    cache._check_manifest(t, {**doc, "repo_type": "dataset"}, set())
