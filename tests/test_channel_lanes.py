"""Issue 13 §3: channels stay in their lane.

Two channels pinned on one mirror both carry image ``team/app:1.0`` and model ``team/m1`` (or a
Python file of one name): the second channel's bundle is refused before anything is published (exit 3,
both channels named, an audit entry, the mirror byte for byte as before), unless the content is
identical (then it is a no-op for those names), or the operator gave the second channel its own
namespace (``trust pin --namespace``), where it publishes under ``MIRROR/ns/<name>/``.

Real bundles made by the command line from real sources: an OCI layout built by
tests/support/oci.build_layout, model directories, wheels on a local index.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gapsync.mirror import claims
from gapsync.mirror.importer import BUNDLE_LEVEL_KINDS, KNOWN_KINDS
from tests.support.channels import new_channel
from tests.support.cli import cli
from tests.support.oci import BASE_LAYER, ImageSpec, Layer, PlatformSpec, build_layout
from tests.support.trees import snapshot


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("lanes")
    layout = root / "layout"
    build_layout(layout, [
        ImageSpec(name, (PlatformSpec("linux/amd64", (BASE_LAYER, Layer({"app/who": name.encode()}))),),
                  repository="team/app", tag="1.0")
        for name in ("one", "two")])
    for name in ("one", "two"):
        d = root / f"model-{name}"
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"model_type": name}))
        (d / "weights.txt").write_text(f"weights of {name}\n")
    return root


def spec(root: Path, channel: str, image_ref: str, model_dir: str, out: Path) -> Path:
    p = out / f"{channel}-{image_ref}-{model_dir}.yaml"
    p.write_text(f"name: lanes\nchannel: {channel}\n"
                 f"images:\n  platforms: [linux/amd64]\n  refs:\n"
                 f"    - {{oci_layout: {root / 'layout'}, ref: {image_ref}, as: 'team/app:1.0'}}\n"
                 f"models:\n  - {{path: {root / model_dir}, name: team/m1}}\n")
    return p


def make_bundle(ch, spec_path: Path, out: Path) -> Path:
    r = cli("bundle", "create", "-f", spec_path, "--state", ch.state, "--key", ch.keys[0], "-o", out,
            "--cache", ch.base / "cache")
    assert r.code == 0, r.err
    return next(out.glob("*.gapsync"))


@pytest.fixture(scope="module")
def bundles(sources, tmp_path_factory):
    base = tmp_path_factory.mktemp("lane-bundles")
    prod = new_channel(base / "prod", "prod")
    research = new_channel(base / "research", "research")
    return {
        "prod": prod, "research": research,
        "prod1": make_bundle(prod, spec(sources, "prod", "one", "model-one", base), base / "o-prod1"),
        "research-other": make_bundle(research, spec(sources, "research", "two", "model-two", base), base / "o-r1"),
    }


def pinned_mirror(tmp_path: Path, bundles, namespace: str | None = None) -> Path:
    m = tmp_path / "mirror"
    assert cli("trust", "pin", bundles["prod"].root, "--mirror", m).code == 0
    extra = ["--namespace", namespace] if namespace else []
    r = cli("trust", "pin", bundles["research"].root, "--mirror", m, *extra)
    assert r.code == 0, r.err
    r = cli("import", bundles["prod1"], "--mirror", m)
    assert r.code == 0, r.err
    return m


def oci_ref(m: Path, ref: str = "docker.io/team/app:1.0") -> str:
    index = json.loads((m / "oci/index.json").read_text())
    return next(d["digest"] for d in index["manifests"] if d["annotations"]["org.opencontainers.image.ref.name"] == ref)


def model_ref(m: Path) -> str:
    return (m / "models/hf/models--team--m1/refs/main").read_text()


def test_another_channel_cannot_move_a_tag_or_model_ref(bundles, tmp_path):
    m = pinned_mirror(tmp_path, bundles)
    digest, commit = oci_ref(m), model_ref(m)
    before = snapshot(m)
    r = cli("import", bundles["research-other"], "--mirror", m)
    assert r.code == 3, (r.code, r.err)
    line = r.err.strip()
    assert len(line.splitlines()) == 1 and "'research'" in line and "'prod'" in line, line
    assert "docker.io/team/app:1.0" in line or "team/m1" in line
    assert snapshot(m) == before  # nothing published, nothing half-written
    assert oci_ref(m) == digest and model_ref(m) == commit
    last = json.loads((m / ".gapsync/audit.log").read_text().splitlines()[-1])
    assert last["action"] == "import" and last["result"] == "refused" and "'prod'" in last["details"]["reason"]
    # the refusal is final, not a race: the same again gives the same answer
    assert cli("import", bundles["research-other"], "--mirror", m).code == 3
    assert snapshot(m) == before


def test_each_name_kind_is_guarded_on_its_own(bundles, sources, tmp_path):
    """Only the model differs: its ref is still refused (and only the image: the tag)."""
    m = pinned_mirror(tmp_path, bundles)
    research = bundles["research"]
    for image_ref, model_dir, word in (("one", "model-two", "team/m1"), ("two", "model-one", "team/app:1.0")):
        out = tmp_path / f"o-{image_ref}-{model_dir}"
        b = make_bundle(research, spec(sources, "research", image_ref, model_dir, tmp_path), out)
        before = snapshot(m)
        r = cli("import", b, "--mirror", m)
        assert r.code == 3 and word in r.err and "'prod'" in r.err, (r.code, r.err)
        assert snapshot(m) == before
        shutil.rmtree(out)


def test_identical_content_from_another_channel_is_allowed_and_keeps_the_owner(bundles, sources, tmp_path):
    m = pinned_mirror(tmp_path, bundles)
    b = make_bundle(bundles["research"], spec(sources, "research", "one", "model-one", tmp_path), tmp_path / "o-same")
    r = cli("import", b, "--mirror", m)
    assert r.code == 0, r.err
    owners = claims.read_claims(claims.published_layout(__import__("gapsync.mirror.layout").mirror.layout.MirrorLayout(m), "research"))
    assert owners["oci-image:docker.io/team/app:1.0"]["channel"] == "prod"
    assert owners["model-ref:team/m1@main"]["channel"] == "prod"


def test_a_namespace_keeps_both_channels_names(bundles, tmp_path):
    m = pinned_mirror(tmp_path, bundles, namespace="research")
    digest, commit = oci_ref(m), model_ref(m)
    r = cli("import", bundles["research-other"], "--mirror", m)
    assert r.code == 0, r.err
    assert oci_ref(m) == digest and model_ref(m) == commit  # the shared namespace is untouched
    ns = m / "ns" / "research"
    assert oci_ref(ns) != digest and model_ref(ns) != commit  # research's own names, side by side
    from tests.support.oci import skopeo_inspect

    if shutil.which("skopeo"):
        assert skopeo_inspect(f"oci:{ns / 'oci'}:docker.io/team/app:1.0")["Digest"] == oci_ref(ns)
    # blobs are hard links into the one store, not copies
    blob = next((ns / "oci/blobs/sha256").iterdir())
    assert blob.stat().st_nlink >= 2


def test_namespace_is_chosen_before_the_first_import(bundles, tmp_path):
    m = pinned_mirror(tmp_path, bundles)
    r = cli("trust", "pin", bundles["prod"].root, "--mirror", m, "--namespace", "late")
    assert r.code == 2 and "chosen when the channel is pinned" in r.err, r.err
    r = cli("trust", "pin", bundles["research"].root, "--mirror", m, "--namespace", "../up")
    assert r.code == 2 and "bad namespace" in r.err


def test_every_publishable_kind_has_names():
    """A future kind is claimed by its target path unless it is listed as content-addressed or
    per-channel: a new target class cannot slip past the lanes by being forgotten here."""
    from gapsync.model import BlobRef, Target

    assert claims.UNCLAIMED_KINDS == BUNDLE_LEVEL_KINDS
    for kind in KNOWN_KINDS - BUNDLE_LEVEL_KINDS - claims.CONTENT_ADDRESSED_KINDS:
        t = Target(f"{kind}/x", BlobRef("ab" * 32, 1), {"kind": kind, "name": "n", "tag": "t", "digest": "d",
                                                        "filename": "f", "of": "f", "revision": "main",
                                                        "commit": "c" * 40, "version": "1"})
        assert claims.names_of(t, None), kind
    future = Target("chart/team/app-1.0.tgz", BlobRef("cd" * 32, 1), {"kind": "chart"})
    assert claims.names_of(future, None)[0].key == "chart:chart/team/app-1.0.tgz"


@pytest.mark.parametrize("namespace", [None, "research"])
def test_a_python_file_of_the_same_name_with_other_bytes_is_refused_naming_both_channels(tmp_path, namespace):
    from tests.support.channels import write_spec
    from tests.support.servers import static_server
    from tests.support.wheels import make_wheel, write_index

    servers, bundles = [], {}
    try:
        for channel, payload in (("prod", b"one"), ("research", b"two")):
            idx = tmp_path / f"index-{channel}"
            make_wheel(idx / "files", "lanepkg", "1.0", payload=payload)
            write_index(idx)
            servers.append(static_server(idx))
            ch = new_channel(tmp_path / channel, channel)
            sp = write_spec(tmp_path / f"{channel}.yaml", servers[-1].url, ["lanepkg"], channel=channel, pythons=("3.11",))
            bundles[channel] = (ch, make_bundle(ch, sp, tmp_path / f"out-{channel}"))
    finally:
        for s in servers:
            s.stop()
    m = tmp_path / "mirror"
    for name, (ch, _) in bundles.items():
        extra = ["--namespace", namespace] if namespace and name == "research" else []
        assert cli("trust", "pin", ch.root, "--mirror", m, *extra).code == 0
    assert cli("import", bundles["prod"][1], "--mirror", m).code == 0
    before = snapshot(m)
    r = cli("import", bundles["research"][1], "--mirror", m)
    wheel = "lanepkg-1.0-py3-none-any.whl"
    if namespace is None:
        assert r.code == 3 and f"Python file {wheel}" in r.err and "'prod'" in r.err, (r.code, r.err)
        assert snapshot(m) == before
        return
    assert r.code == 0, r.err  # each channel's file in its own index, neither touched
    assert (m / "pypi/files" / wheel).read_bytes() != (m / "ns/research/pypi/files" / wheel).read_bytes()
    assert wheel in (m / "ns/research/pypi/simple/lanepkg/index.html").read_text()


def test_a_mirror_published_before_claims_were_kept_is_still_guarded(bundles, tmp_path):
    """An upgraded mirror has no claims file: the names come from each channel's last signed
    release (re-verified), so the other channel is refused all the same."""
    m = pinned_mirror(tmp_path, bundles)
    (m / ".gapsync/claims.json").unlink()
    before = snapshot(m)
    r = cli("import", bundles["research-other"], "--mirror", m)
    assert r.code == 3 and "'prod'" in r.err and "'research'" in r.err, (r.code, r.err)
    assert snapshot(m) == before
