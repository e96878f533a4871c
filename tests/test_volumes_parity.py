"""Volumes and parity with real files: a bundle split for a small medium, every volume a valid
bundle, parity that rebuilds any N lost or damaged pieces, and refusals when it cannot."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from gapsync.bundle.archive import BundleReader
from gapsync.bundle.parity import (
    PARITY_SUFFIX,
    ParityHeader,
    VolumeRecord,
    read_header,
    repair,
    write_parity,
)
from gapsync.bundle.volumes import (
    MEDIA,
    archive_size,
    blob_tar_size,
    metadata_tar_size,
    parse_volume_size,
    plan_volumes,
    write_volumes,
)
from gapsync.bundler.cache import BlobCache
from gapsync.errors import InputError, VerificationError
from tests.support.cli import cli

LIMIT = 300_000
STEM = "t-prod-7"
SEEDS = (1, 2, 3, 8, 99)  # the blob sets the tests build (make_blobs)


def _signed_targets() -> dict:
    """Targets with the length and sha256 of every blob make_blobs makes for SEEDS: repair checks
    a rebuilt volume's blobs against them (parity.check_rebuilt_volume)."""
    out = {"empty": {"length": 0, "hashes": {"sha256": hashlib.sha256(b"").hexdigest()}}}
    for seed in SEEDS:
        rnd = random.Random(seed)
        for i in range(30):
            data = rnd.randbytes(rnd.randrange(1, 90_000))
            out[f"s{seed}-{i}"] = {"length": len(data), "hashes": {"sha256": hashlib.sha256(data).hexdigest()}}
    return out


METADATA = {"1.root.json": b'{"signed": {"version": 1}}', "2.root.json": b'{"signed": {"version": 2}}' * 40,
            "timestamp.json": b'{"signed": {"_type": "timestamp"}}', "snapshot.json": b'{"signed": {}}',
            "targets.json": json.dumps({"signed": {"targets": _signed_targets()}}).encode()}


def make_blobs(cache_dir: Path, seed: int, count: int = 30) -> tuple[BlobCache, list[tuple[str, int]]]:
    """Random blobs in a real cache, in a fixed order, with a duplicate and an empty one."""
    rnd = random.Random(seed)
    cache = BlobCache(cache_dir)
    blobs = [cache.put_bytes(rnd.randbytes(rnd.randrange(1, 90_000)), what="test") for _ in range(count)]
    blobs.insert(3, cache.put_bytes(b"", what="empty"))
    blobs.append(blobs[5])
    return cache, blobs


def build(base: Path, seed: int, limit: int = LIMIT) -> SimpleNamespace:
    cache, blobs = make_blobs(base / "cache", seed)
    plan = plan_volumes(metadata_tar_size(METADATA), blobs, limit)
    signed: dict[str, bytes] = {}

    def sign(path: Path, blake: bytes) -> None:
        signed[path.name] = blake
        path.with_name(path.name + ".minisig").write_text(f"untrusted comment: test\n{blake.hex()}\n")

    out = base / "out"
    vols = write_volumes(out, STEM, METADATA, plan, cache.path, dict(blobs), 1_700_000_000, sign, max_volume_size=limit)
    return SimpleNamespace(cache=cache, blobs=blobs, plan=plan, vols=vols, signed=signed, out=out)


@pytest.fixture(scope="module")
def bset(tmp_path_factory) -> SimpleNamespace:
    """One bundle in volumes, with 2 parity files (64 KiB stripes: several stripes, a short last one)."""
    s = build(tmp_path_factory.mktemp("vol"), seed=8)
    s.parity = write_parity(s.vols, 2, s.out, stripe_size=64 * 1024)
    s.pieces = s.vols + s.parity
    s.original = {p.name: p.read_bytes() for p in s.pieces}
    return s


def copy_set(s: SimpleNamespace, dst: Path) -> Path:
    dst.mkdir()
    for p in s.out.iterdir():
        shutil.copy(p, dst / p.name)
    return dst


def assert_whole(s: SimpleNamespace, d: Path) -> None:
    for name, data in s.original.items():
        assert (d / name).read_bytes() == data, name
    assert not list(d.glob("*.partial"))


# -- volumes ---------------------------------------------------------------------------------

def test_plan_honours_the_limit_and_is_deterministic(bset):
    assert len(bset.vols) >= 4
    assert plan_volumes(metadata_tar_size(METADATA), bset.blobs, LIMIT) == bset.plan
    for i, (p, digests) in enumerate(zip(bset.vols, bset.plan, strict=True), 1):
        assert p.name == f"{STEM}.v{i:02d}of{len(bset.vols):02d}.gapsync"
        size = p.stat().st_size
        assert size <= LIMIT and size == archive_size(metadata_tar_size(METADATA), [dict(bset.blobs)[d] for d in digests])
        assert bset.signed[p.name] == hashlib.blake2b(p.read_bytes()).digest()
    # first fit packs tightly: at most one volume more than the bytes need
    usable = LIMIT // 10240 * 10240 - 1024 - metadata_tar_size(METADATA)
    need = sum(blob_tar_size(s) for s in dict(bset.blobs).values())
    assert len(bset.vols) <= -(-need // usable) + 1


def test_every_volume_is_a_bundle_and_the_union_is_the_input(bset):
    carried: list[str] = []
    for p, digests in zip(bset.vols, bset.plan, strict=True):
        with BundleReader(p) as r:
            assert r.read_metadata() == METADATA
            members = list(r.iter_blobs())
            assert [m.digest for m in members] == digests
            for m in members:
                assert hashlib.sha256(b"".join(r.chunks(m))).hexdigest() == m.digest
        carried += digests
    assert len(carried) == len(set(carried))
    assert set(carried) == {d for d, _ in bset.blobs}
    # the order is kept within each volume (bundle.json first stays first)
    order = {d: i for i, (d, _) in reversed(list(enumerate(bset.blobs)))}
    for digests in bset.plan:
        assert digests == sorted(digests, key=order.__getitem__)
    assert bset.plan[0][0] == bset.blobs[0][0]


def test_one_volume_keeps_the_single_file_name(tmp_path):
    s = build(tmp_path, seed=1, limit=MEDIA["fat32"])
    assert [p.name for p in s.vols] == [f"{STEM}.gapsync"]
    with BundleReader(s.vols[0]) as r:
        assert r.blob_count == len({d for d, _ in s.blobs})


def test_a_blob_larger_than_a_volume_is_refused(tmp_path):
    blobs = [("a" * 64, 1000), ("b" * 64, 400_000)]
    with pytest.raises(InputError, match=r"blob b{64} is 400000 bytes.*300000 bytes.*not split"):
        plan_volumes(metadata_tar_size(METADATA), blobs, LIMIT)
    with pytest.raises(InputError, match="metadata alone"):
        plan_volumes(metadata_tar_size(METADATA), [], 10_240)
    assert plan_volumes(metadata_tar_size(METADATA), [], LIMIT) == [[]]


def test_write_volumes_never_overwrites_and_cleans_up_a_failed_set(tmp_path):
    cache, blobs = make_blobs(tmp_path / "cache", seed=2)
    plan = plan_volumes(metadata_tar_size(METADATA), blobs, LIMIT)
    assert len(plan) > 2
    cache.path(plan[-1][0]).chmod(0o644)
    cache.path(plan[-1][0]).write_bytes(b"corrupt")  # the cache went bad under the last volume
    out = tmp_path / "out"
    with pytest.raises(VerificationError):
        write_volumes(out, STEM, METADATA, plan, cache.path, dict(blobs), 0, lambda p, h: p.with_name(p.name + ".minisig").write_text("x"))
    assert list(out.iterdir()) == []
    (out / f"{STEM}.v02of{len(plan):02d}.gapsync").write_text("mine")
    with pytest.raises(InputError, match="already exists"):
        write_volumes(out, STEM, METADATA, plan, cache.path, dict(blobs), 0, lambda p, h: None)


@pytest.mark.parametrize(("text", "size"), [("4GiB", 4 * 1024**3), ("700MB", 700_000_000), ("4.5G", int(4.5 * 1024**3)),
                                            ("123456", 123456), (5000, 5000), ("fat32", 4 * 1024**3 - 1), ("DVD", 4_700_000_000),
                                            ("25 GB", 25_000_000_000), ("512k", 512 * 1024)])
def test_parse_volume_size(text, size):
    assert parse_volume_size(text) == size


@pytest.mark.parametrize("bad", ["", "4 parsecs", "-1", "0", "GiB", 0, True])
def test_parse_volume_size_refuses(bad):
    with pytest.raises(InputError):
        parse_volume_size(bad)


# -- parity ----------------------------------------------------------------------------------

def test_parity_header(bset):
    names = [p.name for p in bset.parity]
    assert names == [f"{STEM}.p01of02{PARITY_SUFFIX}", f"{STEM}.p02of02{PARITY_SUFFIX}"]
    for j, p in enumerate(bset.parity, 1):
        h, hlen = read_header(p)
        assert (h.k, h.m, h.index, h.stripe, h.bundle) == (len(bset.vols), len(bset.vols) + 2, j, 64 * 1024, STEM)
        assert [(v.name, v.size, v.sha256) for v in h.volumes] == [
            (v.name, v.stat().st_size, hashlib.sha256(v.read_bytes()).hexdigest()) for v in bset.vols]
        assert hlen % 4096 == 0 and p.stat().st_size == hlen + max(v.stat().st_size for v in bset.vols)
        assert h.parity[j - 1][1] == hashlib.sha256(p.read_bytes()[hlen:]).hexdigest()
        assert json.loads(p.read_bytes()[:hlen])["magic"] == "gapsync-parity"


def test_any_two_lost_pieces_are_rebuilt(bset, tmp_path):
    """Every pair of the k + 2 pieces (first and last, middle, a parity file and a volume),
    except both parity files: then there is nothing to repair from (and nothing to repair)."""
    pairs = [pair for pair in itertools.combinations(bset.pieces, 2) if pair != tuple(bset.parity)]
    assert len(pairs) == len(bset.pieces) * (len(bset.pieces) - 1) // 2 - 1
    for n, pair in enumerate(pairs):
        d = copy_set(bset, tmp_path / f"c{n}")
        for p in pair:
            (d / p.name).unlink()
            (d / f"{p.name}.minisig").unlink(missing_ok=True)
        rebuilt = repair(d)
        assert sorted(p.name for p in rebuilt) == sorted(p.name for p in pair)
        assert_whole(bset, d)
        for p in pair:  # the recorded .minisig comes back with its volume
            if p in bset.vols:
                assert (d / f"{p.name}.minisig").read_text() == (bset.out / f"{p.name}.minisig").read_text()


def test_without_any_parity_file_there_is_nothing_to_repair_from(bset, tmp_path):
    d = copy_set(bset, tmp_path / "c")
    for p in bset.parity:
        (d / p.name).unlink()
    r = cli("bundle", "repair", d)
    assert r.code == 2 and "no parity file" in r.err


def test_damaged_and_lost_via_the_cli(bset, tmp_path):
    d = copy_set(bset, tmp_path / "c")
    mid = bset.vols[len(bset.vols) // 2]
    data = bytearray((d / mid.name).read_bytes())
    data[70_001] ^= 0x20  # one flipped bit, same size
    (d / mid.name).write_bytes(data)
    (d / bset.vols[0].name).unlink()
    r = cli("bundle", "repair", d)
    assert r.code == 0, r.err
    assert f"{mid.name}: damaged (sha256" in r.out and f"{bset.vols[0].name}: missing" in r.out
    assert f"rebuilt {d / mid.name}" in r.out
    assert_whole(bset, d)
    r = cli("bundle", "repair", d)
    assert r.code == 0 and "nothing to repair" in r.out


def test_truncated_volume_and_lost_parity_into_another_dir_as_json(bset, tmp_path):
    d = copy_set(bset, tmp_path / "c")
    last = d / bset.vols[-1].name
    last.write_bytes(last.read_bytes()[:-10_240])
    (d / bset.parity[1].name).unlink()
    out = tmp_path / "fixed"
    r = cli("bundle", "repair", *sorted(d.glob("*.gapsync")), d / bset.parity[0].name, "-o", out, "--json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert sorted(report["lost"]) == sorted([last.name, bset.parity[1].name])
    assert {p["name"]: p["status"] for p in report["pieces"]}[last.name] == "damaged"
    assert sorted(Path(p).name for p in report["rebuilt"]) == sorted([last.name, bset.parity[1].name])
    assert (out / last.name).read_bytes() == bset.original[last.name]
    assert (out / bset.parity[1].name).read_bytes() == bset.original[bset.parity[1].name]
    assert len(last.read_bytes()) == len(bset.original[last.name]) - 10_240  # -o leaves the source alone


def test_a_damaged_parity_header_counts_as_one_lost_piece(bset, tmp_path):
    d = copy_set(bset, tmp_path / "c")
    p1 = d / bset.parity[0].name
    raw = bytearray(p1.read_bytes())
    raw[raw.index(b'"stripe": ') + 10] ^= 0x01  # still JSON, different stripe
    p1.write_bytes(raw)
    (d / bset.vols[1].name).unlink()
    assert sorted(p.name for p in repair(d)) == sorted([bset.vols[1].name, bset.parity[0].name])
    assert_whole(bset, d)


def test_three_lost_with_two_parity_files_is_refused(bset, tmp_path):
    d = copy_set(bset, tmp_path / "c")
    for p in (bset.vols[0], bset.vols[2], bset.parity[1]):
        (d / p.name).unlink()
    before = sorted(x.name for x in d.iterdir())
    r = cli("bundle", "repair", d)
    assert r.code == 3
    assert "cannot repair: 3 of the" in r.err and "rebuild at most 2" in r.err
    assert sorted(x.name for x in d.iterdir()) == before  # nothing written, no .partial left


def test_parity_of_another_bundle_is_refused(bset, tmp_path):
    other = build(tmp_path / "other", seed=99)  # same stem, other blobs: same names, other bytes
    other_parity = write_parity(other.vols, 2, other.out, stripe_size=64 * 1024)
    # mixed: parity files of two bundles in one place
    d = copy_set(bset, tmp_path / "mixed")
    shutil.copy(other_parity[0], d / "x.p01of02.gapsync-parity")
    r = cli("bundle", "repair", d)
    assert r.code == 3 and "parity of different bundles" in r.err
    # only the other bundle's parity next to these volumes: nothing of it matches
    d = tmp_path / "foreign"
    d.mkdir()
    for p in bset.vols:
        shutil.copy(p, d / p.name)
    for p in other_parity:
        shutil.copy(p, d / p.name)
    r = cli("bundle", "repair", d)
    assert r.code == 3 and "another bundle" in r.err
    assert [(d / p.name).read_bytes() for p in bset.vols] == [bset.original[p.name] for p in bset.vols]


def test_a_single_volume_with_parity(tmp_path):
    s = build(tmp_path, seed=3, limit=MEDIA["dvd"])
    (parity,) = write_parity(s.vols, 1, s.out)
    assert parity.name == f"{STEM}.p01of01.gapsync-parity"
    original = s.vols[0].read_bytes()
    s.vols[0].unlink()
    assert repair([parity]) == [s.vols[0]]
    assert s.vols[0].read_bytes() == original


def test_a_hostile_header_is_refused(tmp_path):
    h = ParityHeader("b", 1, 2, 1, 4096, (VolumeRecord("../../etc/x.gapsync", 10, "0" * 64),), (("b.p01of01.gapsync-parity", "0" * 64),))
    p = tmp_path / "b.p01of01.gapsync-parity"
    p.write_bytes(h.to_bytes() + bytes(10))
    with pytest.raises(VerificationError, match="unsafe or unexpected file name"):
        read_header(p)
    r = cli("bundle", "repair", p)
    assert r.code == 3 and "no usable parity file" in r.err
    assert [x.name for x in tmp_path.iterdir()] == [p.name]
