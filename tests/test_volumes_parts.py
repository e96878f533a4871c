"""Blobs that span volumes (bundle format 2), with real files end to end: a model file five times
the volume size is carried in parts; the volumes imported in reverse, shuffled with a repeat, with
one lost and rebuilt from parity, or with a SIGKILL in the middle of a part and a re-run, give the
mirror the whole bundle gives, file for file. Hostile parts (wrong bytes, a sha256 forged outside
the signature, a signed table with overlapping, missing or too long parts, a non-canonical part
name) are refused with nothing published, and a gapsync that reads only format 1 refuses a
format 2 volume naming the format it needs."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from gapsync.bundle import archive as bundle_mod
from gapsync.bundle.archive import PART_RE, BundleReader, bundle_format, parse_parts
from gapsync.bundle.volumes import Part, plan_volumes
from gapsync.errors import BundleFormatError
from tests.support.channels import new_channel
from tests.support.cli import cli, isolated_env, run
from tests.support.trees import snapshot

MIB = 1 << 20
BIG = 5 * MIB + 123_457  # five times the volume size and a bit: six parts, the last one short


def _model(base: Path) -> Path:
    (base / "model").mkdir(parents=True)
    rnd = random.Random(16)
    (base / "model" / "weights.dat").write_bytes(rnd.randbytes(BIG))
    (base / "model" / "small.dat").write_bytes(rnd.randbytes(40_000))
    (base / "model" / "config.json").write_text('{"layers": 2}')
    spec = base / "g.yaml"
    spec.write_text("name: p\nchannel: prod\nmodels:\n  - path: ./model\n    name: team/local\n")
    return spec


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> SimpleNamespace:
    """One channel state copied twice: the same release as 1 MiB volumes (+2 parity) and whole."""
    base = tmp_path_factory.mktemp("parts")
    spec = _model(base)
    ch = new_channel(base / "ch", "prod")
    whole_state = base / "whole-state"
    shutil.copytree(ch.state, whole_state)
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", base / "out",
            "--cache", base / "c", "--max-volume-size", "1MiB", "--parity", "2", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    r = cli("bundle", "create", "-f", spec, "--state", whole_state, "--key", ch.keys[0], "-o", base / "one",
            "--cache", base / "c", "--json")
    assert r.code == 0, r.err
    whole = Path(json.loads(r.out)["bundle"])
    ref = base / "ref"
    assert cli("trust", "pin", ch.root, "--mirror", ref).code == 0
    assert cli("import", whole, "--mirror", ref).code == 0
    return SimpleNamespace(base=base, ch=ch, volumes=[Path(v) for v in doc["volumes"]],
                           parity=[Path(p) for p in doc["parity"]], whole=whole, ref=ref)


def published(m: Path) -> dict:
    """What a client sees (everything outside .gapsync) and the model index; the trust state and
    the bundle-level blobs (bundle.json says how many volumes) differ by construction."""
    return {k: v for k, v in snapshot(m).items()
            if not k.startswith(".gapsync") or k.startswith((".gapsync/models", ".gapsync/claims"))}


def mirror(s: SimpleNamespace, name: str) -> Path:
    m = s.base / name
    assert cli("trust", "pin", s.ch.root, "--mirror", m).code == 0
    return m


def import_all(m: Path, order: list[Path]) -> list[dict]:
    out = []
    for v in order:
        r = cli("import", v, "--mirror", m, "--json")
        assert r.code in (0, 5), r.err
        out.append(json.loads(r.out) if r.code == 0 else {})
    return out


def parts_dir_empty(m: Path) -> bool:
    d = m / ".gapsync" / "parts"
    return not d.exists() or not any(d.iterdir())


def members(path: Path) -> list[str]:
    with BundleReader(path) as r:
        return [b.name for b in r.iter_blobs()]


def signed_targets(path: Path) -> dict:
    with BundleReader(path) as r:
        return json.loads(r.read_metadata()["targets.json"])["signed"]


def test_a_blob_five_times_the_volume_size_spans_volumes(sets):
    s = sets
    assert all(v.stat().st_size <= MIB for v in s.volumes)
    signed = signed_targets(s.volumes[0])
    assert signed["x-gapsync"]["format"] == 2
    info = next(t for t in signed["targets"].values() if t["custom"]["kind"] == "bundle-info")
    big = hashlib.sha256((s.base / "model" / "weights.dat").read_bytes()).hexdigest()
    rows = info["custom"]["parts"][big]
    assert len(rows) >= 6 and info["custom"]["volumes"] == len(s.volumes)
    # every volume's parts are what the table says, and together they are the blob
    data = b""
    for i, (vol, off, length, sha) in enumerate(rows, 1):
        name = f"blobs/sha256/{big}.part/{i}"
        assert name in members(s.volumes[vol - 1]) and PART_RE.fullmatch(name)
        assert off == len(data)
        with BundleReader(s.volumes[vol - 1]) as r:
            m = next(b for b in r.iter_blobs() if b.name == name)
            chunk = b"".join(r.chunks(m))
        assert len(chunk) == length and hashlib.sha256(chunk).hexdigest() == sha
        data += chunk
    assert hashlib.sha256(data).hexdigest() == big and len(data) == BIG
    # the same metadata in every volume: each verifies alone
    m = mirror(s, "m-verify")
    for v in s.volumes:
        r = cli("bundle", "verify", v, "--mirror", m, "--json")
        assert r.code == 0, r.err
    assert json.loads(r.out)["volumes_needed"] == sorted({row[0] for row in rows})


def test_reverse_order_gives_the_whole_bundles_mirror(sets):
    m = mirror(sets, "m-reverse")
    results = import_all(m, sets.volumes[::-1])
    assert results[-1]["pending"] == [] and results[-1]["volumes_needed"] == []
    assert any(r.get("pending") for r in results[:-1])  # the model waited for its parts
    assert published(m) == published(sets.ref)
    assert parts_dir_empty(m)


def test_shuffled_with_a_repeat_gives_the_whole_bundles_mirror(sets):
    m = mirror(sets, "m-shuffle")
    order = list(sets.volumes) + [sets.volumes[2]]
    random.Random(5).shuffle(order)
    import_all(m, order)
    assert published(m) == published(sets.ref)
    assert parts_dir_empty(m)
    assert cli("import", sets.volumes[1], "--mirror", m).code == 5  # a repeat afterwards: nothing new


def test_a_lost_part_volume_is_rebuilt_from_parity_then_imported(sets, tmp_path):
    d = tmp_path / "medium"
    d.mkdir()
    for p in sets.volumes + sets.parity:
        shutil.copy(p, d / p.name)
        if p.with_name(p.name + ".minisig").exists():
            shutil.copy(p.with_name(p.name + ".minisig"), d / (p.name + ".minisig"))
    lost = [d / sets.volumes[2].name, d / sets.volumes[4].name]
    keep = [x.read_bytes() for x in lost]
    lost[0].unlink()
    with lost[1].open("r+b") as f:  # damaged in the middle of a part
        f.seek(600_000)
        f.write(b"\xff" * 16)
    r = cli("bundle", "repair", d)
    assert r.code == 0, r.err
    assert [x.read_bytes() for x in lost] == keep
    m = mirror(sets, "m-repaired")
    import_all(m, sorted(d.glob("*.gapsync")))
    assert published(m) == published(sets.ref)


def test_sigkill_in_the_middle_of_a_part_then_the_rerun(sets):
    m = mirror(sets, "m-kill")
    first, rest = sets.volumes[1], [v for v in sets.volumes if v != sets.volumes[1]]
    r = run("import", str(first), "--mirror", str(m), env=isolated_env(GAPSYNC_KILL_AT="import.part-chunk:1"))
    assert r.returncode == -9, (r.returncode, r.stderr)
    staged = m / ".gapsync" / "parts"
    assert staged.is_dir() and not list(staged.glob("*/*.ok"))  # bytes of the part, no marker: not done
    r = run("import", str(first), "--mirror", str(m))
    assert r.returncode == 0, r.stderr
    assert list(staged.glob("*/*.ok"))
    import_all(m, rest)
    assert published(m) == published(sets.ref)
    assert parts_dir_empty(m)


def test_a_format_1_set_is_still_written_and_read(tmp_path):
    """No blob larger than a volume: format 1, which every gapsync reads (the v1 fixture)."""
    spec = _model(tmp_path)
    (tmp_path / "model" / "weights.dat").write_bytes(os.urandom(300_000))
    ch = new_channel(tmp_path / "ch", "prod")
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "out",
            "--cache", tmp_path / "c", "--max-volume-size", "1MiB", "--json")
    assert r.code == 0, r.err
    volumes = [Path(v) for v in json.loads(r.out)["volumes"]]
    assert signed_targets(volumes[0])["x-gapsync"]["format"] == 1
    assert not any(".part/" in n for v in volumes for n in members(v))
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    import_all(m, volumes[::-1])
    assert (m / "models/hf/models--team--local").is_dir()


def test_a_v1_only_gapsync_refuses_a_format_2_volume_naming_it(sets, monkeypatch):
    part_volume = next(v for v in sets.volumes if any(".part/" in n for n in members(v)))
    monkeypatch.setattr(bundle_mod, "READ_FORMATS", (1,))
    m = mirror(sets, "m-old")
    r = cli("import", part_volume, "--mirror", m)
    assert r.code == 3 and "needs a gapsync that reads format 2" in r.err, r.err
    assert not (m / "models").exists()
    with pytest.raises(BundleFormatError, match="reads format 7"):
        bundle_format({"x-gapsync": {"format": 7}}, "x")
    assert bundle_format({"x-gapsync": {"channel": "p"}}, "x") == 1  # the first bundles wrote no format


# -- hostile ---------------------------------------------------------------------------------

def _copy(s: SimpleNamespace, d: Path) -> list[Path]:
    d.mkdir()
    return [Path(shutil.copy(v, d / v.name)) for v in s.volumes]


def _member_offset(path: Path, name: str) -> tuple[int, int]:
    with BundleReader(path) as r:
        if name.startswith("metadata/"):
            ti = next(t for t in r._metadata if t.name == name)
        else:
            ti = next(b for b in r.iter_blobs() if b.name == name)._info
        return ti.offset_data, ti.size


def _first_part(path: Path) -> str:
    return next(n for n in members(path) if ".part/" in n)


def test_a_part_with_wrong_bytes_is_refused_and_not_staged(sets, tmp_path):
    vols = _copy(sets, tmp_path / "v")
    v = next(x for x in vols if any(".part/" in n for n in members(x)))
    off, size = _member_offset(v, _first_part(v))
    with v.open("r+b") as f:
        f.seek(off + size // 2)
        f.write(b"\x00\x01\x02\x03")
    m = mirror(sets, "m-wrong")
    r = cli("import", v, "--mirror", m)
    assert r.code == 3 and "does not match" in r.err, r.err
    assert not list((m / ".gapsync").glob("parts/*/*.ok"))
    assert not (m / "models").exists()


def test_a_part_sha256_forged_outside_the_signature_is_refused(sets, tmp_path):
    """The part's bytes replaced and its sha256 in targets.json replaced to match: the table is
    signed, so the volume no longer verifies."""
    vols = _copy(sets, tmp_path / "v")
    v = next(x for x in vols if any(".part/" in n for n in members(x)))
    name = _first_part(v)
    off, size = _member_offset(v, name)
    raw = bytearray(v.read_bytes())
    old = hashlib.sha256(raw[off:off + size]).hexdigest()
    raw[off:off + size] = bytes(size)
    new = hashlib.sha256(bytes(size)).hexdigest()
    moff, msize = _member_offset(v, "metadata/targets.json")
    meta = bytes(raw[moff:moff + msize])
    assert meta.count(old.encode()) == 1
    raw[moff:moff + msize] = meta.replace(old.encode(), new.encode())
    v.write_bytes(bytes(raw))
    m = mirror(sets, "m-forged")
    r = cli("import", v, "--mirror", m)
    assert r.code == 3, r.err
    assert not (m / "models").exists() and not list((m / ".gapsync").glob("parts/*/*.ok"))


def _rename_member(path: Path, old: str, new: str) -> None:
    """Rewrite one member's name in its ustar header (same block, checksum recomputed)."""
    raw = bytearray(path.read_bytes())
    pos = raw.find(old.encode() + b"\0")
    assert pos >= 0 and pos % 512 == 0
    hdr = bytearray(raw[pos:pos + 512])
    hdr[0:100] = new.encode().ljust(100, b"\0")
    hdr[148:156] = b" " * 8
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    raw[pos:pos + 512] = hdr
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("suffix", ["0{n}", "{n}/", "{n}x", "-{n}", " {n}"])
def test_a_part_name_not_in_the_canonical_form_is_refused(sets, tmp_path, suffix):
    vols = _copy(sets, tmp_path / "v")
    v = next(x for x in vols if any(".part/" in n for n in members(x)))
    name = _first_part(v)
    stem, n = name.rsplit("/", 1)
    _rename_member(v, name, f"{stem}/{suffix.format(n=n)}")
    with pytest.raises(BundleFormatError, match="unexpected member"):
        BundleReader(v)


def test_a_part_beside_the_whole_blob_is_refused(sets, tmp_path):
    vols = _copy(sets, tmp_path / "v")
    v = next(x for x in vols if any(".part/" in n for n in members(x)))
    name = _first_part(v)
    _rename_member(v, name, name.split(".part/")[0])  # the part now claims to be the whole blob
    m = mirror(sets, "m-whole")
    r = cli("import", v, "--mirror", m)
    assert r.code == 3 and "splits it into parts" in r.err, r.err


def _rows(total: int) -> list[list]:
    h = "a" * 64
    return [[1, 0, 100, h], [2, 100, total - 100, h]]


@pytest.mark.parametrize("mutate, reason", [
    (lambda r: r.__setitem__(1, [2, 90, r[1][2] + 10, r[1][3]]), "overlaps"),
    (lambda r: r.__setitem__(1, [2, 110, r[1][2] - 10, r[1][3]]), "leaves a gap"),
    (lambda r: r.pop(), "expected 2 to"),
    (lambda r: r.__setitem__(1, [2, 100, r[1][2] - 1, r[1][3]]), "a part is missing"),
    (lambda r: r.__setitem__(1, [2, 100, r[1][2] + 1, r[1][3]]), "runs past the end"),
    (lambda r: r.append([3, 5000, 1 << 40, "b" * 64]), "runs past the end"),
    (lambda r: r.__setitem__(1, [1, 100, r[1][2], r[1][3]]), "increasing volumes"),
    (lambda r: r.__setitem__(1, [9, 100, r[1][2], r[1][3]]), "increasing volumes"),
    (lambda r: r.__setitem__(0, [1, 0, 100, "A" * 64]), "not \\[volume"),
    (lambda r: r.__setitem__(0, [True, 0, 100, "a" * 64]), "not \\[volume"),
    (lambda r: r.__setitem__(0, [1, 0, 0, "a" * 64]), "offset|empty"),
])
def test_a_signed_parts_table_that_does_not_tile_the_blob_is_refused(mutate, reason):
    digest, total = "c" * 64, 5000
    rows = _rows(total)
    mutate(rows)
    with pytest.raises(BundleFormatError, match=reason):
        parse_parts({digest: rows}, {digest: total}, 3, "b")
    good = parse_parts({digest: _rows(total)}, {digest: total}, 3, "b")
    assert [(p.offset, p.length) for p in good[digest]] == [(0, 100), (100, total - 100)]
    with pytest.raises(BundleFormatError, match="not a target"):
        parse_parts({"d" * 64: _rows(total)}, {digest: total}, 3, "b")


def test_a_signed_table_with_overlapping_parts_is_refused_at_import(tmp_path, monkeypatch):
    """Signed with the channel's real key (a signer's mistake or a stolen key): the importer
    still refuses a table whose parts overlap, before anything is staged."""
    import gapsync.bundler.create as create_mod

    real = create_mod.parts_table

    def overlapping(plan):
        table = real(plan)
        for rows in table.values():
            rows[1] = [rows[1][0], rows[1][1] - 512, rows[1][2], rows[1][3]]
        return table

    monkeypatch.setattr(create_mod, "parts_table", overlapping)
    spec = _model(tmp_path)
    ch = new_channel(tmp_path / "ch", "prod")
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "out",
            "--cache", tmp_path / "c", "--max-volume-size", "1MiB", "--json")
    assert r.code == 0, r.err
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    r = cli("import", json.loads(r.out)["volumes"][0], "--mirror", m)
    assert r.code == 3 and "overlaps" in r.err, r.err
    assert not (m / "models").exists()


def test_plan_splits_at_any_size_and_keeps_every_volume_within_the_limit():
    blobs = [("a" * 64, 3000), ("b" * 64, 5 * MIB), ("c" * 64, 200_000), ("d" * 64, 1)]
    for limit in (MIB, MIB + 12345, 3 * MIB):
        plan = plan_volumes(8192, blobs, limit, split=True)
        assert plan == plan_volumes(8192, blobs, limit, split=True)
        parts = [e for vol in plan for e in vol if isinstance(e, Part)]
        assert sum(p.length for p in parts) == 5 * MIB and {p.digest for p in parts} == {"b" * 64}
        assert [p.offset for p in parts] == [sum(q.length for q in parts[:i]) for i in range(len(parts))]
        assert [p.volume for p in parts] == sorted({p.volume for p in parts})
        for i, vol in enumerate(plan, 1):
            assert all(p.volume == i for p in vol if isinstance(p, Part))
            size = 8192 + sum(512 + -(-(p.length if isinstance(p, Part) else dict(blobs)[p]) // 512) * 512 for p in vol)
            assert size + 1024 <= limit
    with pytest.raises(Exception, match="does not split"):
        plan_volumes(8192, blobs, MIB)
    small = plan_volumes(20480, blobs, 70_000, split=True)  # less room than MIN_PART: parts of any size
    parts = [e for vol in small for e in vol if isinstance(e, Part)]
    assert sum(p.length for p in parts if p.digest == "b" * 64) == 5 * MIB
    assert sum(p.length for p in parts if p.digest == "c" * 64) == 200_000  # larger than these volumes too
    assert all(p.length <= 70_000 for p in parts)


def test_exfat_means_one_file(tmp_path):
    from gapsync.cli.options import volume_size

    assert volume_size(None, "exfat") is None
    assert volume_size("1MiB", "exfat") == MIB
    assert volume_size(None, "fat32") == 4 * 1024**3 - 1


def test_tar_members_name_fits_ustar():
    name = f"blobs/sha256/{'f' * 64}.part/999999"
    assert len(name) <= 100 and PART_RE.fullmatch(name)
    ti = tarfile.TarInfo(name)
    assert ti.name == name


def test_wrong_bytes_in_the_part_that_completes_the_blob_are_refused_then_the_good_copy_finishes(sets, tmp_path):
    """The last part is checked in the same pass as the whole blob: a bad one is refused, left
    unmarked, nothing of the model is published; the good volume then completes it."""
    vols = _copy(sets, tmp_path / "v")
    part_vols = [v for v in vols if any(".part/" in n for n in members(v))]
    last = part_vols[-1]
    m = mirror(sets, "m-last")
    import_all(m, [v for v in sets.volumes if v.name != last.name])
    assert not (m / "models").exists()
    off, size = _member_offset(last, _first_part(last))
    with last.open("r+b") as f:
        f.seek(off + size - 100)
        f.write(b"\xaa" * 10)
    r = cli("import", last, "--mirror", m)
    assert r.code == 3 and "does not match" in r.err, r.err
    assert not (m / "models").exists()
    r = cli("import", next(v for v in sets.volumes if v.name == last.name), "--mirror", m, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["pending"] == []
    assert published(m) == published(sets.ref)
    assert parts_dir_empty(m)


def test_repair_checks_rebuilt_parts_against_the_signed_table(sets, tmp_path):
    """What ``bundle repair`` runs on a rebuilt volume before it gets its name: a volume with
    parts passes under its own name, not under another volume's (the table says where each part
    is), and not with a part whose bytes differ from its signed sha256."""
    from gapsync.bundle.parity import _Reference, check_rebuilt_volume
    from gapsync.errors import VerificationError

    v = next(x for x in sets.volumes[1:] if any(".part/" in n for n in members(x)))
    with fsutil_open(v) as f:
        check_rebuilt_volume(v, f, _Reference())
    other = sets.volumes[0].name
    with fsutil_open(v) as f, pytest.raises(VerificationError, match="puts in volume"):
        check_rebuilt_volume(tmp_path / other, f, _Reference())
    bad = Path(shutil.copy(v, tmp_path / v.name))
    off, size = _member_offset(bad, _first_part(bad))
    with bad.open("r+b") as f:
        f.seek(off + 7)
        f.write(b"\x00\xff")
    with fsutil_open(bad) as f, pytest.raises(VerificationError, match="does not match its signed sha256"):
        check_rebuilt_volume(bad, f, _Reference())


def fsutil_open(p: Path):
    from gapsync import fsutil

    return fsutil.open_regular(p)


def test_verify_of_a_subset_says_which_volumes_are_missing(sets, tmp_path):
    d = tmp_path / "subset"
    d.mkdir()
    for v in sets.volumes[:2]:
        shutil.copy(v, d / v.name)
    m = mirror(sets, "m-subset")
    r = cli("bundle", "verify", d / sets.volumes[1].name, "--mirror", m, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["volumes_absent"] == [v.name for v in sets.volumes[2:]]
    r = cli("bundle", "verify", d / sets.volumes[1].name, "--mirror", m)
    assert "not next to it: " + sets.volumes[2].name in r.out and "still missing: volume(s)" in r.out


def test_a_staged_part_damaged_on_the_mirrors_disk_is_dropped_and_asked_for_again(sets):
    m = mirror(sets, "m-rot")
    part_vols = [v for v in sets.volumes if any(".part/" in n for n in members(v))]
    import_all(m, [v for v in sets.volumes if v != part_vols[-1]])
    data = next((m / ".gapsync" / "parts").glob("*/data"))
    with data.open("r+b") as f:  # inside part 1
        f.seek(1000)
        f.write(b"\x13\x37")
    r = cli("import", part_vols[-1], "--mirror", m)
    assert r.code == 3 and "staged part(s) 1 no longer match" in r.err, r.err
    assert not (m / "models").exists()
    r = cli("bundle", "verify", part_vols[0], "--mirror", m, "--json")
    assert json.loads(r.out)["volumes_needed"] == sorted({1 + sets.volumes.index(part_vols[0]),
                                                          1 + sets.volumes.index(part_vols[-1])})
    import_all(m, [part_vols[0], part_vols[-1]])
    assert published(m) == published(sets.ref)
    assert parts_dir_empty(m)


def test_a_staged_part_is_written_behind_from_its_offset(tmp_path, monkeypatch):
    """A part is staged at its offset in the blob's file and written to disk while the volume is
    still read (``hashing.WriteBehind``): the steps asked of the kernel are contiguous from the
    part's offset, and the staged bytes are the part's."""
    from gapsync import hashing
    from gapsync.bundle.archive import SignedPart
    from gapsync.mirror.parts import PartStore

    monkeypatch.setattr(hashing.WriteBehind, "EVERY", 64 << 10)
    advised: list[tuple[int, int]] = []
    real = hashing.write_back
    monkeypatch.setattr(hashing, "write_back", lambda fd, off, n: (advised.append((off, n)), real(fd, off, n)))
    data = os.urandom(300_007)
    blob = os.urandom(1000) + data
    part = SignedPart(hashlib.sha256(blob).hexdigest(), 2, 2, 1000, len(data), hashlib.sha256(data).hexdigest())
    store = PartStore(tmp_path / "parts")
    store.put(part, [data[i:i + 65536] for i in range(0, len(data), 65536)], "part 2")
    assert store.has(part)
    assert advised[0][0] == 1000 and all(a + n == b for (a, n), (b, _) in zip(advised, advised[1:], strict=False))
    assert (tmp_path / "parts" / part.digest / "data").read_bytes()[1000:] == data
