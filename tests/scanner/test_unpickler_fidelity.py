"""Issue 14 §2: where Modules/_pickle.c and pickletools disagree, the scanner reads like _pickle.c.

Each pickle is written by hand, opcode by opcode, so that the payload (``os.system``, which
would run a command if the pickle were ever loaded) sits after the construct under test: the
scanner must read the construct the way the C unpickler does to get there. Nothing is loaded.
docs/scanner.md lists each difference.
"""

from __future__ import annotations

import struct

import pytest

from gapsync.model import Severity
from tests.support.samples import is_malicious, rules, scan, write

PAYLOAD = b"cos\nsystem\n(S'id'\ntR."  # protocol 0: GLOBAL os.system, MARK, STRING, TUPLE, REDUCE, STOP


def payload_seen(findings) -> bool:
    return any(f.rule == "pickle.global.denied" and "os.system" in f.message for f in findings)


def errors(findings) -> list:
    return [f for f in findings if f.rule in ("pickle.malformed", "pickle.truncated", "pickle.opcode.unknown")]


def check(tmp_path, data: bytes, *, parses: bool) -> list:
    fs = scan(write(tmp_path, "p.bin", data))
    assert is_malicious(fs), (data, fs)
    if parses:  # the C unpickler reads the construct: the scanner goes on to the payload, no error
        assert payload_seen(fs) and not errors(fs), (data, fs)
    else:  # the C unpickler stops: so does the scanner, with a high finding
        assert errors(fs) and all(f.severity is Severity.HIGH for f in errors(fs)), (data, fs)
    return fs


# INT: strtol(s, &end, 0), then PyLong_FromString(s, NULL, 0) (pickletools: int(s) in base 10)
@pytest.mark.parametrize("text", [b"0x10", b"0X1f", b"010", b"-0x10", b" 5", b"\t+7", b"1_000", b"0b101",
                                  b"0o17", b"99999999999999999999", b"0x" + b"f" * 30, b"1\0junk", b"00", b"01",
                                  b" 1", b"5 "])
def test_int_forms_the_c_unpickler_reads(tmp_path, text):
    check(tmp_path, b"I" + text + b"\n0" + PAYLOAD, parses=True)


@pytest.mark.parametrize("text", [b"08", b"0x", b"1.5", b"\x1c5", b"1__0", b"_1", b"", b"5L", b"\xd9\xa3"])
def test_int_forms_the_c_unpickler_refuses(tmp_path, text):
    check(tmp_path, PAYLOAD[:-1] + b"I" + text + b"\n.", parses=False)


def test_int_is_a_bool_only_for_two_characters(tmp_path):
    # "I01" is True, "I1" is 1: the stand-in value matters where the scanner uses it (memo keys)
    import io

    from gapsync.scanner.formats.pickle_ops import iter_ops
    from gapsync.scanner.formats.streams import ByteReader

    ops = iter_ops(ByteReader(io.BytesIO(b"I01\nI1\nI 1\nI0x1\n.")))
    values = [next(ops).arg for _ in range(4)]
    assert [type(v) for v in values] == [bool, int, bool, int]


@pytest.mark.parametrize("text", [b"0x10L", b"12L", b"12", b"1_0L", b" 7L", b"-0o7"])
def test_long_forms(tmp_path, text):
    check(tmp_path, b"L" + text + b"\n0" + PAYLOAD, parses=True)


@pytest.mark.parametrize("text", [b"1.5", b"-1e3", b".5", b"5.", b"inf", b"-Infinity", b"nan", b"1.5\0x", b"1e-999"])
def test_float_forms_the_c_unpickler_reads(tmp_path, text):
    check(tmp_path, b"F" + text + b"\n0" + PAYLOAD, parses=True)


@pytest.mark.parametrize("text", [b"1_0", b" 1.5", b"1.5 ", b"1e999", b"0x1p3", b"1e", b""])
def test_float_forms_the_c_unpickler_refuses(tmp_path, text):
    # Python's float() takes underscores and whitespace, and 1e999 as inf; PyOS_string_to_double does not
    check(tmp_path, PAYLOAD[:-1] + b"F" + text + b"\n.", parses=False)


def test_memo_indexes_are_base_10_and_memoize_counts_slots(tmp_path):
    # PUT/GET take PyLong_FromString(s, NULL, 10): " 7", "0_7", "07"; MEMOIZE stores at the number
    # of occupied slots (1 here), not at the highest index + 1 (8)
    data = (b"\x80\x04\x8c\x02osp 7\n0\x8c\x06system\x94"  # memo[7] = "os"; MEMOIZE -> memo[1] = "system"
            b"g0_7\nh\x01\x93" + b"\x8c\x02id\x85R.")  # GET 7, BINGET 1, STACK_GLOBAL
    check(tmp_path, data, parses=True)
    check(tmp_path, b"\x80\x02I1\np0x1\n0" + PAYLOAD, parses=False)  # base 10: "0x1" is refused
    check(tmp_path, b"\x80\x02I1\np-1\n0" + PAYLOAD, parses=False)  # negative PUT argument
    check(tmp_path, PAYLOAD[:-1] + b"0g3\n.", parses=False)  # GET of a slot never filled


def test_opcode_arguments_are_read_across_the_frame_end(tmp_path):
    # FRAME declares 2 bytes, BINBYTES of 0x107 bytes starts inside it: pickle.py's _Unframer
    # refuses this, the C unpickler reads straight on
    data = (b"\x80\x05\x95" + struct.pack("<Q", 2) + b"B" + struct.pack("<I", 0x107) + b"A" * 0x107 + b"0"
            + b"\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.")
    check(tmp_path, data, parses=True)
    # a frame that overlaps the next FRAME, and a frame that ends mid-opcode
    data = (b"\x80\x04\x95" + struct.pack("<Q", 1) + b"\x8c\x02os" + b"\x95" + struct.pack("<Q", 30)
            + b"\x8c\x06system\x93\x8c\x02id\x85R.")
    check(tmp_path, data, parses=True)


def test_binstring_length_is_unsigned(tmp_path):
    # BINSTRING's length is calc_binsize (unsigned); pickletools reads it signed and calls 2**31+ negative
    fs = scan(write(tmp_path, "p.bin", PAYLOAD[:-1] + b"T" + struct.pack("<I", 0x80000001) + b"abc"))
    assert [f.rule for f in errors(fs)] == ["pickle.truncated"] and payload_seen(fs)


def test_string_escapes_and_raw_unicode_escape_hide_nothing(tmp_path):
    # STRING is decoded with PyBytes_DecodeEscape, UNICODE with raw-unicode-escape
    check(tmp_path, b"\x80\x04S'o\\x73'\nS\"sys\\164em\"\n\x93\x8c\x02id\x85R.", parses=True)
    check(tmp_path, b"\x80\x04V\\u006fs\nVsys\\u0074em\n\x93\x8c\x02id\x85R.", parses=True)
    check(tmp_path, PAYLOAD[:-1] + b"S'unquoted\n.", parses=False)
    check(tmp_path, PAYLOAD[:-1] + b"S'bad \\x4'\n.", parses=False)


def test_global_and_inst_lines_as_c_decodes_them(tmp_path):
    check(tmp_path, PAYLOAD[:-1] + b"c\nsystem\n.", parses=False)  # empty module line: "pickle data was truncated"
    check(tmp_path, PAYLOAD[:-1] + b"(i\xc3\xa9\nx\n.", parses=False)  # INST names are strict ASCII


def test_build_planting_a_dunder_is_high(tmp_path):
    # an allowed class, then BUILD with a state dict that sets __setstate__ / __reduce__: the next
    # BUILD (or a copy) calls whatever was planted
    data = (b"\x80\x02ccollections\nOrderedDict\n)R}X\x0c\x00\x00\x00__setstate__cbuiltins\nlen\nsb"
            b"N}X\x0a\x00\x00\x00__reduce__K\x01s\x86b.")
    fs = scan(write(tmp_path, "p.pkl", data))
    dunders = {f.evidence["attribute"] for f in fs if f.rule == "pickle.build.dunder"}
    assert dunders == {"__setstate__", "__reduce__"} and is_malicious(fs)


def test_persistent_ids(tmp_path):
    # PERSID/BINPERSID call the loader's persistent_load; what follows is still analysed
    check(tmp_path, b"Pstorage 0\n0" + PAYLOAD, parses=True)
    check(tmp_path, b"\x80\x02X\x01\x00\x00\x00xQ0" + PAYLOAD, parses=True)
    check(tmp_path, PAYLOAD[:-1] + b"P\xc3\xa9\n.", parses=False)  # protocol-0 ids must be ASCII


def test_extension_codes_are_globals_the_scan_cannot_see(tmp_path):
    fs = scan(write(tmp_path, "p.pkl", b"\x80\x02\x82\x01X\x02\x00\x00\x00id\x85R."))
    f = next(f for f in fs if f.rule == "pickle.global.extension")
    assert f.severity is Severity.HIGH and f.evidence["code"] == 1
    for ext in (b"\x82\x00", b"\x84" + struct.pack("<i", -5)):  # code <= 0: the unpickler refuses
        check(tmp_path, PAYLOAD[:-1] + ext + b".", parses=False)


def test_python2_names_are_renamed_only_below_protocol_3(tmp_path):
    # find_class applies _compat_pickle only when proto < 3; PROTO may come anywhere
    fs = scan(write(tmp_path, "a.pkl", b"\x80\x02c__builtin__\neval\n."))
    assert any(f.rule == "pickle.global.denied" and f.evidence["category"] == "code-execution" for f in fs)
    fs = scan(write(tmp_path, "b.pkl", b"\x80\x03c__builtin__\nset\n."))  # set is allowed as builtins.set
    assert [f.rule for f in fs] == ["pickle.global.unknown"] and is_malicious(fs)
    fs = scan(write(tmp_path, "c.pkl", b"c__builtin__\nset\n\x80\x03."))
    assert not is_malicious(fs)  # read at protocol 0, before the PROTO


def test_after_stop(tmp_path):
    # torch's legacy format and joblib read several pickles from one file: all are analysed
    check(tmp_path, b"\x80\x02N." + PAYLOAD, parses=True)
    fs = scan(write(tmp_path, "p.bin", b"\x80\x02N." + b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00\xff"))
    assert errors(fs) and errors(fs)[0].severity is Severity.HIGH
    # STOP pops the top of the stack; with an empty stack the unpickler stops with an underflow
    check(tmp_path, PAYLOAD[:-1] + b"0N.", parses=True)
    check(tmp_path, PAYLOAD[:-1] + b"0.", parses=False)
    assert "pickle.trailing_data" in rules(scan(write(tmp_path, "t.pkl", b"\x80\x02N.trailing text, not a pickle")))
