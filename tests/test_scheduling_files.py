"""The systemd units and the cron line that docs/ ship are valid (systemd-analyze verify)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import GAPSYNC

DOCS = Path(__file__).resolve().parents[1] / "docs" / "systemd"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_service_and_timer_verify(tmp_path):
    for name in ("gapsync-sync.service", "gapsync-sync.timer"):
        text = (DOCS / name).read_text().replace("/opt/gapsync/.venv/bin/gapsync", GAPSYNC)
        (tmp_path / name).write_text(text)
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "warning"}
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / "gapsync-sync.service"),
                        str(tmp_path / "gapsync-sync.timer")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SuccessExitStatus=5" in (DOCS / "gapsync-sync.service").read_text()


def test_cron_line_has_five_time_fields_and_a_user():
    lines = [ln for ln in (DOCS / "crontab").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines
    for ln in lines:
        fields = ln.split()
        assert len(fields) > 7 and fields[5] == "gapsync" and fields[6] == "cd"
        assert all(f == "*" or f.replace(",", "").replace("-", "").replace("/", "").isdigit() for f in fields[:5])
