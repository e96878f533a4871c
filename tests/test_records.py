"""The typed records of what crosses (gapsync/bundle/records.py): every target kind's ``custom``,
bundle.json and the artifact key.

- what ``bundle create`` writes today and what it wrote before the records (a golden file captured
  from the suite's bundles of every kind) is read and written back unchanged;
- hostile ``custom`` fields (missing, of every wrong type, nested, unknown) are either kept or
  refused as one BundleFormatError naming the target and the field, never another exception;
- a signed bundle whose target lacks a required field is refused by import, one line, exit 3;
- docs/bundle-format.md documents exactly the fields the records have.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from gapsync.bundle import records
from gapsync.bundle.records import (
    TARGET_RECORDS,
    Artifact,
    ArtifactFile,
    ArtifactKey,
    BundleInfo,
    ChartInfo,
    OciImage,
    PythonFile,
    artifact_key,
    record_of,
    target_record,
)
from gapsync.errors import BundleFormatError
from gapsync.model import BlobRef, Target

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = json.loads((ROOT / "tests/data/records/v1-records.json").read_text())
WRONG = [None, True, 7, 1.5, "text", [], [1], {}, {"a": 1}]


def _targets_of(bundle: Path) -> dict[str, dict]:
    from gapsync.bundle.archive import BundleReader

    with BundleReader(bundle) as reader:
        signed = json.loads(reader.read_metadata()["targets.json"])["signed"]
        info = None
        digest = signed["targets"]["gapsync/bundle.json"]["hashes"]["sha256"]
        for m in reader.iter_blobs():
            if m.digest == digest:
                info = json.loads(reader.read_blob_bytes(m, 1 << 26))
    return {"targets": {p: t["custom"] for p, t in signed["targets"].items()}, "info": info}


# -- round trips ------------------------------------------------------------------------------
def test_every_target_of_a_bundle_made_now_round_trips(world):
    got = _targets_of(world.b2)
    assert {c["kind"] for c in got["targets"].values()} >= {"python", "python-metadata", "bundle-info", "sbom", "policy"}
    for path, custom in got["targets"].items():
        rec = target_record(custom, path)
        assert type(rec) is TARGET_RECORDS[custom["kind"]], path
        assert rec.to_dict() == custom, path
        assert not rec.unrecognized_fields, (path, rec.unrecognized_fields)  # this gapsync knows all it writes
    info = BundleInfo.from_dict(got["info"])
    assert info.to_dict() == got["info"]
    assert not info.unrecognized_fields
    assert {str(a.key()) for a in info.artifacts} == {d["artifact"] for d in got["info"]["decisions"]}


@pytest.mark.parametrize("case", GOLDEN["targets"], ids=lambda c: f"{c['custom']['kind']}:{c['path'][:40]}")
def test_targets_written_before_the_records_round_trip(case):
    rec = target_record(case["custom"], case["path"])
    assert rec.to_dict() == case["custom"]
    assert type(rec) is TARGET_RECORDS[case["custom"]["kind"]]
    assert not rec.unrecognized_fields, rec.unrecognized_fields  # this gapsync knows every field it wrote


@pytest.mark.parametrize("doc", GOLDEN["bundle_info"], ids=lambda d: "+".join(sorted({a["kind"] for a in d["artifacts"]})))
def test_bundle_json_written_before_the_records_round_trips(doc):
    info = BundleInfo.from_dict(doc)
    assert info.to_dict() == doc
    assert not info.unrecognized_fields
    for a, raw in zip(info.artifacts, doc["artifacts"], strict=True):
        assert not a.unrecognized_fields, raw
        assert all(not f.unrecognized_fields for f in a.files)


def test_the_golden_file_covers_every_kind_and_the_oci_artifacts():
    kinds = {c["custom"]["kind"] for c in GOLDEN["targets"]}
    assert kinds == set(TARGET_RECORDS), set(TARGET_RECORDS) - kinds
    images = [OciImage.from_dict(c["custom"], c["path"]) for c in GOLDEN["targets"] if c["custom"]["kind"] == "oci-image"]
    assert any(i.chart is not None for i in images) and any(i.subject for i in images)
    assert {a["kind"] for d in GOLDEN["bundle_info"] for a in d["artifacts"]} == {"python", "oci", "model", "dataset", "conda"}


# -- a newer producer, a hostile one ----------------------------------------------------------
@pytest.mark.parametrize("case", GOLDEN["targets"], ids=lambda c: c["custom"]["kind"] + ":" + c["path"][:30])
def test_unknown_fields_are_kept_and_written_back(case):
    custom = {**case["custom"], "x-future": {"nested": [1, 2]}, "zzz": None}
    rec = target_record(custom, case["path"])
    assert rec.unrecognized_fields["x-future"] == {"nested": [1, 2]} and "zzz" in rec.unrecognized_fields
    assert rec.to_dict() == custom


def test_an_unknown_field_inside_a_chart_and_an_artifact_is_kept():
    case = next(c for c in GOLDEN["targets"] if "chart" in c["custom"])
    custom = copy.deepcopy(case["custom"])
    custom["chart"]["signed_by"] = "someone"
    rec = OciImage.from_dict(custom, case["path"])
    assert rec.chart is not None and rec.chart.unrecognized_fields == {"signed_by": "someone"}
    assert rec.to_dict() == custom
    doc = copy.deepcopy(GOLDEN["bundle_info"][0])
    doc["artifacts"][0]["sbom_ref"] = "x"
    doc["artifacts"][0]["files"][0]["mode"] = 0o644
    doc["new_top_level"] = [1]
    assert BundleInfo.from_dict(doc).to_dict() == doc


def _required(kind: str) -> set[str]:
    return {"python": {"name", "version", "filename"}, "python-metadata": {"name", "of"},
            "oci-image": {"name", "digest"}, "model": {"name", "revision", "commit"},
            "dataset": {"name", "revision", "commit"},
            "conda": {"name", "version", "filename"}}.get(kind, set())


@pytest.mark.parametrize("case", GOLDEN["targets"], ids=lambda c: c["custom"]["kind"] + ":" + c["path"][:30])
def test_a_missing_field_is_refused_naming_the_target_and_the_field_or_left_out(case):
    for key in case["custom"]:
        custom = {k: v for k, v in case["custom"].items() if k != key}
        if key in _required(case["custom"]["kind"]) or key == "kind":
            with pytest.raises(BundleFormatError) as e:
                TARGET_RECORDS[case["custom"]["kind"]].from_dict(custom, case["path"])
            assert repr(case["path"]) in str(e.value) and repr(key) in str(e.value), str(e.value)
        else:  # an optional field left out stays left out
            assert target_record(custom, case["path"]).to_dict() == custom


@pytest.mark.parametrize("case", GOLDEN["targets"], ids=lambda c: c["custom"]["kind"] + ":" + c["path"][:30])
def test_a_field_of_any_type_is_kept_or_refused_naming_it_never_a_crash(case):
    """The class, not a list of cases: every field of every kind, every JSON type."""
    refused = 0
    for key in case["custom"]:
        if key == "kind":
            continue
        for value in WRONG:
            custom = {**case["custom"], key: value}
            try:
                rec = target_record(custom, case["path"])
            except BundleFormatError as e:
                refused += 1
                assert repr(case["path"]) in str(e) and repr(key) in str(e), str(e)
                assert "\n" not in str(e)
                continue
            assert rec.to_dict() == custom, (key, value)  # accepted: written back as it came
    if len(case["custom"]) > 1 and case["custom"]["kind"] not in ("bundle-info",):
        assert refused, "no field of this kind is type-checked"


@pytest.mark.parametrize("custom", [None, [], "python", 7, {"name": "x"}, {"kind": 7}, {"kind": None}])
def test_a_custom_that_is_not_a_record_is_refused_in_one_line(custom):
    with pytest.raises(BundleFormatError, match="python/x/x-1.0.whl"):
        target_record(custom, "python/x/x-1.0.whl")


def test_a_custom_of_another_kind_is_not_read_as_this_one():
    t = Target("python/x/x-1.0.whl", BlobRef("a" * 64, 1), {"kind": "python-metadata", "name": "x", "of": "x-1.0.whl"})
    with pytest.raises(BundleFormatError, match="not python"):
        PythonFile.from_target(t)
    assert record_of(t).to_dict() == t.custom


def test_the_list_inside_a_field_is_checked_too():
    base = {"kind": "python", "name": "x", "version": "1", "filename": "x-1.whl"}
    with pytest.raises(BundleFormatError, match="'tags' must be a list of strings"):
        PythonFile.from_dict({**base, "tags": ["cp312-linux_x86_64", 3]}, "python/x/x-1.whl")
    with pytest.raises(BundleFormatError, match="chart.*'images' must be a list of strings"):
        OciImage.from_dict({"kind": "oci-image", "name": "r/x", "digest": "sha256:" + "a" * 64,
                            "chart": {"images": [{"ref": 1}]}}, "oci/image/r/x:1")
    with pytest.raises(BundleFormatError, match="artifact 0: file.*'size' must be an integer"):
        BundleInfo.from_dict({"artifacts": [{"kind": "python", "name": "x", "version": "1",
                                             "files": [{"size": True}]}]})
    with pytest.raises(BundleFormatError, match="'decisions' must be a list of objects"):
        BundleInfo.from_dict({"decisions": ["allow"]})


def test_a_writer_built_record_leaves_out_what_it_has_not():
    sdist = PythonFile(name="x", version="1", filename="x-1.tar.gz", tags=("cp312-linux_x86_64",))
    assert "metadata" not in sdist.to_dict() and sdist.to_dict()["yanked"] is None
    assert set(OciImage(name="r/x", digest="sha256:" + "a" * 64).to_dict()) >= {"tag", "platforms"}
    assert "chart" not in OciImage(name="r/x", digest="sha256:" + "a" * 64).to_dict()
    assert ChartInfo(name="c").to_dict()["name"] == "c"


# -- the artifact key -------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["python:requests@2.32.5", "oci:127.0.0.1:5000/team/app@1.0",
                                 "oci:r.io/x@sha256:" + "a" * 64, "model:org/name@main", "conda:numpy@2.1.0"])
def test_the_artifact_key_parses_what_it_prints(key):
    parsed = ArtifactKey.parse(key)
    assert str(parsed) == key == artifact_key(parsed.kind, parsed.name, parsed.version)


@pytest.mark.parametrize("text", ["python", "python:x", ":x@1", "python:@1"])
def test_a_string_that_is_not_a_key_is_refused(text):
    with pytest.raises(ValueError):
        ArtifactKey.parse(text)


def test_the_key_of_each_artifact_target_matches_bundle_json():
    for doc in GOLDEN["bundle_info"]:
        decided = {d["artifact"] for d in doc["decisions"]}
        assert {str(Artifact.from_dict(a).key()) for a in doc["artifacts"]} == decided
    keys = {str(k) for c in GOLDEN["targets"] if (k := target_record(c["custom"], c["path"]).key()) is not None}
    assert any(k.startswith("oci:") for k in keys) and any(k.startswith("conda:") for k in keys)


# -- the importer refuses a signed bundle whose record is broken ------------------------------
@pytest.mark.parametrize("breakage,words", [
    (lambda c: c.pop("version"), ("python/", "lacks the field 'version'")),
    (lambda c: c.update(tags="cp312-linux_x86_64"), ("'tags' must be a list of strings",)),
    (lambda c: c.update(name=["alpha"]), ("'name' must be a string",)),
])
def test_import_refuses_a_signed_target_whose_record_is_broken(world, mirror, tmp_path, breakage, words):
    from tests.support.hostile_bundles import assert_refused, read_members, write_members

    members = read_members(world.b1)

    def edit(md):
        tf = next(tf for p, tf in sorted(md.signed.targets.items()) if tf.unrecognized_fields["custom"]["kind"] == "python")
        breakage(tf.unrecognized_fields["custom"])

    bad = write_members(_resign_targets(world, members, edit), tmp_path / "broken-record.gapsync")
    err = assert_refused(bad, mirror, *words)
    assert "internal error" not in err and "KeyError" not in err


def _resign_targets(world, members, edit):
    """targets.json edited by ``edit`` and signed again with the channel's key (what a signer's
    mistake or a stolen key makes: TUF accepts it, the records must not)."""
    from tuf.api.metadata import Metadata, Targets

    from gapsync.bundle.keys import load_signing_key
    from gapsync.bundle.tuf import to_bytes

    t = next(m for m in members if m.name == "metadata/targets.json")
    md = Metadata[Targets].from_bytes(t.data)
    edit(md)
    md.signatures.clear()
    md.sign(load_signing_key(world.keys[0]).tuf_signer())
    t.data = to_bytes(md)
    return members


# -- the doc names exactly the records' fields ------------------------------------------------
def _doc_tables() -> dict[str, list[str]]:
    """``#### `Record` ...`` heading -> the backticked first column of the table under it."""
    text = (ROOT / "docs/bundle-format.md").read_text()
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^#### `(\w+)`", line)
        if m:
            current = m.group(1)
            out[current] = []
        elif line.startswith("#"):
            current = None
        elif current and (row := re.match(r"^\| `([a-z0-9_]+)` \|", line)):
            out[current].append(row.group(1))
    return out


def test_the_doc_documents_every_field_of_every_record_and_no_other():
    tables = _doc_tables()
    classes = {cls.__name__: cls for cls in {*TARGET_RECORDS.values(), ChartInfo, BundleInfo, Artifact, ArtifactFile}}
    assert set(tables) == set(classes), (set(tables) ^ set(classes))
    for name, cls in classes.items():
        fields = [f for f in cls.field_names() if f != "kind" or cls in (Artifact, BundleInfo)]
        assert tables[name] == fields, (name, tables[name], fields)


def test_the_doc_maps_every_kind_to_its_record():
    text = (ROOT / "docs/bundle-format.md").read_text()
    for kind, cls in TARGET_RECORDS.items():
        assert re.search(rf"\| `{re.escape(kind)}` \| `{cls.__name__}` \|", text), kind
    assert records.BUNDLE_LEVEL_KINDS == {k for k, c in TARGET_RECORDS.items() if c.__name__ in
                                          ("BundleInfoTarget", "SbomTarget", "PolicyTarget", "AdvisoriesTarget")}


def test_a_field_set_after_it_was_read_as_left_out_is_written():
    """bundle create reads the bundle-info record and sets the volume count and parts table on it."""
    from dataclasses import replace

    from gapsync.bundle.records import BundleInfoTarget

    read = BundleInfoTarget.from_dict({"kind": "bundle-info"}, "gapsync/bundle.json")
    assert read.to_dict() == {"kind": "bundle-info"}
    parts = {"a" * 64: [[1, 0, 10, "b" * 64], [2, 10, 5, "c" * 64]]}
    assert replace(read, volumes=2, parts=parts).to_dict() == {"kind": "bundle-info", "volumes": 2, "parts": parts}
    py = PythonFile.from_dict({"kind": "python", "name": "x", "version": "1", "filename": "x-1.whl"}, "python/x/x-1.whl")
    assert replace(py, yanked="broken", tags=("cp312-linux_x86_64",)).to_dict()["tags"] == ["cp312-linux_x86_64"]


@pytest.mark.parametrize("bad,field", [
    ({"artifacts": [{"kind": "python", "name": 5, "version": "1"}]}, "name"),
    ({"artifacts": {"python": []}}, "artifacts"),
    ({"volumes": "two"}, "volumes"),
    ({"decisions": [["allow"]]}, "decisions"),
])
def test_inspect_of_a_bundle_json_with_an_ill_typed_field_is_one_line_naming_it(world, tmp_path, bad, field):
    import hashlib

    from tests.support.cli import cli
    from tests.support.hostile_bundles import read_members, write_members

    members = read_members(world.b1)
    meta = next(m for m in members if m.name == "metadata/targets.json")
    doc = json.loads(meta.data)
    entry = doc["signed"]["targets"]["gapsync/bundle.json"]
    old = entry["hashes"]["sha256"]
    blob = next(m for m in members if m.name == f"blobs/sha256/{old}")
    info = {**json.loads(blob.data), **bad}
    blob.data = json.dumps(info).encode()
    new = hashlib.sha256(blob.data).hexdigest()
    blob.name, entry["hashes"]["sha256"], entry["length"] = f"blobs/sha256/{new}", new, len(blob.data)
    meta.data = json.dumps(doc).encode()  # inspect trusts nothing: unsigned is enough to reach bundle.json
    bad_bundle = write_members(members, tmp_path / "ill-typed-info.gapsync")
    r = cli("bundle", "inspect", bad_bundle)
    assert r.code == 3 and "\n" not in r.err.strip() and "internal error" not in r.err, r.err
    assert str(bad_bundle) in r.err and "gapsync/bundle.json" in r.err and repr(field) in r.err, r.err
