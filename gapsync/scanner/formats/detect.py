"""Format detection by content: magic bytes and header structure; the name only as a fallback.

Why: an attacker chooses the file name. picklescan once skipped pickles named ``.bin`` and zip
entries named ``data.txt`` (CVE-2025-1889, CVE-2025-10155); loaders such as ``torch.load`` do not
care about names at all. So the scanner decides what a file *is* from its first bytes, and a
file that matches nothing is still offered to the pickle analyser, which accepts it only if it
really parses as a pickle (protocol 0 and 1 pickles have no magic number). Some loaders do go by
the name (``pandas.read_pickle`` decompresses ``.gz .bz2 .zip .xz .zst .tar``): bytes without a
magic number are also read the way such a name says (:func:`by_name`), so both readings are seen.
"""

from __future__ import annotations

import struct
from enum import StrEnum

HEAD_SIZE = 4096  # bytes read to decide; HDF5 may start at 0, 512, 1024 or 2048


class Format(StrEnum):
    ZIP = "zip"
    TAR = "tar"  # image layers (after decompression), archives of model directories
    SEVENZIP = "7z"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    LZMA = "lzma"
    ZLIB = "zlib"
    LZ4 = "lz4"
    ZSTD = "zstd"
    JOBLIB_ZFILE = "joblib-zfile"  # joblib < 0.10: b"ZF" + the length in hex (19 chars) + a zlib stream
    NPY = "npy"
    SAFETENSORS = "safetensors"
    GGUF = "gguf"
    HDF5 = "hdf5"
    PICKLE = "pickle"  # protocol 2+ (starts with PROTO); protocol 0/1 are found by parsing
    JSON = "json"
    PROTOBUF = "protobuf"  # ONNX ModelProto or TensorFlow SavedModel; told apart by their fields
    UNKNOWN = "unknown"


HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
COMPRESSED = frozenset({Format.GZIP, Format.BZIP2, Format.XZ, Format.LZMA, Format.ZLIB, Format.LZ4, Format.ZSTD,
                        Format.JOBLIB_ZFILE})
JOBLIB_ZFILE_HEADER = 2 + 19  # joblib.numpy_pickle_compat: _ZFILE_PREFIX + _MAX_LEN

# Extensions that make a loader decompress or unpack a file whatever its first bytes are:
# pandas.read_pickle(compression="infer") goes by .gz .bz2 .zip .xz .zst .tar (and .tar.gz ...);
# lzma.open / tarfile.open / zstandard.open callers do the same. Used only when the content has
# no magic number of its own (a raw .lzma, an old V7 tar): content always wins.
BY_SUFFIX: dict[str, Format] = {
    ".gz": Format.GZIP, ".tgz": Format.GZIP, ".gzip": Format.GZIP, ".bz2": Format.BZIP2, ".tbz2": Format.BZIP2,
    ".xz": Format.XZ, ".txz": Format.XZ, ".lzma": Format.LZMA, ".zst": Format.ZSTD, ".zstd": Format.ZSTD,
    ".tzst": Format.ZSTD, ".lz4": Format.LZ4, ".zip": Format.ZIP, ".tar": Format.TAR, ".7z": Format.SEVENZIP,
}


def by_name(name: str) -> Format | None:
    """The container or compression a loader infers from ``name``'s extension, if any."""
    dot = name.rfind(".")
    if dot <= 0 or name[dot - 1] == "/" or "/" in name[dot:]:  # no extension, or a dot file
        return None
    return BY_SUFFIX.get(name[dot:].lower())


def _joblib_zfile_length(text: bytes) -> bool:
    """Whether joblib's read_zfile reads ``text`` as the data length: int(text, 16)."""
    try:
        return int(text, 16) >= 0
    except ValueError:
        return False


def detect(head: bytes, size: int | None = None) -> Format:
    """The format of a file that starts with ``head`` (at least the first HEAD_SIZE bytes, if any)."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return Format.ZIP
    if head[:6] == b"7z\xbc\xaf\x27\x1c":
        return Format.SEVENZIP
    if head[257:262] == b"ustar":
        return Format.TAR
    if head[:6] == b"\x93NUMPY":
        return Format.NPY
    if head[:4] == b"GGUF":
        return Format.GGUF
    if any(head[o:o + 8] == HDF5_MAGIC for o in (0, 512, 1024, 2048)):
        return Format.HDF5
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return Format.PICKLE
    if head[:3] == b"\x1f\x8b\x08":
        return Format.GZIP
    if head[:3] == b"BZh" and head[3:4].isdigit():
        return Format.BZIP2
    if head[:6] == b"\xfd7zXZ\x00":
        return Format.XZ
    if head[:3] == b"\x5d\x00\x00":
        return Format.LZMA
    if head[:4] == b"\x04\x22\x4d\x18":
        return Format.LZ4
    if head[:4] == b"\x28\xb5\x2f\xfd" or (len(head) >= 4 and head[0] & 0xF0 == 0x50 and head[1:4] == b"\x2a\x4d\x18"):
        return Format.ZSTD  # a zstd frame, or a skippable frame (zstd skips it and reads the next)
    if len(head) >= 2 and head[0] == 0x78 and ((head[0] << 8) | head[1]) % 31 == 0:
        return Format.ZLIB
    if head[:2] == b"ZF" and _joblib_zfile_length(head[2:JOBLIB_ZFILE_HEADER]):
        # joblib.load() still reads its old format (load_compatibility: read_zfile, then unpickles)
        return Format.JOBLIB_ZFILE
    if is_safetensors_head(head, size):
        return Format.SAFETENSORS
    stripped = head.lstrip(b" \t\r\n\xef\xbb\xbf")
    if stripped[:1] in (b"{", b"["):
        return Format.JSON
    if looks_like_protobuf(head):
        return Format.PROTOBUF
    return Format.UNKNOWN


def is_safetensors_head(head: bytes, size: int | None) -> bool:
    """8-byte little-endian header length, then a JSON object that fits in the file."""
    if len(head) < 10:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    if head[8:9] != b"{" or n < 2:
        return False
    return size is None or 8 + n <= size


def looks_like_protobuf(head: bytes) -> bool:
    """ONNX and SavedModel files start with field 1 as a varint (ir_version / schema version)."""
    return len(head) >= 4 and head[0] == 0x08 and head[1] < 0x80 and head[2] in (0x12, 0x1A, 0x22, 0x2A, 0x3A, 0x42)
