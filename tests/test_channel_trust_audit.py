"""Channels with thresholds, pinning, passphrases, the clock check, and the audit log."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from gapsync.errors import TrustError
from gapsync.mirror.importer import import_bundle
from tests.support.channels import create, new_channel, write_spec
from tests.support.cli import cli


def test_two_of_three_targets_threshold(world, tmp_path):
    ch = new_channel(tmp_path, "prod", keys=3, threshold=2)
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha"], pythons=("3.11",))
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o1",
            "--cache", tmp_path / "c")
    assert r.code == 2 and "needs 2 signature(s)" in r.err
    b = create(ch, spec, tmp_path / "o2", keys=ch.keys[:2])
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    assert cli("import", b, "--mirror", m).code == 0
    info = json.loads(cli("bundle", "inspect", b, "--json").out)
    assert len(info["signatures"]) == 2


def test_pin_prints_the_fingerprint_of_channel_init_and_refuses_a_second_root(tmp_path):
    base = tmp_path / "a"
    assert cli("keys", "generate", "--out", base, "--name", "k").code == 0
    init = cli("channel", "init", "prod", "--state", base / "state", "--key", base / "k.key")
    fp = re.search(r"fingerprint: (\S+)", init.out).group(1)
    pin = cli("trust", "pin", base / "state/prod/1.root.json", "--mirror", tmp_path / "m")
    assert pin.code == 0 and f"fingerprint: {fp}" in pin.out
    assert cli("trust", "pin", base / "state/prod/1.root.json", "--mirror", tmp_path / "m").code == 0  # idempotent
    other = new_channel(tmp_path / "b", "prod")
    r = cli("trust", "pin", other.root, "--mirror", tmp_path / "m")
    assert r.code == 2 and "already pinned" in r.err
    junk = tmp_path / "junk.json"
    junk.write_text('{"signed": {}}')
    assert cli("trust", "pin", junk, "--mirror", tmp_path / "m2").code == 3
    assert cli("channel", "init", "prod", "--state", base / "state", "--key", base / "k.key").code == 2  # exists


def test_encrypted_key_with_passphrase_from_environment(world, tmp_path, monkeypatch):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    assert cli("keys", "generate", "--out", tmp_path / "k", "--name", "enc", "--passphrase-file", pw).code == 0
    r = cli("channel", "init", "prod", "--state", tmp_path / "s", "--key", tmp_path / "k/enc.key")
    assert r.code == 2 and "GAPSYNC_KEY_PASSPHRASE" in r.err
    monkeypatch.setenv("GAPSYNC_KEY_PASSPHRASE", "s3cret")
    assert cli("channel", "init", "prod", "--state", tmp_path / "s", "--key", tmp_path / "k/enc.key").code == 0


def test_clock_before_last_import_is_refused(world, mirror):
    now = datetime.now(UTC)
    import_bundle(world.b1, mirror, now=now)
    with pytest.raises(TrustError, match="clock"):
        import_bundle(world.b2, mirror, now=now - timedelta(days=2))


def test_import_into_a_directory_that_is_not_a_mirror(world, tmp_path):
    r = cli("import", world.b1, "--mirror", tmp_path / "nothing")
    assert r.code == 2 and "trust pin" in r.err


def _entries(path):
    return path.read_text().splitlines()


@pytest.mark.parametrize("tamper", ["edit", "delete-middle", "delete-last", "reorder"])
def test_audit_verify_detects_tampering(world, mirror, tamper):
    for b in (world.b1, world.b2, world.b2):
        cli("import", b, "--mirror", mirror)
    log = mirror / ".gapsync/audit.log"
    assert cli("audit", "verify", "--mirror", mirror).code == 0
    lines = _entries(log)
    assert len(lines) == 4
    if tamper == "edit":
        lines[1] = lines[1].replace('"ok"', '"refused"')
    elif tamper == "delete-middle":
        del lines[2]
    elif tamper == "delete-last":
        del lines[-1]
    else:
        lines[1], lines[2] = lines[2], lines[1]
    log.write_text("\n".join(lines) + "\n")
    r = cli("audit", "verify", "--mirror", mirror)
    assert r.code == 3, r.out + r.err
    assert {"edit": "edited", "delete-middle": "removed", "delete-last": "cut off", "reorder": "chain broken"}[tamper] in r.err
