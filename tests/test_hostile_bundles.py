"""Hostile bundles: each is refused with exit 3, one line naming the bundle and the reason, an
audit entry, and a mirror that is unchanged byte for byte (and no staging left behind)."""

from __future__ import annotations

import hashlib
import json
import tarfile
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.channels import create, new_channel, write_spec
from tests.support.cli import cli
from tests.support.hostile_bundles import (
    Member,
    assert_refused,
    raw_header_with_nul,
    read_members,
    root_with_duplicate_key,
    write_members,
)


@pytest.fixture
def mirror_v1(world, mirror):
    r = cli("import", world.b1, "--mirror", mirror)
    assert r.code == 0, r.err
    return mirror


def _wheel_blob(world, members):
    with tarfile.open(world.b2) as tf:
        targets = json.loads(tf.extractfile("metadata/targets.json").read())["signed"]["targets"]
    digest = targets["python/alpha/alpha-1.0-py3-none-any.whl"]["hashes"]["sha256"]
    return next(m for m in members if m.name.endswith(digest))


def flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


def test_flipped_byte_in_blob(world, mirror_v1, tmp_path):
    ms = read_members(world.b2)
    m = _wheel_blob(world, ms)
    m.data = flip(m.data, len(m.data) // 2)
    assert_refused(write_members(ms, tmp_path / "b.gapsync"), mirror_v1, "does not match")


def test_flipped_byte_in_targets(world, mirror_v1, tmp_path):
    ms = read_members(world.b2)
    m = next(m for m in ms if m.name == "metadata/targets.json")
    i = m.data.index(b'"sha256": "') + 12  # inside a digest: still valid JSON
    m.data = m.data[:i] + (b"0" if m.data[i:i + 1] != b"0" else b"1") + m.data[i + 1:]
    assert_refused(write_members(ms, tmp_path / "b.gapsync"), mirror_v1, "targets")


def test_flipped_byte_in_root(world, mirror_v1, tmp_path):
    ms = read_members(world.b2)
    m = next(m for m in ms if m.name == "metadata/1.root.json")
    i = m.data.index(b'"sig": "') + 10
    m.data = m.data[:i] + (b"0" if m.data[i:i + 1] != b"0" else b"1") + m.data[i + 1:]
    assert_refused(write_members(ms, tmp_path / "b.gapsync"), mirror_v1, "root")


@pytest.mark.parametrize("cut", ["half", "member-boundary", "end-blocks", "one-byte"])
def test_truncated_bundle(world, mirror_v1, tmp_path, cut):
    data = world.b2.read_bytes()
    if cut == "half":
        data = data[: len(data) // 2]
    elif cut == "one-byte":
        data = data[:-1]
    else:
        with tarfile.open(world.b2) as tf:
            last = tf.getmembers()[-1]
            end = last.offset_data + ((last.size + 511) // 512) * 512
        data = data[: last.offset] if cut == "member-boundary" else data[:end]
    bad = tmp_path / "b.gapsync"
    bad.write_bytes(data)
    assert_refused(bad, mirror_v1, "truncated" if cut != "member-boundary" else "")


def test_extra_member_name(world, mirror_v1, tmp_path):
    ms = read_members(world.b2) + [Member("README.txt", b"hello")]
    assert_refused(write_members(ms, tmp_path / "b.gapsync"), mirror_v1, "unexpected member")


def test_extra_blob_that_is_not_a_target(world, mirror_v1, tmp_path):
    data = b"not signed by anyone"
    ms = read_members(world.b2) + [Member(f"blobs/sha256/{hashlib.sha256(data).hexdigest()}", data)]
    assert_refused(write_members(ms, tmp_path / "b.gapsync"), mirror_v1, "not a target")


@pytest.mark.parametrize("name", ["../x", "/x", "blobs/sha256/../../x", "metadata/../../etc/passwd", "blobs/sha256/ABCDEF"])
def test_member_names_that_escape_or_do_not_fit(world, mirror_v1, tmp_path, name):
    ms = read_members(world.b2)
    ms.insert(4, Member(name, b"x"))
    assert_refused(write_members(ms, tmp_path / "b.gapsync"), mirror_v1, "unexpected member")
    assert not (tmp_path / "x").exists()


def test_member_name_hiding_bytes_after_nul(world, mirror_v1, tmp_path):
    ms = read_members(world.b2)
    with tarfile.open(world.b2) as tf:
        members = tf.getmembers()
        first_blob = next(ti for ti in members if ti.name.startswith("blobs/"))
    raw = world.b2.read_bytes()
    victim = next(m for m in ms if m.name == first_blob.name)
    forged = raw_header_with_nul(victim.name, "../../x", victim.data)
    start = first_blob.offset
    end = first_blob.offset_data + ((first_blob.size + 511) // 512) * 512
    bad = tmp_path / "b.gapsync"
    bad.write_bytes(raw[:start] + forged + raw[end:])
    assert_refused(bad, mirror_v1, "NUL")


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE, tarfile.DIRTYPE])
def test_links_and_special_members(world, mirror_v1, tmp_path, kind):
    ms = read_members(world.b2)
    blob = _wheel_blob(world, ms)
    i = ms.index(blob)
    ms[i] = Member(blob.name, type=kind, linkname="/etc/passwd")
    err = assert_refused(write_members(ms, tmp_path / "b.gapsync"), mirror_v1, "only regular files")
    assert blob.name in err


def test_duplicate_member(world, mirror_v1, tmp_path):
    ms = read_members(world.b2)
    blob = _wheel_blob(world, ms)
    ms.append(Member(blob.name, blob.data))
    assert_refused(write_members(ms, tmp_path / "b.gapsync"), mirror_v1, "duplicate member")


def test_metadata_after_blobs(world, mirror_v1, tmp_path):
    ms = read_members(world.b2)
    ts = next(m for m in ms if m.name == "metadata/timestamp.json")
    ms.remove(ts)
    ms.append(ts)
    assert_refused(write_members(ms, tmp_path / "b.gapsync"), mirror_v1, "after the blobs")


def test_blob_larger_than_signed_length(world, mirror_v1, tmp_path):
    ms = read_members(world.b2)
    blob = _wheel_blob(world, ms)
    blob.data = blob.data + b"\0" * 1024
    assert_refused(write_members(ms, tmp_path / "b.gapsync"), mirror_v1, "signed length")


def test_signed_by_unknown_key(world, mirror_v1, tmp_path):
    rogue = new_channel(tmp_path / "rogue", "prod")  # same channel name, different key
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha"])
    create(rogue, spec, tmp_path / "out")  # version 1
    b = create(rogue, spec, tmp_path / "out2")  # version 2: newer than the mirror's
    assert_refused(b, mirror_v1, "differs from the trusted root")  # its own root v1
    ms = read_members(b)  # carrying the genuine root v1 does not help: the signatures are not its keys'
    next(m for m in ms if m.name == "metadata/1.root.json").data = world.root.read_bytes()
    assert_refused(write_members(ms, tmp_path / "b.gapsync"), mirror_v1, "threshold")


def test_expired_bundle(world, mirror_v1, tmp_path):
    from gapsync.bundle.keys import load_signing_key
    from gapsync.bundler.cache import BlobCache
    from gapsync.bundler.create import create_bundle

    ch = new_channel(tmp_path / "exp", "prod")
    m = tmp_path / "m2"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha"])
    r = create_bundle(spec, None, ch.state, [load_signing_key(ch.keys[0])], tmp_path / "out", BlobCache(tmp_path / "c"),
                      expires=timedelta(days=30), now=datetime.now(UTC) - timedelta(days=31))
    assert_refused(r.bundle, m, "expired")


def test_replayed_older_version(world, mirror_v1):
    assert cli("import", world.b2, "--mirror", mirror_v1).code == 0
    assert_refused(world.b1, mirror_v1, "older or replayed")


def test_bundle_for_another_channel(world, mirror_v1, tmp_path):
    other = new_channel(tmp_path / "research", "research")
    b = create(other, write_spec(tmp_path / "g.yaml", world.index.url, ["alpha"], channel="research"), tmp_path / "o")
    assert_refused(b, mirror_v1, "research", "not pinned")


def test_channel_relabelled_with_the_same_key_is_refused(world, mirror_v1, tmp_path):
    """A site that uses one key for two channels: a 'research' bundle relabelled 'prod'."""
    import shutil

    base = tmp_path / "same"
    (base / "keys").mkdir(parents=True)
    shutil.copy(world.keys[0], base / "keys/k.key")
    assert cli("channel", "init", "research", "--state", base / "state", "--key", base / "keys/k.key").code == 0
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha"], channel="research")
    out = base / "o"
    for _ in range(3):  # version 3: newer than the mirror's prod
        assert cli("bundle", "create", "-f", spec, "--state", base / "state", "--key", base / "keys/k.key",
                   "-o", out, "--cache", base / "c").code == 0
    b = sorted(out.glob("*-3.gapsync"))[0]
    ms = read_members(b)
    for m in ms:
        if m.name.startswith("metadata/") and not m.name.endswith("root.json"):
            m.data = m.data.replace(b'"channel": "research"', b'"channel": "prod"')
    assert_refused(write_members(ms, tmp_path / "b.gapsync"), mirror_v1)


def test_root_listing_one_key_under_two_ids_is_refused_at_pin(tmp_path):
    ch = new_channel(tmp_path / "c", "prod")
    from gapsync.bundle.tuf import to_bytes

    bad = tmp_path / "1.root.json"
    bad.write_bytes(to_bytes(root_with_duplicate_key(ch.root, ch.keys[0], 1)))
    r = cli("trust", "pin", bad, "--mirror", tmp_path / "m")
    assert r.code == 3 and "same key material" in r.err


def test_root_listing_one_key_under_two_ids_is_refused_in_a_bundle(world, tmp_path):
    """Root v2 lists one key twice so that a 2-of-2 targets threshold is met by one key."""
    from gapsync.bundle.tuf import to_bytes

    ch = new_channel(tmp_path / "c", "prod")
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    b = create(ch, write_spec(tmp_path / "g.yaml", world.index.url, ["alpha"]), tmp_path / "o")
    ms = read_members(b)  # root v2, validly signed by the v1 key, lists that key under two ids
    ms.insert(1, Member("metadata/2.root.json", to_bytes(root_with_duplicate_key(ch.root, ch.keys[0], 2))))
    assert_refused(write_members(ms, tmp_path / "b.gapsync"), m, "same key material")
