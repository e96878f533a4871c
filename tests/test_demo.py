"""`make demo` is a promise of the README: the three zones on one machine must keep working."""

from __future__ import annotations

import shutil

import pytest

from tests.support.cli import run

pytestmark = pytest.mark.slow


def test_demo_runs_the_three_zones_and_installs_from_the_mirror(tmp_path):
    r = run("demo", "--workdir", str(tmp_path / "demo"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    out = r.stdout
    assert "installed on the air-gapped side from the mirror alone: requests 2." in out
    assert "Signature and comment signature verified" in out or not shutil.which("minisign")
    assert "loaded offline from" in out and "classifier.weight" in out
    if shutil.which("docker-registry") and shutil.which("skopeo"):
        assert "image " in out and "demo/app-one" in out
