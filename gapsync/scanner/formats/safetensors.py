"""safetensors: validate the header, the offsets and that nothing else is in the file.

The format is safe by design only if the file is exactly what the header says: an 8-byte
length, a JSON header, then tensor bytes with no gaps, overlaps or trailing data. Anything else
is either a broken writer or room to hide a second payload (a polyglot), so each deviation is a
finding. Tensor data is never read, only its extent checked.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any, BinaryIO

from gapsync.model import Finding, Severity
from gapsync.scanner.base import Where, finding
from gapsync.scanner.formats.streams import ByteReader, Truncated

MAX_HEADER = 100_000_000  # the safetensors library's own limit
DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
              "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "F64": 64, "I64": 64, "U64": 64,
              "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}


def _no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def scan_safetensors(f: BinaryIO, where: Where) -> list[Finding]:
    r = ByteReader(f)

    def bad(rule: str, sev: Severity, msg: str, off: int | None = None) -> Finding:
        return finding(where, rule, sev, msg, off)

    (n,) = struct.unpack("<Q", r.read(8))
    if n > MAX_HEADER:
        return [bad("safetensors.header", Severity.MEDIUM, f"header length {n} exceeds {MAX_HEADER}", 0)]
    try:
        raw = r.read(n)
    except Truncated:
        return [bad("safetensors.header", Severity.MEDIUM, f"header of {n} bytes runs past the end of the file", 0)]
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_dupes)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        return [bad("safetensors.header", Severity.MEDIUM, f"header is not valid JSON ({e})", 8)]
    if not isinstance(header, dict):
        return [bad("safetensors.header", Severity.MEDIUM, "header is not a JSON object", 8)]
    out: list[Finding] = []
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        out.append(bad("safetensors.metadata", Severity.MEDIUM, "__metadata__ must map strings to strings", 8))
    spans: list[tuple[int, int, str]] = []
    for name, t in header.items():
        if not (isinstance(t, dict) and set(t) == {"dtype", "shape", "data_offsets"}):
            out.append(bad("safetensors.tensor", Severity.MEDIUM, f"tensor {name!r}: needs exactly dtype, shape, data_offsets"))
            continue
        dtype, shape, offs = t["dtype"], t["shape"], t["data_offsets"]
        if dtype not in DTYPE_BITS:
            out.append(bad("safetensors.tensor", Severity.MEDIUM, f"tensor {name!r}: unknown dtype {dtype!r}"))
            continue
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            out.append(bad("safetensors.tensor", Severity.MEDIUM, f"tensor {name!r}: invalid shape {shape!r}"))
            continue
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int and o >= 0 for o in offs)
                and offs[0] <= offs[1]):
            out.append(bad("safetensors.tensor", Severity.MEDIUM, f"tensor {name!r}: invalid data_offsets {offs!r}"))
            continue
        nbits = math.prod(shape) * DTYPE_BITS[dtype]
        if nbits % 8 or offs[1] - offs[0] != nbits // 8:
            out.append(bad("safetensors.tensor", Severity.MEDIUM,
                           f"tensor {name!r}: {offs[1] - offs[0]} bytes for {dtype}{shape} ({nbits / 8:g} expected)"))
        spans.append((offs[0], offs[1], name))
    spans.sort()
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            what = "a gap" if begin > pos else "an overlap"
            out.append(bad("safetensors.layout", Severity.HIGH,
                           f"{what} in the data buffer before tensor {name!r} (at {begin}, expected {pos}): "
                           "bytes not described by the header", 8 + n + min(begin, pos)))
        pos = max(pos, end)
    if where.size is not None:
        end_of_data = 8 + n + pos
        if where.size > end_of_data:
            out.append(bad("safetensors.trailing_data", Severity.HIGH,
                           f"{where.size - end_of_data} bytes after the last tensor: nothing is allowed there",
                           end_of_data))
        elif where.size < end_of_data:
            out.append(bad("safetensors.truncated", Severity.MEDIUM,
                           f"file is {end_of_data - where.size} bytes shorter than the header says", where.size))
    return out
