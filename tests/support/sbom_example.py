"""One example bundle.json (``example_bundle_info``), the input of the SBOM and the HTML report:
a blocked package, a warned one, a waived one, a package of two wheels, an image with a
vulnerable package inside, two models; with its findings and decisions."""

from __future__ import annotations

import hashlib


def sha256_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


REQUESTS_WHL = sha256_of("requests-2.19.0-py2.py3-none-any.whl")
NUMPY_X86 = sha256_of("numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
NUMPY_ARM = sha256_of("numpy-2.1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl")
IMAGE_DIGEST = "sha256:" + sha256_of("python:3.12-slim index")
MODEL_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def wheel_file(name: str, filename: str, sha: str, size: int, targets: list[str]) -> dict:
    return {"path": f"python/{name}/{filename}", "filename": filename, "sha256": sha, "size": size,
            "targets": targets}


def vuln_finding(artifact: str, package: str, version: str, vid: str, severity: str, aliases: list[str],
          fixed: list[str], message: str, cvss: str | None = None, file: str | None = None) -> dict:
    return {"artifact": artifact, "scanner": "vulns", "rule": vid, "severity": severity, "message": message,
            "file": file, "location": None, "offset": None,
            "evidence": {"package": package, "version": version, "id": vid, "aliases": aliases, "fixed": fixed,
                         "cvss": cvss}}


def example_bundle_info() -> dict:
    """The bundle.json of the input contract, extended: a blocked package, a warned one, a waived
    one, a package of two wheels, an image with a vulnerable package inside, two models."""
    t311 = ["cp311-manylinux_2_17_x86_64"]
    return {
        "format": 1, "name": "demo", "channel": "prod", "version": 3, "kind": "full",
        "created": "2026-11-23T01:35:00+00:00", "producer": "gapsync 0.1.0", "host": "dmz-1",
        "artifacts": [
            {"kind": "python", "name": "requests", "version": "2.19.0", "license": "Apache-2.0",
             "files": [wheel_file("requests", "requests-2.19.0-py2.py3-none-any.whl", REQUESTS_WHL, 91525, t311)]},
            {"kind": "python", "name": "paramiko", "version": "2.0.0", "license": "LGPL-2.1-or-later",
             "files": [wheel_file("paramiko", "paramiko-2.0.0-py2.py3-none-any.whl", sha256_of("paramiko"), 171562, t311)]},
            {"kind": "python", "name": "certifi", "version": "2015.4.28", "license": "MPL-2.0",
             "files": [wheel_file("certifi", "certifi-2015.04.28-py2.py3-none-any.whl", sha256_of("certifi"), 373534, t311)]},
            {"kind": "python", "name": "numpy", "version": "2.1.0", "license": "BSD-3-Clause AND 0BSD AND MIT",
             "files": [
                 wheel_file("numpy", "numpy-2.1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
                        NUMPY_ARM, 13_900_000, ["cp311-manylinux_2_17_aarch64"]),
                 wheel_file("numpy", "numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                        NUMPY_X86, 16_300_000, t311)]},
            {"kind": "python", "name": "foo", "version": "1.0", "license": None,
             "files": [wheel_file("foo", "foo-1.0-py3-none-any.whl", sha256_of("foo"), 2048, t311)]},
            {"kind": "oci", "name": "docker.io/library/python", "version": "3.12-slim", "digest": IMAGE_DIGEST,
             "platforms": ["linux/amd64", "linux/arm64"], "missing_platforms": [], "size": 48_211_904,
             "blobs": {"sha256:" + sha256_of("layer1"): 29_150_000, "sha256:" + sha256_of("layer2"): 19_060_000},
             "files": []},
            {"kind": "model", "name": "acme/sentiment-bert", "version": "main", "source": "hf",
             "commit": MODEL_COMMIT, "license": "apache-2.0", "formats": ["pickle", "safetensors"],
             "size": 876_000_000,
             "files": [{"path": "pytorch_model.bin", "filename": "pytorch_model.bin", "sha256": sha256_of("bin"),
                        "size": 438_000_000, "targets": []},
                       {"path": "model.safetensors", "filename": "model.safetensors", "sha256": sha256_of("st"),
                        "size": 438_000_000, "targets": []}]},
            {"kind": "model", "name": "fraud-detector", "version": "3", "source": "mlflow",
             "commit": sha256_of("fraud")[:40], "license": None, "formats": ["sklearn-pickle"], "size": 5120,
             "files": [{"path": "model.pkl", "filename": "model.pkl", "sha256": sha256_of("pkl"), "size": 5120,
                        "targets": []}]},
        ],
        "findings": [
            vuln_finding("python:requests@2.19.0", "requests", "2.19.0", "PYSEC-2018-28", "high",
                  ["CVE-2018-18074", "GHSA-x84v-xcm2-53pg"], ["2.20.0"],
                  "requests 2.19.0: sends an HTTP Authorization header to an http URI on a https-to-http redirect",
                  "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N",
                  "requests-2.19.0-py2.py3-none-any.whl"),
            vuln_finding("python:paramiko@2.0.0", "paramiko", "2.0.0", "PYSEC-2022-166", "medium",
                  ["CVE-2022-24302", "GHSA-f8q4-jwww-x3wv"], ["2.10.1"],
                  "paramiko 2.0.0: race condition in write_private_key_file"),
            vuln_finding("python:certifi@2015.4.28", "certifi", "2015.4.28", "PYSEC-2023-135", "high",
                  ["CVE-2023-37920", "GHSA-xqr8-7jwr-rhp7"], ["2023.7.22"],
                  "certifi 2015.4.28: trusts the e-Tugra root certificates"),
            vuln_finding("oci:docker.io/library/python@3.12-slim", "setuptools", "65.5.0", "PYSEC-2022-43012", "medium",
                  ["CVE-2022-40897"], ["65.5.1"], "setuptools 65.5.0 in the image: ReDoS in package_index",
                  None, "layer sha256:" + sha256_of("layer2")),
            {"artifact": "model:acme/sentiment-bert@main", "scanner": "model", "rule": "pickle.global.unsafe",
             "severity": "critical", "message": "pickle imports os.system: runs a command when loaded",
             "file": "pytorch_model.bin", "location": "archive/data.pkl", "offset": 123,
             "evidence": {"global": "os.system"}},
            {"artifact": "python:foo@1.0", "scanner": "license", "rule": "license.unknown", "severity": "medium",
             "message": "license unknown: no License-Expression, License or license classifier in the metadata",
             "file": None, "location": None, "offset": None, "evidence": {"raw": None, "source": "none"}},
            {"artifact": "model:fraud-detector@3", "scanner": "license", "rule": "license.unknown",
             "severity": "medium", "message": "license unknown: the model card declares no license",
             "file": None, "location": None, "offset": None, "evidence": {"raw": None, "source": "none"}},
        ],
        "decisions": [
            {"artifact": "python:requests@2.19.0", "action": "block",
             "reasons": [{"rule": "vulnerabilities.block_at", "action": "block", "finding": "PYSEC-2018-28",
                          "message": "high vulnerability PYSEC-2018-28"}], "waivers": []},
            {"artifact": "python:paramiko@2.0.0", "action": "warn",
             "reasons": [{"rule": "vulnerabilities.warn_at", "action": "warn", "finding": "PYSEC-2022-166",
                          "message": "medium vulnerability PYSEC-2022-166"}], "waivers": []},
            {"artifact": "python:certifi@2015.4.28", "action": "allow", "reasons": [],
             "waivers": [{"id": "PYSEC-2023-135", "package": "certifi", "until": "2026-12-31",
                          "reason": "e-Tugra roots are removed by the air side's trust store", "approved_by": "bob"}]},
            {"artifact": "python:numpy@2.1.0", "action": "allow", "reasons": [], "waivers": []},
            {"artifact": "python:foo@1.0", "action": "warn",
             "reasons": [{"rule": "licenses.unknown", "action": "warn", "finding": "license.unknown",
                          "message": "license unknown"}], "waivers": []},
            {"artifact": "oci:docker.io/library/python@3.12-slim", "action": "warn",
             "reasons": [{"rule": "vulnerabilities.warn_at", "action": "warn", "finding": "PYSEC-2022-43012",
                          "message": "medium vulnerability PYSEC-2022-43012 in setuptools 65.5.0"}], "waivers": []},
            {"artifact": "model:acme/sentiment-bert@main", "action": "allow", "reasons": [],
             "waivers": [{"id": "pickle.global.unsafe", "package": "acme/sentiment-bert", "until": "2026-12-31",
                          "reason": "vendor fix pending", "approved_by": "alice"}]},
            {"artifact": "model:fraud-detector@3", "action": "warn",
             "reasons": [{"rule": "licenses.unknown", "action": "warn", "finding": "license.unknown",
                          "message": "license unknown"}], "waivers": []},
        ],
        "advisories": {"source": "github.com/pypa/advisory-database@3ccb6125", "modified": "2024-10-10T17:35:05Z",
                       "advisories": 2661, "sha256": "4af162ee830bc8df53d7bb73c720f2bae2e89f89f69c7fcbb91558684deb3b4e"},
        "policy": {"name": "default", "sha256": sha256_of("default.yaml")},
    }
