"""The domain functions write their own audit entries: a library caller of channel init, channel
rotate, trust pin and receipt leaves the same trail as the command line (issue 15, a thin CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gapsync.audit import verify
from gapsync.bundle.keys import generate, load_signing_key
from gapsync.bundle.receipt import read_receipt
from gapsync.bundler.rotate import rotate
from gapsync.bundler.trust_repo import ChannelRepo, state_audit_log
from gapsync.errors import InputError
from gapsync.mirror.layout import MirrorLayout
from gapsync.mirror.receipts import write_receipt
from gapsync.mirror.trust import pin_root
from tests.support.cli import cli

DETAILS = {  # what each action's entry records (tests/test_channel_trust_audit.py checks the command line's)
    "channel.init": {"channel", "root", "fingerprint", "keys", "threshold"},
    "channel.rotate": {"channel", "root", "version", "fingerprint", "roles", "revoked"},
    "trust.pin": {"channel", "root", "fingerprint"},
    "receipt": {"out", "blobs", "channels"},
}


def _entries(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _key(tmp_path: Path, name: str):
    key, _pub = generate(tmp_path / "keys", name)
    return load_signing_key(key)


def test_channel_init_and_rotate_by_library_are_audited_like_the_command_line(tmp_path):
    a, b = _key(tmp_path, "a"), _key(tmp_path, "b")
    state = tmp_path / "state"
    made = ChannelRepo.init(state, "prod", [a], 1)
    log = state_audit_log(state).path
    assert log == state / "audit.log"
    (init,) = _entries(log)
    assert init["action"] == "channel.init" and init["result"] == "ok"
    assert set(init["details"]) == DETAILS["channel.init"]
    assert init["details"] == {"channel": "prod", "root": str(made.path), "fingerprint": made.fingerprint,
                               "keys": [a.public.tuf_key().keyid], "threshold": 1}

    r = rotate(state, "prod", [a], [b])
    rot = _entries(log)[-1]
    assert rot["action"] == "channel.rotate" and rot["result"] == "ok"
    assert rot["details"] == {"channel": "prod", "root": str(r.path), "version": 2, "fingerprint": r.fingerprint,
                              "roles": r.roles, "revoked": []}

    with pytest.raises(InputError):  # a is no root key of v2 any more: refused, and recorded with the reason
        rotate(state, "prod", [a], [a])
    failed = _entries(log)[-1]
    assert failed["action"] == "channel.rotate" and failed["result"] == "error"
    assert failed["details"]["channel"] == "prod" and "signature" in failed["details"]["reason"]
    assert verify(log).ok and verify(log).entries == 3

    # the command line writes the same entries (same actions, same fields)
    cli_state = tmp_path / "cli-state"
    assert cli("channel", "init", "prod", "--state", cli_state, "--key", tmp_path / "keys/a.key").code == 0
    assert cli("channel", "rotate", "prod", "--state", cli_state, "--old-key", tmp_path / "keys/a.key",
               "--new-key", tmp_path / "keys/b.key").code == 0
    by_cli = _entries(cli_state / "audit.log")
    assert [(e["action"], e["result"], set(e["details"])) for e in by_cli] == \
        [(e["action"], e["result"], set(e["details"])) for e in _entries(log)[:2]]


def test_refused_channel_init_and_rotate_of_no_channel_write_nothing(tmp_path):
    a = _key(tmp_path, "a")
    state = tmp_path / "state"
    for bad in ("../escape", "a/b", "", ".hidden"):
        with pytest.raises(InputError, match="channel name"):
            ChannelRepo.init(state, bad, [a], 1)
    assert not state.exists() and not (tmp_path / "escape").exists()
    state.mkdir()
    with pytest.raises(InputError, match="not initialised"):
        rotate(state, "prod", [a], [])
    assert not (state / "audit.log").exists()  # no channel: nothing to record against


def test_pin_and_receipt_by_library_are_audited(tmp_path):
    a = _key(tmp_path, "a")
    made = ChannelRepo.init(tmp_path / "state", "prod", [a], 1)
    layout = MirrorLayout(tmp_path / "mirror")
    assert pin_root(layout, made.path, namespace="research") == ("prod", made.fingerprint)
    assert pin_root(layout, made.path, namespace="research") == ("prod", made.fingerprint)  # again: recorded again
    pins = _entries(layout.audit_path)
    assert [p["action"] for p in pins] == ["trust.pin", "trust.pin"]
    assert pins[0]["details"] == {"channel": "prod", "root": str(made.path), "fingerprint": made.fingerprint,
                                  "namespace": "research"}
    assert json.loads(layout.namespaces_path.read_text())["channels"] == {"prod": "research"}

    other = ChannelRepo.init(tmp_path / "other", "prod", [_key(tmp_path, "b")], 1)
    with pytest.raises(InputError, match="already pinned"):
        pin_root(layout, other.path)
    assert len(_entries(layout.audit_path)) == 2  # a refused pin is no pin

    receipt_key, receipt_pub = generate(tmp_path / "air", "air")
    out = tmp_path / "receipt.json"
    body = write_receipt(layout.root, out, load_signing_key(receipt_key))
    rec = _entries(layout.audit_path)[-1]
    assert rec["action"] == "receipt" and rec["result"] == "ok"
    assert rec["details"] == {"out": str(out), "blobs": len(body["blobs"]), "channels": {"prod": {"version": 0}}}
    assert set(rec["details"]) == DETAILS["receipt"]
    assert read_receipt(out, receipt_pub) == body
    assert verify(layout.audit_path).ok and verify(layout.audit_path).entries == 3
