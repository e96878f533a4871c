"""Decoding pickle opcodes one at a time, without ever building the objects they describe.

Why not ``pickletools.genops``: it reads every argument whole (a 4 GB BINBYTES8 is 4 GB of
memory), raises plain ``ValueError`` on the first problem, and decodes some arguments more
leniently than CPython's unpickler. This walker takes the opcode *table* from ``pickletools``
(names and argument kinds, protocols 0-5) but reads arguments itself: large payloads are
skipped and replaced by an :class:`Omitted` marker, text is decoded the way ``_pickle`` does,
and every failure is a :class:`PickleError` that says what and where.
"""

from __future__ import annotations

import codecs
import pickletools
import struct
from dataclasses import dataclass
from typing import Any

from gapsync.scanner.streams import ByteReader, Truncated

KEEP_BYTES = 256 * 1024  # bytes arguments kept for analysis (nested pickles); larger ones are skipped
KEEP_TEXT = 64 * 1024  # str arguments kept; longer ones are cut (marked Omitted)
LINE_LIMIT = 64 * 1024  # protocol-0 text arguments longer than this are consumed, not kept

# code byte -> (opcode name, argument kind or None)
OPCODES: dict[int, tuple[str, str | None]] = {
    op.code.encode("latin-1")[0]: (op.name, op.arg.name if op.arg is not None else None) for op in pickletools.opcodes
}


class PickleError(Exception):
    """The bytes are not a valid pickle at ``offset``; ``kind`` is truncated/unknown_opcode/malformed."""

    def __init__(self, kind: str, message: str, offset: int) -> None:
        super().__init__(message)
        self.kind, self.offset = kind, offset


@dataclass(frozen=True, eq=False)
class Omitted:
    """An argument too large to keep: its kind, length and where it starts."""

    kind: str  # "bytes" or "str"
    size: int
    offset: int

    def __repr__(self) -> str:
        return f"<{self.size} {self.kind} at {self.offset}>"


@dataclass(frozen=True)
class Op:
    name: str
    arg: Any
    offset: int


def read_op(r: ByteReader) -> Op:
    """Read the next opcode and its argument from ``r``; raise :class:`PickleError` if invalid."""
    offset = r.pos
    try:
        code = r.read_byte()
    except Truncated as e:
        raise PickleError("truncated", "pickle ends without a STOP opcode", offset) from e
    entry = OPCODES.get(code)
    if entry is None:
        raise PickleError("unknown_opcode", f"unknown opcode byte 0x{code:02x}", offset)
    name, kind = entry
    if kind is None:
        return Op(name, None, offset)
    try:
        return Op(name, _ARG_READERS[kind](r), offset)
    except Truncated as e:
        raise PickleError("truncated", f"{name} argument cut off: {e}", offset) from e
    except PickleError as e:
        raise PickleError(e.kind, f"{name}: {e}", offset) from e
    except (ValueError, UnicodeDecodeError, OverflowError, struct.error) as e:
        raise PickleError("malformed", f"{name}: invalid argument ({e})", offset) from e


def _line(r: ByteReader) -> bytes | Omitted:
    """A protocol-0 text argument; one longer than LINE_LIMIT is consumed and returned as Omitted.

    Never an error for length alone: CPython accepts long lines, and stopping here would let a
    payload hide behind one huge number.
    """
    start = r.pos
    line, cut = r.readline(LINE_LIMIT)
    if cut:
        return Omitted("text", r.pos - start - 1, start)
    return line


def _int_le(data: bytes, signed: bool) -> int:
    return int.from_bytes(data, "little", signed=signed)


def _sized(r: ByteReader, n: int, kind: str, keep: int):
    if n < 0:
        raise PickleError("malformed", f"negative length {n}", r.pos)
    start = r.pos
    if n > keep:
        r.skip(n)
        return Omitted(kind, n, start)
    return r.read(n)


def _utf8(data):
    if isinstance(data, Omitted):
        return Omitted("str", data.size, data.offset)
    return data.decode("utf-8", "surrogatepass")


def _decimal_short(r: ByteReader):
    s = _line(r)
    if isinstance(s, Omitted):
        return s
    if s == b"00":
        return False
    if s == b"01":
        return True
    return int(s.decode("ascii"))


def _decimal_long(r: ByteReader):
    s = _line(r)
    if isinstance(s, Omitted):
        return s
    if s.endswith(b"L"):
        s = s[:-1]
    return int(s.decode("ascii"))


def _stringnl(r: ByteReader):
    start = r.pos
    line = _line(r)
    if isinstance(line, Omitted):
        return line
    if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
        raise PickleError("malformed", "the STRING argument must be quoted", start)
    data = codecs.escape_decode(line[1:-1])[0]
    # CPython decodes with the loader's encoding (ASCII by default, latin-1 for numpy);
    # latin-1 never fails, so a name hidden in a STRING is still seen.
    return data.decode("latin-1")


def _float(r: ByteReader):
    s = _line(r)
    return s if isinstance(s, Omitted) else float(s.decode("ascii"))


def _noescape(r: ByteReader):
    s = _line(r)
    return s if isinstance(s, Omitted) else s.decode("utf-8")


def _noescape_pair(r: ByteReader):
    return _noescape(r), _noescape(r)


def _unicodenl(r: ByteReader):
    line = _line(r)
    if isinstance(line, Omitted):
        return line
    return line.decode("raw-unicode-escape")


def _binstring(r: ByteReader, n: int):
    data = _sized(r, n, "str", KEEP_TEXT)
    return data if isinstance(data, Omitted) else data.decode("latin-1")


def _long(r: ByteReader, n: int):
    if n < 0:
        raise PickleError("malformed", f"negative LONG length {n}", r.pos)
    data = _sized(r, n, "int", KEEP_TEXT)
    return data if isinstance(data, Omitted) else _int_le(data, True)


_ARG_READERS = {
    "uint1": lambda r: r.read_byte(),
    "uint2": lambda r: _int_le(r.read(2), False),
    "int4": lambda r: _int_le(r.read(4), True),
    "uint4": lambda r: _int_le(r.read(4), False),
    "uint8": lambda r: _int_le(r.read(8), False),
    "decimalnl_short": _decimal_short,
    "decimalnl_long": _decimal_long,
    "floatnl": _float,
    "float8": lambda r: struct.unpack(">d", r.read(8))[0],
    "stringnl": _stringnl,
    "stringnl_noescape": _noescape,
    "stringnl_noescape_pair": _noescape_pair,
    "string1": lambda r: _binstring(r, r.read_byte()),
    "string4": lambda r: _binstring(r, _int_le(r.read(4), True)),
    "bytes1": lambda r: _sized(r, r.read_byte(), "bytes", KEEP_BYTES),
    "bytes4": lambda r: _sized(r, _int_le(r.read(4), False), "bytes", KEEP_BYTES),
    "bytes8": lambda r: _sized(r, _int_le(r.read(8), False), "bytes", KEEP_BYTES),
    "bytearray8": lambda r: _sized(r, _int_le(r.read(8), False), "bytes", KEEP_BYTES),
    "unicodestringnl": _unicodenl,
    "unicodestring1": lambda r: _utf8(_sized(r, r.read_byte(), "str", KEEP_TEXT)),
    "unicodestring4": lambda r: _utf8(_sized(r, _int_le(r.read(4), False), "str", KEEP_TEXT)),
    "unicodestring8": lambda r: _utf8(_sized(r, _int_le(r.read(8), False), "str", KEEP_TEXT)),
    "long1": lambda r: _long(r, r.read_byte()),
    "long4": lambda r: _long(r, _int_le(r.read(4), True)),
}
