"""Signatures travel with their images, and images.require_signature verifies them at the border
on both sides. Real parts: Debian's docker-registry, cosign-format signatures pushed with the oras
SDK (tag ``sha256-<hex>.sig``; see tests/support/oci_artifacts.py for why skopeo does not sign here), skopeo
reading what was pushed on the air side, openssl verifying the signature there with the same key.
Hostile cases: unsigned, wrong key, a signature of another image moved onto this one, a tampered
signature, a payload that is not simple signing."""

from __future__ import annotations

import base64
import hashlib
import json
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import yaml

from gapsync.policies.schema import load_policy
from gapsync.scanner.artifacts.signatures import Candidate, PublicKey, verify
from tests.support.channels import new_channel
from tests.support.cli import GAPSYNC, cli
from tests.support.oci import Registry, skopeo_inspect
from tests.support.oci_artifacts import (
    SIMPLE_SIGNING,
    cosign_sign,
    key_pair,
    openssl_verify,
    sign_payload,
    simple_signing_payload,
)
from tests.support.servers import Server, free_port


def _errors(err: str) -> list[str]:
    """The error lines of a run (structured log lines, JSON objects, left out)."""
    return [line for line in err.strip().splitlines() if not line.startswith("{")]


@pytest.fixture(scope="module")
def sig_world(tmp_path_factory, oci_images):
    base = tmp_path_factory.mktemp("sig-world")
    reg = Registry(base / "registry")
    try:
        reg.push_images(oci_images.layout, oci_images.images)
        good, good_pub = key_pair(base / "keys", "good")
        other, other_pub = key_pair(base / "keys", "other", kind="ed25519")
        a = oci_images["app-a"]["digest"]
        cosign_sign(reg.host, "library/app-a", a, good, base / "sign-a")
        # app-big carries a signature of app-a's digest (a valid signature, moved)
        cosign_sign(reg.host, "library/app-big", oci_images["app-big"]["digest"], good, base / "sign-big",
                    payload=simple_signing_payload(f"{reg.host}/library/app-a", a))
        yield SimpleNamespace(base=base, registry=reg, host=reg.host, good=good, good_pub=good_pub, other=other,
                              other_pub=other_pub, digest_a=a)
    finally:
        reg.stop()


def _spec(path: Path, host: str, refs: list[str]) -> Path:
    """Every platform of app-a: a registry refuses an index whose platforms are absent, and the
    index push then tags is another digest, which the signature does not name (docs/images.md)."""
    path.write_text(yaml.safe_dump({"name": "sig", "channel": "prod", "images": {
        "platforms": ["linux/amd64", "linux/arm64", "linux/arm/v7"], "insecure": [host],
        "refs": [f"{host}/{r}" for r in refs]}}))
    return path


def _policy(path: Path, *keys: Path) -> Path:
    path.write_text(yaml.safe_dump({"name": path.stem, "images": {"require_signature": {"keys": [str(k) for k in keys]}}}))
    return path


def test_signed_image_crosses_and_its_signature_verifies_on_the_air_side(sig_world, empty_registry, tmp_path):
    w = sig_world
    ch = new_channel(tmp_path, "prod")
    spec = _spec(tmp_path / "g.yaml", w.host, ["library/app-a:1.0"])
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
    assert r.code == 0, r.err
    lock = json.loads((tmp_path / "l").read_text())["images"]
    sig = next(i for i in lock if i.get("subject"))
    hexd = w.digest_a.split(":")[1]
    assert sig["tag"] == f"sha256-{hexd}.sig" and sig["subject"] == w.digest_a and sig["artifact_type"] == SIMPLE_SIGNING
    r = cli("bundle", "create", "-f", spec, "--lock", tmp_path / "l", "--state", ch.state, "--key", ch.keys[0],
            "-o", tmp_path / "o", "--cache", tmp_path / "c", "--policy", _policy(tmp_path / "dmz.yaml", w.good_pub),
            "--report", tmp_path / "report.html", "--json")
    assert r.code == 0, r.err
    keyid = PublicKey.from_pem(w.good_pub.read_bytes()).keyid
    art = next(a for a in json.loads(r.out)["artifacts"] if a["name"].endswith("app-a") and not a.get("subject"))
    assert art["signatures"] == [f"signature verified with key {keyid} ({w.host}/library/app-a:sha256-{hexd}.sig)"]
    assert keyid in (tmp_path / "report.html").read_text()
    bundle = next((tmp_path / "o").glob("*.gapsync"))
    # the air side verifies again, under its own policy (same key)
    mirror = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", mirror).code == 0
    r = cli("import", bundle, "--mirror", mirror, "--policy", _policy(tmp_path / "air.yaml", w.good_pub))
    assert r.code == 0, r.err
    index = {m["annotations"]["org.opencontainers.image.ref.name"]: m
             for m in json.loads((mirror / "oci" / "index.json").read_text())["manifests"]}
    assert index[f"{w.host}/library/app-a:sha256-{hexd}.sig"]["artifactType"] == SIMPLE_SIGNING
    # the SBOM that crossed says what verified, by which key (a CycloneDX property of the image)
    with tarfile.open(bundle) as tf:
        targets = json.loads(tf.extractfile("metadata/targets.json").read())["signed"]["targets"]
    sbom_hex = targets["gapsync/sbom.cdx.json"]["hashes"]["sha256"]
    sbom = json.loads((mirror / ".gapsync" / "blobs" / "sha256" / sbom_hex[:2] / sbom_hex).read_bytes())
    props = {p["name"]: p["value"] for c in sbom["components"] if c["name"].endswith("app-a") and c.get("version") == "1.0"
             for p in c.get("properties", [])}
    assert f"signature verified with key {keyid}" in props["gapsync:signatures"]
    # published next to the image in a registry: an admission controller (here openssl) verifies there
    target = empty_registry()
    r = cli("push", "--mirror", mirror, "--to", target.url)
    assert r.code == 0, r.err
    raw = requests.get(f"{target.url}/v2/library/app-a/manifests/1.0",
                       headers={"Accept": "application/vnd.oci.image.index.v1+json"}, timeout=10).content
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == w.digest_a
    sig_manifest = skopeo_inspect(f"docker://{target.host}/library/app-a:sha256-{hexd}.sig", raw=True)
    layer = sig_manifest["layers"][0]
    payload = requests.get(f"{target.url}/v2/library/app-a/blobs/{layer['digest']}", timeout=10).content
    assert json.loads(payload)["critical"]["image"]["docker-manifest-digest"] == w.digest_a
    assert openssl_verify(w.good_pub, payload, layer["annotations"]["dev.cosignproject.cosign/signature"], tmp_path / "ossl")
    assert not openssl_verify(w.good_pub, payload + b" ", layer["annotations"]["dev.cosignproject.cosign/signature"],
                              tmp_path / "ossl2")
    # push --image also pushes what is attached to that image
    only = empty_registry()
    r = cli("push", "--mirror", mirror, "--to", only.url, "--image", f"{w.host}/library/app-a:1.0", "--json")
    assert r.code == 0, r.err
    assert skopeo_inspect(f"docker://{only.host}/library/app-a:sha256-{hexd}.sig", raw=True)["layers"][0]["digest"] == layer["digest"]
    # and gapsync serve answers the signature tag next to the image
    port = free_port()
    srv = Server([GAPSYNC, "serve", "--mirror", str(mirror), "--listen", f"127.0.0.1:{port}"], f"http://127.0.0.1:{port}/v2/")
    try:
        served = requests.get(f"http://127.0.0.1:{port}/v2/{w.host}/library/app-a/manifests/sha256-{hexd}.sig", timeout=10)
        assert served.status_code == 200 and served.json()["layers"][0]["digest"] == layer["digest"]
    finally:
        srv.stop()


def test_the_sbom_says_what_verified_by_which_key(sig_world, tmp_path):
    w = sig_world
    ch = new_channel(tmp_path, "prod")
    spec = _spec(tmp_path / "g.yaml", w.host, ["library/app-a:1.0"])
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o",
            "--cache", tmp_path / "c", "--policy", _policy(tmp_path / "p.yaml", w.good_pub))
    assert r.code == 0, r.err
    r = cli("bundle", "inspect", next((tmp_path / "o").glob("*.gapsync")), "--json")
    assert r.code == 0, r.err
    keyid = PublicKey.from_pem(w.good_pub.read_bytes()).keyid
    assert f"signature verified with key {keyid}" in r.out


@pytest.mark.parametrize("ref, keys, words", [
    ("team/app-b:2.0", ["good"], ["unsigned", "team/app-b"]),                 # no signature at all
    ("library/app-a:1.0", ["other"], ["does not verify"]),                  # signed, but not by the policy's key
    ("library/app-big:1.0", ["good"], ["signs sha256:", "not this image"]),  # a valid signature of another image
])
def test_images_without_a_valid_signature_are_blocked_at_the_dmz(sig_world, tmp_path, ref, keys, words):
    w = sig_world
    ch = new_channel(tmp_path, "prod")
    policy = _policy(tmp_path / "p.yaml", *[w.good_pub if k == "good" else w.other_pub for k in keys])
    r = cli("bundle", "create", "-f", _spec(tmp_path / "g.yaml", w.host, [ref]), "--state", ch.state, "--key", ch.keys[0],
            "-o", tmp_path / "o", "--cache", tmp_path / "c", "--policy", policy)
    assert r.code == 4, r.err
    lines = _errors(r.err)
    assert len(lines) == 1 and all(x in lines[0] for x in words), r.err
    assert not list((tmp_path / "o").glob("*.gapsync"))


def test_the_air_side_blocks_with_its_own_key(sig_world, tmp_path):
    """A bundle the DMZ let through (no signature rule there) meets the air side's rule: a key
    the signature was not made with blocks the image at import, one line, nothing published."""
    w = sig_world
    ch = new_channel(tmp_path, "prod")
    r = cli("bundle", "create", "-f", _spec(tmp_path / "g.yaml", w.host, ["library/app-a:1.0"]), "--state", ch.state,
            "--key", ch.keys[0], "-o", tmp_path / "o", "--cache", tmp_path / "c")
    assert r.code == 0, r.err
    mirror = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", mirror).code == 0
    r = cli("import", next((tmp_path / "o").glob("*.gapsync")), "--mirror", mirror,
            "--policy", _policy(tmp_path / "air.yaml", w.other_pub))
    assert r.code == 4 and "does not verify" in r.err, r.err
    assert not (mirror / "oci" / "index.json").exists()


# -- the verifier on its own (pure): hostile payloads and keys ---------------------------------------
def _cand(payload: bytes, sig: bytes) -> Candidate:
    return Candidate("x:sha256-abc.sig", payload, base64.b64encode(sig).decode())


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519"])
def test_verify_accepts_both_key_types_and_refuses_tampering(tmp_path, kind):
    key, pub = key_pair(tmp_path, kind=kind)
    digest = "sha256:" + "a" * 64
    payload = simple_signing_payload("r/x", digest)
    pk = PublicKey.from_pem(pub.read_bytes())
    ok, why = verify(digest, [_cand(payload, sign_payload(key, payload))], [pk])
    assert ok == [{"key": pk.keyid, "source": "x:sha256-abc.sig", "digest": digest}] and why == []
    # the payload changed after signing (another digest written in): refused
    forged = payload.replace(b"a" * 64, b"b" * 64)
    assert verify("sha256:" + "b" * 64, [_cand(forged, sign_payload(key, payload))], [pk])[0] == []
    # a signature that is not base64, a payload that is not simple signing
    assert "not base64" in verify(digest, [Candidate("s", payload, "***")], [pk])[1][0]
    odd = json.dumps({"critical": {"type": "something else", "image": {"docker-manifest-digest": digest}}}).encode()
    assert "not a simple-signing payload" in verify(digest, [_cand(odd, sign_payload(key, odd))], [pk])[1][0]
    assert verify(digest, [_cand(b"\xff" * 10, b"x")], [pk])[0] == []


def test_policy_refuses_keys_it_cannot_use(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    rsa_pub = tmp_path / "rsa.pub"
    rsa_pub.write_bytes(rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    p384 = tmp_path / "p384.pub"
    p384.write_bytes(ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "garbage.pub").write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    (tmp_path / "link.pub").symlink_to(p384)
    for name, words in (("rsa.pub", "only ECDSA P-256 and Ed25519"), ("p384.pub", "only P-256"),
                        ("garbage.pub", "not a PEM public key"), ("link.pub", "not a regular file"),
                        ("missing.pub", "not a regular file")):
        policy = _policy(tmp_path / "p.yaml", Path(name))
        with pytest.raises(Exception) as e:
            load_policy(policy)
        assert words in str(e.value) and "p.yaml" in str(e.value), str(e.value)
    (tmp_path / "q.yaml").write_text("name: q\nimages:\n  require_signature:\n    keys: []\n")
    with pytest.raises(Exception, match="at least one public key"):
        load_policy(tmp_path / "q.yaml")


# -- the OCI referrers API (Debian's docker-registry has none: a small registry that offers it) -------
def _referrers_layout(root: Path, subject: str | None = None) -> tuple[str, str]:
    """An image (team/app:1) and an in-toto attestation whose subject is that image (or ``subject``)."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return {"digest": f"sha256:{h}", "size": len(data)}

    oci = "application/vnd.oci.image.manifest.v1+json"
    cfg = json.dumps({"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    image = json.dumps({"schemaVersion": 2, "mediaType": oci,
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(cfg)},
                        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **put(b"\0" * 1024)}]}).encode()
    img = put(image)
    att = json.dumps({"schemaVersion": 2, "mediaType": oci, "artifactType": "application/vnd.in-toto+json",
                      "config": {"mediaType": "application/vnd.oci.empty.v1+json", **put(b"{}")},
                      "layers": [{"mediaType": "application/vnd.in-toto+json", **put(b'{"_type": "statement"}')}],
                      "subject": {"mediaType": oci, **img, **({"digest": subject} if subject else {})}}).encode()
    at = put(att)
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": oci, **img, "annotations": {"org.opencontainers.image.ref.name": "team/app:1"}},
        {"mediaType": oci, **at}]}))
    return img["digest"], at["digest"]


@pytest.mark.parametrize("mode", ["honest", "wrong-subject"])
def test_attestations_found_through_the_referrers_api(tmp_path, mode):
    from tests.support.servers import SERVERS

    other = "sha256:" + "e" * 64
    image, attestation = _referrers_layout(tmp_path / "layout", other if mode == "wrong-subject" else None)
    port = free_port()
    srv = Server(["python3", str(SERVERS / "referrers_registry.py"), str(tmp_path / "layout"), str(port),
                  "--mode", mode], f"http://127.0.0.1:{port}/v2/")
    try:
        host = f"127.0.0.1:{port}"
        spec = tmp_path / "g.yaml"
        spec.write_text(yaml.safe_dump({"name": "r", "channel": "prod", "images": {"insecure": [host],
                                                                                  "refs": [f"{host}/team/app:1"]}}))
        if mode == "wrong-subject":  # the registry lists another image's attestation: refused, one line
            r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
            lines = _errors(r.err)
            assert r.code != 0 and len(lines) == 1 and f"does not name {image} as its subject" in lines[0], r.err
            return
        ch = new_channel(tmp_path, "prod")
        r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
        assert r.code == 0, r.err
        att = next(i for i in json.loads((tmp_path / "l").read_text())["images"] if i.get("subject"))
        assert att["digest"] == attestation and att["subject"] == image and att["tag"] is None
        assert att["artifact_type"] == "application/vnd.in-toto+json"
        r = cli("bundle", "create", "-f", spec, "--lock", tmp_path / "l", "--state", ch.state, "--key", ch.keys[0],
                "-o", tmp_path / "o", "--cache", tmp_path / "c")
        assert r.code == 0, r.err
        mirror = tmp_path / "m"
        assert cli("trust", "pin", ch.root, "--mirror", mirror).code == 0
        assert cli("import", next((tmp_path / "o").glob("*.gapsync")), "--mirror", mirror).code == 0
        entries = {m["digest"]: m for m in json.loads((mirror / "oci" / "index.json").read_text())["manifests"]}
        assert entries[attestation]["artifactType"] == "application/vnd.in-toto+json"
        assert json.loads((mirror / "oci" / "blobs" / "sha256" / attestation.split(":")[1]).read_bytes())["subject"]["digest"] == image
        # findable next to the image on the air side: serve's referrers API, and after push the
        # referrers tag schema (sha256-<hex>) in a registry without the API (docker-registry)
        tag = f"sha256-{image.split(':')[1]}"
        port2 = free_port()
        served = Server([GAPSYNC, "serve", "--mirror", str(mirror), "--listen", f"127.0.0.1:{port2}"],
                        f"http://127.0.0.1:{port2}/v2/")
        try:
            r = requests.get(f"http://127.0.0.1:{port2}/v2/team/app/referrers/{image}", timeout=10)
            assert r.headers["Content-Type"] == "application/vnd.oci.image.index.v1+json"
            assert [(d["digest"], d["artifactType"]) for d in r.json()["manifests"]] == [(attestation, "application/vnd.in-toto+json")]
            none = requests.get(f"http://127.0.0.1:{port2}/v2/team/app/referrers/sha256:{'f' * 64}", timeout=10).json()
            assert none["manifests"] == []
        finally:
            served.stop()
        target = Registry(tmp_path / "air-registry")
        try:
            r = cli("push", "--mirror", mirror, "--to", target.url)
            assert r.code == 0, r.err
            pushed = skopeo_inspect(f"docker://{target.host}/team/app:{tag}", raw=True)
            assert [d["digest"] for d in pushed["manifests"]] == [attestation]
            assert skopeo_inspect(f"docker://{target.host}/team/app@{attestation}", raw=True)["subject"]["digest"] == image
        finally:
            target.stop()
    finally:
        srv.stop()


def test_what_is_attached_to_a_blocked_image_stays_out_with_it(sig_world, tmp_path):
    """--allow-partial: app-big (a moved signature) is blocked, and that signature does not
    cross or get published alone; app-a and its signature do. On both sides."""
    w = sig_world
    ch = new_channel(tmp_path, "prod")
    spec = _spec(tmp_path / "g.yaml", w.host, ["library/app-a:1.0", "library/app-big:1.0"])
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o",
            "--cache", tmp_path / "c", "--policy", _policy(tmp_path / "p.yaml", w.good_pub), "--allow-partial", "--json")
    assert r.code == 0, r.err
    bundle = next((tmp_path / "o").glob("*.gapsync"))
    with tarfile.open(bundle) as tf:
        paths = json.loads(tf.extractfile("metadata/targets.json").read())["signed"]["targets"]
    assert not [p for p in paths if "app-big" in p] and [p for p in paths if "app-a:sha256-" in p]
    # the air side: a bundle made without the rule, the air side's rule blocks app-big
    ch2 = new_channel(tmp_path / "two", "prod")
    r = cli("bundle", "create", "-f", spec, "--state", ch2.state, "--key", ch2.keys[0], "-o", tmp_path / "o2",
            "--cache", tmp_path / "c")
    assert r.code == 0, r.err
    mirror = tmp_path / "m"
    assert cli("trust", "pin", ch2.root, "--mirror", mirror).code == 0
    r = cli("import", next((tmp_path / "o2").glob("*.gapsync")), "--mirror", mirror, "--allow-partial",
            "--policy", _policy(tmp_path / "air.yaml", w.good_pub))
    assert r.code == 0, r.err
    names = [m["annotations"]["org.opencontainers.image.ref.name"]
             for m in json.loads((mirror / "oci" / "index.json").read_text())["manifests"]]
    assert not [n for n in names if "app-big" in n] and [n for n in names if "app-a:sha256-" in n]



def test_an_image_waits_for_a_signature_in_another_volume():
    """Volumes imported one by one: an image whose signature's blobs are in a volume not yet
    imported waits for it (pending) rather than meeting require_signature without it."""
    from gapsync.mirror.subjects import waiting_artifacts
    from gapsync.model import BlobRef, Target

    image, sig = "a" * 64, "b" * 64
    targets = [Target("oci/image/r.io/x:1", BlobRef(image, 10), {"kind": "oci-image", "name": "r.io/x", "tag": "1",
                                                                  "digest": f"sha256:{image}", "blobs": []}),
               Target(f"oci/image/r.io/x:sha256-{image}.sig", BlobRef(sig, 10),
                      {"kind": "oci-image", "name": "r.io/x", "tag": f"sha256-{image}.sig", "digest": f"sha256:{sig}",
                       "subject": f"sha256:{image}", "blobs": [f"sha256:{'c' * 64}"]})]
    waiting = waiting_artifacts(targets, lambda d: Path("/nonexistent") / d, lambda d: d != "c" * 64)
    assert waiting == {"oci:r.io/x@1", f"oci:r.io/x@sha256-{image}.sig"}
    assert waiting_artifacts(targets, lambda d: Path("/nonexistent") / d, lambda d: True) == set()


def test_an_index_under_a_signature_tag_is_refused(oci_images, empty_registry, tmp_path):
    from tests.support.oci import push_with_skopeo

    reg = empty_registry()
    push_with_skopeo(oci_images.layout, "app-b", reg.ref("team/app-b", "2.0"))
    hexd = oci_images["app-b"]["digest"].split(":")[1]
    push_with_skopeo(oci_images.layout, "app-a", reg.ref("team/app-b", f"sha256-{hexd}.sig"))  # an image index
    r = cli("resolve", "-f", _spec(tmp_path / "g.yaml", reg.host, ["team/app-b:2.0"]), "-o", tmp_path / "l",
            "--cache", tmp_path / "c")
    lines = _errors(r.err)
    assert r.code != 0 and len(lines) == 1 and "where a signature manifest belongs" in lines[0], r.err
