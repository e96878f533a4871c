"""Hostile pickles written opcode by opcode: each technique the stack machine must see through.

Payloads would only call builtins.print (denied) or an unimportable module if ever loaded;
they are never loaded.
"""

from __future__ import annotations

import pickle
import struct

import pytest

from gapsync.model import Severity
from gapsync.policies.pickle_globals import GlobalAction, load_pickle_policy
from tests.support.samples import (
    PROTO4,
    binunicode,
    call_print_p0,
    global0,
    globals_found,
    is_malicious,
    rules,
    scan,
    short_unicode,
    stack_global_print,
    write,
)


def test_protocol0_global_reduce(tmp_path):
    fs = scan(write(tmp_path, "a.pkl", call_print_p0()))
    assert globals_found(fs) == {"builtins.print"}
    f = next(f for f in fs if f.rule == "pickle.global.denied")
    assert f.offset == 0 and f.evidence["called"] and "hi" in f.evidence["args"]


@pytest.mark.parametrize("proto", [1, 2, 3, 4, 5])
def test_every_protocol_with_a_real_pickler(tmp_path, proto):
    # pickle.dumps of a reference to builtins.print: the pickler itself writes the global.
    fs = scan(write(tmp_path, "p.bin", pickle.dumps([print, {1: "x"}], protocol=proto)))
    # protocols < 3 write Python 2 names (__builtin__.print); the scanner maps them back
    assert globals_found(fs) & {"builtins.print", "__builtin__.print"} and is_malicious(fs)


def test_stack_global_through_memo(tmp_path):
    # names memoized first, then fetched with BINGET for STACK_GLOBAL (picklescan malicious11 style)
    data = (PROTO4 + short_unicode("builtins") + b"q\x01" + short_unicode("print") + b"q\x02" + b"0" + b"0"
            + b"h\x01h\x02\x93" + short_unicode("x") + b"\x85R.")
    assert globals_found(scan(write(tmp_path, "m.pkl", data))) == {"builtins.print"}


def test_stack_global_fed_by_protocol0_strings(tmp_path):
    data = b"S'builtins'\nS'print'\n\x93S'x'\n\x85R."
    assert globals_found(scan(write(tmp_path, "s.pkl", data))) == {"builtins.print"}


def test_stack_global_with_computed_name_is_critical(tmp_path):
    # the module name is the result of a call (str('builtins')): unknowable without running
    data = (PROTO4 + short_unicode("builtins") + short_unicode("str") + b"\x93" + short_unicode("builtins")
            + b"\x85R" + short_unicode("print") + b"\x93N\x85R.")
    fs = scan(write(tmp_path, "d.pkl", data))
    assert any(f.rule == "pickle.global.dynamic" and f.severity is Severity.CRITICAL for f in fs)


def test_inst_and_obj(tmp_path):
    inst = b"(V1\ni" + b"builtins\nprint\n."
    obj = b"(" + global0("builtins", "print") + b"V1\no."
    assert globals_found(scan(write(tmp_path, "i.pkl", inst))) == {"builtins.print"}
    assert globals_found(scan(write(tmp_path, "o.pkl", obj))) == {"builtins.print"}


def test_newobj_and_newobj_ex(tmp_path):
    cls = PROTO4 + short_unicode("evilpkg.mod") + short_unicode("Thing") + b"\x93"
    newobj = cls + b")\x81."
    newobj_ex = cls + b")}\x92."
    for name, data in (("n.pkl", newobj), ("nx.pkl", newobj_ex)):
        fs = scan(write(tmp_path, name, data))
        assert globals_found(fs) == {"evilpkg.mod.Thing"}
        assert any(f.rule == "pickle.global.unknown" and f.severity is Severity.HIGH for f in fs)


@pytest.mark.parametrize("op", [b"\x82\x01", b"\x83\x01\x00", b"\x84\x01\x00\x00\x00"])
def test_ext_opcodes(tmp_path, op):
    fs = scan(write(tmp_path, "e.pkl", PROTO4 + op + b")R."))
    assert "pickle.global.extension" in rules(fs) and is_malicious(fs)


def test_getattr_chain_call_is_indirect(tmp_path):
    # getattr(builtins.__import__('os'), 'system')('true'): three globals and an indirect call
    data = (global0("builtins", "getattr") + b"(" + global0("builtins", "__import__") + b"(Vos\ntRVsystem\ntR"
            + b"(Vtrue\ntR.")
    fs = scan(write(tmp_path, "g.pkl", data))
    assert {"builtins.getattr", "builtins.__import__"} <= globals_found(fs)
    assert "pickle.call.indirect" in rules(fs)


def test_nested_pickle_passed_to_loads_is_analysed(tmp_path):
    inner = stack_global_print()
    outer = PROTO4 + short_unicode("pickle") + short_unicode("loads") + b"\x93" + b"C" + bytes([len(inner)]) + inner
    outer += b"\x85R."
    fs = scan(write(tmp_path, "n.pkl", outer))
    assert "pickle.loads" in globals_found(fs)
    nested = [f for f in fs if f.location and "nested-pickle" in f.location]
    assert nested and nested[0].evidence["global"] == "builtins.print"


def test_nested_pickle_as_protocol2_codecs_bytes(tmp_path):
    inner = call_print_p0()
    escaped = inner.decode("latin-1").replace("\n", "\\u000a").encode("latin-1")
    enc = global0("_codecs", "encode") + b"(V" + escaped + b"\nVlatin1\ntR"
    outer = b"\x80\x02" + global0("pickle", "loads") + b"(" + enc + b"tR."
    fs = scan(write(tmp_path, "n2.pkl", outer))
    assert any(f.location and "nested-pickle" in f.location and f.evidence.get("global") == "builtins.print"
               for f in fs)


def test_concatenated_pickles_second_one_is_scanned(tmp_path):
    data = pickle.dumps([1, 2, 3], protocol=2) + stack_global_print()
    fs = scan(write(tmp_path, "c.pkl", data))
    assert globals_found(fs) == {"builtins.print"}


def test_legacy_torch_sequence_then_raw_data(tmp_path):
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    parts = [magic, pickle.dumps(1001, protocol=2), pickle.dumps({"little_endian": True}, protocol=2),
             stack_global_print(), pickle.dumps(["0"], protocol=2)]
    raw = b"c" + b"\x00" * 64 + b"\n"  # tensor bytes after the 5th pickle are not a pickle
    fs = scan(write(tmp_path, "legacy.pt", b"".join(parts) + raw))
    assert globals_found(fs) == {"builtins.print"}
    assert not [f for f in fs if f.rule.startswith("pickle.") and f.rule != "pickle.global.denied"]


def test_build_on_a_global_overwrites_it(tmp_path):
    data = (PROTO4 + short_unicode("collections") + short_unicode("OrderedDict") + b"\x93"
            + b"}" + short_unicode("__init__") + short_unicode("x") + b"sb.")
    fs = scan(write(tmp_path, "b.pkl", data))
    assert "pickle.build.global" in rules(fs) and is_malicious(fs)


def test_setitem_on_a_global(tmp_path):
    data = PROTO4 + short_unicode("collections") + short_unicode("OrderedDict") + b"\x93" + b"VK\nVV\ns."
    assert "pickle.mutate.global" in rules(scan(write(tmp_path, "s.pkl", data)))


def test_dotted_name_reaches_through_a_module(tmp_path):
    data = PROTO4 + short_unicode("collections") + short_unicode("os.system") + b"\x93" + short_unicode("true") + b"\x85R."
    fs = scan(write(tmp_path, "dot.pkl", data))
    f = next(f for f in fs if f.rule == "pickle.global.denied")
    assert f.severity is Severity.CRITICAL


def test_python2_names_are_mapped(tmp_path):
    fs = scan(write(tmp_path, "py2.pkl", global0("__builtin__", "print") + b"(V1\ntR."))
    assert any(f.rule == "pickle.global.denied" for f in fs)


def test_payload_after_a_huge_long_is_still_seen(tmp_path):
    big = b"\x8b" + struct.pack("<i", 100_000) + b"\x01" * 100_000 + b"0"
    data = PROTO4 + big + stack_global_print()[2:]
    assert globals_found(scan(write(tmp_path, "long.pkl", data))) == {"builtins.print"}


def test_payload_after_large_bytes_is_still_seen(tmp_path):
    blob = b"\x8e" + struct.pack("<Q", 5 << 20) + b"\x00" * (5 << 20) + b"0"
    data = PROTO4 + blob + stack_global_print()[2:]
    assert globals_found(scan(write(tmp_path, "big.pkl", data))) == {"builtins.print"}


def test_frame_opcodes_are_followed(tmp_path):
    body = stack_global_print()[2:]
    data = PROTO4 + b"\x95" + struct.pack("<Q", len(body)) + body
    assert globals_found(scan(write(tmp_path, "f.pkl", data))) == {"builtins.print"}


def test_truncated_pickle_is_a_finding_after_what_came_before(tmp_path):
    data = stack_global_print()[:-3]
    fs = scan(write(tmp_path, "t.pkl", data))
    assert "pickle.truncated" in rules(fs) and "builtins.print" in globals_found(fs)


def test_unknown_opcode_is_a_finding(tmp_path):
    fs = scan(write(tmp_path, "u.pkl", PROTO4 + b"N\xff."))
    assert any(f.rule == "pickle.opcode.unknown" and f.offset == 3 for f in fs)


def test_memo_miss_is_malformed_not_a_crash(tmp_path):
    fs = scan(write(tmp_path, "k.pkl", PROTO4 + b"h\x07."))
    assert "pickle.malformed" in rules(fs)


def test_unsupported_protocol(tmp_path):
    fs = scan(write(tmp_path, "p9.pkl", b"\x80\x09N."))
    assert not is_malicious(fs)  # 0x80 0x09 is not detected as a pickle; nothing loadable
    fs = scan(write(tmp_path, "p4.pkl", PROTO4 + b"\x80\x09N."))
    assert "pickle.malformed" in rules(fs)


def test_unknown_module_is_high(tmp_path):
    fs = scan(write(tmp_path, "x.pkl", global0("notapackage.sub", "run") + b"(tR."))
    assert any(f.rule == "pickle.global.unknown" and f.severity is Severity.HIGH for f in fs)


def test_text_file_is_not_taken_for_a_pickle(tmp_path):
    fs = scan(write(tmp_path, "vocab.txt", b"cat\ndog\nbird\n"))
    assert not is_malicious(fs)


def test_duplicate_findings_are_counted_once(tmp_path):
    data = b"(" + (global0("builtins", "print") + b"(V1\ntR") * 50 + b"l."
    fs = scan(write(tmp_path, "many.pkl", data))
    denied = [f for f in fs if f.rule == "pickle.global.denied"]
    assert len(denied) == 1 and denied[0].evidence["count"] == 50


def test_policy_precedence():
    pol = load_pickle_policy()
    assert pol.classify("collections", "OrderedDict").action is GlobalAction.ALLOW
    assert pol.classify("copyreg", "add_extension").action is GlobalAction.DENY
    assert pol.classify("sklearn.linear_model._logistic", "LogisticRegression").action is GlobalAction.ALLOW
    assert pol.classify("sklearn.datasets", "fetch_openml").action is GlobalAction.DENY
    assert pol.classify("sklearn.utils.tests.helpers", "run").action is GlobalAction.UNKNOWN
    assert pol.classify("sklearn.base", "BaseEstimator.__init__.__globals__").action is GlobalAction.UNKNOWN
    assert pol.classify("numpy.testing._private.utils", "runstring").severity is Severity.CRITICAL
    assert pol.classify("torch._utils", "_rebuild_tensor_v2").action is GlobalAction.ALLOW
    assert pol.classify("torch.serialization", "load").action is GlobalAction.DENY


def test_binunicode_helper_roundtrip(tmp_path):
    data = PROTO4 + binunicode("builtins") + binunicode("print") + b"\x93)R."
    assert globals_found(scan(write(tmp_path, "bu.pkl", data))) == {"builtins.print"}
