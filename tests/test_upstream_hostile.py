"""Issue 13 §4 and §8 (upstream side): a hostile index, Hub or registry gets one line naming it and
the reason, a documented exit code, and costs bounded memory and time; a name the air side would
refuse stops resolve at the DMZ instead of being signed.

Every upstream here is a real HTTP server on 127.0.0.1 (tests/support/servers/hostile_upstream.py) that
lies in one chosen way.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gapsync.cli.exit_codes import ExitCode, exit_code_for
from gapsync.errors import UpstreamError
from tests.support.channels import model_bundle
from tests.support.cli import cli
from tests.support.wheels import make_wheel

# -- size caps: an 81 MB index page ------------------------------------------------------------
PROBE = textwrap.dedent("""
    import json, sys, time
    from gapsync.bundler.sources.simple_index import project_files
    from gapsync.errors import GapsyncError
    t = time.monotonic()
    try:
        project_files(sys.argv[1], "x")
        out = {"error": None}
    except GapsyncError as e:
        out = {"error": str(e), "type": type(e).__name__}
    out["seconds"] = time.monotonic() - t
    # VmHWM belongs to this process's memory map, new at exec; ru_maxrss is kept across exec and
    # would report the peak of the (large) pytest process this one was started from
    out["maxrss_mb"] = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:")) / 1024
    print(json.dumps(out))
""")


@pytest.mark.parametrize("mode", ["huge-page", "huge-page-length"])
def test_81_mb_index_page_is_refused_quickly_with_flat_memory(upstream, mode):
    s = upstream(mode)
    r = subprocess.run([sys.executable, "-c", PROBE, f"{s.base}/simple/"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["type"] == "UpstreamError", out
    assert f"{s.base}/simple/x/" in out["error"] and "cap" in out["error"] and "\n" not in out["error"]
    # 81 MB took 1.44 GB and 70 s before: now the read stops at the 32 MiB cap (or at the header)
    assert out["seconds"] < 15, out
    assert out["maxrss_mb"] < 250, out


# -- typed PEP 691 entries (§8) ---------------------------------------------------------------
@pytest.mark.parametrize("mode, reason", [
    ("files-not-list", "'files' is dict, not a list"),
    ("missing-url", "entry has no 'url' string"),
    ("upper-sha", "is not 64 lower-case hex digits"),
])
def test_malformed_index_entries_are_one_line_naming_the_page(upstream, mode, reason):
    from gapsync.bundler.sources.simple_index import project_files

    s = upstream(mode)
    with pytest.raises(UpstreamError) as ei:
        project_files(f"{s.base}/simple/", "x")
    msg = str(ei.value)
    assert msg.startswith(f"{s.base}/simple/x/") and reason in msg and "\n" not in msg
    assert exit_code_for(ei.value) == ExitCode.ERROR


# -- a name the air side refuses stops resolve at the DMZ (§4) --------------------------------
def test_index_file_name_with_non_ascii_build_tag_stops_resolve(upstream, tmp_path):
    files = tmp_path / "files"
    wheel = make_wheel(files, "pkg", "1.0")
    # beside the plain wheel (what uv resolves with), one with a build tag holding é: packaging parses
    # it, the resolver prefers it (a build tag wins), the air side's index refuses the name
    hostile_name = "pkg-1.0-1é-py3-none-any.whl"
    (files / hostile_name).write_bytes(wheel.read_bytes())
    s = upstream("listed", "--files", str(files))
    spec = tmp_path / "gapsync.yaml"
    spec.write_text(f"name: t\nchannel: prod\npython:\n  index_url: {s.base}/simple/\n  requirements: ['pkg']\n"
                    "  targets:\n    - {python: '3.11', platform: manylinux_2_17_x86_64}\n")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "lock", "--cache", tmp_path / "cache")
    assert r.code == ExitCode.ERROR, (r.code, r.err)
    line = r.err.strip()
    assert len(line.splitlines()) == 1 and "internal error" not in line
    assert f"{s.base}/simple/pkg/" in line and hostile_name in line and "air side would refuse" in line
    assert not (tmp_path / "lock").exists()


def test_lock_with_a_name_the_air_side_refuses_is_not_bundled(tmp_path):
    """A lock edited by hand (or written by an older gapsync) is checked with the same rules."""
    from gapsync.bundler.lock import read_lock
    from gapsync.errors import InputError

    lock = {"lock_version": 1, "spec_digest": "x", "python": {"index_url": "https://i/simple/", "pins": {}, "files": [
        {"name": "pkg", "version": "1.0", "filename": "pkg-1.0-1é-py3-none-any.whl", "url": "https://i/f.whl",
         "sha256": "ab" * 32, "size": 1, "requires_python": None, "yanked": None, "targets": []}]}}
    p = tmp_path / "gapsync.lock"
    p.write_text(json.dumps(lock))
    with pytest.raises(InputError, match="is not one the mirror publishes"):
        read_lock(p)
    lock["python"]["files"] = []
    lock["images"] = [{"ref": "x", "name": "docker.io/library/x", "tag": "bad tag", "digest": "sha256:" + "0" * 64,
                       "media_type": "m", "size": 1, "platforms": [], "missing_platforms": [], "manifests": []}]
    p.write_text(json.dumps(lock))
    with pytest.raises(InputError, match="image tag 'bad tag'"):
        read_lock(p)
    lock["images"] = []
    lock["models"] = [{"source": "hf", "name": "org/m", "revision": "main", "commit": "0" * 40, "meta": {},
                       "files": [{"path": "a", "sha256": "ab" * 32, "size": 1}, {"path": "a/b", "sha256": "ab" * 32, "size": 1}]}]
    p.write_text(json.dumps(lock))
    with pytest.raises(InputError, match="both a file and a directory"):
        read_lock(p)


# -- the Hub ------------------------------------------------------------------------------------
def _hub_spec(tmp_path: Path, endpoint: str) -> Path:
    spec = tmp_path / "gapsync.yaml"
    spec.write_text(f"name: t\nchannel: prod\nmodels:\n  - {{hf: org/m1, revision: main, endpoint: '{endpoint}'}}\n")
    return spec


@pytest.mark.parametrize("mode, reason", [
    ("hub-file-and-dir", "'a' is both a file and a directory"),
    ("hub-huge", "cap"),
    ("hub-bad-revision", "no commit (40 lower-case hex)"),
])
def test_hostile_hub_listing_stops_resolve(upstream, tmp_path, mode, reason, monkeypatch):
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    s = upstream(mode)
    r = cli("resolve", "-f", _hub_spec(tmp_path, s.base), "-o", tmp_path / "lock", "--cache", tmp_path / "cache")
    assert r.code == ExitCode.ERROR, (r.code, r.err)
    line = r.err.strip()
    assert len(line.splitlines()) == 1 and "internal error" not in line, line
    assert "hf:org/m1@main" in line and s.base in line and reason in line, line
    assert not (tmp_path / "lock").exists()


# -- the air side applies the same rules: a signed model listing `a` and `a/b` ----------------
def test_signed_model_with_a_file_and_a_directory_of_one_name_is_refused_before_publishing(tmp_path, monkeypatch):
    from tests.support.trees import snapshot

    ch, bundle = model_bundle(tmp_path, {"a_file": b"one", "x/b": b"two"}, {"a_file": "a", "x/b": "a/b"}, monkeypatch)
    m = tmp_path / "mirror"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    before = snapshot(m)
    for _ in range(2):  # and the re-run gives the same answer: nothing half-done to trip over
        r = cli("import", bundle, "--mirror", m)
        assert r.code == ExitCode.VERIFICATION_FAILED, (r.code, r.err)
        line = r.err.strip().splitlines()[-1]
        assert "'a' is both a file and a directory" in line and str(bundle) in line, r.err
        assert snapshot(m) == before


def test_repo_file_named_like_a_temporary_name_survives_publishing(tmp_path):
    """A model file named like a writer's temporary name must be published like any other."""
    files = {"config.json": b'{"model_type": "demo"}', ".config.json.tmp": b"not a temporary file",
             "sub/.weights.bin.tmp": b"also real"}
    ch, bundle = model_bundle(tmp_path, files)
    m = tmp_path / "mirror"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    r = cli("import", bundle, "--mirror", m)
    assert r.code == 0, r.err
    snap = next((m / "models/hf/models--team--m1/snapshots").iterdir())
    for rel, data in files.items():
        assert (snap / rel).read_bytes() == data, rel


def test_image_name_the_layout_refuses_stops_resolve(tmp_path):
    spec = tmp_path / "gapsync.yaml"
    spec.write_text("name: t\nchannel: prod\nimages:\n  refs: ['my_host:5000/team/app:1.0']\n")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "lock", "--cache", tmp_path / "cache")
    assert r.code == ExitCode.USAGE and "air side would refuse" in r.err and "my_host:5000" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1


RESOLVE_PROBE = textwrap.dedent("""
    import json, resource, subprocess, sys, time
    t = time.monotonic()
    r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    print(json.dumps({"code": r.returncode, "err": r.stderr, "seconds": time.monotonic() - t,
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
""")


def test_resolve_with_an_81_mb_page_is_bounded_for_uv_too(upstream, tmp_path):
    """uv (the resolver) reads the index through gapsync's capping loopback proxy: the whole
    process tree stays small and the line is gapsync's, naming the page (uv alone: 5 s, 670 MB)."""
    from tests.support.cli import GAPSYNC, isolated_env

    s = upstream("huge-page")
    spec = tmp_path / "gapsync.yaml"
    spec.write_text(f"name: t\nchannel: prod\npython:\n  index_url: {s.base}/simple/\n  requirements: ['x']\n"
                    "  targets:\n    - {python: '3.11', platform: manylinux_2_17_x86_64}\n")
    r = subprocess.run([sys.executable, "-c", RESOLVE_PROBE, GAPSYNC, "resolve", "-f", str(spec), "-o",
                        str(tmp_path / "lock"), "--cache", str(tmp_path / "cache")],
                       capture_output=True, text=True, timeout=300, env=isolated_env())
    out = json.loads(r.stdout)
    assert out["code"] == ExitCode.ERROR, out
    assert out["err"].strip().splitlines()[-1].endswith(
        f"{s.base}/simple/x/: answer larger than the 33554432-byte cap for this document; refused"), out
    assert out["seconds"] < 30 and out["maxrss_mb"] < 250, out


def test_mlflow_answer_over_its_cap_stops_resolve(upstream, tmp_path):
    pytest.importorskip("mlflow")
    s = upstream("mlflow-huge")
    spec = tmp_path / "gapsync.yaml"
    spec.write_text(f"name: t\nchannel: prod\nmodels:\n  - {{mlflow: 'models:/m/1', tracking_uri: '{s.base}'}}\n")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "lock", "--cache", tmp_path / "cache")
    assert r.code == ExitCode.ERROR, (r.code, r.err)
    line = r.err.strip().splitlines()[-1]
    assert "cap" in line and s.base in line and "internal error" not in line, r.err
