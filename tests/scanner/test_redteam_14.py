"""Red-team cases for issue 14 that got through: each file is built here and only scanned, never loaded."""

from __future__ import annotations

import struct
import zlib

import pytest
from scanner_samples import is_malicious, scan

PAYLOAD = b"\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03."


@pytest.mark.parametrize("descr", ["'object'", "'object_'", "'O8'", "'i4,O'", "'(2,)O'", "'a,O'"])
def test_npy_object_dtype_spelled_as_numpy_dtype_reads_it(tmp_path, descr):
    """numpy.lib.format hands the descr to numpy.dtype(): 'object' is an object array, whose data is a pickle."""
    header = "{'descr': " + descr + ", 'fortran_order': False, 'shape': (1,), }"
    header = header + " " * (118 - len(header) - 1) + "\n"
    p = tmp_path / "a.npy"
    p.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + PAYLOAD)
    assert is_malicious(scan(p))


def test_npy_plain_dtypes_are_not_pickles(tmp_path):
    from gapsync.scanner.numpy_files import _has_object
    for d in ("<f8", "|b1", "<U5", "|S3", "<M8[ns]", "|V8", "float64", "int32", "bool"):
        assert not _has_object(d), d


@pytest.mark.parametrize("space", [b"", b" "])
def test_joblib_old_zfile_format_is_decompressed(tmp_path, space):
    """joblib.load still reads joblib < 0.10's format: b"ZF", the length in hex padded to 19
    characters (one more space from old Python 2 joblib), then a zlib stream that it unpickles."""
    p = tmp_path / "model.pkl"
    p.write_bytes(b"ZF" + f"{len(PAYLOAD):#x}".encode().ljust(19) + space + zlib.compress(PAYLOAD))
    assert is_malicious(scan(p))
