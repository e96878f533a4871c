"""Builders for hostile and benign samples, written as bytes by the tests.

Every hostile payload here would at most call ``builtins.print`` (or an unimportable module) if
it were ever loaded, and it never is: nothing in these tests unpickles, ``torch.load``s,
``joblib.load``s or imports anything from a sample.
"""

from __future__ import annotations

import struct
from pathlib import Path

from gapsync.model import Finding, Severity
from gapsync.scanner.base import scan_path

PROTO4 = b"\x80\x04"


def short_unicode(s: str) -> bytes:
    data = s.encode()
    return b"\x8c" + bytes([len(data)]) + data


def binunicode(s: str) -> bytes:
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def global0(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def call_print_p0(text: str = "hi") -> bytes:
    """Protocol 0: builtins.print('hi')."""
    return global0("builtins", "print") + b"(V" + text.encode() + b"\ntR."


def stack_global_print() -> bytes:
    """Protocol 4: STACK_GLOBAL builtins.print, called."""
    return (PROTO4 + short_unicode("builtins") + b"\x94" + short_unicode("print") + b"\x94\x93\x94"
            + short_unicode("hi") + b"\x85R.")


def write(tmp: Path, name: str, data: bytes) -> Path:
    p = tmp / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def scan(path: Path) -> list[Finding]:
    return scan_path(path).findings


def worst(findings: list[Finding]) -> Severity | None:
    return max((f.severity for f in findings), key=lambda s: s.rank, default=None)


def is_malicious(findings: list[Finding]) -> bool:
    return any(f.severity.rank >= Severity.HIGH.rank for f in findings)


def rules(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings}


def globals_found(findings: list[Finding]) -> set[str]:
    return {f.evidence["global"] for f in findings if "global" in f.evidence}


# -- protobuf encoding, for ONNX and SavedModel samples -------------------------------------------
def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_int(num: int, value: int) -> bytes:
    return varint(num << 3) + varint(value)


def pb_bytes(num: int, value: bytes | str) -> bytes:
    if isinstance(value, str):
        value = value.encode()
    return varint((num << 3) | 2) + varint(len(value)) + value
