"""Approval (the two-person rule, as a side file next to the bundle) and key rotation (root N+1
signed by both thresholds, the chain carried in every bundle), through the real command line.
Hostile cases are refused as in test_hostile_bundles.py: exit 3, one line naming the bundle and
the reason, an audit entry, and a mirror unchanged byte for byte."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from tuf.api.metadata import Metadata, Root, Targets

from gapsync.bundle.keys import load_signing_key
from gapsync.bundle.tuf import signed_digest, to_bytes
from gapsync.mirror.layout import MirrorLayout
from gapsync.mirror.trust import fingerprint
from tests.support.channels import create, new_channel, write_spec
from tests.support.cli import cli
from tests.support.hostile_bundles import assert_refused


def keyid(key_file: Path) -> str:
    return load_signing_key(key_file).public.tuf_key().keyid


def side(bundle: Path) -> Path:
    return bundle.with_name(bundle.name + ".approvals.json")


def copy_bundle(bundle: Path, dst: Path) -> Path:
    """A bundle and its .minisig in a directory of the test's own (approvals are written next to it)."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(bundle, dst / bundle.name)
    shutil.copy2(bundle.with_name(bundle.name + ".minisig"), dst / (bundle.name + ".minisig"))
    return dst / bundle.name


def pin(root: Path, mirror: Path) -> Path:
    r = cli("trust", "pin", root, "--mirror", mirror)
    assert r.code == 0, r.err
    return mirror


def bundle_targets(bundle: Path) -> Metadata[Targets]:
    with tarfile.open(bundle) as tf:
        return Metadata[Targets].from_bytes(tf.extractfile("metadata/targets.json").read())


def keys(base: Path, *names: str) -> list[Path]:
    for n in names:
        assert cli("keys", "generate", "--out", base / "keys", "--name", n).code == 0
    return [base / "keys" / f"{n}.key" for n in names]


# -- approval ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pair(world, tmp_path_factory):
    """Channel 'prod' with root and targets 2-of-2 (prod0 also holds snapshot and timestamp), a
    key that is not the channel's, and bundles v1 and v2 signed by prod0 alone (--unapproved)."""
    base = tmp_path_factory.mktemp("pair")
    ch = new_channel(base, "prod", keys=2, threshold=2)
    outsider = keys(base, "outsider")[0]
    spec = write_spec(base / "g.yaml", world.index.url, ["alpha"], pythons=("3.11",))
    b1 = create(ch, spec, base / "o1", "--unapproved")
    b2 = create(ch, spec, base / "o2", "--unapproved")
    return SimpleNamespace(**vars(ch), outsider=outsider, spec=spec, b1=b1, b2=b2)


def test_fewer_targets_signatures_than_the_threshold_only_with_unapproved(pair, tmp_path):
    args = ["bundle", "create", "-f", pair.spec, "--state", pair.state, "-o", tmp_path / "o", "--cache", pair.base / "cache"]
    r = cli(*args, "--key", pair.keys[0])
    assert r.code == 2 and "needs 2 signature(s)" in r.err and "--unapproved" in r.err
    r = cli(*args, "--key", pair.outsider, "--unapproved")
    assert r.code == 2 and "no --key is one of its keys" in r.err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").glob("*.gapsync"))
    assert [s.keyid for s in bundle_targets(pair.b1).signatures.values()] == [keyid(pair.keys[0])]


def test_unapproved_bundle_is_refused(pair, tmp_path):
    m = pin(pair.root, tmp_path / "m")
    b = copy_bundle(pair.b1, tmp_path / "usb")
    assert_refused(b, m, "needs 2 signature(s) of the targets role, has 1", "gapsync bundle approve")


def test_approved_bundle_imports_and_its_minisig_still_verifies(pair, tmp_path, minisign_bin):
    m = pin(pair.root, tmp_path / "m")
    b = copy_bundle(pair.b1, tmp_path / "usb")
    before = b.read_bytes()
    r = cli("bundle", "approve", b, "--key", pair.keys[1])
    assert r.code == 0, r.err
    assert "approved with key" in r.out and "2 of 2 needed" in r.out
    doc = json.loads(side(b).read_text())
    tmd = bundle_targets(b)
    assert doc["type"] == "gapsync-approvals" and doc["format"] == 1 and doc["channel"] == "prod"
    assert doc["targets_version"] == 1 and doc["signed_sha256"] == signed_digest(tmd)
    assert [s["keyid"] for s in doc["signatures"]] == [keyid(pair.keys[1])]
    assert b.read_bytes() == before  # the bundle is not rewritten ...
    v = subprocess.run([minisign_bin, "-Vm", str(b), "-p", str(pair.pub[0])], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr  # ... so its detached signature still holds

    # approving again, with the same key or with the one that signed the bundle, changes nothing
    approvals = side(b).read_bytes()
    for k, where in ((pair.keys[1], "approvals file"), (pair.keys[0], "bundle")):
        r = cli("bundle", "approve", b, "--key", k)
        assert r.code == 0 and "nothing changed" in r.out and f"(in the {where})" in r.out, r.out + r.err
        assert side(b).read_bytes() == approvals

    info = json.loads(cli("bundle", "inspect", b, "--json").out)
    assert info["signatures"] == [keyid(pair.keys[0])] and info["threshold"] == 2
    assert info["approvals"] == {"file": side(b).name, "signatures": [keyid(pair.keys[1])], "matches": True, "error": None}
    assert [(s["keyid"], s["source"]) for s in info["signers"]] == [(keyid(pair.keys[0]), "bundle"),
                                                                     (keyid(pair.keys[1]), "approval")]
    line = next(ln for ln in cli("bundle", "inspect", b).out.splitlines() if "signed by" in ln)
    assert f"approved by {keyid(pair.keys[1])[:16]}" in line and side(b).name in line

    assert cli("bundle", "verify", b, "--mirror", m).code == 0
    r = cli("import", b, "--mirror", m, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["signers"] == sorted([keyid(pair.keys[0]), keyid(pair.keys[1])])
    assert (m / "pypi/simple/alpha/index.html").exists()


def test_approval_by_a_key_outside_the_targets_role_is_refused(pair, tmp_path):
    b = copy_bundle(pair.b1, tmp_path / "usb")
    r = cli("bundle", "approve", b, "--key", pair.outsider)
    assert r.code == 2 and "not a key of the targets role" in r.err and str(pair.outsider) in r.err, r.err
    assert not side(b).exists()


def _outsider_side_file(pair, b: Path) -> None:
    """A well-formed side file whose signature is valid, but by a key the channel does not list."""
    from gapsync.bundle.approvals import Approvals

    tmd = bundle_targets(b)
    sig = tmd.sign(load_signing_key(pair.outsider).tuf_signer(), append=True)
    side(b).write_bytes(Approvals("prod", 1, signed_digest(tmd), {sig.keyid: sig.signature}).to_bytes())


@pytest.mark.parametrize("case", ["altered-signature", "other-bundle", "edited-version", "outsider", "not-json"])
def test_forged_approvals_are_refused(pair, tmp_path, case):
    m = pin(pair.root, tmp_path / "m")
    b = copy_bundle(pair.b1, tmp_path / "usb")
    if case == "outsider":
        _outsider_side_file(pair, b)
    elif case == "not-json":
        side(b).write_text("{approved: yes")
    elif case == "other-bundle":  # a genuine approval of version 2, put next to version 1
        other = copy_bundle(pair.b2, tmp_path / "other")
        assert cli("bundle", "approve", other, "--key", pair.keys[1]).code == 0
        shutil.copy(side(other), side(b))
    else:
        assert cli("bundle", "approve", b, "--key", pair.keys[1]).code == 0
        doc = json.loads(side(b).read_text())
        if case == "altered-signature":
            sig = doc["signatures"][0]["sig"]
            doc["signatures"][0]["sig"] = sig[:10] + ("0" if sig[10] != "0" else "1") + sig[11:]
        else:
            doc["targets_version"] = 2
        side(b).write_text(json.dumps(doc))
    reason = {"altered-signature": "does not verify", "other-bundle": "approves other targets metadata",
              "edited-version": "approves other targets metadata", "outsider": "not a key of the targets role",
              "not-json": "not a valid approvals file"}[case]
    err = assert_refused(b, m, side(b).name, reason)
    assert err.startswith(f"gapsync: error: {b}: ")
    if case in ("altered-signature", "other-bundle"):  # approve does not build on a bad side file either
        r = cli("bundle", "approve", b, "--key", pair.keys[1])
        assert r.code == 3 and reason in r.err


def test_one_approval_covers_every_volume_of_a_bundle(tmp_path):
    import os

    from tests.support.servers import static_server
    from tests.support.wheels import make_wheel, write_index

    for i in range(3):
        make_wheel(tmp_path / "index/files", f"vol{i}", "1.0", payload=os.urandom(60_000))
    write_index(tmp_path / "index")
    srv = static_server(tmp_path / "index")
    try:
        ch = new_channel(tmp_path, "prod", keys=2, threshold=2)
        spec = write_spec(tmp_path / "g.yaml", srv.url, [f"vol{i}" for i in range(3)], pythons=("3.11",))
        r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "out",
                "--cache", tmp_path / "c", "--max-volume-size", "150KB", "--unapproved", "--json")
        assert r.code == 0, r.err
    finally:
        srv.stop()
    volumes = [Path(v) for v in json.loads(r.out)["volumes"]]
    assert len(volumes) >= 2
    m = pin(ch.root, tmp_path / "m")
    assert_refused(volumes[0], m, "needs 2 signature(s) of the targets role, has 1")
    r = cli("bundle", "approve", *volumes, "--key", ch.keys[1])
    assert r.code == 0, r.err
    assert r.out.count("approved with key") == 1 and r.out.count("nothing changed") == len(volumes) - 1
    assert sorted(p.name for p in (tmp_path / "out").glob("*.approvals.json")) == ["t-prod-1.gapsync.approvals.json"]
    for v in volumes:
        r = cli("import", v, "--mirror", m)
        assert r.code in (0, 5), r.err
    assert all((m / f"pypi/simple/vol{i}/index.html").exists() for i in range(3))


# -- rotation ---------------------------------------------------------------------------------

def _root(state: Path, version: int) -> Metadata[Root]:
    return Metadata[Root].from_file(str(state / "prod" / f"{version}.root.json"))


def _mirror_root_version(mirror: Path) -> int:
    return Metadata[Root].from_file(str(MirrorLayout(mirror).tuf_dir("prod") / "root.json")).signed.version


def _rotate(state: Path, *args) -> str:
    r = cli("channel", "rotate", "prod", "--state", state, *args)
    assert r.code == 0, r.err
    return r.out


def test_air_side_follows_the_root_chain_even_after_missing_a_bundle(world, tmp_path):
    ch = new_channel(tmp_path, "prod")
    k1, k2 = keys(tmp_path, "next1", "next2")
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha"], pythons=("3.11",))
    mirrors = [pin(ch.root, tmp_path / n) for n in ("every", "missed2", "late")]
    b1 = create(ch, spec, tmp_path / "o1")

    out = _rotate(ch.state, "--old-key", ch.keys[0], "--new-key", k1)
    assert "root v2 written" in out
    fp = re.search(r"fingerprint: (\S+)", out).group(1)
    assert fp == fingerprint((ch.state / "prod/2.root.json").read_bytes())
    r2 = _root(ch.state, 2).signed
    assert {r: r2.roles[r].keyids for r in ("root", "targets", "snapshot", "timestamp")} == {
        r: [keyid(k1)] for r in ("root", "targets", "snapshot", "timestamp")}
    assert abs(r2.expires - (datetime.now(UTC) + timedelta(weeks=52))) < timedelta(minutes=5)  # default 52w
    entry = json.loads((ch.state / "audit.log").read_text().splitlines()[-1])
    assert entry["action"] == "channel.rotate" and entry["result"] == "ok" and entry["details"]["version"] == 2

    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "x",
            "--cache", tmp_path / "cache")
    assert r.code == 2 and "needs 1 signature(s)" in r.err  # the old key signs nothing any more
    b2 = create(ch, spec, tmp_path / "o2", keys=[k1])
    _rotate(ch.state, "--old-key", k1, "--new-key", k2)
    b3 = create(ch, spec, tmp_path / "o3", keys=[k2])
    with tarfile.open(b3) as tf:
        assert [n for n in tf.getnames() if n.endswith("root.json")] == [f"metadata/{v}.root.json" for v in (1, 2, 3)]

    every, missed2, late = mirrors
    for b in (b1, b2, b3):
        assert cli("import", b, "--mirror", every).code == 0
    for b in (b1, b3):  # bundle 2 never reached this one: bundle 3 carries the whole chain
        r = cli("import", b, "--mirror", missed2)
        assert r.code == 0, r.err
    r = cli("import", b3, "--mirror", late)  # nothing imported since the pin
    assert r.code == 0, r.err
    assert [_mirror_root_version(m) for m in mirrors] == [3, 3, 3]


def test_bundle_signed_with_a_revoked_key_is_refused(world, tmp_path):
    a, b, dmz = keys(tmp_path, "alice", "bob", "dmz")
    state = tmp_path / "state"
    assert cli("channel", "init", "prod", "--state", state, "--key", a, "--key", b, "--online-key", dmz).code == 0
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha"], pythons=("3.11",))
    m = pin(state / "prod/1.root.json", tmp_path / "m")
    ch = SimpleNamespace(base=tmp_path, state=state, keys=[a])

    def make(keys_, out, st=state):
        return create(SimpleNamespace(base=tmp_path, state=st, keys=keys_), spec, tmp_path / out, keys=keys_)

    assert cli("import", make([a, dmz], "o1"), "--mirror", m).code == 0
    stolen = tmp_path / "stolen"  # bob's key and the DMZ host are compromised, with a copy of the state
    shutil.copytree(state, stolen)
    out = _rotate(ch.state, "--old-key", a, "--revoke", b.with_suffix(".pub"))
    assert f"revoked: {keyid(b)[:16]}" in out
    r2 = _root(state, 2).signed
    assert r2.roles["targets"].keyids == [keyid(a)] and keyid(b) not in r2.keys
    assert cli("import", make([a, dmz], "o2"), "--mirror", m).code == 0  # carries root v2 across

    r = cli("bundle", "create", "-f", spec, "--state", state, "--key", b, "--key", dmz, "-o", tmp_path / "x",
            "--cache", tmp_path / "cache")
    assert r.code == 2 and "targets role needs 1" in r.err  # the connected side refuses too
    make([b, dmz], "s2", stolen)
    forged = make([b, dmz], "s3", stolen)  # version 3: newer than the mirror's
    assert_refused(forged, m, "targets v3 needs 1 signature(s) of the targets role, has 0", "root v2")


def test_root_signed_only_by_the_new_keys_is_refused(world, tmp_path):
    ch = new_channel(tmp_path, "prod")
    (k1,) = keys(tmp_path, "next1")
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha"], pythons=("3.11",))
    m = pin(ch.root, tmp_path / "m")
    assert cli("import", create(ch, spec, tmp_path / "o1"), "--mirror", m).code == 0

    # gapsync itself will not write it ...
    r = cli("channel", "rotate", "prod", "--state", ch.state, "--old-key", k1, "--new-key", k1)
    assert r.code == 2 and "needs 1 signature(s) of root v1's root keys" in r.err
    assert not (ch.state / "prod/2.root.json").exists()

    # ... so craft it with python-tuf: k1 replaces k0 everywhere, signed by k1 alone
    md = _root(ch.state, 1)
    new = load_signing_key(k1)
    for role in ("root", "targets", "snapshot", "timestamp"):
        md.signed.revoke_key(keyid(ch.keys[0]), role)
        md.signed.add_key(new.public.tuf_key(), role)
    md.signed.version = 2
    md.signatures.clear()
    md.sign(new.tuf_signer())
    forger = tmp_path / "forger"
    shutil.copytree(ch.state, forger)
    (forger / "prod/2.root.json").write_bytes(to_bytes(md))
    b = create(SimpleNamespace(base=tmp_path, state=forger, keys=[k1]), spec, tmp_path / "o2", keys=[k1])
    assert_refused(b, m, "metadata/2.root.json does not meet the threshold", "root was signed by 0/1 keys")
    assert _mirror_root_version(m) == 1


def test_rotate_checks_both_thresholds_roles_and_key_material(tmp_path):
    ch = new_channel(tmp_path, "prod", keys=3, threshold=2)
    a, b, c = ch.keys
    (d,) = keys(tmp_path, "dave")
    # revoking c leaves root v2 with a and b, 2-of-2: c's signature does not count for v2
    r = cli("channel", "rotate", "prod", "--state", ch.state, "--old-key", a, "--old-key", c, "--revoke", c.with_suffix(".pub"))
    assert r.code == 2 and "needs 2 signature(s) of its own (root v2's) root keys" in r.err, r.err
    # one new key cannot meet a threshold of 2: say so, and take --threshold
    r = cli("channel", "rotate", "prod", "--state", ch.state, "--old-key", a, "--old-key", b, "--new-key", d)
    assert r.code == 2 and "give --threshold" in r.err
    assert cli("channel", "rotate", "prod", "--state", ch.state, "--roles", "bogus", "--old-key", a, "--new-key", d).code == 2
    assert not (ch.state / "prod/2.root.json").exists()
    # only the targets role moves to d; root keeps a, b, c and signs
    r = cli("channel", "rotate", "prod", "--state", ch.state, "--old-key", a, "--old-key", b, "--new-key", d,
            "--roles", "targets", "--threshold", "1", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["version"] == 2 and doc["roles"]["targets"] == {"keyids": [keyid(d)], "threshold": 1}
    assert doc["roles"]["root"] == {"keyids": sorted(keyid(k) for k in (a, b, c)), "threshold": 2}


def test_rotation_refuses_a_root_with_one_key_under_two_ids(tmp_path):
    from gapsync.bundler.rotate import build_next_root
    from tests.support.hostile_bundles import root_with_duplicate_key

    ch = new_channel(tmp_path, "prod")
    (k1,) = keys(tmp_path, "next1")
    twin = root_with_duplicate_key(ch.root, ch.keys[0], 2)
    (ch.state / "prod/2.root.json").write_bytes(to_bytes(twin))  # a tampered state
    r = cli("channel", "rotate", "prod", "--state", ch.state, "--old-key", ch.keys[0], "--new-key", k1, "--roles", "targets")
    assert r.code == 2 and "same key material" in r.err
    assert not (ch.state / "prod/3.root.json").exists()
    with pytest.raises(Exception, match="same key material"):  # and the check on the result itself
        build_next_root(twin, [load_signing_key(k1)], ["targets"], None, [], datetime.now(UTC) + timedelta(days=1))


def test_snapshot_pins_targets_by_version_only_and_timestamp_pins_snapshot_fully(pair):
    """Approvals change targets.json's bytes, not its signed part: snapshot must not pin its hashes.
    A bundle made when snapshot did (an older gapsync) is told so rather than refused obscurely."""
    from gapsync.bundle.approvals import check_accepts_approvals
    from gapsync.errors import TrustError

    with tarfile.open(pair.b1) as tf:
        snap = json.loads(tf.extractfile("metadata/snapshot.json").read())["signed"]
        ts = json.loads(tf.extractfile("metadata/timestamp.json").read())["signed"]
    assert snap["meta"] == {"targets.json": {"version": 1}}
    assert set(ts["meta"]["snapshot.json"]) == {"version", "length", "hashes"}
    old = {"snapshot.json": json.dumps({"signed": {"meta": {"targets.json": {"version": 1, "length": 9,
                                                                             "hashes": {"sha256": "0" * 64}}}}}).encode()}
    with pytest.raises(TrustError, match="cannot take approvals"):
        check_accepts_approvals(old, pair.b1)
