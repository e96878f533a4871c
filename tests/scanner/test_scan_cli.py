"""``gapsync scan``: exit codes, --fail-on, --json; one line per finding."""

from __future__ import annotations

import json
import pickle

from gapsync.cli.main import main
from tests.support.samples import stack_global_print, write


def test_scan_exit_codes_and_output(tmp_path, capsys):
    clean = write(tmp_path, "clean/ok.pkl", pickle.dumps({"a": [1, 2]}, protocol=4))
    bad = write(tmp_path, "bad/model.bin", stack_global_print())
    assert main(["scan", str(clean)]) == 0
    assert main(["scan", str(bad)]) == 4
    out = capsys.readouterr().out
    assert f"{bad} @" in out and "critical" not in out and "high pickle.global.denied: builtins.print" in out
    assert main(["scan", str(bad), "--fail-on", "critical"]) == 0


def test_scan_json(tmp_path, capsys):
    bad = write(tmp_path, "m.pkl", stack_global_print())
    assert main(["scan", "--json", str(tmp_path)]) == 4
    data = json.loads(capsys.readouterr().out)
    assert data["blocked"] and data["files"] == 1 and data["worst"] == "high"
    f = data["findings"][0]
    assert f["file"] == str(bad) and f["evidence"]["global"] == "builtins.print" and f["offset"] is not None


def test_scan_missing_path_is_usage_error(tmp_path):
    assert main(["scan", str(tmp_path / "nope")]) == 2
