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

from gapsync.scanner.formats.streams import ByteReader, Truncated

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


# --- protocol-0 numbers, read as Modules/_pickle.c reads them -------------------------------
# The C unpickler copies each line into a NUL-terminated buffer ("line\n\0") and parses it with
# C functions: strtol(s, &end, 0) for INT (base 0: "0x10", octal "010", leading whitespace, a
# sign), then PyLong_FromString(s, NULL, 0) when strtol stops early or overflows (underscores,
# "0b"/"0o", surrounding whitespace); PyLong_FromString(s, NULL, 10) for GET and PUT, and
# PyOS_string_to_double for FLOAT. An embedded NUL ends the C string: "I1\0junk\n" is 1.
# pickletools (and int()/float() on the text) disagree on all of these.

_C_SPACE = b" \t\n\r\x0b\x0c"  # C isspace() / Py_ISSPACE in the "C" locale
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_HEX = b"0123456789abcdefABCDEF"


def _cstr(line: bytes) -> bytes:
    """What C code sees of a line: up to its first NUL byte."""
    i = line.find(b"\0")
    return line if i < 0 else line[:i]


def _strtol(s: bytes) -> tuple[int, int, bool]:
    """glibc ``strtol(s, &end, 0)``: (value, index of end, overflowed)."""
    n, i = len(s), 0
    while i < n and s[i] in _C_SPACE:
        i += 1
    neg = False
    if i < n and s[i] in b"+-":
        neg = s[i] == 0x2D
        i += 1
    base, digits = 10, b"0123456789"
    if i < n and s[i] == 0x30:
        if i + 2 < n and s[i + 1] in b"xX" and s[i + 2] in _HEX:
            base, digits, i = 16, _HEX, i + 2
        else:
            base, digits = 8, b"01234567"
    j = i
    while j < n and s[j] in digits:
        j += 1
    if j == i:
        return 0, 0, False  # no conversion: end is the start of the string
    value = int(s[i:j], base)
    value = -value if neg else value
    return value, j, not _LONG_MIN <= value <= _LONG_MAX


def _pylong(s: bytes, base: int) -> int:
    """``PyLong_FromString(s, NULL, base)`` on a C string: C whitespace around, a sign, digits
    with single underscores, the 0x/0o/0b prefixes in base 0; anything else raises ValueError."""
    text = s.decode("ascii")  # non-ASCII bytes are never digits or C whitespace: ValueError
    if any(c in text for c in "\x1c\x1d\x1e\x1f"):
        raise ValueError("not a number")  # int() would take these as whitespace, C does not
    t = text.strip(" \t\n\r\x0b\x0c")
    if not t or t != t.strip():
        raise ValueError("not a number")
    return int(t, base)


def _c_line(r: ByteReader):
    """A numeric line as C sees it (None for an Omitted one), refusing an empty line as C does."""
    start = r.pos
    line = _line(r)
    if isinstance(line, Omitted):
        return line
    if not line:  # len("\n") < 2: bad_readline, "pickle data was truncated"
        raise PickleError("malformed", "empty line where a number belongs", start)
    return line


def _int_c(r: ByteReader):
    """INT: ``load_int`` (strtol base 0, then PyLong_FromString base 0; "00"/"01" are bools)."""
    line = _c_line(r)
    if isinstance(line, Omitted):
        return line
    if line.isdigit() and (line[0] != 0x30 or len(line) == 1):  # plain decimal: what picklers write
        return int(line)
    s = _cstr(line)
    x, end, overflow = _strtol(s)
    if overflow or end != len(s):
        return _pylong(s, 0)
    if len(line) == 2 and x in (0, 1):  # C: len == 3 counts the newline
        return bool(x)
    return x


def _long_c(r: ByteReader):
    """LONG: ``load_long`` (a trailing L is cut off, then PyLong_FromString base 0)."""
    line = _c_line(r)
    if isinstance(line, Omitted):
        return line
    if line.endswith(b"L"):
        line = line[:-1]
    return _pylong(_cstr(line), 0)


def _memo_index_c(r: ByteReader):
    """GET / PUT: ``PyLong_FromString(s, NULL, 10)``."""
    line = _c_line(r)
    if isinstance(line, Omitted):
        raise PickleError("malformed", "memo index line too long", line.offset)
    if line.isdigit():  # what picklers write (leading zeros are fine in base 10)
        return int(line)
    return _pylong(_cstr(line), 10)


_FLOAT_RE = None


def _float(r: ByteReader):
    """FLOAT: ``PyOS_string_to_double`` (no whitespace, no underscores; "inf", "nan",
    "infinity" in any case; overflow to infinity is an error), ending at the newline or a NUL."""
    global _FLOAT_RE
    line = _c_line(r)
    if isinstance(line, Omitted):
        return line
    if _FLOAT_RE is None:
        import re

        _FLOAT_RE = re.compile(rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:infinity|inf|nan))\Z")
    s = _cstr(line)
    if not _FLOAT_RE.match(s):
        raise ValueError(f"could not convert {s[:40]!r} to float")
    value = float(s.decode("ascii"))
    if value in (float("inf"), float("-inf")) and b"n" not in s.lower():
        raise OverflowError("FLOAT out of range")
    return value


def _stringnl(r: ByteReader):
    start = r.pos
    line = _line(r)
    if isinstance(line, Omitted):
        return line
    if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
        raise PickleError("malformed", "the STRING argument must be quoted", start)
    data: bytes = codecs.escape_decode(line[1:-1])[0]  # type: ignore[assignment]  # bytes (typeshed says str)
    # CPython decodes with the loader's encoding (ASCII by default, latin-1 for numpy);
    # latin-1 never fails, so a name hidden in a STRING is still seen.
    return data.decode("latin-1")


def _noescape(r: ByteReader, encoding: str = "utf-8"):
    s = _line(r)
    if not s:  # (iter_ops gives the error the opcode's offset)
        raise PickleError("malformed", "empty name (the unpickler stops: pickle data was truncated)", 0)
    if isinstance(s, Omitted):
        return s
    return s.decode(encoding)


def _noescape_pair(r: ByteReader):
    """GLOBAL: module and name lines, each decoded as strict UTF-8 (``load_global``)."""
    return _noescape(r), _noescape(r)


def _inst_pair(r: ByteReader):
    """INST: module and class lines, each decoded as strict ASCII (``load_inst``)."""
    return _noescape(r, "ascii"), _noescape(r, "ascii")


def _persid(r: ByteReader):
    """PERSID: one line, strict ASCII (``load_persid``); an empty id is allowed."""
    s = _line(r)
    return s if isinstance(s, Omitted) else s.decode("ascii")


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
    "decimalnl_short": _int_c,
    "decimalnl_long": _long_c,
    "floatnl": _float,
    "float8": lambda r: r.unpack(_F8),
    "stringnl": _stringnl,
    "stringnl_noescape": _noescape,
    "stringnl_noescape_pair": _noescape_pair,
    "string1": lambda r: _binstring(r, r.read_byte()),
    "string4": lambda r: _binstring(r, r.unpack(_U4)),  # C: calc_binsize, unsigned (pickletools: signed)
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
# where the C unpickler reads an argument unlike pickletools' argument kind
_DECODERS[0x67] = ("GET", _memo_index_c)
_DECODERS[0x70] = ("PUT", _memo_index_c)
_DECODERS[0x69] = ("INST", _inst_pair)
_DECODERS[0x50] = ("PERSID", _persid)
