"""GGUF (llama.cpp models): header sanity and the chat template, which is code of a kind.

GGUF holds no pickle, but its header counts drive allocations in loaders (heap overflows have
been reported for oversized counts and lengths), and ``tokenizer.chat_template`` is a Jinja2
template that some runtimes render without a sandbox (server-side template injection,
CVE-2024-34359). So counts and lengths are bounded, every key/value is parsed, and chat
templates are judged by their syntax tree (gapsync/scanner/formats/templates.py): reported for review
(info) when they use only what chat templates use, high otherwise.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO

from gapsync.model import Finding, Severity
from gapsync.scanner.base import Where, finding
from gapsync.scanner.formats.streams import ByteReader, Truncated
from gapsync.scanner.formats.templates import TemplateBudget, template_findings

MAX_KV = 1_000_000
MAX_TENSORS = 10_000_000
MAX_STRING = 64 << 20
MAX_ARRAY = 50_000_000
MAX_DIMS = 8
KEEP_STRING = 1 << 20
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class GGUFError(Exception):
    pass


class SkippedString(str):
    """A string value too long to keep (its text is not read): only its size is known."""

    size: int = 0


def scan_gguf(f: BinaryIO, where: Where) -> list[Finding]:
    r = ByteReader(f)
    out: list[Finding] = []
    try:
        r.read(4)
        (version,) = struct.unpack("<I", r.read(4))
        if version not in (1, 2, 3):
            return [finding(where, "gguf.header", Severity.MEDIUM, f"unknown GGUF version {version}", 4)]
        fmt = "<I" if version == 1 else "<Q"
        width = 4 if version == 1 else 8
        (n_tensors,) = struct.unpack(fmt, r.read(width))
        (n_kv,) = struct.unpack(fmt, r.read(width))
        if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
            return [finding(where, "gguf.header", Severity.HIGH,
                            f"implausible counts ({n_tensors} tensors, {n_kv} keys): an allocation attack on loaders", 8)]
        alignment = 32
        budget = TemplateBudget()
        for _ in range(n_kv):
            at = r.pos
            key = _string(r, width)
            (vtype,) = struct.unpack("<I", r.read(4))
            value = _value(r, vtype, width)
            if key == "general.alignment" and isinstance(value, int):
                alignment = value
            if key.startswith("tokenizer.chat_template") and isinstance(value, str):
                out += _template_findings(where, key, value, at, budget)
        if alignment <= 0 or alignment & (alignment - 1):
            out.append(finding(where, "gguf.header", Severity.MEDIUM, f"general.alignment {alignment} is not a power of two"))
            alignment = 32
        infos = []
        for _ in range(n_tensors):
            at = r.pos
            name = _string(r, width)
            (n_dims,) = struct.unpack("<I", r.read(4))
            if n_dims > MAX_DIMS:
                raise GGUFError(f"tensor {name!r} has {n_dims} dimensions")
            r.skip(width * n_dims)
            (_ttype,) = struct.unpack("<I", r.read(4))
            (offset,) = struct.unpack("<Q", r.read(8))
            infos.append((name, offset, at))
        data_start = -(-r.pos // alignment) * alignment
        for name, offset, at in infos:
            if offset % alignment:
                out.append(finding(where, "gguf.tensor", Severity.MEDIUM, f"tensor {name!r} offset {offset} is not aligned", at))
            if where.size is not None and data_start + offset > where.size:
                out.append(finding(where, "gguf.tensor", Severity.MEDIUM,
                                   f"tensor {name!r} starts past the end of the file", at))
    except Truncated as e:
        out.append(finding(where, "gguf.truncated", Severity.MEDIUM, f"GGUF header cut off: {e}", e.offset))
    except (GGUFError, struct.error, UnicodeDecodeError) as e:
        out.append(finding(where, "gguf.header", Severity.MEDIUM, f"GGUF header invalid: {e}", r.pos))
    return out


def _string(r: ByteReader, width: int) -> str:
    (n,) = struct.unpack("<I" if width == 4 else "<Q", r.read(width))
    if n > MAX_STRING:
        raise GGUFError(f"string of {n} bytes at offset {r.pos}")
    if n > KEEP_STRING:
        r.skip(n)
        skipped = SkippedString(f"<{n} bytes>")
        skipped.size = n
        return skipped
    return r.read(n).decode("utf-8", "replace")


def _value(r: ByteReader, vtype: int, width: int) -> Any:
    if vtype in SCALARS:
        fmt = SCALARS[vtype]
        return struct.unpack(fmt, r.read(struct.calcsize(fmt)))[0]
    if vtype == 8:
        return _string(r, width)
    if vtype == 9:
        (itype,) = struct.unpack("<I", r.read(4))
        (count,) = struct.unpack("<I" if width == 4 else "<Q", r.read(width))
        if count > MAX_ARRAY:
            raise GGUFError(f"array of {count} items")
        if itype in SCALARS:
            r.skip(struct.calcsize(SCALARS[itype]) * count)
        elif itype in (8, 9):
            for _ in range(count):
                _value(r, itype, width)
        else:
            raise GGUFError(f"unknown array item type {itype}")
        return None
    raise GGUFError(f"unknown value type {vtype}")


def _template_findings(where: Where, key: str, value: str, offset: int, budget: TemplateBudget) -> list[Finding]:
    """``tokenizer.chat_template`` and ``tokenizer.chat_template.<name>``; the names list is data."""
    if isinstance(value, SkippedString):
        return [finding(where, "gguf.chat_template.suspicious", Severity.HIGH,
                        f"{key} is a {value.size}-byte template, too large to judge (fail closed)", offset, key=key)]
    return template_findings(where, key, value, offset, "gguf.chat_template", budget)
