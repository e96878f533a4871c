"""The fake Hub proves itself with the real ``huggingface_hub`` client (and plain ``requests``).

Why: gapsync's model tests trust this stand-in to behave like the Hub. Every behaviour they rely on
is shown here with the real client: snapshots of two revisions sharing blobs, single files, model
info with file metadata, paginated trees, the offline cache, tokens, the hostile modes and the
control endpoint that moves a branch.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.models import (
    MANY_COUNT,
    MANY_FILES,
    MINILM,
    OTHER,
    TINY,
    TRAVERSAL,
    TRAVERSAL_FILES,
    WRONG_SHA,
    FakeHub,
    RepoSpec,
    commit_id,
    git_blob_sha1,
    hub_env,
    is_lfs,
    lfs_pointer,
    offline_env,
    safetensors_bytes,
    sha256_hex,
    write_repo,
)

hf = pytest.importorskip("huggingface_hub")
from huggingface_hub import HfApi, hf_hub_download, snapshot_download  # noqa: E402
from huggingface_hub.errors import (  # noqa: E402
    EntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

OFFLINE_SCRIPT = r"""
import hashlib, json, sys
from pathlib import Path
from huggingface_hub import hf_hub_download, snapshot_download
repo, rev = sys.argv[1], sys.argv[2]
allow, ignore = json.loads(sys.argv[3]) if len(sys.argv) > 3 else (None, None)
snap = Path(snapshot_download(repo, revision=rev, allow_patterns=allow, ignore_patterns=ignore))
files = {p.relative_to(snap).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
         for p in sorted(snap.rglob("*")) if p.is_file()}
one = Path(hf_hub_download(repo, "config.json", revision=rev))
print(json.dumps({"snapshot": str(snap), "files": files, "config": str(one)}))
"""


def tree_of(snapshot: str | Path) -> dict[str, bytes]:
    base = Path(snapshot)
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def tiny(hub: FakeHub) -> RepoSpec:
    return hub.repos[TINY]


# --- the honest Hub with the real client ---------------------------------------------------------

def test_snapshot_download_both_revisions_share_blobs(fake_hub: FakeHub, tmp_path: Path) -> None:
    spec = tiny(fake_hub)
    cache = tmp_path / "cache"
    for rev in ("main", "v1.0"):
        snap = snapshot_download(TINY, revision=rev, endpoint=fake_hub.url, cache_dir=cache)
        assert Path(snap).name == spec.commit(rev)
        assert tree_of(snap) == spec.files(rev)
        repo_dir = cache / "models--acme--tiny-bert"
        assert (repo_dir / "refs" / rev).read_text() == spec.commit(rev)
        # Snapshot entries are relative symlinks into blobs/<etag>: sha256 for LFS, git sha1 otherwise.
        for path in spec.paths(rev):
            link = Path(snap) / path
            assert link.is_symlink() and link.resolve().name == spec.etag(path, rev)
    assert spec.commit("main") != spec.commit("v1.0")
    assert spec.read("config.json", "main") != spec.read("config.json", "v1.0")
    assert spec.read("model.safetensors", "main") == spec.read("model.safetensors", "v1.0")
    etags = {spec.etag(p, rev) for rev in ("main", "v1.0") for p in spec.paths(rev)}
    assert {p.name for p in (cache / "models--acme--tiny-bert" / "blobs").iterdir()} == etags
    assert len(etags) == len(spec.paths("main")) + 1  # only config.json differs


def test_snapshot_download_patterns(fake_hub: FakeHub, tmp_path: Path) -> None:
    snap = snapshot_download(TINY, revision="main", endpoint=fake_hub.url, cache_dir=tmp_path,
                             allow_patterns=["*.json"])
    assert sorted(tree_of(snap)) == ["1_Pooling/config.json", "config.json", "tokenizer.json"]
    snap = snapshot_download(TINY, revision="v1.0", endpoint=fake_hub.url, cache_dir=tmp_path / "2",
                             allow_patterns=["*.safetensors", "*.json", "tokenizer*", "*.txt"],
                             ignore_patterns=["*.onnx", "*.bin"])
    assert sorted(tree_of(snap)) == ["1_Pooling/config.json", "config.json", "model.safetensors", "tokenizer.json"]


def test_hf_hub_download_and_errors(fake_hub: FakeHub, tmp_path: Path) -> None:
    spec = tiny(fake_hub)
    for rev in ("main", "v1.0", spec.commit("v1.0")):
        for path in ("config.json", "onnx/model.onnx", "model.safetensors"):
            got = hf_hub_download(TINY, path, revision=rev, endpoint=fake_hub.url, cache_dir=tmp_path)
            assert Path(got).read_bytes() == spec.read(path, rev)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(TINY, "missing.json", endpoint=fake_hub.url, cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(TINY, "config.json", revision="v9", endpoint=fake_hub.url, cache_dir=tmp_path)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("acme/nope", "config.json", endpoint=fake_hub.url, cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(TINY, revision="v9", endpoint=fake_hub.url, cache_dir=tmp_path)


def test_safetensors_fixture_is_real(fake_hub: FakeHub, tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    got = hf_hub_download(TINY, "model.safetensors", endpoint=fake_hub.url, cache_dir=tmp_path)
    tensors = st.load_file(got)
    assert {k: v.shape for k, v in tensors.items()} == {"embeddings.word_embeddings.weight": (96, 128),
                                                        "pooler.dense.weight": (64, 64)}
    assert 64 * 1024 <= Path(got).stat().st_size < 66 * 1024
    assert json.loads(tiny(fake_hub).read("tokenizer.json"))["model"]["type"] == "WordLevel"


def test_model_info_with_files_metadata(fake_hub: FakeHub) -> None:
    spec = tiny(fake_hub)
    api = HfApi(endpoint=fake_hub.url)
    for rev in ("main", "v1.0"):
        info = api.model_info(TINY, revision=rev, files_metadata=True)
        assert info.id == TINY and info.sha == spec.commit(rev)
        assert info.card_data.license == "apache-2.0" and info.library_name == "sentence-transformers"
        assert {"license:apache-2.0", "safetensors", "sentence-transformers"} <= set(info.tags)
        siblings = {s.rfilename: s for s in info.siblings}
        assert sorted(siblings) == spec.paths(rev)
        for path, s in siblings.items():
            data = spec.read(path, rev)
            assert s.size == len(data)
            if spec.lfs(path, rev):
                assert s.lfs.sha256 == sha256_hex(data) and s.lfs.size == len(data)
                assert s.blob_id == git_blob_sha1(lfs_pointer(data)) and s.lfs.pointer_size == len(lfs_pointer(data))
            else:
                assert s.lfs is None and s.blob_id == git_blob_sha1(data)
        assert siblings["model.safetensors"].lfs and siblings["onnx/model.onnx"].lfs
        assert siblings["tokenizer.json"].lfs is None
    plain = api.model_info(TINY)  # no revision: /api/models/{repo}, no blobs
    assert plain.sha == spec.commit("main") and plain.siblings[0].size is None
    other = api.model_info(OTHER, files_metadata=True)
    assert other.card_data.license == "mit"
    assert {s.rfilename: s.lfs is not None for s in other.siblings} == {
        "README.md": False, "config.json": False, "notes.txt": False, "weights.bin": True}


def test_list_repo_tree_paginates(make_hub, tmp_path: Path) -> None:
    hub = make_hub(page_size=3)
    spec = tiny(hub)
    api = HfApi(endpoint=hub.url)
    entries = list(api.list_repo_tree(TINY, revision="v1.0", recursive=True))
    files = {e.path: e for e in entries if isinstance(e, hf.hf_api.RepoFile)}
    folders = sorted(e.path for e in entries if isinstance(e, hf.hf_api.RepoFolder))
    assert sorted(files) == spec.paths("v1.0") and folders == ["1_Pooling", "onnx"]
    for path, e in files.items():
        data = spec.read(path, "v1.0")
        assert e.size == len(data)
        assert (e.lfs.sha256 if e.lfs else e.blob_id) == spec.etag(path, "v1.0")
        assert e.xet_hash is None
    tree_calls = [r for r in hub.log() if "/tree/" in r["path"]]
    assert len(tree_calls) == -(-len(entries) // 3) >= 3
    assert all("cursor=" in r["path"] for r in tree_calls[1:])
    top = sorted(e.path for e in api.list_repo_tree(TINY, revision="main"))
    assert top == sorted({p.split("/")[0] for p in spec.paths("main")})
    assert [e.path for e in api.list_repo_tree(TINY, "1_Pooling", revision="main")] == ["1_Pooling/config.json"]
    expanded = next(iter(api.list_repo_tree(TINY, revision="main", expand=True)))
    assert expanded.last_commit.oid == spec.commit("main")
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(TINY, "nope", revision="main"))


def test_refs_and_paths_info(fake_hub: FakeHub) -> None:
    spec = tiny(fake_hub)
    api = HfApi(endpoint=fake_hub.url)
    refs = api.list_repo_refs(TINY)
    assert [(b.name, b.ref, b.target_commit) for b in refs.branches] == [("main", "refs/heads/main", spec.commit("main"))]
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [("v1.0", "refs/tags/v1.0", spec.commit("v1.0"))]
    info = api.get_paths_info(TINY, ["model.safetensors", "onnx", "missing"], revision="v1.0")
    assert [(type(i).__name__, i.path) for i in info] == [("RepoFile", "model.safetensors"), ("RepoFolder", "onnx")]
    assert info[0].lfs.sha256 == spec.sha256("model.safetensors")


def test_resolve_headers_redirect_and_ranges(fake_hub: FakeHub) -> None:
    """What the client relies on, seen with plain requests: ETag, X-Repo-Commit, 302 to another host, Range."""
    spec = tiny(fake_hub)
    commit = spec.commit("main")
    base = f"{fake_hub.url}/{TINY}/resolve/main"
    r = requests.head(f"{base}/config.json", timeout=10)
    data = spec.read("config.json")
    assert r.status_code == 200 and r.headers["ETag"] == f'"{git_blob_sha1(data)}"'
    assert r.headers["X-Repo-Commit"] == commit and int(r.headers["Content-Length"]) == len(data)
    assert "X-Linked-Etag" not in r.headers and "X-Xet-Hash" not in r.headers
    r = requests.get(f"{base}/config.json", headers={"Range": "bytes=5-"}, timeout=10)
    assert r.status_code == 206 and r.content == data[5:] and r.headers["Content-Range"] == f"bytes 5-{len(data) - 1}/{len(data)}"
    assert requests.get(f"{base}/config.json", headers={"Range": f"bytes={len(data)}-"}, timeout=10).status_code == 416

    weights = spec.read("model.safetensors")
    sha = sha256_hex(weights)
    for method in (requests.head, requests.get):
        r = method(f"{base}/model.safetensors", allow_redirects=False, timeout=10)
        assert r.status_code == 302 and "X-Xet-Hash" not in r.headers
        assert r.headers["X-Linked-Etag"] == r.headers["ETag"] == f'"{sha}"'
        assert r.headers["X-Linked-Size"] == str(len(weights)) and r.headers["X-Repo-Commit"] == commit
        assert r.headers["Location"].startswith(f"{fake_hub.cdn_url}/lfs-cdn/{TINY}/{sha}?")
    r = requests.get(f"{base}/model.safetensors", timeout=10)  # follows the 302 to localhost
    assert r.content == weights and r.url.startswith(fake_hub.cdn_url)
    r = requests.get(f"{base}/model.safetensors", headers={"Range": "bytes=100-199"}, timeout=10)
    assert r.status_code == 206 and r.content == weights[100:200]
    r = requests.get(f"{base}/model.safetensors", headers={"Range": "bytes=-10"}, timeout=10)
    assert r.status_code == 206 and r.content == weights[-10:]

    errors = {
        f"{base}/missing.txt": "EntryNotFound",
        f"{fake_hub.url}/{TINY}/resolve/v9/config.json": "RevisionNotFound",
        f"{fake_hub.url}/acme/nope/resolve/main/config.json": "RepoNotFound",
        f"{fake_hub.url}/api/models/acme/nope": "RepoNotFound",
        f"{fake_hub.url}/api/models/{TINY}/revision/v9": "RevisionNotFound",
    }
    for url, code in errors.items():
        r = requests.get(url, timeout=10)
        assert (r.status_code, r.headers.get("X-Error-Code")) == (404, code), url
    assert requests.head(f"{base}/missing.txt", timeout=10).headers["X-Repo-Commit"] == commit


def test_offline_cache_returns_the_same_files(fake_hub: FakeHub, tmp_path: Path) -> None:
    spec = tiny(fake_hub)
    cache = tmp_path / "hf-cache"
    for rev in ("main", "v1.0"):
        snapshot_download(TINY, revision=rev, endpoint=fake_hub.url, cache_dir=cache)
    n = len(fake_hub.log())
    for rev in ("main", "v1.0"):
        r = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT, TINY, rev], capture_output=True, text=True,
                           env=offline_env(cache, HF_ENDPOINT=fake_hub.url), timeout=60)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert Path(out["snapshot"]).name == spec.commit(rev)
        assert out["files"] == {p: sha256_hex(b) for p, b in spec.files(rev).items()}
        assert Path(out["config"]).read_bytes() == spec.read("config.json", rev)
    r = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT, OTHER, "main"], capture_output=True, text=True,
                       env=offline_env(cache, HF_ENDPOINT=fake_hub.url), timeout=60)
    assert r.returncode != 0 and "LocalEntryNotFoundError" in r.stderr  # never downloaded: not served offline
    assert len(fake_hub.log()) == n  # offline means offline: not one request


# --- token --------------------------------------------------------------------------------------

def test_token_required_and_not_leaked_to_cdn(make_hub, tmp_path: Path) -> None:
    hub = make_hub(token="hf_test_secret")
    spec = tiny(hub)
    url = f"{hub.url}/api/models/{TINY}"
    r = requests.get(url, timeout=10)
    assert r.status_code == 401 and r.headers["X-Error-Code"] == "RepoNotFound"
    r = requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert r.status_code == 401 and r.headers["X-Error-Message"] == "Invalid credentials in Authorization header"
    assert requests.get(url, headers={"Authorization": "Bearer hf_test_secret"}, timeout=10).status_code == 200
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download(TINY, endpoint=hub.url, cache_dir=tmp_path / "none", token=False)

    snap = snapshot_download(TINY, endpoint=hub.url, cache_dir=tmp_path / "c", token="hf_test_secret")
    assert tree_of(snap) == spec.files("main")
    log = [r for r in hub.log() if r["status"] < 400]
    hub_calls = [r for r in log if not r["path"].startswith(("/lfs-cdn/", "/_control/"))]
    cdn_calls = [r for r in log if r["path"].startswith("/lfs-cdn/")]
    assert hub_calls and all(r["auth"] for r in hub_calls)
    # The client strips Authorization for the CDN host: the signed URL is the credential there.
    assert len(cdn_calls) == 2 and not any(r["auth"] for r in cdn_calls)
    assert {r["host"] for r in cdn_calls} == {f"localhost:{hub.port}"}
    loc = requests.head(f"{hub.url}/{TINY}/resolve/main/model.safetensors", allow_redirects=False, timeout=10,
                        headers={"Authorization": "Bearer hf_test_secret"}).headers["Location"]
    assert requests.get(loc, timeout=10).status_code == 200
    assert requests.get(loc.split("?")[0] + "?sig=forged", timeout=10).status_code == 403

    # HF_TOKEN from the environment (what gapsync is expected to pass through), in a fresh process.
    code = ("import sys; from huggingface_hub import hf_hub_download as d; "
            "print(d(sys.argv[1], 'config.json'))")
    r = subprocess.run([sys.executable, "-c", code, TINY], capture_output=True, text=True, timeout=60,
                       env=hub_env(hub, cache=tmp_path / "env"))
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).read_bytes() == spec.read("config.json")


# --- hostile modes ------------------------------------------------------------------------------

def test_wrong_sha_mode(make_hub, tmp_path: Path) -> None:
    hub = make_hub(mode=WRONG_SHA)
    spec = tiny(hub)
    tree = requests.get(f"{hub.url}/api/models/{TINY}/tree/main?recursive=true", timeout=10).json()
    lfs = {e["path"]: e for e in tree if e.get("lfs")}
    assert sorted(lfs) == ["model.safetensors", "onnx/model.onnx"]
    for path, e in lfs.items():
        got = requests.get(f"{hub.url}/{TINY}/resolve/main/{path}", timeout=10).content
        assert e["lfs"]["oid"] == spec.sha256(path)  # announced: the true sha256 ...
        assert len(got) == e["lfs"]["size"] and sha256_hex(got) != e["lfs"]["oid"]  # ... served: other bytes
    regular = requests.get(f"{hub.url}/{TINY}/resolve/main/config.json", timeout=10).content
    assert regular == spec.read("config.json")
    # A fact gapsync must not repeat: huggingface_hub 2.4 stores the bytes under the announced name unverified.
    got = Path(hf_hub_download(TINY, "model.safetensors", endpoint=hub.url, cache_dir=tmp_path))
    assert got.resolve().name == spec.sha256("model.safetensors") != sha256_hex(got.read_bytes())


def test_traversal_mode(make_hub, tmp_path: Path) -> None:
    hub = make_hub(mode=TRAVERSAL)
    tree = requests.get(f"{hub.url}/api/models/{TINY}/tree/main?recursive=true", timeout=10).json()
    names = {e["path"] for e in tree}
    assert set(TRAVERSAL_FILES) <= names
    siblings = {s["rfilename"] for s in requests.get(f"{hub.url}/api/models/{TINY}", timeout=10).json()["siblings"]}
    assert set(TRAVERSAL_FILES) <= siblings
    r = requests.get(f"{hub.url}/{TINY}/resolve/main/..%2Fevil.txt", timeout=10)
    assert r.status_code == 200 and r.content == TRAVERSAL_FILES["../evil.txt"]
    # The real client refuses such names, and nothing lands outside its cache.
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(ValueError, match=r"\.\."):
        snapshot_download(TINY, endpoint=hub.url, cache_dir=cache)
    assert not [p for p in tmp_path.rglob("*") if p.name in ("evil.txt", "x")]


def test_many_files_mode(make_hub) -> None:
    hub = make_hub(mode=MANY_FILES, page_size=100)
    spec = tiny(hub)
    t0 = time.monotonic()
    r = requests.get(f"{hub.url}/api/models/{TINY}/tree/main?recursive=true&expand=false", timeout=30)
    page = r.json()
    assert len(page) == 100 and 'rel="next"' in r.headers["Link"]
    nxt = r.headers["Link"].split(";")[0].strip("<>")
    assert nxt.startswith(f"{hub.url}/api/models/{TINY}/tree/main?") and "cursor=100" in nxt
    n_real = len(spec.paths()) + 2  # files + the two directories
    last = requests.get(f"{hub.url}/api/models/{TINY}/tree/main?recursive=true&cursor={n_real + 1 + MANY_COUNT - 5}",
                        timeout=30)
    assert [e["path"] for e in last.json()] == [f"many/{i:06d}.txt" for i in range(MANY_COUNT - 5, MANY_COUNT)]
    assert "Link" not in last.headers
    info = requests.get(f"{hub.url}/api/models/{TINY}", timeout=60).json()
    assert len(info["siblings"]) == len(spec.paths()) + MANY_COUNT
    r = requests.get(f"{hub.url}/{TINY}/resolve/main/many/199999.txt", timeout=10)
    assert r.content == b"many 199999\n" and r.headers["ETag"] == f'"{git_blob_sha1(r.content)}"'
    top = requests.get(f"{hub.url}/api/models/{TINY}/tree/main", timeout=30).json()
    assert "many" in {e["path"] for e in top if e["type"] == "directory"}
    assert time.monotonic() - t0 < 15  # lazily generated: nothing written, nothing slow


def test_move_control_endpoint(make_hub, tmp_path: Path) -> None:
    hub = make_hub()
    spec = tiny(hub)
    old, new = spec.commit("main"), spec.commit("v1.0")
    api = HfApi(endpoint=hub.url)
    assert api.model_info(TINY, revision="main").sha == old
    assert hub.move(TINY, "main", new) == {"repo": TINY, "ref": "main", "from": old, "to": new}
    assert api.model_info(TINY, revision="main").sha == new == spec.commit("main")  # refs.json rewritten
    r = requests.head(f"{hub.url}/{TINY}/resolve/main/config.json", timeout=10)
    assert r.headers["X-Repo-Commit"] == new
    snap = snapshot_download(TINY, revision="main", endpoint=hub.url, cache_dir=tmp_path)
    assert Path(snap).name == new and tree_of(snap) == spec.files(new)
    # The old commit stays reachable by its sha, as on the Hub.
    assert api.model_info(TINY, revision=old).sha == old
    bad = requests.post(f"{hub.url}/_control/move", params={"repo": TINY, "ref": "main", "to": "0" * 40}, timeout=10)
    assert bad.status_code == 404
    # A revision added while the server runs is served at once.
    added = write_repo(hub.root, TINY, {"next": {"config.json": b"{}\n"}})
    hub.move(TINY, "main", added["next"])
    assert api.model_info(TINY).sha == added["next"]


# --- rules shared with gapsync's tests ----------------------------------------------------------

def test_support_rules(tmp_path: Path) -> None:
    assert git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git hash-object /dev/null
    assert commit_id({"a": b"1", "b": b"2"}) == commit_id({"b": b"2", "a": b"1"}) != commit_id({"a": b"1"})
    assert is_lfs("x/model.safetensors", 3) and is_lfs("m.onnx", 3) and not is_lfs("config.json", 50_000)
    assert is_lfs("big.txt", 10 * 1024 * 1024) and is_lfs("logs/run.tfevents.1", 10, ["*tfevents*"])
    for bad in ("../x", "/abs", "a//b", "a/./b"):
        with pytest.raises(ValueError):
            write_repo(tmp_path, "o/n", {"main": {bad: b""}})
    refs = write_repo(tmp_path, "o/n", {"main": {"m.safetensors": safetensors_bytes()}})
    assert refs == write_repo(tmp_path, "o/n", {"main": {"m.safetensors": safetensors_bytes()}})
    assert hashlib.sha1(b"x").hexdigest() != refs["main"] and len(refs["main"]) == 40


# --- the real model from PyPI -------------------------------------------------------------------

@pytest.mark.slow
def test_minilm_from_pypi_through_fake_hub(fake_hub: FakeHub, minilm_repo: RepoSpec, tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    info = HfApi(endpoint=fake_hub.url).model_info(MINILM, files_metadata=True)
    assert info.card_data.license == "apache-2.0" and info.library_name == "sentence-transformers"
    sizes = {s.rfilename: s for s in info.siblings}
    assert sizes["model.safetensors"].lfs.sha256 == minilm_repo.sha256("model.safetensors")
    assert sizes["model.safetensors"].size == 90868376
    cache = tmp_path / "cache"
    allow, ignore = ["*.safetensors", "*.json", "tokenizer*", "*.txt"], ["*.onnx", "*.bin"]
    snap = snapshot_download(MINILM, revision="main", endpoint=fake_hub.url, cache_dir=cache,
                             allow_patterns=allow, ignore_patterns=ignore)
    got = sorted(p.relative_to(snap).as_posix() for p in Path(snap).rglob("*") if p.is_file())
    assert "model.safetensors" in got and "1_Pooling/config.json" in got and "vocab.txt" in got
    assert "README.md" not in got
    for path in got:
        assert sha256_hex((Path(snap) / path).read_bytes()) == minilm_repo.sha256(path)
    tensors = st.load_file(str(Path(snap) / "model.safetensors"))
    assert tensors["embeddings.word_embeddings.weight"].shape == (30522, 384)
    r = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT, MINILM, "main", json.dumps([allow, ignore])],
                       capture_output=True, text=True, env=offline_env(cache), timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(json.loads(r.stdout)["files"]) == got
    # huggingface_hub 2.4 caches the full tree listing (trees/<commit>.json): offline, a snapshot
    # asked for without the same patterns is refused as incomplete rather than returned partial.
    r = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT, MINILM, "main"], capture_output=True, text=True,
                       env=offline_env(cache), timeout=120)
    assert r.returncode != 0 and "IncompleteSnapshotError" in r.stderr
