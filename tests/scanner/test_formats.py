"""safetensors, GGUF, ONNX, Keras (.keras and .h5) and SavedModel samples written by hand."""

from __future__ import annotations

import io
import json
import struct
import zipfile

import pytest

from gapsync.model import Severity
from tests.support.samples import is_malicious, pb_bytes, pb_int, rules, scan, write


def safetensors_bytes(tensors: dict, trailing: bytes = b"", gap: int = 0) -> bytes:
    header, data, pos = {"__metadata__": {"format": "pt"}}, b"", 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + len(raw)]}
        data += raw + b"\x00" * gap
        pos += len(raw) + gap
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data + trailing


def test_safetensors_valid(tmp_path):
    data = safetensors_bytes({"w": ("F32", [2, 2], b"\x00" * 16), "b": ("I64", [1], b"\x00" * 8)})
    assert scan(write(tmp_path, "m.bin", data)) == []


def test_safetensors_trailing_payload(tmp_path):
    data = safetensors_bytes({"w": ("F32", [1], b"\x00" * 4)}, trailing=b"\x80\x04N.")
    fs = scan(write(tmp_path, "m.safetensors", data))
    assert "safetensors.trailing_data" in rules(fs) and is_malicious(fs)


def test_safetensors_gap_and_bad_size(tmp_path):
    fs = scan(write(tmp_path, "gap.safetensors", safetensors_bytes({"w": ("F32", [1], b"\x00" * 4),
                                                                    "v": ("F32", [1], b"\x00" * 4)}, gap=4)))
    assert "safetensors.layout" in rules(fs)
    h = json.dumps({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 4]}}).encode()
    fs = scan(write(tmp_path, "size.safetensors", struct.pack("<Q", len(h)) + h + b"\x00" * 4))
    assert "safetensors.tensor" in rules(fs)


def test_safetensors_library_output_is_clean(tmp_path):
    np = pytest.importorskip("numpy")
    st = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "lib.safetensors"
    st.save_file({"a": np.zeros((3, 5), dtype=np.float16), "b": np.arange(7)}, str(path))
    assert scan(path) == []


def gguf_bytes(kv: dict[str, str]) -> bytes:
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv))
    for k, v in kv.items():
        kb, vb = k.encode(), v.encode()
        out += struct.pack("<Q", len(kb)) + kb + struct.pack("<I", 8) + struct.pack("<Q", len(vb)) + vb
    return out


def test_gguf_chat_template_review_and_injection(tmp_path):
    fs = scan(write(tmp_path, "ok.gguf", gguf_bytes({"general.name": "x", "tokenizer.chat_template": "{{ messages }}"})))
    assert rules(fs) == {"gguf.chat_template"} and not is_malicious(fs)
    evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    fs = scan(write(tmp_path, "bad.gguf", gguf_bytes({"tokenizer.chat_template": evil})))
    assert "gguf.chat_template.suspicious" in rules(fs) and is_malicious(fs)


def test_gguf_absurd_counts(tmp_path):
    fs = scan(write(tmp_path, "c.gguf", b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 1)))
    assert is_malicious(fs)


def onnx_bytes(location: str | None = None, domain: str = "") -> bytes:
    tensor = pb_bytes(8, "w") + pb_int(2, 1)
    if location is not None:
        tensor += pb_bytes(13, pb_bytes(1, "location") + pb_bytes(2, location)) + pb_int(14, 1)
    node = pb_bytes(1, "x") + pb_bytes(2, "y") + pb_bytes(4, "Relu") + pb_bytes(7, domain)
    graph = pb_bytes(1, node) + pb_bytes(2, "g") + pb_bytes(5, tensor)
    return pb_int(1, 8) + pb_bytes(2, "test") + pb_bytes(7, graph) + pb_bytes(8, pb_bytes(1, "") + pb_int(2, 17))


def test_onnx_clean_and_relative_external_data(tmp_path):
    assert scan(write(tmp_path, "m.onnx", onnx_bytes())) == []
    assert scan(write(tmp_path, "r.onnx", onnx_bytes("weights/w.bin"))) == []


@pytest.mark.parametrize("loc", ["/etc/passwd", "../../../home/u/.ssh/id_rsa", "a/../../x", "C:\\Windows\\x"])
def test_onnx_external_data_escape(tmp_path, loc):
    fs = scan(write(tmp_path, "m.onnx", onnx_bytes(loc)))
    assert "onnx.external_data.escape" in rules(fs) and is_malicious(fs)


def test_onnx_custom_domain(tmp_path):
    fs = scan(write(tmp_path, "m.onnx", onnx_bytes(domain="my.custom.ops")))
    assert any(f.rule == "onnx.custom_domain" and f.severity is Severity.MEDIUM for f in fs)


def keras_zip(config: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.5.0"}))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    return buf.getvalue()


def dense(name: str) -> dict:
    return {"module": "keras.layers", "class_name": "Dense", "config": {"name": name, "units": 2,
            "activation": "relu"}, "registered_name": None}


def sequential(*layers: dict) -> dict:
    return {"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": list(layers)},
            "registered_name": None}


def test_keras_without_lambda_is_clean(tmp_path):
    fs = scan(write(tmp_path, "m.keras", keras_zip(sequential(dense("a"), dense("b")))))
    assert not [f for f in fs if f.severity.rank >= Severity.MEDIUM.rank]


def test_keras_lambda_layer(tmp_path):
    lam = {"module": "keras.layers", "class_name": "Lambda",
           "config": {"name": "l", "function": {"class_name": "__lambda__", "config": {"code": "4wEAAA=="}}}}
    fs = scan(write(tmp_path, "m.keras", keras_zip(sequential(dense("a"), lam))))
    assert any(f.rule == "keras.lambda" and f.location == "config.json" for f in fs) and is_malicious(fs)


def test_keras_function_from_foreign_module(tmp_path):
    layer = dense("a")
    layer["config"]["activation"] = {"module": "builtins", "class_name": "function", "config": "exec",
                                     "registered_name": "function"}
    fs = scan(write(tmp_path, "m.keras", keras_zip(sequential(layer))))
    assert any(f.rule == "keras.custom_module" and f.severity is Severity.CRITICAL for f in fs)


def test_h5_model_config(tmp_path):
    cfg = json.dumps(sequential(dense("a"), {"class_name": "Lambda", "config": {"function": "x"}})).encode()
    data = b"\x89HDF\r\n\x1a\n" + b"\x00" * 200 + cfg + b"\x00" * 200
    fs = scan(write(tmp_path, "m.h5", data))
    assert "keras.lambda" in rules(fs)
    clean = b"\x89HDF\r\n\x1a\n" + b"\x00" * 200 + json.dumps(sequential(dense("a"))).encode()
    assert not is_malicious(scan(write(tmp_path, "ok.h5", clean)))


def saved_model_bytes(ops: list[str], function_ops: list[str] = ()) -> bytes:
    nodes = b"".join(pb_bytes(1, pb_bytes(1, f"n{i}") + pb_bytes(2, op)) for i, op in enumerate(ops))
    fn = pb_bytes(1, b"".join(pb_bytes(3, pb_bytes(1, "f") + pb_bytes(2, op)) for op in function_ops))
    graph = nodes + pb_bytes(2, fn)
    meta = pb_bytes(1, pb_bytes(1, "serve")) + pb_bytes(2, graph)
    return pb_int(1, 1) + pb_bytes(2, meta)


def test_saved_model_ops(tmp_path):
    assert scan(write(tmp_path, "ok/saved_model.pb", saved_model_bytes(["Const", "MatMul", "SaveV2"]))) == []
    fs = scan(write(tmp_path, "bad/saved_model.pb", saved_model_bytes(["Const"], ["ReadFile", "PyFunc"])))
    assert {f.evidence["op"] for f in fs if f.rule == "tensorflow.op"} == {"ReadFile", "PyFunc"}
