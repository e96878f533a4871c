"""NumPy ``.npy`` files (and so the members of ``.npz``, which are ``.npy`` files in a zip).

An ``.npy`` file is a small header (a Python dict literal) followed by the array. For an
object dtype the array is a pickle, which ``np.load(allow_pickle=True)`` unpickles: that pickle
is analysed like any other. The header is parsed with ``ast.literal_eval`` (literals only, no
names, no calls) after a length limit, as NumPy itself does.
"""

from __future__ import annotations

import ast
import math
import re
import struct
from typing import Any, BinaryIO

from gapsync.model import Finding, Severity
from gapsync.scanner.base import Where, finding
from gapsync.scanner.formats.pickles import analyse_pickles
from gapsync.scanner.formats.streams import ByteReader, Truncated

MAX_HEADER = 1 << 16
# An object type anywhere in a dtype string as numpy.dtype() reads it (comma lists, subarrays, names)
_OBJECT_TYPESTR = re.compile(r"(?:^|[^A-Za-z0-9_])[<>|=]?(?:O\d*|object_?)(?:$|[^A-Za-z0-9_])")


def scan_npy(f: BinaryIO, where: Where) -> list[Finding]:
    r = ByteReader(f)
    try:
        magic = r.read(8)
        major = magic[6]
        if major == 1:
            (hlen,) = struct.unpack("<H", r.read(2))
        elif major in (2, 3):
            (hlen,) = struct.unpack("<I", r.read(4))
        else:
            return [finding(where, "npy.malformed", Severity.MEDIUM, f".npy format version {major} is unknown", 6)]
        if hlen > MAX_HEADER:
            return [finding(where, "npy.malformed", Severity.MEDIUM, f".npy header of {hlen} bytes is implausible", 8)]
        raw = r.read(hlen)
    except Truncated as e:
        return [finding(where, "npy.truncated", Severity.MEDIUM, f".npy header cut off: {e}", e.offset)]
    try:
        header = ast.literal_eval(raw.decode("latin-1").strip())
        descr, shape = header["descr"], header["shape"]
    except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError) as e:
        return [finding(where, "npy.malformed", Severity.MEDIUM, f".npy header is not a valid dict literal ({e})", 8)]
    if _has_object(descr):
        result = analyse_pickles(r, where, known_pickle=True)
        return result.findings.to_list()
    out: list[Finding] = []
    itemsize = _itemsize(descr)
    if (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape) and itemsize is not None
            and where.size is not None):
        expected = r.pos + math.prod(shape) * itemsize
        if where.size > expected:
            out.append(finding(where, "npy.trailing_data", Severity.LOW,
                               f"{where.size - expected} bytes follow the array data", expected))
        elif where.size < expected:
            out.append(finding(where, "npy.truncated", Severity.LOW,
                               f"array data is {expected - where.size} bytes shorter than its header says", where.size))
    return out


def _has_object(descr: Any) -> bool:
    """Whether a dtype description contains Python objects (``'|O'``, or an ``O`` field)."""
    if isinstance(descr, str):  # numpy.dtype(descr): 'O8', 'object', 'object_', 'i4,O', '(2,)O' are objects too
        return _OBJECT_TYPESTR.search(descr) is not None
    if isinstance(descr, list):  # structured: [(name, dtype[, shape]), ...]
        return any(not isinstance(fld, tuple) or len(fld) < 2 or _has_object(fld[1]) for fld in descr)
    return not isinstance(descr, int)  # anything else is not a dtype NumPy writes: assume the worst


def _itemsize(descr: Any) -> int | None:
    if not isinstance(descr, str):
        return None
    t = descr.lstrip("<>|=")
    kind, digits = t[:1], t[1:]
    if not digits.isdigit():
        return None
    return int(digits) * (4 if kind == "U" else 1)
