"""Resolution per target (markers, requires-python, tags, yanked), deterministic locks, spec errors."""

from __future__ import annotations

import json

import pytest

from gapsync.bundler.platforms import PythonTarget
from tests.support.channels import write_spec
from tests.support.cli import ARCH, cli


def resolve(spec, tmp_path) -> dict:
    out = tmp_path / "gapsync.lock"
    r = cli("resolve", "-f", spec, "-o", out, "--cache", tmp_path / "cache")
    assert r.code == 0, r.err
    return json.loads(out.read_text())


def test_markers_are_evaluated_per_target(ext_index, tmp_path):
    lock = resolve(write_spec(tmp_path / "g.yaml", ext_index.url, ["gamma", "native"]), tmp_path)
    pins = lock["python"]["pins"]
    t311, t312 = f"cp311-manylinux_2_17_{ARCH}", f"cp312-manylinux_2_17_{ARCH}"
    assert "delta==1.0" in pins[t312] and "delta==1.0" not in pins[t311]  # python_version >= "3.12"
    assert not any(p.startswith("winonly") for p in pins[t311] + pins[t312])  # sys_platform == "win32"
    files = {f["filename"]: f for f in lock["python"]["files"]}
    assert files[f"native-1.0-cp311-cp311-manylinux_2_17_{ARCH}.whl"]["targets"] == [t311]
    assert files[f"native-1.0-cp312-cp312-manylinux_2_17_{ARCH}.whl"]["targets"] == [t312]
    assert "native-1.0-cp311-cp311-win_amd64.whl" not in files
    assert files["gamma-1.0-py3-none-any.whl"]["targets"] == [t311, t312]  # one file, both targets
    assert all(len(f["sha256"]) == 64 for f in files.values())


def test_yanked_release_is_not_chosen_and_lock_is_deterministic(ext_index, tmp_path):
    spec = write_spec(tmp_path / "g.yaml", ext_index.url, ["alpha"])
    a = (resolve(spec, tmp_path), (tmp_path / "gapsync.lock").read_bytes())
    b = (resolve(spec, tmp_path), (tmp_path / "gapsync.lock").read_bytes())
    assert a[1] == b[1]
    assert "beta==2.0" in next(iter(a[0]["python"]["pins"].values()))  # 3.0 is yanked


def test_windows_and_macos_targets_pick_their_own_wheels(ext_index, tmp_path):
    spec = tmp_path / "g.yaml"
    spec.write_text(f"name: t\nchannel: prod\npython:\n  index_url: {ext_index.url}\n  requirements: [native, gamma]\n"
                    "  targets:\n    - {python: '3.11', platform: win_amd64}\n")
    lock = resolve(spec, tmp_path)
    names = {f["filename"] for f in lock["python"]["files"]}
    assert "native-1.0-cp311-cp311-win_amd64.whl" in names and "winonly-1.0-py3-none-any.whl" in names
    spec.write_text(f"name: t\nchannel: prod\npython:\n  index_url: {ext_index.url}\n  requirements: [native]\n"
                    "  targets:\n    - {python: '3.11', platform: macosx_11_0_arm64}\n")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
    assert r.code == 2 and "cannot be resolved for cp311-macosx_11_0_arm64" in r.err and "native" in r.err


def test_stale_lock_is_refused(world, tmp_path):
    lock = tmp_path / "gapsync.lock"
    assert cli("resolve", "-f", world.spec, "-o", lock, "--cache", tmp_path / "c").code == 0
    r = cli("bundle", "create", "-f", world.spec2, "--lock", lock, "--state", world.state, "--key", world.keys[0],
            "-o", tmp_path / "o", "--cache", tmp_path / "c")
    assert r.code == 2 and "run gapsync resolve again" in r.err


def test_unresolvable_requirement_names_spec_and_target(ext_index, tmp_path):
    spec = write_spec(tmp_path / "g.yaml", ext_index.url, ["alpha==9.9"])
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
    assert r.code == 2 and str(spec) in r.err and "cannot be resolved for cp311" in r.err


@pytest.mark.parametrize("body, where, words", [
    ("name: t\nchannel: prod\npython:\n  index_url: http://x/simple/\n  requirement: [a]\n", ":5:", ["requirement", "unknown key"]),
    ("name: t\nchannel: prod\npython:\n  requirements: ['a >>> 1']\n  targets: [{python: '3.11', platform: manylinux_2_17_x86_64}]\n",
     ":4:", ["requirements[0]"]),
    ("name: t\nchannel: prod\npython:\n  requirements: [a]\n  targets:\n    - {python: 3.10, platform: manylinux_2_17_x86_64}\n",
     ":6:", ["quote the version"]),
    ("name: t\nchannel: prod\npython:\n  requirements: [a]\n  targets:\n    - {python: '3.11', platform: amiga}\n",
     ":6:", ["platform 'amiga'"]),
    ("name: t\nchannel: 'bad channel'\npython: {requirements: [a], targets: []}\n", ":2:", ["channel"]),
    ("name: t\nchannel: prod\npython: [\n", ":", ["not valid YAML"]),
    ("name: t\nchannel: prod\npython:\n  requirements: [a]\n", ":3:", ["missing targets"]),
    ("name: t\nchannel: prod\npython:\n  requirements_files: [nope.txt]\n  targets: []\n", ":4:", ["no such file"]),
])
def test_bad_spec_names_file_line_and_key(tmp_path, body, where, words):
    spec = tmp_path / "gapsync.yaml"
    spec.write_text(body)
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l")
    assert r.code == 2, r.err
    assert f"{spec}{where}" in r.err, r.err
    for w in words:
        assert w in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1


def test_requirements_files_are_read(ext_index, tmp_path):
    (tmp_path / "req.txt").write_text("alpha\n")
    spec = tmp_path / "g.yaml"
    spec.write_text(f"name: t\nchannel: prod\npython:\n  index_url: {ext_index.url}\n  requirements_files: [req.txt]\n"
                    f"  targets:\n    - {{python: '3.11', platform: manylinux_2_17_{ARCH}}}\n")
    lock = resolve(spec, tmp_path)
    assert {f["name"] for f in lock["python"]["files"]} == {"alpha", "beta"}


def test_target_tags_follow_pip_preference():
    from packaging.tags import Tag

    t = PythonTarget.parse("3.12", "manylinux2014_x86_64")
    assert t.platform == "manylinux_2_17_x86_64" and t.uv_platform == "x86_64-manylinux_2_17"
    prio = t.tag_priority
    assert prio[Tag("cp312", "cp312", "manylinux_2_17_x86_64")] < prio[Tag("cp312", "abi3", "manylinux_2_17_x86_64")]
    assert prio[Tag("cp312", "abi3", "manylinux1_x86_64")] < prio[Tag("py3", "none", "any")]
    assert Tag("cp312", "cp312", "manylinux_2_28_x86_64") not in prio  # needs a newer glibc
    assert Tag("cp311", "cp311", "manylinux_2_17_x86_64") not in prio
    assert PythonTarget.parse("3.11", "manylinux_2_31_aarch64").uv_platform == "aarch64-manylinux_2_31"
    assert PythonTarget.parse("3.11", "manylinux_2_27_x86_64").uv_platform == "x86_64-manylinux_2_17"
