"""Real parts for the chart, artifact and signature tests: Helm chart archives (and hostile
ones), pushes with the ``oras`` Python SDK, and cosign signatures (see below for why they are not
made by skopeo here), checked on the air side with openssl."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CONTENT = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


def chart_archive(name: str, version: str, values: str = "", templates: dict[str, str] | None = None,
                  app_version: str = "1.0") -> bytes:
    """A chart as ``helm package`` writes it: ``<name>/Chart.yaml``, ``values.yaml``, ``templates/``."""
    files = {f"{name}/Chart.yaml": f"apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: \"{app_version}\"\n"
                                   f"description: test chart {name}\ntype: application\n",
             f"{name}/values.yaml": values}
    for fname, body in (templates or {}).items():
        files[f"{name}/templates/{fname}"] = body
    return targz(files)


def targz(files: dict[str, str | bytes], extra: list[tarfile.TarInfo] | None = None) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as tf:
        for fname, body in files.items():
            data = body.encode() if isinstance(body, str) else body
            ti = tarfile.TarInfo(fname)
            ti.size, ti.mtime, ti.mode = len(data), 0, 0o644
            tf.addfile(ti, io.BytesIO(data))
        for ti in extra or []:
            tf.addfile(ti)
    return raw.getvalue()


def chart_config(name: str, version: str, app_version: str = "1.0") -> bytes:
    return json.dumps({"apiVersion": "v2", "name": name, "version": version, "appVersion": app_version}).encode()


def oras_push(registry_host: str, target: str, files: list[tuple[Path, str]], config: tuple[Path, str] | None = None,
              subject: str | None = None) -> None:
    """``target`` (repo:tag) pushed with the oras SDK over plain HTTP: files as layers of the
    given media types, ``config`` as the manifest's config."""
    import oras.client

    client = oras.client.OrasClient(hostname=registry_host, insecure=True)
    kw = {}
    if config:
        kw["manifest_config"] = f"{config[0]}:{config[1]}"
    if subject:
        kw["subject"] = subject
    cwd = os.getcwd()
    os.chdir(files[0][0].parent)  # oras names each layer after its file (the title annotation)
    try:
        client.push(target=f"{registry_host}/{target}", files=[f"{p.name}:{mt}" for p, mt in files],
                    disable_path_validation=True, quiet=True, **kw)
    finally:
        os.chdir(cwd)


def push_chart(registry_host: str, repo: str, name: str, version: str, archive: bytes, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    tgz = work / f"{name}-{version}.tgz"
    tgz.write_bytes(archive)
    cfg = work / f"{name}-{version}.config.json"
    cfg.write_bytes(chart_config(name, version))
    oras_push(registry_host, f"{repo}:{version}", [(tgz, HELM_CONTENT)], (cfg, HELM_CONFIG))


# -- cosign signatures ---------------------------------------------------------------------------
# Debian 12's skopeo 1.9.3 is built with sigstore disabled: `--sign-by-sigstore-private-key` fails
# with "Debian-local change: sigstore disabled" (and it has no generate-sigstore-key). So the
# signature is made here in exactly the form cosign and skopeo's sigstore signing write (the
# simple-signing payload as a layer, the base64 ECDSA signature in its annotation, an image config
# listing it, tag sha256-<hex>.sig) and pushed with the oras SDK; the air side checks it with
# openssl, an implementation that is not gapsync's.
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"


def key_pair(out: Path, name: str = "cosign", kind: str = "ecdsa") -> tuple[object, Path]:
    """(private key object, public key PEM file): ECDSA P-256 (cosign's) or Ed25519."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "ecdsa" else ed25519.Ed25519PrivateKey.generate()
    pub = out / f"{name}.pub"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, pub


def simple_signing_payload(reference: str, digest: str) -> bytes:
    return json.dumps({"critical": {"identity": {"docker-reference": reference},
                                    "image": {"docker-manifest-digest": digest},
                                    "type": "cosign container image signature"},
                       "optional": None}, separators=(",", ":")).encode()


def sign_payload(key: object, payload: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(payload, ec.ECDSA(hashes.SHA256()))
    return key.sign(payload)  # type: ignore[attr-defined]


def cosign_sign(registry_host: str, repo: str, digest: str, key: object, work: Path, *,
                payload: bytes | None = None, signature: bytes | None = None) -> bytes:
    """Attach a cosign signature of ``repo@digest`` at tag ``sha256-<hex>.sig`` (pushed with
    oras). ``payload``/``signature`` override what is signed (for forged signatures). Returns
    the payload."""
    work.mkdir(parents=True, exist_ok=True)
    payload = payload or simple_signing_payload(f"{registry_host}/{repo}", digest)
    sig = signature if signature is not None else sign_payload(key, payload)
    layer = work / "payload.json"
    layer.write_bytes(payload)
    cfg = work / "config.json"
    cfg.write_text(json.dumps({"architecture": "", "created": "0001-01-01T00:00:00Z",
                               "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
                               "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha256(payload)}"]}, "config": {}}))
    ann = work / "annotations.json"
    ann.write_text(json.dumps({"payload.json": {"dev.cosignproject.cosign/signature": base64.b64encode(sig).decode()}}))
    import oras.client

    client = oras.client.OrasClient(hostname=registry_host, insecure=True)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        client.push(target=f"{registry_host}/{repo}:sha256-{digest.split(':')[1]}.sig",
                    files=[f"payload.json:{SIMPLE_SIGNING}"], manifest_config="config.json:application/vnd.oci.image.config.v1+json",
                    annotation_file=str(ann), disable_path_validation=True, quiet=True)
    finally:
        os.chdir(cwd)
    return payload


def openssl_verify(pub: Path, payload: bytes, signature_b64: str, work: Path) -> bool:
    """The signature checked by openssl (``dgst -sha256 -verify``), not by gapsync's code."""
    import subprocess

    work.mkdir(parents=True, exist_ok=True)
    (work / "payload").write_bytes(payload)
    (work / "sig").write_bytes(base64.b64decode(signature_b64))
    r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(pub), "-signature", str(work / "sig"),
                        str(work / "payload")], capture_output=True, text=True)
    return r.returncode == 0 and "Verified OK" in r.stdout


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
