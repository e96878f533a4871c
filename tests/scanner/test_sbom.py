"""The CycloneDX 1.6 SBOM of a bundle: schema-valid, purls, hashes, licenses, VEX analysis."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from gapsync.errors import InputError
from gapsync.reports.sbom import build_sbom, serial_number


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


REQUESTS_WHL = _sha("requests-2.19.0-py2.py3-none-any.whl")
NUMPY_X86 = _sha("numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
NUMPY_ARM = _sha("numpy-2.1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl")
IMAGE_DIGEST = "sha256:" + _sha("python:3.12-slim index")
MODEL_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _wheel(name: str, filename: str, sha: str, size: int, targets: list[str]) -> dict:
    return {"path": f"python/{name}/{filename}", "filename": filename, "sha256": sha, "size": size,
            "targets": targets}


def _vuln(artifact: str, package: str, version: str, vid: str, severity: str, aliases: list[str],
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
             "files": [_wheel("requests", "requests-2.19.0-py2.py3-none-any.whl", REQUESTS_WHL, 91525, t311)]},
            {"kind": "python", "name": "paramiko", "version": "2.0.0", "license": "LGPL-2.1-or-later",
             "files": [_wheel("paramiko", "paramiko-2.0.0-py2.py3-none-any.whl", _sha("paramiko"), 171562, t311)]},
            {"kind": "python", "name": "certifi", "version": "2015.4.28", "license": "MPL-2.0",
             "files": [_wheel("certifi", "certifi-2015.04.28-py2.py3-none-any.whl", _sha("certifi"), 373534, t311)]},
            {"kind": "python", "name": "numpy", "version": "2.1.0", "license": "BSD-3-Clause AND 0BSD AND MIT",
             "files": [
                 _wheel("numpy", "numpy-2.1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
                        NUMPY_ARM, 13_900_000, ["cp311-manylinux_2_17_aarch64"]),
                 _wheel("numpy", "numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                        NUMPY_X86, 16_300_000, t311)]},
            {"kind": "python", "name": "foo", "version": "1.0", "license": None,
             "files": [_wheel("foo", "foo-1.0-py3-none-any.whl", _sha("foo"), 2048, t311)]},
            {"kind": "oci", "name": "docker.io/library/python", "version": "3.12-slim", "digest": IMAGE_DIGEST,
             "platforms": ["linux/amd64", "linux/arm64"], "missing_platforms": [], "size": 48_211_904,
             "blobs": {"sha256:" + _sha("layer1"): 29_150_000, "sha256:" + _sha("layer2"): 19_060_000},
             "files": []},
            {"kind": "model", "name": "acme/sentiment-bert", "version": "main", "source": "hf",
             "commit": MODEL_COMMIT, "license": "apache-2.0", "formats": ["pickle", "safetensors"],
             "size": 876_000_000,
             "files": [{"path": "pytorch_model.bin", "filename": "pytorch_model.bin", "sha256": _sha("bin"),
                        "size": 438_000_000, "targets": []},
                       {"path": "model.safetensors", "filename": "model.safetensors", "sha256": _sha("st"),
                        "size": 438_000_000, "targets": []}]},
            {"kind": "model", "name": "fraud-detector", "version": "3", "source": "mlflow",
             "commit": _sha("fraud")[:40], "license": None, "formats": ["sklearn-pickle"], "size": 5120,
             "files": [{"path": "model.pkl", "filename": "model.pkl", "sha256": _sha("pkl"), "size": 5120,
                        "targets": []}]},
        ],
        "findings": [
            _vuln("python:requests@2.19.0", "requests", "2.19.0", "PYSEC-2018-28", "high",
                  ["CVE-2018-18074", "GHSA-x84v-xcm2-53pg"], ["2.20.0"],
                  "requests 2.19.0: sends an HTTP Authorization header to an http URI on a https-to-http redirect",
                  "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N",
                  "requests-2.19.0-py2.py3-none-any.whl"),
            _vuln("python:paramiko@2.0.0", "paramiko", "2.0.0", "PYSEC-2022-166", "medium",
                  ["CVE-2022-24302", "GHSA-f8q4-jwww-x3wv"], ["2.10.1"],
                  "paramiko 2.0.0: race condition in write_private_key_file"),
            _vuln("python:certifi@2015.4.28", "certifi", "2015.4.28", "PYSEC-2023-135", "high",
                  ["CVE-2023-37920", "GHSA-xqr8-7jwr-rhp7"], ["2023.7.22"],
                  "certifi 2015.4.28: trusts the e-Tugra root certificates"),
            _vuln("oci:docker.io/library/python@3.12-slim", "setuptools", "65.5.0", "PYSEC-2022-43012", "medium",
                  ["CVE-2022-40897"], ["65.5.1"], "setuptools 65.5.0 in the image: ReDoS in package_index",
                  None, "layer sha256:" + _sha("layer2")),
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
        "policy": {"name": "default", "sha256": _sha("default.yaml")},
    }


@pytest.fixture(scope="module")
def sbom() -> tuple[bytes, dict]:
    data = build_sbom(example_bundle_info())
    return data, json.loads(data)


def _by_ref(doc: dict) -> dict[str, dict]:
    out = {}

    def walk(components: list[dict]) -> None:
        for c in components:
            out[c["bom-ref"]] = c
            walk(c.get("components", []))

    walk(doc["components"])
    return out


def _vulns(doc: dict) -> dict[tuple[str, str], dict]:
    return {(v["id"], v["affects"][0]["ref"]): v for v in doc["vulnerabilities"]}


def test_valid_cyclonedx_1_6(sbom) -> None:
    data, doc = sbom
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode())
    assert error is None, error
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"


def test_metadata_is_the_bundle(sbom) -> None:
    _, doc = sbom
    meta = doc["metadata"]
    assert meta["timestamp"].startswith("2026-11-23T01:35:00")
    assert meta["component"]["name"] == "demo" and meta["component"]["version"] == "3"
    props = {p["name"]: p["value"] for p in meta["properties"]}
    assert props["gapsync:channel"] == "prod"
    assert props["gapsync:advisories:advisories"] == "2661"
    assert props["gapsync:policy:name"] == "default"
    assert any(t["name"] == "gapsync" and t.get("version") == "0.1.0" for t in meta["tools"]["components"])
    # the bundle depends on every artifact
    root = next(d for d in doc["dependencies"] if d["ref"] == meta["component"]["bom-ref"])
    assert len(root["dependsOn"]) == 8


def test_purls(sbom) -> None:
    _, doc = sbom
    c = _by_ref(doc)
    assert c["python:requests@2.19.0"]["purl"] == "pkg:pypi/requests@2.19.0"
    assert c["python:requests@2.19.0"]["type"] == "library"
    image = c["oci:docker.io/library/python@3.12-slim"]
    assert image["type"] == "container"
    assert image["purl"] == f"pkg:oci/python@{IMAGE_DIGEST}?repository_url=docker.io/library/python&tag=3.12-slim"
    purl = PackageURL.from_string(image["purl"])
    assert (purl.name, purl.version) == ("python", IMAGE_DIGEST)
    assert purl.qualifiers == {"repository_url": "docker.io/library/python", "tag": "3.12-slim"}
    model = c["model:acme/sentiment-bert@main"]
    assert model["type"] == "machine-learning-model"
    assert model["purl"] == f"pkg:huggingface/acme/sentiment-bert@{MODEL_COMMIT}"
    assert c["model:fraud-detector@3"]["purl"].startswith("pkg:generic/fraud-detector@3?")


def test_hashes_one_component_per_package(sbom) -> None:
    _, doc = sbom
    c = _by_ref(doc)
    requests = c["python:requests@2.19.0"]
    assert requests["hashes"] == [{"alg": "SHA-256", "content": REQUESTS_WHL}]
    numpy = c["python:numpy@2.1.0"]
    assert "hashes" not in numpy  # two wheels: no single hash for the component...
    files = {r["url"].rsplit("/", 1)[-1]: r["hashes"][0]["content"] for r in numpy["externalReferences"]}
    assert sorted(files.values()) == sorted([NUMPY_X86, NUMPY_ARM])  # ...each wheel keeps its own
    assert all(r["type"] == "distribution" for r in numpy["externalReferences"])
    assert [x for x in doc["components"] if x["name"] == "numpy"] == [numpy]
    image = c["oci:docker.io/library/python@3.12-slim"]
    assert image["hashes"] == [{"alg": "SHA-256", "content": IMAGE_DIGEST.removeprefix("sha256:")}]


def test_licenses(sbom) -> None:
    _, doc = sbom
    c = _by_ref(doc)
    assert c["python:requests@2.19.0"]["licenses"] == [{"expression": "Apache-2.0"}]
    assert c["python:numpy@2.1.0"]["licenses"] == [{"expression": "BSD-3-Clause AND 0BSD AND MIT"}]
    assert c["model:acme/sentiment-bert@main"]["licenses"] == [{"expression": "Apache-2.0"}]  # "apache-2.0"
    assert "licenses" not in c["python:foo@1.0"]


def test_blocked_artifact_is_listed_but_not_shipped(sbom) -> None:
    _, doc = sbom
    props = {p["name"]: p["value"] for p in _by_ref(doc)["python:requests@2.19.0"]["properties"]}
    assert props["gapsync:decision"] == "block" and props["gapsync:shipped"] == "false"
    numpy = {p["name"]: p["value"] for p in _by_ref(doc)["python:numpy@2.1.0"]["properties"]}
    assert numpy["gapsync:shipped"] == "true"


def test_vulnerability_points_at_its_component_with_vex(sbom) -> None:
    _, doc = sbom
    v = _vulns(doc)
    assert len(doc["vulnerabilities"]) == 4  # model and license findings are not vulnerabilities
    blocked = v[("PYSEC-2018-28", "python:requests@2.19.0")]
    assert blocked["affects"] == [{"ref": "python:requests@2.19.0",
                                   "versions": [{"version": "2.19.0", "status": "affected"}]}]
    assert blocked["analysis"]["state"] == "exploitable"
    assert blocked["analysis"]["response"] == ["update"]
    assert "Not shipped" in blocked["analysis"]["detail"]
    assert {r["id"] for r in blocked["references"]} == {"CVE-2018-18074", "GHSA-x84v-xcm2-53pg"}
    assert blocked["ratings"][0]["severity"] == "high"
    assert blocked["ratings"][0]["method"] == "CVSSv31"
    assert blocked["source"]["url"] == "https://osv.dev/vulnerability/PYSEC-2018-28"
    assert blocked["recommendation"] == "Upgrade to 2.20.0"

    waived = v[("PYSEC-2023-135", "python:certifi@2015.4.28")]
    assert waived["analysis"]["state"] == "in_triage"
    assert "e-Tugra roots are removed" in waived["analysis"]["detail"] and "bob" in waived["analysis"]["detail"]

    warned = v[("PYSEC-2022-166", "python:paramiko@2.0.0")]
    assert "state" not in warned["analysis"] and "policy action warn" in warned["analysis"]["detail"]


def test_package_inside_an_image_is_a_nested_component(sbom) -> None:
    _, doc = sbom
    ref = "oci:docker.io/library/python@3.12-slim#pypi:setuptools@65.5.0"
    inner = _by_ref(doc)[ref]
    assert inner["purl"] == "pkg:pypi/setuptools@65.5.0"
    image = _by_ref(doc)["oci:docker.io/library/python@3.12-slim"]
    assert [x["bom-ref"] for x in image["components"]] == [ref]
    assert ("PYSEC-2022-43012", ref) in _vulns(doc)


def test_deterministic_and_serial_from_channel_and_version(sbom) -> None:
    data, doc = sbom
    assert build_sbom(example_bundle_info()) == data
    info = example_bundle_info()
    assert doc["serialNumber"] == serial_number(info).urn
    info["version"] = 4
    assert json.loads(build_sbom(info))["serialNumber"] != doc["serialNumber"]


def test_odd_input_is_kept_visible_not_dropped() -> None:
    info = copy.deepcopy(example_bundle_info())
    info["artifacts"][1]["license"] = "Some Custom License 1.0"  # not SPDX: a named license
    info["artifacts"][6]["license"] = ["llama2", "cc-by-4.0"]
    info["findings"].append(_vuln("python:ghost@9", "ghost", "9", "PYSEC-0000-1", "weird", [], [], "no artifact"))
    data = build_sbom(info)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode()) is None
    doc = json.loads(data)
    c = _by_ref(doc)
    assert c["python:paramiko@2.0.0"]["licenses"] == [{"license": {"name": "Some Custom License 1.0"}}]
    assert c["model:acme/sentiment-bert@main"]["licenses"] == [
        {"expression": "LicenseRef-scancode-llama-2-license-2023 AND CC-BY-4.0"}]
    ghost = _vulns(doc)[("PYSEC-0000-1", "python:ghost@9")]
    assert ghost["ratings"][0]["severity"] == "unknown"
    assert "No policy decision" in ghost["analysis"]["detail"]


def test_not_a_bundle() -> None:
    with pytest.raises(InputError):
        build_sbom({"artifacts": "nope"})
    with pytest.raises(InputError, match="created"):
        build_sbom({"artifacts": [], "created": "yesterday"})
