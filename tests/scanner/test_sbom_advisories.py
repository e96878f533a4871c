"""The SBOM says which advisory database the scan used, with its attribution, its age, or its absence."""

from __future__ import annotations

import json

from gapsync.reports.sbom import build_sbom
from tests.support.sbom_example import example_bundle_info


def test_the_advisory_database_s_source_age_and_absence_are_properties():
    """The source carries the CC BY 4.0 attribution the PyPA data asks for; a stale or missing
    database is said in the SBOM too."""
    info = example_bundle_info()
    info["advisories"] = {**info["advisories"], "source": "Python Packaging Advisory Database, CC BY 4.0",
                          "age_days": 787, "stale": True}
    props = {p["name"]: p["value"] for p in json.loads(build_sbom(info))["metadata"]["properties"]}
    assert props["gapsync:advisories:source"] == "Python Packaging Advisory Database, CC BY 4.0"
    assert props["gapsync:advisories:stale"] == "true" and props["gapsync:advisories:age_days"] == "787"
    info["advisories"] = None
    props = {p["name"]: p["value"] for p in json.loads(build_sbom(info))["metadata"]["properties"]}
    assert "not checked" in props["gapsync:advisories:none"]
