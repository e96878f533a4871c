"""Containers: zip tricks, torch zips, joblib compression, .npy/.npz object arrays."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
import zipfile
import zlib

import pytest

from tests.support.samples import globals_found, is_malicious, rules, scan, stack_global_print, write

PAYLOAD = stack_global_print()


def make_zip(entries: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in entries:
            z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2])
def test_torch_zip_any_archive_name_any_extension(tmp_path, compression):
    data = make_zip([("whatever/data.pkl", PAYLOAD), ("whatever/version", b"3\n"),
                     ("whatever/data/0", b"\x00" * 64)], compression)
    fs = scan(write(tmp_path, "weights.safetensors.txt", data))
    assert globals_found(fs) == {"builtins.print"}
    assert next(f for f in fs if f.rule == "pickle.global.denied").location == "whatever/data.pkl"


def test_every_pkl_entry_is_scanned(tmp_path):
    data = make_zip([("a/data.pkl", b"\x80\x02]q\x00."), ("a/extra/other.pkl", PAYLOAD)])
    assert globals_found(scan(write(tmp_path, "m.pt", data))) == {"builtins.print"}


def test_pickle_hidden_under_another_extension(tmp_path):
    fs = scan(write(tmp_path, "m.zip", make_zip([("model/weights.txt", PAYLOAD)])))
    assert {"zip.entry.disguised_pickle", "pickle.global.denied"} <= rules(fs)


def test_bad_crc_is_reported_and_content_still_scanned(tmp_path):
    data = bytearray(make_zip([("a/data.pkl", PAYLOAD)]))
    i = data.index(b"PK\x01\x02")
    data[i + 16:i + 20] = b"\x00\x00\x00\x00"  # central-directory CRC
    fs = scan(write(tmp_path, "crc.pt", bytes(data)))
    assert {"zip.crc_mismatch", "pickle.global.denied"} <= rules(fs)


def test_duplicate_names_both_scanned(tmp_path):
    with pytest.warns(UserWarning):
        data = make_zip([("a/data.pkl", b"\x80\x02N."), ("a/data.pkl", PAYLOAD)])
    fs = scan(write(tmp_path, "dup.pt", data))
    assert "zip.duplicate_name" in rules(fs) and globals_found(fs) == {"builtins.print"}


def test_local_and_central_names_differ(tmp_path):
    data = bytearray(make_zip([("a/data.pkl", PAYLOAD)]))
    data[30:40] = b"a/datb.pkl"  # local header name
    fs = scan(write(tmp_path, "names.zip", bytes(data)))
    assert {"zip.name_mismatch", "pickle.global.denied"} <= rules(fs)


@pytest.mark.parametrize("flag", [0x1, 0x20, 0x40])
def test_encryption_flags_on_plain_data(tmp_path, flag):
    data = bytearray(make_zip([("a/data.pkl", PAYLOAD)]))
    data[6:8] = struct.pack("<H", flag)
    i = data.index(b"PK\x01\x02")
    data[i + 8:i + 10] = struct.pack("<H", flag)
    fs = scan(write(tmp_path, "enc.pt", bytes(data)))
    assert {"zip.entry.encrypted", "pickle.global.denied"} <= rules(fs)


def test_pickle_prepended_to_a_zip(tmp_path):
    fs = scan(write(tmp_path, "poly.bin", PAYLOAD + make_zip([("a/data.pkl", b"\x80\x02N.")])))
    # starts like a pickle: scanned as one; the zip behind it is trailing data
    assert "builtins.print" in globals_found(fs)


def test_zip_after_a_prefix_is_read(tmp_path):
    prefix = b"#!/bin/sh\nexit 0\n"
    fs = scan(write(tmp_path, "sfx.zip", prefix + make_zip([("a/data.pkl", PAYLOAD)])))
    assert "builtins.print" in globals_found(fs)


def test_torch_storage_records_are_sniffed_but_not_searched_for_a_zip_tail(tmp_path):
    """Storage records (``<prefix>data/<n>`` beside ``<prefix>data.pkl``) are tensor bytes that
    torch reads raw: a pickle at their start is still found, a zip at their end is not looked
    for. Any other entry still gets the zip-tail search."""
    hidden_zip = b"\x01\x02" * 64 + make_zip([("a/data.pkl", PAYLOAD)])
    benign = b"\x80\x02]q\x00."
    # a pickle at the start of a storage record is found
    fs = scan(write(tmp_path, "a.pt", make_zip([("m/data.pkl", benign), ("m/data/0", PAYLOAD)])))
    assert globals_found(fs) == {"builtins.print"}
    # a zip hidden at the end of a storage record is not searched for
    fs = scan(write(tmp_path, "b.pt", make_zip([("m/data.pkl", benign), ("m/data/0", hidden_zip)])))
    assert globals_found(fs) == set()
    # the same bytes under any other name (or without a data.pkl of that prefix) are searched
    for name in ("m/data/0.bin", "m/extra/0", "other/data/0"):
        fs = scan(write(tmp_path, "c.pt", make_zip([("m/data.pkl", benign), (name, hidden_zip)])))
        assert globals_found(fs) == {"builtins.print"}, name
    # the prefix is a directory (or nothing), as torch writes it: "m/mydata.pkl" is not "m/my" + "data.pkl"
    fs = scan(write(tmp_path, "d.pt", make_zip([("m/mydata.pkl", benign), ("m/mydata/7", hidden_zip)])))
    assert globals_found(fs) == {"builtins.print"}
    fs = scan(write(tmp_path, "e.pt", make_zip([("data.pkl", benign), ("data/3", hidden_zip)])))
    assert globals_found(fs) == set()  # no prefix at all is torch's too


@pytest.mark.parametrize("codec", ["zlib", "gzip", "bz2", "lzma", "xz", "lz4"])
def test_compressed_joblib_payloads(tmp_path, codec):
    if codec == "lz4":
        lz4frame = pytest.importorskip("lz4.frame")
        data = lz4frame.compress(PAYLOAD)
    else:
        data = {"zlib": zlib.compress, "gzip": gzip.compress, "bz2": bz2.compress,
                "lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
                "xz": lambda d: lzma.compress(d, format=lzma.FORMAT_XZ)}[codec](PAYLOAD)
    fs = scan(write(tmp_path, "model.joblib", data))
    assert globals_found(fs) == {"builtins.print"}


def test_corrupt_compressed_stream(tmp_path):
    data = zlib.compress(PAYLOAD + b"\x00" * 5000)
    data = data[:-4] + bytes(b ^ 0xFF for b in data[-4:])  # damaged checksum at the very end
    fs = scan(write(tmp_path, "broken.joblib", data))
    assert "builtins.print" in globals_found(fs)


def npy_with_pickle(payload: bytes, descr: str = "|O") -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": (1,)}).encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def test_npy_object_array_pickle(tmp_path):
    fs = scan(write(tmp_path, "a.npy", npy_with_pickle(PAYLOAD)))
    assert globals_found(fs) == {"builtins.print"}


def test_npy_structured_object_field(tmp_path):
    header = repr({"descr": [("a", "<i4"), ("b", "|O")], "fortran_order": False, "shape": (1,)}).encode() + b"\n"
    data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + PAYLOAD
    assert globals_found(scan(write(tmp_path, "s.npy", data))) == {"builtins.print"}


def test_npz_member_with_pickle(tmp_path):
    data = make_zip([("x.npy", npy_with_pickle(PAYLOAD))], zipfile.ZIP_DEFLATED)
    fs = scan(write(tmp_path, "a.npz", data))
    assert globals_found(fs) == {"builtins.print"} and fs[0].location == "x.npy"


def test_7z_is_reported_as_unscannable(tmp_path):
    fs = scan(write(tmp_path, "m.7z", b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x00" * 40))
    assert "archive.unsupported" in rules(fs) and is_malicious(fs)


def test_zip_in_zip(tmp_path):
    inner = make_zip([("a/data.pkl", PAYLOAD)])
    fs = scan(write(tmp_path, "outer.zip", make_zip([("inner.zip", inner)], zipfile.ZIP_DEFLATED)))
    assert fs and {f.location for f in fs if f.rule == "pickle.global.denied"} == {"inner.zip!a/data.pkl"}
