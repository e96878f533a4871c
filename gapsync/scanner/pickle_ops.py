"""Decoding pickle opcodes one at a time, without ever building the objects they describe.

Why not ``pickletools.genops``: it reads every argument whole (a 4 GB BINBYTES8 is 4 GB of
memory), raises plain ``ValueError`` on the first problem, and decodes some arguments more
leniently than CPython's unpickler. This walker uses the opcode *table* of ``pickletools``
(names and argument kinds, protocols 0-5) but reads arguments itself: large payloads are
skipped and replaced by an :class:`Omitted` marker, text is decoded the way ``_pickle`` does,
and every failure is a :class:`PickleError` that says what and where.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gapsync.scanner.streams import ByteReader, Truncated

KEEP_BYTES = 256 * 1024  # bytes arguments kept for analysis (nested pickles); larger ones are skipped
KEEP_TEXT = 64 * 1024  # str arguments kept; longer ones are cut (marked Omitted)
LINE_LIMIT = 64 * 1024  # protocol-0 text arguments longer than this are consumed, not kept

# code byte -> (opcode name, argument kind or None): pickletools.opcodes (protocols 0-5) written
# out, because importing pickletools (and pickle) costs more than scanning a small pickle;
# tests/scanner/test_allowlist_data.py checks that this is exactly pickletools' table.
OPCODES: dict[int, tuple[str, str | None]] = {
    0x49: ('INT', 'decimalnl_short'),
    0x4a: ('BININT', 'int4'),
    0x4b: ('BININT1', 'uint1'),
    0x4d: ('BININT2', 'uint2'),
    0x4c: ('LONG', 'decimalnl_long'),
    0x8a: ('LONG1', 'long1'),
    0x8b: ('LONG4', 'long4'),
    0x53: ('STRING', 'stringnl'),
    0x54: ('BINSTRING', 'string4'),
    0x55: ('SHORT_BINSTRING', 'string1'),
    0x42: ('BINBYTES', 'bytes4'),
    0x43: ('SHORT_BINBYTES', 'bytes1'),
    0x8e: ('BINBYTES8', 'bytes8'),
    0x96: ('BYTEARRAY8', 'bytearray8'),
    0x97: ('NEXT_BUFFER', None),
    0x98: ('READONLY_BUFFER', None),
    0x4e: ('NONE', None),
    0x88: ('NEWTRUE', None),
    0x89: ('NEWFALSE', None),
    0x56: ('UNICODE', 'unicodestringnl'),
    0x8c: ('SHORT_BINUNICODE', 'unicodestring1'),
    0x58: ('BINUNICODE', 'unicodestring4'),
    0x8d: ('BINUNICODE8', 'unicodestring8'),
    0x46: ('FLOAT', 'floatnl'),
    0x47: ('BINFLOAT', 'float8'),
    0x5d: ('EMPTY_LIST', None),
    0x61: ('APPEND', None),
    0x65: ('APPENDS', None),
    0x6c: ('LIST', None),
    0x29: ('EMPTY_TUPLE', None),
    0x74: ('TUPLE', None),
    0x85: ('TUPLE1', None),
    0x86: ('TUPLE2', None),
    0x87: ('TUPLE3', None),
    0x7d: ('EMPTY_DICT', None),
    0x64: ('DICT', None),
    0x73: ('SETITEM', None),
    0x75: ('SETITEMS', None),
    0x8f: ('EMPTY_SET', None),
    0x90: ('ADDITEMS', None),
    0x91: ('FROZENSET', None),
    0x30: ('POP', None),
    0x32: ('DUP', None),
    0x28: ('MARK', None),
    0x31: ('POP_MARK', None),
    0x67: ('GET', 'decimalnl_short'),
    0x68: ('BINGET', 'uint1'),
    0x6a: ('LONG_BINGET', 'uint4'),
    0x70: ('PUT', 'decimalnl_short'),
    0x71: ('BINPUT', 'uint1'),
    0x72: ('LONG_BINPUT', 'uint4'),
    0x94: ('MEMOIZE', None),
    0x82: ('EXT1', 'uint1'),
    0x83: ('EXT2', 'uint2'),
    0x84: ('EXT4', 'int4'),
    0x63: ('GLOBAL', 'stringnl_noescape_pair'),
    0x93: ('STACK_GLOBAL', None),
    0x52: ('REDUCE', None),
    0x62: ('BUILD', None),
    0x69: ('INST', 'stringnl_noescape_pair'),
    0x6f: ('OBJ', None),
    0x81: ('NEWOBJ', None),
    0x92: ('NEWOBJ_EX', None),
    0x80: ('PROTO', 'uint1'),
    0x2e: ('STOP', None),
    0x95: ('FRAME', 'uint8'),
    0x50: ('PERSID', 'stringnl_noescape'),
    0x51: ('BINPERSID', None),
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


class Op:
    """One decoded opcode. A plain slotted class: a pickle has millions of these, and a frozen
    dataclass's ``__init__`` costs three times as much."""

    __slots__ = ("name", "arg", "offset")

    def __init__(self, name: str, arg: Any, offset: int) -> None:
        self.name, self.arg, self.offset = name, arg, offset

    def __repr__(self) -> str:
        return f"Op({self.name}, {self.arg!r}, @{self.offset})"


def iter_ops(r: ByteReader) -> Iterator[Op]:
    """The opcodes from ``r``'s position on, with their arguments; raises :class:`PickleError`.

    The hot loop of every pickle scan, hence a generator (resuming one is cheaper than a call)
    that takes each opcode byte straight from the reader's buffer, falling back to
    :meth:`ByteReader.read_byte` at a buffer's end, and dispatches on the byte to a reader made
    for that opcode's argument. The caller stops iterating at STOP.
    """
    decoders = _DECODERS
    while True:
        buf, i = r._buf, r._i  # noqa: SLF001 (see the docstring)
        if i < len(buf):
            offset = r._base + i  # noqa: SLF001
            code = buf[i]
            r._i = i + 1  # noqa: SLF001
        else:
            offset = r.pos
            try:
                code = r.read_byte()
            except Truncated as e:
                raise PickleError("truncated", "pickle ends without a STOP opcode", offset) from e
        entry = decoders.get(code)
        if entry is None:
            raise PickleError("unknown_opcode", f"unknown opcode byte 0x{code:02x}", offset)
        name, reader = entry
        if reader is None:
            yield Op(name, None, offset)
            continue
        try:
            arg = reader(r)
        except Truncated as e:
            raise PickleError("truncated", f"{name} argument cut off: {e}", offset) from e
        except PickleError as e:
            raise PickleError(e.kind, f"{name}: {e}", offset) from e
        except (ValueError, UnicodeDecodeError, OverflowError, struct.error) as e:
            raise PickleError("malformed", f"{name}: invalid argument ({e})", offset) from e
        yield Op(name, arg, offset)


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


_U2, _I4, _U4, _U8, _F8 = (struct.Struct(f) for f in ("<H", "<i", "<I", "<Q", ">d"))

_ARG_READERS = {
    "uint1": lambda r: r.read_byte(),
    "uint2": lambda r: r.unpack(_U2),
    "int4": lambda r: r.unpack(_I4),
    "uint4": lambda r: r.unpack(_U4),
    "uint8": lambda r: r.unpack(_U8),
    "decimalnl_short": _decimal_short,
    "decimalnl_long": _decimal_long,
    "floatnl": _float,
    "float8": lambda r: r.unpack(_F8),
    "stringnl": _stringnl,
    "stringnl_noescape": _noescape,
    "stringnl_noescape_pair": _noescape_pair,
    "string1": lambda r: _binstring(r, r.read_byte()),
    "string4": lambda r: _binstring(r, r.unpack(_I4)),
    "bytes1": lambda r: _sized(r, r.read_byte(), "bytes", KEEP_BYTES),
    "bytes4": lambda r: _sized(r, r.unpack(_U4), "bytes", KEEP_BYTES),
    "bytes8": lambda r: _sized(r, r.unpack(_U8), "bytes", KEEP_BYTES),
    "bytearray8": lambda r: _sized(r, r.unpack(_U8), "bytes", KEEP_BYTES),
    "unicodestringnl": _unicodenl,
    "unicodestring1": lambda r: _utf8(_sized(r, r.read_byte(), "str", KEEP_TEXT)),
    "unicodestring4": lambda r: _utf8(_sized(r, r.unpack(_U4), "str", KEEP_TEXT)),
    "unicodestring8": lambda r: _utf8(_sized(r, r.unpack(_U8), "str", KEEP_TEXT)),
    "long1": lambda r: _long(r, r.read_byte()),
    "long4": lambda r: _long(r, r.unpack(_I4)),
}

# code byte -> (opcode name, the reader of its argument or None)
_DECODERS = {code: (name, None if kind is None else _ARG_READERS[kind]) for code, (name, kind) in OPCODES.items()}
