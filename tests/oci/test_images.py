"""Images end to end with real parts: docker-registry as source and target, skopeo as the
independent client on both ends, gapsync serve's /v2/, and a hostile registry."""

from __future__ import annotations

import base64
import json
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from gapsync.bundler.cache import BlobCache
from tests.support.channels import new_channel
from tests.support.cli import GAPSYNC, cli
from tests.support.oci import skopeo, skopeo_inspect, targeted_layers, unique_blobs
from tests.support.servers import Server, free_port


def images_spec(path: Path, registry_host: str, refs: list[str], platforms=("linux/amd64", "linux/arm64"),
                extra: str = "") -> Path:
    path.write_text("name: img\nchannel: prod\nimages:\n"
                    f"  platforms: {json.dumps(list(platforms))}\n  insecure: [\"{registry_host}\"]\n"
                    f"  refs: {json.dumps([f'{registry_host}/{r}' for r in refs])}\n{extra}")
    return path


@pytest.fixture(scope="module")
def img_world(source_registry, oci_images, tmp_path_factory):
    base = tmp_path_factory.mktemp("img-world")
    ch = new_channel(base, "prod")
    spec = images_spec(base / "g.yaml", source_registry.host, ["library/app-a:1.0", "team/app-b:2.0", "library/app-big:1.0"])
    lock = base / "g.lock"
    r = cli("resolve", "-f", spec, "-o", lock, "--cache", base / "cache")
    assert r.code == 0, r.err
    r = cli("bundle", "create", "-f", spec, "--lock", lock, "--state", ch.state, "--key", ch.keys[0], "-o", base / "out",
            "--cache", base / "cache", "--json")
    assert r.code == 0, r.err
    bundle = next((base / "out").glob("*.gapsync"))
    mirror = base / "mirror"
    assert cli("trust", "pin", ch.root, "--mirror", mirror).code == 0
    r = cli("import", bundle, "--mirror", mirror)
    assert r.code == 0, r.err
    return SimpleNamespace(**vars(ch), spec=spec, lock=json.loads(lock.read_text()), lock_path=lock, bundle=bundle,
                           mirror=mirror, create=json.loads(cli("bundle", "inspect", bundle, "--json").out), registry=source_registry)


def test_resolve_pins_index_and_selected_platforms(img_world, oci_images):
    images = {i["ref"].split("/", 1)[1]: i for i in img_world.lock["images"]}
    a = images["library/app-a:1.0"]
    assert a["digest"] == oci_images["app-a"]["digest"]  # the original index digest is kept
    assert [m["platform"] for m in a["manifests"]] == ["linux/amd64", "linux/arm64"]
    assert {m["digest"] for m in a["manifests"]} == {oci_images["app-a"]["platforms"][p]["digest"] for p in ("linux/amd64", "linux/arm64")}
    assert a["missing_platforms"] == [] and a["platforms"] == ["linux/amd64", "linux/arm64"]
    b = images["team/app-b:2.0"]
    assert b["digest"] == oci_images["app-b"]["digest"] and b["manifests"] == [] and b["platforms"] == ["linux/amd64"]


def test_shared_layer_is_carried_once_and_second_run_downloads_nothing(img_world, oci_images, tmp_path):
    with tarfile.open(img_world.bundle) as tf:
        blobs = [n.rsplit("/", 1)[1] for n in tf.getnames() if n.startswith("blobs/")]
    assert len(blobs) == len(set(blobs))
    assert oci_images.base_layer.split(":")[1] in blobs
    arm7 = oci_images["app-a"]["platforms"]["linux/arm/v7"]
    assert arm7["layers"][-1]["digest"].split(":")[1] not in blobs  # a platform that was not asked for
    d = img_world.create["image_dedupe"]
    # app-a and app-b share the base layer: one copy saved across images
    assert d["saved"] == oci_images["app-a"]["platforms"]["linux/amd64"]["layers"][0]["size"]
    r = cli("bundle", "create", "-f", img_world.spec, "--lock", img_world.lock_path, "--state", img_world.state,
            "--key", img_world.keys[0], "-o", tmp_path / "again", "--cache", img_world.base / "cache", "--json")
    assert r.code == 0 and json.loads(r.out)["downloaded_bytes"] == 0
    r = cli("bundle", "inspect", img_world.bundle)
    assert "shared blobs saved" in r.out and "library/app-a" in r.out


def test_oci_layout_is_read_by_skopeo(img_world, oci_images, tmp_path):
    layout = img_world.mirror / "oci"
    name = f"{img_world.registry.host}/library/app-a:1.0"
    raw = skopeo_inspect(f"oci:{layout}:{name}", raw=True)
    assert len(raw["manifests"]) == 3  # the original index, untouched
    info = skopeo_inspect(f"oci:{layout}:{name}")
    assert info["Digest"] == oci_images["app-a"]["digest"] and info["Architecture"] == "amd64"
    r = skopeo("copy", f"oci:{layout}:{name}", f"dir:{tmp_path / 'copy'}")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "copy" / oci_images.base_layer.split(":")[1]).exists()
    # blobs in the layout are hard links to the verified store: stored once
    base = layout / "blobs/sha256" / oci_images.base_layer.split(":")[1]
    assert base.stat().st_nlink == 2


def test_push_into_a_registry_keeps_digests_and_rerun_sends_nothing(img_world, oci_images, empty_registry):
    target = empty_registry()
    r = cli("push", "--mirror", img_world.mirror, "--to", f"{target.url}/air", "--json")
    assert r.code == 0, r.err
    first = json.loads(r.out)
    assert first["blobs_uploaded"] > 0 and first["bytes_uploaded"] >= sum(unique_blobs(
        {k: v for k, v in oci_images.images.items()}).values()) - oci_images["app-a"]["platforms"]["linux/arm/v7"]["layers"][-1]["size"] - 4096
    b = skopeo_inspect(f"docker://{target.host}/air/team/app-b:2.0")
    assert b["Digest"] == oci_images["app-b"]["digest"]
    big = skopeo_inspect(f"docker://{target.host}/air/library/app-big:1.0")
    assert big["Digest"] == oci_images["app-big"]["digest"]
    amd = skopeo_inspect(f"docker://{target.host}/air/library/app-a@{oci_images['app-a']['platforms']['linux/amd64']['digest']}")
    assert amd["Architecture"] == "amd64"
    r = cli("push", "--mirror", img_world.mirror, "--to", f"{target.url}/air", "--json")
    again = json.loads(r.out)
    assert r.code == 0 and again["blobs_uploaded"] == 0 and again["bytes_uploaded"] == 0


def test_index_with_absent_platform_is_tagged_as_the_present_platforms(img_world, oci_images, empty_registry):
    """distribution refuses an index whose manifests are not all present (we carry 2 of 3)."""
    target = empty_registry()
    r = cli("push", "--mirror", img_world.mirror, "--to", target.url, "--image",
            f"{img_world.registry.host}/library/app-a:1.0", "--json")
    assert r.code == 0, r.err
    assert "refused the original index" in json.loads(r.out)["notes"][0]
    raw = skopeo_inspect(f"docker://{target.host}/library/app-a:1.0", raw=True)
    assert {d["digest"] for d in raw["manifests"]} == {
        oci_images["app-a"]["platforms"][p]["digest"] for p in ("linux/amd64", "linux/arm64")}


def test_rewrite_index_carries_only_selected_platforms(source_registry, oci_images, tmp_path, empty_registry):
    ch = new_channel(tmp_path, "prod")
    spec = images_spec(tmp_path / "g.yaml", source_registry.host, ["library/app-a:1.0"],
                       extra="  rewrite_index: true\n")
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o",
            "--cache", tmp_path / "c")
    assert r.code == 0, r.err
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    assert cli("import", next((tmp_path / "o").glob("*.gapsync")), "--mirror", m).code == 0
    raw = skopeo_inspect(f"oci:{m / 'oci'}:{source_registry.host}/library/app-a:1.0", raw=True)
    assert [d["platform"]["architecture"] for d in raw["manifests"]] == ["amd64", "arm64"]
    target = empty_registry()
    assert cli("push", "--mirror", m, "--to", target.url).code == 0
    pushed = skopeo_inspect(f"docker://{target.host}/library/app-a:1.0", raw=True)
    assert len(pushed["manifests"]) == 2


def test_chunked_upload_of_a_large_layer(img_world, oci_images, empty_registry, tmp_path):
    target = empty_registry()
    r = cli("push", "--mirror", img_world.mirror, "--to", target.url, "--chunk-size", str(1 << 20), "--image",
            f"{img_world.registry.host}/library/app-big:1.0")
    assert r.code == 0, r.err
    c = skopeo("copy", "--src-tls-verify=false", f"docker://{target.host}/library/app-big:1.0", f"dir:{tmp_path / 'd'}")
    assert c.returncode == 0, c.stderr  # skopeo verifies every digest it pulls


def test_serve_answers_the_distribution_api(img_world, oci_images, tmp_path):
    port = free_port()
    srv = Server([GAPSYNC, "serve", "--mirror", str(img_world.mirror), "--listen", f"127.0.0.1:{port}"],
                 f"http://127.0.0.1:{port}/v2/")
    try:
        a = skopeo_inspect(f"docker://127.0.0.1:{port}/library/app-a:1.0")  # repository alone
        assert a["Digest"] == oci_images["app-a"]["digest"] and a["Architecture"] == "amd64"
        r = skopeo("copy", "--src-tls-verify=false", f"docker://127.0.0.1:{port}/team/app-b:2.0", f"dir:{tmp_path / 'b'}")
        assert r.returncode == 0, r.stderr
        manifest = (tmp_path / "b/manifest.json").read_bytes()
        from hashlib import sha256

        assert "sha256:" + sha256(manifest).hexdigest() == oci_images["app-b"]["digest"]
        import urllib.request

        req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/library/app-big/blobs/{oci_images['app-big']['platforms']['linux/amd64']['layers'][0]['digest']}",
                                     headers={"Range": "bytes=10-19"})
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 206 and len(resp.read()) == 10
        tags = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/library/app-a/tags/list"))
        assert tags["tags"] == ["1.0"]
    finally:
        srv.stop()


def _docker_config(tmp_path: Path, host: str, user: str, password: str, realm: str | None = None) -> Path:
    """The registry's credentials; a token server on another origin (here: another port) gets
    credentials only when the configuration names it too (issue 13 §5)."""
    d = tmp_path / "docker"
    d.mkdir()
    entry = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    hosts = [host] + ([realm.split("/")[2]] if realm else [])
    (d / "config.json").write_text(json.dumps({"auths": {h: entry for h in hosts}}))
    return d


@pytest.mark.parametrize("which", ["auth_registry", "token_registry"])
def test_pull_with_credentials_from_docker_config(which, request, oci_images, tmp_path, monkeypatch):
    reg = request.getfixturevalue(which)
    spec = images_spec(tmp_path / "g.yaml", reg.host, ["team/app-b:2.0"])
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
    assert r.code == 1 and ("credentials" in r.err or "refused" in r.err or "401" in r.err), r.err
    monkeypatch.setenv("DOCKER_CONFIG", str(_docker_config(tmp_path, reg.host, reg.username, reg.password, reg.realm)))
    ch = new_channel(tmp_path, "prod")
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o", "--cache", tmp_path / "c")
    assert r.code == 0, r.err
    if which == "token_registry":
        log = reg.token_requests()
        assert any(e["user"] == reg.username and "repository:team/app-b:pull" in " ".join(e["scopes"]) for e in log)


def test_push_into_a_registry_that_needs_credentials(img_world, empty_registry, tmp_path, monkeypatch):
    target = empty_registry(auth="token")
    r = cli("push", "--mirror", img_world.mirror, "--to", target.url, "--image", f"{img_world.registry.host}/team/app-b:2.0")
    assert r.code == 1
    monkeypatch.setenv("DOCKER_CONFIG", str(_docker_config(tmp_path, target.host, target.username, target.password,
                                                           target.realm)))
    r = cli("push", "--mirror", img_world.mirror, "--to", target.url)
    assert r.code == 0, r.err
    assert any("push" in " ".join(e["scopes"]) for e in target.token_requests())
    assert skopeo_inspect(f"docker://{target.host}/team/app-b:2.0", creds=target.creds)["Name"].endswith("team/app-b")


def test_mixed_spec_carries_packages_and_images(world, source_registry, tmp_path):
    ch = new_channel(tmp_path, "prod")
    spec = images_spec(tmp_path / "g.yaml", source_registry.host, ["team/app-b:2.0"])
    spec.write_text(spec.read_text() + f"python:\n  index_url: {world.index.url}\n  requirements: [alpha]\n"
                    "  targets:\n    - {python: '3.11', platform: manylinux_2_17_x86_64}\n")
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o", "--cache", tmp_path / "c")
    assert r.code == 0, r.err
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    assert cli("import", next((tmp_path / "o").glob("*.gapsync")), "--mirror", m).code == 0
    assert (m / "pypi/files/alpha-1.0-py3-none-any.whl").exists() and (m / "oci/index.json").exists()


@pytest.mark.parametrize("mode, code, words", [
    ("wrong-digest", 3, ["does not match"]),
    ("oversize", 3, ["more than the announced"]),
    ("oversize-nolength", 3, ["more than the announced"]),
    ("missing-blob", 1, ["not found"]),
    ("redirect-other-host", 1, ["redirected to another host", "refused"]),
])
def test_hostile_registry(mode, code, words, hostile_registry, oci_images, tmp_path):
    reg = hostile_registry(mode)
    ch = new_channel(tmp_path, "prod")
    spec = images_spec(tmp_path / "g.yaml", reg.host, ["team/app-b:2.0"], platforms=("linux/amd64",))
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o", "--cache", tmp_path / "c")
    assert r.code == code, (r.code, r.err)
    for w in words:
        assert w in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1
    cache = BlobCache(tmp_path / "c")
    for bad in targeted_layers(oci_images.images):
        assert not cache.has(bad.split(":")[1])  # nothing cached under the name of bytes that did not match
    assert not list((tmp_path / "c/partial").glob("*.part"))
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_blob_redirect_to_another_host_is_followed_without_credentials(hostile_registry, oci_images, tmp_path):
    """Registries hand blobs to a CDN: follow, drop credentials, check the digest."""
    from gapsync.oci_auth import Credentials
    from gapsync.oci_client import RegistryClient

    reg = hostile_registry("redirect-other-host")
    client = RegistryClient(reg.host, scheme="http", credentials=Credentials("u", "p"))
    client._basic = True  # as after a Basic challenge
    layer = oci_images["app-b"]["platforms"]["linux/amd64"]["layers"][0]["digest"]
    with client.open_blob("team/app-b", layer) as resp:
        data = resp.content
    from hashlib import sha256

    assert "sha256:" + sha256(data).hexdigest() == layer
    hops = [e for e in reg.request_log() if layer in e["path"]]
    assert hops[0]["host"].startswith("127.0.0.1") and hops[0]["auth"] is True
    assert hops[-1]["host"].startswith("localhost") and hops[-1]["auth"] is False
