"""Images that live in no registry: an OCI layout directory and a local Docker engine."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

from gapsync.bundler.cache import BlobCache
from gapsync.bundler.sources.oci_local import archive_into_cache
from tests.support.channels import new_channel
from tests.support.cli import cli
from tests.support.oci import skopeo_inspect


def test_oci_layout_directory_as_a_source(oci_images, tmp_path):
    ch = new_channel(tmp_path, "prod")
    spec = tmp_path / "g.yaml"
    spec.write_text("name: loc\nchannel: prod\nimages:\n  platforms: [linux/amd64, linux/arm64]\n  refs:\n"
                    f"    - {{oci_layout: {oci_images.layout}, ref: app-a, as: 'team/app-a:3.0'}}\n")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
    assert r.code == 0, r.err
    img = json.loads((tmp_path / "l").read_text())["images"][0]
    assert img["digest"] == oci_images["app-a"]["digest"] and img["name"] == "docker.io/team/app-a"
    assert img["source"]["kind"] == "oci_layout" and img["platforms"] == ["linux/amd64", "linux/arm64"]
    r = cli("bundle", "create", "-f", spec, "--lock", tmp_path / "l", "--state", ch.state, "--key", ch.keys[0],
            "-o", tmp_path / "o", "--cache", tmp_path / "c")
    assert r.code == 0, r.err
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    assert cli("import", next((tmp_path / "o").glob("*.gapsync")), "--mirror", m).code == 0
    info = skopeo_inspect(f"oci:{m / 'oci'}:docker.io/team/app-a:3.0")
    assert info["Digest"] == oci_images["app-a"]["digest"]


def test_unknown_reference_in_layout_is_named(oci_images, tmp_path):
    spec = tmp_path / "g.yaml"
    spec.write_text(f"name: loc\nchannel: prod\nimages:\n  refs:\n    - {{oci_layout: {oci_images.layout}, ref: nope, as: 'a/b:1'}}\n")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
    assert r.code == 2 and "no image 'nope'" in r.err and "app-a" in r.err


def test_spec_refuses_half_given_local_sources(tmp_path):
    spec = tmp_path / "g.yaml"
    spec.write_text("name: loc\nchannel: prod\nimages:\n  refs:\n    - {docker: 'x:1'}\n")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l")
    assert r.code == 2 and f"{spec}:5" in r.err and "as" in r.err


def test_docker_engine_unreachable_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    spec = tmp_path / "g.yaml"
    spec.write_text("name: loc\nchannel: prod\nimages:\n  refs:\n    - {docker: 'myapp:1', as: 'team/myapp:1'}\n")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
    assert r.code == 1 and "no Docker engine is reachable" in r.err and len(r.err.strip().splitlines()) == 1


def _docker_save_archive(oci_images, tmp_path: Path) -> Path:
    """What `docker save` writes (legacy layout): manifest.json, <id>.json, <id>/layer.tar (uncompressed)."""
    info = oci_images["app-b"]["platforms"]["linux/amd64"]
    blobs = oci_images.layout / "blobs/sha256"
    out = tmp_path / "saved.tar"
    with tarfile.open(out, "w") as tf:
        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))

        config = (blobs / info["config"]["digest"].split(":")[1]).read_bytes()
        cid = info["config"]["digest"].split(":")[1]
        add(f"{cid}.json", config)
        layers = []
        for i, layer in enumerate(info["layers"]):
            raw = gzip.decompress((blobs / layer["digest"].split(":")[1]).read_bytes())
            lid = f"{i:064x}"
            add(f"{lid}/layer.tar", raw)
            layers.append(f"{lid}/layer.tar")
        add("manifest.json", json.dumps([{"Config": f"{cid}.json", "RepoTags": ["myapp:1"], "Layers": layers}]).encode())
    return out


def test_docker_save_archive_becomes_a_deterministic_oci_image(oci_images, tmp_path):
    archive = _docker_save_archive(oci_images, tmp_path)
    cache = BlobCache(tmp_path / "c")
    with archive.open("rb") as f:
        d1, manifest = archive_into_cache(f, "docker:myapp:1", cache)
    with archive.open("rb") as f:
        d2, _ = archive_into_cache(f, "docker:myapp:1", BlobCache(tmp_path / "c2"))
    assert d1 == d2
    doc = json.loads(manifest)
    diff_ids = oci_images["app-b"]["platforms"]["linux/amd64"]["layers"]
    assert [layer["digest"] for layer in doc["layers"]] == [layer["diff_id"] for layer in diff_ids]  # uncompressed tars
    for desc in (doc["config"], *doc["layers"]):
        assert cache.has(desc["digest"].split(":")[1])
