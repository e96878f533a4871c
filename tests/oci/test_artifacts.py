"""Any OCI artifact by digest: a manifest whose config is not an image config (or that has an
``artifactType``) is carried as it is, from an OCI layout (the issue's Helm chart, refused before
with "a single-platform image for /") and from a registry (an artifact pushed with the oras SDK),
then published in the layout, served by ``serve`` and pushed to a registry, where oras pulls it
byte for byte."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from tests.support.channels import new_channel
from tests.support.cli import GAPSYNC, cli
from tests.support.oci_artifacts import HELM_CONFIG, HELM_CONTENT, chart_archive, chart_config, oras_push
from tests.support.servers import Server, free_port

SBOM_CONFIG = "application/vnd.example.sbom.config.v1+json"
SBOM_LAYER = "application/spdx+json"


def _layout_with(root: Path, ref: str, config: bytes, config_type: str, layers: list[tuple[bytes, str]],
                 extra: dict | None = None) -> str:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return f"sha256:{h}"

    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": config_type, "digest": put(config), "size": len(config)},
                "layers": [{"mediaType": mt, "digest": put(d), "size": len(d)} for d, mt in layers], **(extra or {})}
    data = json.dumps(manifest).encode()
    digest = put(data)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": len(data),
         "annotations": {"org.opencontainers.image.ref.name": ref}}]}))
    return digest


def _carry(tmp_path: Path, spec_images: dict) -> tuple[Path, dict]:
    ch = new_channel(tmp_path, "prod")
    spec = tmp_path / "g.yaml"
    spec.write_text(yaml.safe_dump({"name": "art", "channel": "prod", "images": spec_images}))
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
    assert r.code == 0, r.err
    r = cli("bundle", "create", "-f", spec, "--lock", tmp_path / "l", "--state", ch.state, "--key", ch.keys[0],
            "-o", tmp_path / "o", "--cache", tmp_path / "c", "--json")
    assert r.code == 0, r.err
    mirror = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", mirror).code == 0
    r2 = cli("import", next((tmp_path / "o").glob("*.gapsync")), "--mirror", mirror)
    assert r2.code == 0, r2.err
    return mirror, {"lock": json.loads((tmp_path / "l").read_text()), "create": json.loads(r.out)}


def test_a_helm_chart_in_an_oci_layout_is_carried_as_it_is(tmp_path):
    archive = chart_archive("mychart", "0.1.0")
    digest = _layout_with(tmp_path / "layout", "chart", chart_config("mychart", "0.1.0"), HELM_CONFIG,
                          [(archive, HELM_CONTENT)])
    mirror, out = _carry(tmp_path, {"platforms": ["linux/amd64"],
                                    "refs": [{"oci_layout": str(tmp_path / "layout"), "ref": "chart", "as": "team/mychart:0.1.0"}]})
    img = out["lock"]["images"][0]
    assert img["digest"] == digest and img["artifact_type"] == HELM_CONFIG and img["platforms"] == []
    art = out["create"]["artifacts"][0]
    assert art["artifact_type"] == HELM_CONFIG and art["digest"] == digest
    entry = json.loads((mirror / "oci" / "index.json").read_text())["manifests"][0]
    assert entry["digest"] == digest and entry["artifactType"] == HELM_CONFIG
    assert (mirror / "oci" / "blobs" / "sha256" / hashlib.sha256(archive).hexdigest()).read_bytes() == archive


def test_an_artifact_from_a_registry_is_served_and_pushed_byte_for_byte(tmp_path, empty_registry):
    import oras.client

    source = empty_registry()
    work = tmp_path / "work"
    work.mkdir()
    (work / "sbom.spdx.json").write_text(json.dumps({"spdxVersion": "SPDX-2.3", "name": "x"}))
    (work / "config.json").write_text("{}")
    oras_push(source.host, "team/sbom:v1", [(work / "sbom.spdx.json", SBOM_LAYER)], (work / "config.json", SBOM_CONFIG))
    mirror, out = _carry(tmp_path / "carry", {"platforms": ["linux/amd64"], "insecure": [source.host],
                                              "refs": [f"{source.host}/team/sbom:v1"]})
    img = out["lock"]["images"][0]
    assert img["artifact_type"] == SBOM_CONFIG and img["platforms"] == []
    port = free_port()
    srv = Server([GAPSYNC, "serve", "--mirror", str(mirror), "--listen", f"127.0.0.1:{port}"], f"http://127.0.0.1:{port}/v2/")
    try:
        got = tmp_path / "from-serve"
        oras.client.OrasClient(hostname=f"127.0.0.1:{port}", insecure=True).pull(
            target=f"127.0.0.1:{port}/{source.host}/team/sbom:v1", outdir=str(got))
        assert (got / "sbom.spdx.json").read_bytes() == (work / "sbom.spdx.json").read_bytes()
    finally:
        srv.stop()
    target = empty_registry()
    r = cli("push", "--mirror", mirror, "--to", f"{target.url}/air")
    assert r.code == 0, r.err
    got = tmp_path / "from-push"
    oras.client.OrasClient(hostname=target.host, insecure=True).pull(target=f"{target.host}/air/team/sbom:v1", outdir=str(got))
    assert (got / "sbom.spdx.json").read_bytes() == (work / "sbom.spdx.json").read_bytes()


@pytest.mark.parametrize("extra, words", [
    ({"artifactType": "not a media type"}, "is not a media type"),
    ({"artifactType": ["a/b"]}, "is not a media type"),
])
def test_a_malformed_artifact_type_is_refused_in_one_line(tmp_path, extra, words):
    _layout_with(tmp_path / "layout", "x", b"{}", "application/vnd.oci.empty.v1+json", [(b"data", "text/plain")], extra)
    spec = tmp_path / "g.yaml"
    spec.write_text(yaml.safe_dump({"name": "a", "channel": "prod", "images": {
        "refs": [{"oci_layout": str(tmp_path / "layout"), "ref": "x", "as": "team/x:1"}]}}))
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
    assert r.code != 0 and words in r.err and len([x for x in r.err.splitlines() if not x.startswith("{")]) == 1, r.err


def test_an_image_with_a_wrong_platform_is_still_refused(tmp_path):
    """The platform filter still applies to images: only non-image configs are artifacts."""
    cfg = json.dumps({"os": "windows", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    _layout_with(tmp_path / "layout", "w", cfg, "application/vnd.oci.image.config.v1+json",
                 [(b"\x1f\x8b" + b"0" * 10, "application/vnd.oci.image.layer.v1.tar+gzip")])
    spec = tmp_path / "g.yaml"
    spec.write_text(yaml.safe_dump({"name": "a", "channel": "prod", "images": {
        "refs": [{"oci_layout": str(tmp_path / "layout"), "ref": "w", "as": "team/w:1"}]}}))
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
    assert r.code == 2 and "single-platform image for windows/amd64" in r.err, r.err
