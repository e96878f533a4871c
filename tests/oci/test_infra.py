"""Prove the OCI fixtures with independent clients only (skopeo, plain requests), never gapsync.

If these pass, a failing product test is about gapsync, not about the registries, the token
server, the layout builder or the hostile registry it ran against.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
import requests

from tests.support.oci import (
    ACCEPT_ALL,
    BIG_LAYER_SIZE,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    build_layout,
    default_images,
    export_dir,
    push_with_skopeo,
    skopeo,
    skopeo_inspect,
    targeted_layers,
    unique_blobs,
)

REGISTRIES = ("source_registry", "auth_registry", "token_registry")
PUSHED = {"app-a": "library/app-a:1.0", "app-b": "team/app-b:2.0", "app-big": "library/app-big:1.0"}


def _jwt_claims(token: str) -> tuple[dict, dict]:
    """Header and claims of a JWT, unverified (the registry verifies; the test reads)."""
    head, claims, _ = token.split(".")
    return tuple(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))) for part in (head, claims))


# ------------------------------------------------------------------------------ the layout


def test_layout_is_deterministic_and_shares_the_base_layer(tmp_path: Path, oci_images) -> None:
    again = build_layout(tmp_path / "again", default_images())
    assert {n: i["digest"] for n, i in again.items()} == {n: i["digest"] for n, i in oci_images.images.items()}
    a, b = oci_images["app-a"], oci_images["app-b"]
    assert a["media_type"] == OCI_INDEX and a["is_index"] and list(a["platforms"]) == [
        "linux/amd64", "linux/arm64", "linux/arm/v7"]
    assert b["media_type"] == DOCKER_MANIFEST and b["platforms"]["linux/amd64"]["digest"] == b["digest"]
    for p in a["platforms"].values():
        assert p["layers"][0]["digest"] == oci_images.base_layer
    big = oci_images["app-big"]["platforms"]["linux/amd64"]["layers"]
    assert len(big) == 1 and big[0]["size"] > BIG_LAYER_SIZE  # incompressible: gzip only adds
    blobs = unique_blobs(oci_images.images)
    assert oci_images.base_layer in blobs
    for digest, size in blobs.items():
        data = (oci_images.layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
        assert len(data) == size and "sha256:" + hashlib.sha256(data).hexdigest() == digest


def test_layout_is_read_by_skopeo(tmp_path: Path, oci_images) -> None:
    raw = skopeo_inspect(f"oci:{oci_images.layout}:app-a", raw=True)
    assert raw["mediaType"] == OCI_INDEX and len(raw["manifests"]) == 3
    amd64 = skopeo_inspect(f"oci:{oci_images.layout}:app-big")
    assert amd64["Digest"] == oci_images["app-big"]["digest"] and amd64["Architecture"] == "amd64"
    # Docker-typed images: skopeo's oci: transport ignores them; the dir: export keeps the digest.
    out = export_dir(oci_images.layout, "app-b", tmp_path / "app-b")
    assert skopeo_inspect(f"dir:{out}")["Digest"] == oci_images["app-b"]["digest"]


# ------------------------------------------------------------------------------ the registries


@pytest.mark.parametrize("fixture", REGISTRIES)
def test_every_image_is_in_every_registry_with_its_built_digest(fixture: str, request, oci_images) -> None:
    reg = request.getfixturevalue(fixture)
    assert reg.pushed == PUSHED
    for name, info in oci_images.images.items():
        got = skopeo_inspect(reg.ref(info["repository"], info["tag"]), creds=reg.creds)
        assert got["Digest"] == info["digest"], name
        assert got["Os"] == "linux"
    if reg.auth == "token":
        seen = reg.token_requests()
        assert any(r["status"] == 200 and r["user"] == reg.username and "repository:team/app-b:pull" in r["scopes"]
                   for r in seen)
        assert any("repository:library/app-a:pull,push" in r["scopes"] for r in seen)  # skopeo's push


@pytest.mark.parametrize("fixture", ("auth_registry", "token_registry"))
def test_auth_registries_refuse_anonymous_and_wrong_credentials(fixture: str, request) -> None:
    reg = request.getfixturevalue(fixture)
    challenge = requests.get(f"{reg.url}/v2/", timeout=5)
    assert challenge.status_code == 401
    www = challenge.headers["WWW-Authenticate"]
    if reg.auth == "token":
        assert www.startswith("Bearer ") and f'realm="{reg.realm}"' in www and f'service="{reg.service}"' in www
    else:
        assert www.startswith("Basic ")
        assert requests.get(f"{reg.url}/v2/", auth=(reg.username, reg.password), timeout=5).status_code == 200
    for creds in (None, f"{reg.username}:wrong"):
        with pytest.raises(RuntimeError, match="(?i)unauthorized|authentication required"):
            skopeo_inspect(reg.ref("library/app-a", "1.0"), creds=creds)


def test_token_server_bearer_flow_by_hand(token_registry, oci_images) -> None:
    """The exact flow gapsync implements: 401 challenge -> realm with Basic -> Bearer retry.
    Two scope parameters (what a cross-repository mount asks for) are both granted, no more."""
    reg = token_registry
    scopes = ["repository:team/app-b:pull,push", "repository:library/app-a:pull"]
    r = requests.get(reg.realm, params={"service": reg.service, "scope": scopes},
                     auth=(reg.username, reg.password), timeout=5)
    assert r.status_code == 200
    header, claims = _jwt_claims(r.json()["token"])
    assert header["alg"] == "RS256" and header["x5c"]
    assert claims["iss"] == reg.issuer and claims["aud"] == reg.service and claims["sub"] == reg.username
    assert claims["exp"] > claims["iat"] >= claims["nbf"] and claims["jti"]
    assert claims["access"] == [{"type": "repository", "name": "team/app-b", "actions": ["pull", "push"]},
                                {"type": "repository", "name": "library/app-a", "actions": ["pull"]}]
    assert reg.token_requests()[-1]["scopes"] == scopes
    bearer = {"Authorization": f"Bearer {r.json()['token']}", "Accept": ACCEPT_ALL}
    m = requests.get(f"{reg.url}/v2/library/app-a/manifests/1.0", headers=bearer, timeout=5)
    assert m.status_code == 200 and m.headers["Docker-Content-Digest"] == oci_images["app-a"]["digest"]
    # A token for one repository does not open another.
    other = requests.get(f"{reg.url}/v2/library/app-big/manifests/1.0", headers=bearer, timeout=5)
    assert other.status_code == 401
    bad = requests.get(reg.realm, params={"service": reg.service, "scope": scopes[0]},
                       auth=(reg.username, "nope"), timeout=5)
    assert bad.status_code == 401 and reg.token_requests()[-1]["status"] == 401


def test_app_a_is_an_index_of_three_platforms(source_registry, oci_images) -> None:
    raw = skopeo_inspect(source_registry.ref("library/app-a", "1.0"), raw=True)
    assert raw["mediaType"] == OCI_INDEX
    got = {"/".join(filter(None, (m["platform"]["os"], m["platform"]["architecture"], m["platform"].get("variant")))):
           m["digest"] for m in raw["manifests"]}
    assert got == {p: info["digest"] for p, info in oci_images["app-a"]["platforms"].items()}
    assert set(got) == {"linux/amd64", "linux/arm64", "linux/arm/v7"}


def test_app_b_has_docker_media_types_and_exact_bytes(source_registry, oci_images) -> None:
    raw = skopeo_inspect(source_registry.ref("team/app-b", "2.0"), raw=True)
    assert raw["mediaType"] == DOCKER_MANIFEST and raw["config"]["mediaType"] == DOCKER_CONFIG
    assert {la["mediaType"] for la in raw["layers"]} == {DOCKER_LAYER}
    for name, info in oci_images.images.items():
        r = requests.get(f"{source_registry.url}/v2/{info['repository']}/manifests/{info['tag']}",
                         headers={"Accept": ACCEPT_ALL}, timeout=5)
        assert r.headers["Content-Type"] == info["media_type"], name
        assert r.headers["Docker-Content-Digest"] == info["digest"]
        assert r.content == (oci_images.layout / "blobs/sha256" / info["digest"].split(":")[1]).read_bytes()


def test_base_layer_is_shared_by_app_a_amd64_and_app_b(source_registry, oci_images) -> None:
    amd64 = oci_images["app-a"]["platforms"]["linux/amd64"]["digest"]
    a = skopeo_inspect(f"{source_registry.host}/library/app-a@{amd64}", raw=True)
    b = skopeo_inspect(source_registry.ref("team/app-b", "2.0"), raw=True)
    shared = {la["digest"] for la in a["layers"]} & {la["digest"] for la in b["layers"]}
    assert shared == {oci_images.base_layer}
    for repo in ("library/app-a", "team/app-b"):
        h = requests.head(f"{source_registry.url}/v2/{repo}/blobs/{oci_images.base_layer}", timeout=5)
        assert h.status_code == 200


def test_empty_registry_factory_gives_fresh_registries(empty_registry, oci_images) -> None:
    one, two = empty_registry(), empty_registry()
    assert one.url != two.url
    for reg in (one, two):
        assert requests.get(f"{reg.url}/v2/_catalog", timeout=5).json() == {"repositories": []}
    push_with_skopeo(oci_images.layout, "app-b", one.ref("team/app-b", "2.0"))
    assert skopeo_inspect(one.ref("team/app-b", "2.0"))["Digest"] == oci_images["app-b"]["digest"]
    assert requests.get(f"{two.url}/v2/_catalog", timeout=5).json() == {"repositories": []}


def test_token_registry_with_anonymous_pull(empty_registry, oci_images) -> None:
    """Docker Hub style: anyone gets a pull-only token; pushing needs credentials."""
    reg = empty_registry(auth="token", anonymous_pull=True)
    push_with_skopeo(oci_images.layout, "app-b", reg.ref("team/app-b", "2.0"), creds=reg.creds)
    assert skopeo_inspect(reg.ref("team/app-b", "2.0"))["Digest"] == oci_images["app-b"]["digest"]
    anon = [r for r in reg.token_requests() if r["user"] is None]
    assert anon and all(g["actions"] == ["pull"] for r in anon for g in r["granted"])
    with pytest.raises(RuntimeError):
        push_with_skopeo(oci_images.layout, "app-b", reg.ref("team/app-b", "3.0"))


# ------------------------------------------------------------------------------ the hostile registry


def _get(url: str, **kw) -> requests.Response:
    return requests.get(url, headers={"Accept": ACCEPT_ALL, **kw.pop("headers", {})}, timeout=10, **kw)


@pytest.mark.parametrize("mode", ("honest", "wrong-digest", "missing-blob", "oversize", "oversize-nolength"))
def test_hostile_registry_modes(mode: str, hostile_registry, oci_images) -> None:
    reg = hostile_registry(mode)
    assert _get(f"{reg.url}/v2/").status_code == 200
    b = oci_images["app-b"]
    target = b["platforms"]["linux/amd64"]["layers"][-1]
    assert target["digest"] in targeted_layers(oci_images.images)
    # Manifests and the base layer are always honest: the client meets the lie mid-way.
    m = _get(f"{reg.url}/v2/team/app-b/manifests/2.0")
    assert m.status_code == 200 and m.headers["Content-Type"] == DOCKER_MANIFEST
    assert m.headers["Docker-Content-Digest"] == b["digest"] == "sha256:" + hashlib.sha256(m.content).hexdigest()
    by_digest = _get(f"{reg.url}/v2/team/app-b/manifests/{b['digest']}")
    assert by_digest.content == m.content
    base = _get(f"{reg.url}/v2/team/app-b/blobs/{oci_images.base_layer}")
    assert "sha256:" + hashlib.sha256(base.content).hexdigest() == oci_images.base_layer

    url = f"{reg.url}/v2/team/app-b/blobs/{target['digest']}"
    r, head = _get(url), requests.head(url, timeout=10)
    digest_ok = "sha256:" + hashlib.sha256(r.content).hexdigest() == target["digest"]
    if mode == "honest":
        assert r.status_code == 200 and digest_ok and len(r.content) == target["size"]
        assert int(head.headers["Content-Length"]) == target["size"]
        part = _get(url, headers={"Range": "bytes=10-"})
        assert part.status_code == 206 and part.content == r.content[10:]
        assert _get(f"{reg.url}/v2/library/app-a/tags/list").json() == {"name": "library/app-a", "tags": ["1.0"]}
        idx = _get(f"{reg.url}/v2/library/app-a/manifests/1.0")
        assert idx.headers["Content-Type"] == OCI_INDEX
        child = _get(f"{reg.url}/v2/library/app-a/manifests/{oci_images['app-a']['platforms']['linux/arm64']['digest']}")
        assert child.headers["Content-Type"] == OCI_MANIFEST
    elif mode == "wrong-digest":
        assert r.status_code == 200 and len(r.content) == target["size"] and not digest_ok
    elif mode == "missing-blob":
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
        assert head.status_code == 404
        assert target["digest"] in m.text  # the manifest still references it
    elif mode == "oversize":
        assert int(r.headers["Content-Length"]) == len(r.content) > target["size"]
        assert int(head.headers["Content-Length"]) > target["size"]
        assert "sha256:" + hashlib.sha256(r.content[:target["size"]]).hexdigest() == target["digest"]
    elif mode == "oversize-nolength":
        assert "Content-Length" not in r.headers and len(r.content) > target["size"]
        assert "sha256:" + hashlib.sha256(r.content[:target["size"]]).hexdigest() == target["digest"]
    assert [e["status"] for e in reg.request_log()][0] == 200


def test_hostile_registry_redirects_to_another_host_name(hostile_registry, oci_images) -> None:
    reg = hostile_registry("redirect-other-host")
    assert _get(f"{reg.url}/v2/").status_code == 200
    b = oci_images["app-b"]
    for path in ("/v2/team/app-b/manifests/2.0", f"/v2/team/app-b/blobs/{oci_images.base_layer}"):
        r = _get(reg.url + path, allow_redirects=False)
        assert r.status_code == 307 and r.headers["Location"] == f"http://localhost:{reg.other_port}{path}"
    # Followed (as requests does, dropping Authorization for the other host), the target is honest.
    r = _get(f"{reg.url}/v2/team/app-b/manifests/2.0", headers={"Authorization": "Bearer secret"})
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == b["digest"]
    last = reg.request_log()[-2:]
    assert [(e["host"].split(":")[0], e["auth"], e["status"]) for e in last] == [
        ("127.0.0.1", True, 307), ("localhost", False, 200)]
    # --other-port points the redirects at another server.
    honest = hostile_registry("honest")
    other = hostile_registry("redirect-other-host", other_port=int(honest.host.split(":")[1]))
    r = _get(f"{other.url}/v2/team/app-b/blobs/{oci_images.base_layer}", allow_redirects=False)
    assert r.headers["Location"].startswith(f"http://localhost:{honest.host.split(':')[1]}/")


def test_skopeo_reads_the_honest_hostile_registry_and_refuses_a_wrong_digest(tmp_path: Path, hostile_registry,
                                                                             oci_images) -> None:
    """The honest mode is a faithful registry for a stock client; the lying mode is caught by one."""
    honest, liar = hostile_registry("honest"), hostile_registry("wrong-digest")
    assert skopeo_inspect(honest.ref("library/app-a", "1.0"), raw=True)["mediaType"] == OCI_INDEX
    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{honest.ref('library/app-a', '1.0')}",
           f"dir:{tmp_path / 'ok'}")
    assert hashlib.sha256((tmp_path / "ok/manifest.json").read_bytes()).hexdigest() == \
        oci_images["app-a"]["digest"].split(":")[1]
    with pytest.raises(RuntimeError, match="(?i)digest"):
        skopeo("copy", "--src-tls-verify=false", f"docker://{liar.ref('team/app-b', '2.0')}", f"dir:{tmp_path / 'bad'}")
