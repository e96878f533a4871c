"""Issue 14 §1 and §4: what a loader opens is scanned as the loader sees it, at any nesting, and
what cannot be read, or costs more than its budget, is a high finding (blocked by default).

The malicious pickle would run os.system if loaded; it is only written, compressed and scanned.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile
import zlib
from datetime import UTC
from pathlib import Path

import pytest

from gapsync.model import Severity
from gapsync.scanner.budget import BudgetLimits
from gapsync.scanner.models import ModelScanner
from tests.support.samples import is_malicious, rules, scan, write

EVIL = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."


def zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


def lz4f(data: bytes) -> bytes:
    import lz4.frame

    return lz4.frame.compress(data)


def zipped(members: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return b.getvalue()


def tarred(members: dict[str, bytes], fmt=tarfile.PAX_FORMAT) -> bytes:
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return b.getvalue()


def v7_tar(name: str, data: bytes) -> bytes:
    """A pre-POSIX tar member: no "ustar" magic, only the header checksum says it is a tar."""
    h = bytearray(512)
    h[0:len(name)] = name.encode()
    h[100:108] = b"0000644\0"
    h[124:136] = f"{len(data):011o}\0".encode()
    h[136:148] = b"00000000000\0"
    h[156:157] = b"0"
    h[148:156] = b" " * 8
    h[148:156] = f"{sum(h):06o}\0 ".encode()
    return bytes(h) + data + b"\0" * (-len(data) % 512) + b"\0" * 1024


def denied(findings) -> list[str]:
    return [f.location or "" for f in findings if f.rule == "pickle.global.denied" and "os.system" in f.message]


COMPRESSORS = {
    "gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress, "zst": zstd, "lz4": lz4f,
    "zlib": zlib.compress,
    "lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
}


@pytest.mark.parametrize("ext", sorted(COMPRESSORS))
def test_every_compression_is_opened_by_its_content(tmp_path, ext):
    # named .bin: the content decides, not the name
    fs = scan(write(tmp_path, f"model.{ext}.bin", COMPRESSORS[ext](EVIL)))
    assert denied(fs) and is_malicious(fs)


def test_the_zstd_model_of_the_issue_and_inside_a_zip(tmp_path):
    (tmp_path / "m").mkdir()
    fs = scan(write(tmp_path, "m/model.pkl.zst", zstd(EVIL)))
    assert denied(fs) == ["<zstd>"] and "format.unrecognised" not in rules(fs)
    fs = scan(write(tmp_path, "m.zip", zipped({"model.pkl.zst": zstd(EVIL)}, zipfile.ZIP_STORED)))
    assert denied(fs) == ["model.pkl.zst!<zstd>"]


def test_several_zstd_frames_and_a_skippable_frame_are_all_read(tmp_path):
    skippable = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"junk"
    fs = scan(write(tmp_path, "x.zst", skippable + zstd(b"\x80\x02N.") + zstd(EVIL)))
    assert denied(fs)


@pytest.mark.parametrize("ext", ["gz", "bz2", "xz", "lz4", "zlib", "zst"])
def test_the_payload_in_a_second_member_or_stream(tmp_path, ext):
    # gzip.open, bz2.open, lzma.open, lz4.frame.open, zstd and joblib read concatenated streams
    compress = COMPRESSORS[ext]
    assert denied(scan(write(tmp_path, f"m.{ext}", compress(b"\x80\x04N.") + compress(EVIL))))
    if ext == "gz":  # zero padding after a member is skipped, as gzip does, and is not damage
        assert not scan(write(tmp_path, "pad.gz", gzip.compress(b"\x80\x04N.") + bytes(100)))


def test_zip_entries_compressed_with_lzma_and_zstd(tmp_path):
    assert denied(scan(write(tmp_path, "l.zip", zipped({"m.pkl": EVIL}, zipfile.ZIP_LZMA))))
    # method 93 (zstd, zipfile in Python 3.14): a stored entry rewritten by hand
    import struct

    raw = bytearray(zipped({"m.pkl": zstd(EVIL)}, zipfile.ZIP_STORED))
    for sig, method_at, crc_at in ((b"PK\x03\x04", 8, 14), (b"PK\x01\x02", 10, 16)):
        i = raw.find(sig)
        raw[i + method_at:i + method_at + 2] = struct.pack("<H", 93)
        raw[i + crc_at:i + crc_at + 4] = struct.pack("<I", zlib.crc32(EVIL))
        raw[i + crc_at + 8:i + crc_at + 12] = struct.pack("<I", len(EVIL))
    assert denied(scan(write(tmp_path, "z.zip", bytes(raw))))


def test_any_nesting_zip_in_tar_xz_in_gzip(tmp_path):
    inner = zipped({"model.pkl.zst": zstd(EVIL)})
    data = gzip.compress(lzma.compress(tarred({"dir/inner.zip": inner})))
    fs = scan(write(tmp_path, "x.tar.xz.gz", data))
    assert denied(fs) == ["<gzip>!<xz>!dir/inner.zip!model.pkl.zst!<zstd>"]
    # and the other way round: a tar.bz2 inside a zip inside a 7z-less zip, lz4 innermost
    data = zipped({"a.zip": zipped({"b.tar.bz2": bz2.compress(tarred({"c.lz4": lz4f(EVIL)}))})})
    assert denied(scan(write(tmp_path, "y.zip", data))) == ["a.zip!b.tar.bz2!<bzip2>!c.lz4!<lz4>"]


def test_compression_known_only_by_its_name(tmp_path):
    # a raw .lzma with unusual properties has no magic number; lzma.open(name) reads it
    raw = lzma.compress(EVIL, format=lzma.FORMAT_ALONE, filters=[{"id": lzma.FILTER_LZMA1, "lc": 2, "lp": 1}])
    assert raw[0] != 0x5D
    assert denied(scan(write(tmp_path, "model.pkl.lzma", raw)))
    # an old V7 tar (no "ustar" magic) named .tar: pandas.read_pickle opens it by the name
    fs = scan(write(tmp_path, "model.tar", v7_tar("model.pkl", EVIL)))
    assert denied(fs)
    assert "format.unrecognised" in rules(scan(write(tmp_path, "notes.tar", b"just text" * 100)))


@pytest.mark.parametrize("name", ["model.pkl.gz", "model.pkl.zst", "model.pkl.bz2", "model.pkl.xz"])
def test_a_name_that_promises_compression_the_bytes_lack_is_high(tmp_path, name):
    fs = scan(write(tmp_path, name, b"this is not compressed at all, but a loader would try"))
    assert "compressed.unreadable" in rules(fs) and is_malicious(fs)
    # and the bytes are also read as what they are: pickle.load(open(name)) ignores the name
    fs = scan(write(tmp_path, name, b"cos\nsystem\n(S'id'\ntR."))
    assert "compressed.unreadable" in rules(fs) and denied(fs)


def test_corrupt_compression_and_damaged_archives_are_high(tmp_path):
    # damage inside what the scanner reads: pickles in a row (a loader reads on to the damage),
    # a tar (read to its end)
    for data in (b"\x80\x04N." * 4000, tarred({"a.bin": bytes(range(256)) * 64})):
        gz = gzip.compress(data)
        fs = scan(write(tmp_path, "a.gz", gz[:len(gz) // 2] + b"\xff" * 64))
        assert rules(fs) & {"compressed.corrupt", "pickle.malformed", "tar.corrupt"} and is_malicious(fs), rules(fs)
    tar = tarred({"a.txt": b"x" * 2000, "b.txt": b"y" * 2000})
    fs = scan(write(tmp_path, "b.tar", tar[:1024 + 512 + 100]))
    assert "tar.corrupt" in rules(fs) and is_malicious(fs)
    fs = scan(write(tmp_path, "c.zip", b"PK\x03\x04" + b"\0" * 60))
    assert "zip.malformed" in rules(fs) and is_malicious(fs)


def test_7z_is_never_waved_through(tmp_path):
    fs = scan(write(tmp_path, "m.zip", zipped({"payload.7z": b"7z\xbc\xaf\x27\x1c" + b"\0" * 64})))
    assert "archive.unsupported" in rules(fs) and is_malicious(fs)


def test_bytes_that_start_like_a_pickle_but_do_not_parse_are_high(tmp_path):
    for data in (b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00\xff",  # PROTO, FRAME, unknown opcode
                 b"\x80\x02cos\nsystem\n",  # cut off
                 b"cos\nsystem\n(S'id'\ntRg99\n."):  # GET of a memo index never PUT
        fs = scan(write(tmp_path, "p.bin", data))
        assert is_malicious(fs), data
        bad = [f for f in fs if f.rule.startswith(("pickle.malformed", "pickle.truncated", "pickle.opcode"))]
        assert bad and all(f.severity is Severity.HIGH for f in bad)
        assert "cannot be read the way the unpickler reads it" in bad[0].message
    # text that happens to start with an opcode byte is still not a pickle
    assert not is_malicious(scan(write(tmp_path, "vocab.txt", b"cat\ndog\nfish\n")))


# --- §4 budgets --------------------------------------------------------------------------------


def nested_zip_bomb(depth: int = 5, width: int = 8) -> bytes:
    data = b"\x80\x04N."
    for level in range(depth):
        data = zipped({f"l{level}_{i}.{'zip' if level else 'pkl'}": data for i in range(width)})
    return data


def budget_of(findings) -> set[str]:
    return {f.evidence.get("budget") for f in findings if f.rule == "scan.budget"}


def test_the_nested_zip_bomb_is_refused_by_its_entry_budget(tmp_path):
    bomb = nested_zip_bomb()
    assert len(bomb) < 10_000
    fs = scan(write(tmp_path, "bomb.zip", bomb))
    assert budget_of(fs) == {"entries"} and is_malicious(fs)
    f = next(f for f in fs if f.rule == "scan.budget")
    assert f.severity is Severity.HIGH and "container entries" in f.message


def test_decompression_bomb_is_refused_by_its_byte_budget(tmp_path):
    b = io.BytesIO()
    with gzip.GzipFile(fileobj=b, mode="wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w|") as tf:
        info = tarfile.TarInfo("zeros.bin")
        info.size = 150 << 20
        tf.addfile(info, io.BytesIO(bytes(info.size)))  # 150 MiB of zeros in under 1 MB
    fs = scan(write(tmp_path, "zeros.tar.gz", b.getvalue()))
    assert budget_of(fs) == {"decompressed_bytes"}


def test_pickle_work_and_memory_budgets(tmp_path):
    fs = scan(write(tmp_path, "ops.pkl", b"(" + b"N0" * 1_500_000 + b"N."))  # 3 M opcodes in 3 MB
    assert budget_of(fs) == {"parse_steps"}
    fs = scan(write(tmp_path, "memo.pkl", b"\x80\x04" + b"N\x94" * 1_200_000 + b"."))  # 1.2 M memo entries
    assert budget_of(fs) == {"pickle_objects"}
    # many small pickles in a row are charged too (each as 16 opcodes at least)
    fs = scan(write(tmp_path, "many.pkl", b"N." * 200_000))
    assert budget_of(fs) == {"parse_steps"}


def test_depth_budget_and_limits_from_the_policy(tmp_path):
    data = EVIL
    for _ in range(4):
        data = gzip.compress(data)
    path = write(tmp_path, "deep.gz", data)
    assert denied(scan(path))
    tight = ModelScanner(BudgetLimits(depth=2))
    fs = list(tight.scan_file(path, "deep.gz"))
    assert budget_of(fs) == {"depth"} and "nested more than 2 deep" in fs[0].message
    # entries: max(limit, size // 512): the floor, or one entry per 512 bytes of the artifact
    small_bomb = write(tmp_path, "z.zip", nested_zip_bomb(3, 8))
    assert "scan.budget" not in rules(scan(small_bomb))
    fs = list(ModelScanner(BudgetLimits(entries=100)).scan_file(small_bomb, "z.zip"))
    assert budget_of(fs) == {"entries"}


def test_benign_files_fit_their_budgets(tmp_path):
    import pickle

    vocab = pickle.dumps({f"token{i}": i for i in range(300_000)}, 4)  # 1 M opcodes in ~6 MB
    assert not scan(write(tmp_path, "vocab.pkl", vocab))
    assert not scan(write(tmp_path, "vocab.pkl.gz", gzip.compress(vocab)))
    many = zipped({f"data/{i}": b"\0" * 64 for i in range(4500)}, zipfile.ZIP_STORED)
    assert "scan.budget" not in rules(scan(write(tmp_path, "many.zip", many)))
    # past the floor, an archive may have one entry per 512 bytes (a flat zip of tiny entries
    # beyond that costs too much per byte to scan within the 2 s of a 10 MB input)
    many = zipped({f"data/{i}": bytes(600) for i in range(12_000)}, zipfile.ZIP_STORED)
    assert "scan.budget" not in rules(scan(write(tmp_path, "many.zip", many)))
    tiny = zipped({f"d/{i}": b"x" for i in range(12_000)}, zipfile.ZIP_STORED)
    assert budget_of(scan(write(tmp_path, "tiny.zip", tiny))) == {"entries"}


# --- end to end: bundle create and import under the default policy ------------------------------


def test_bundle_create_and_import_block_a_compressed_malicious_model(tmp_path):
    from tests.support.channels import new_channel
    from tests.support.cli import cli
    from tests.support.trees import snapshot

    d = tmp_path / "model" / "m"
    d.mkdir(parents=True)
    (d / "model.pkl.zst").write_bytes(zstd(EVIL))
    (tmp_path / "model" / "weights.zip").write_bytes(zipped({"inner/model.pkl.zst": zstd(EVIL)}))
    spec = tmp_path / "g.yaml"
    spec.write_text("name: m\nchannel: prod\nmodels:\n  - path: ./model\n    name: team/zst\n")
    ch = new_channel(tmp_path, "prod")

    def create(out, *extra):
        return cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", out,
                   "--cache", ch.base / "cache", "--report", tmp_path / "r.html", *extra)

    r = create(tmp_path / "o1")
    assert r.code == 4 and "model:team/zst@main" in r.err, r.err
    assert "os.system" in (tmp_path / "r.html").read_text()
    # a permissive policy lets it into a bundle; the air side's default policy blocks it again
    lax = tmp_path / "lax.yaml"
    lax.write_text("models:\n  block_at: none\n  warn_at: none\n")
    r = create(tmp_path / "o2", "--policy", lax, "--json")
    assert r.code == 0, r.err
    import json

    bundle = Path(json.loads(r.out)["bundle"])
    m = tmp_path / "mirror"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    before = snapshot(m)
    r = cli("import", bundle, "--mirror", m)
    assert r.code == 4 and "model:team/zst@main" in r.err, r.err
    assert snapshot(m) == before


def test_budgets_come_from_the_policy_and_bad_ones_are_refused(tmp_path):
    from gapsync.assess import scan_subjects
    from gapsync.errors import InputError
    from gapsync.policies.schema import load_policy
    from gapsync.scanner.subject import ScanSubject, SubjectFile

    pol = tmp_path / "p.yaml"
    pol.write_text("models:\n  scan_budget: {entries: 100, decompressed_bytes: 1GiB, cpu_seconds: 2}\n")
    p = load_policy(pol)
    assert dict(p.model_scan_budget) == {"entries": 100, "decompressed_bytes": 1 << 30, "cpu_seconds": 2.0}
    for bad in ("{entries: -1}", "{entries: true}", "{depth: 1.5}", "{decompressed_bytes: lots}", "{seconds: 3}",
                "[1]"):
        pol.write_text(f"models:\n  scan_budget: {bad}\n")
        with pytest.raises(InputError, match="scan_budget"):
            load_policy(pol)
    # bundle create and import scan through scan_subjects: one budget for all of an artifact's files
    bomb = write(tmp_path, "bomb.zip", nested_zip_bomb(3, 8))
    subject = ScanSubject("model", "team/m", "main", [SubjectFile("bomb.zip", "0" * 64, bomb.stat().st_size, bomb)])
    from datetime import datetime

    now = datetime.now(UTC)
    assert scan_subjects([subject], load_policy(None), None, now).blocked() == []
    pol.write_text("models:\n  scan_budget: {entries: 100}\n")
    out = scan_subjects([subject], load_policy(pol), None, now)
    assert out.blocked() == ["model:team/m@main"]
    assert [f.evidence["budget"] for f in out.findings["model:team/m@main"] if f.rule == "scan.budget"] == ["entries"]


def test_protobuf_fields_are_charged_as_parse_steps(tmp_path):
    from tests.support.samples import pb_bytes, pb_int

    node = pb_bytes(4, "Relu") + pb_bytes(7, "")
    onnx = pb_int(1, 7) + pb_bytes(7, b"".join(pb_bytes(1, node) for _ in range(100_000)))  # 1 MB, 100,000 nodes
    path = write(tmp_path, "many-nodes.onnx", onnx)
    assert "scan.budget" not in rules(scan(path))  # the floor (2 M steps) covers 300,000 fields
    fs = list(ModelScanner(BudgetLimits(parse_steps=100_000)).scan_file(path, "many-nodes.onnx"))
    assert budget_of(fs) == {"parse_steps"}  # max(100,000, size // 4) steps, three per field


def test_hdf5_full_of_decoy_configs_is_refused_fast(tmp_path):
    hdf = b"\x89HDF\r\n\x1a\n" + bytes(504)
    fs = scan(write(tmp_path, "decoys.h5", hdf + b'{"class_name": "x"} ' * 300 + b'{"class_name": "Sequential"}'))
    assert "hdf5.unreadable" in rules(fs) and is_malicious(fs)  # the real config cannot be told from decoys
    # one candidate that runs to the end of a large file is parsed once, not once per marker
    fs = scan(write(tmp_path, "long.h5", hdf + b'{"class_name": "x", "a": [' + b"1," * 2_000_000))
    assert rules(fs) == {"hdf5.no_model_config"}
