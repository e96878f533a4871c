"""The CycloneDX 1.6 SBOM of a bundle: schema-valid, purls, hashes, licenses, VEX analysis."""

from __future__ import annotations

import copy
import json

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from gapsync.errors import InputError
from gapsync.reports.sbom import build_sbom, serial_number
from tests.support.sbom_example import (
    IMAGE_DIGEST,
    MODEL_COMMIT,
    NUMPY_ARM,
    NUMPY_X86,
    REQUESTS_WHL,
    example_bundle_info,
    vuln_finding,
)


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
    info["findings"].append(vuln_finding("python:ghost@9", "ghost", "9", "PYSEC-0000-1", "weird", [], [], "no artifact"))
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
