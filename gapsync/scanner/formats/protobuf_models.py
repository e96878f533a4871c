"""ONNX models and TensorFlow SavedModels: walk the protobuf wire format, no protobuf library.

Why by hand: the ``onnx`` and ``tensorflow`` packages are large, and the scanner needs a handful
of fields. The walker reads tags and lengths, descends only into the messages that matter and
skips the rest (tensor bytes included) with seeks, so a 2 GB ONNX file costs little memory.

ONNX: tensors whose ``external_data`` location is absolute or climbs out of the model
directory make the runtime read any file into a tensor (high); nodes in a custom operator
domain need a native custom-op library registered by the runtime (medium).
SavedModel: graph and function ops that read or write files or run Python (high).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from gapsync.model import Finding, Severity
from gapsync.scanner.base import Where, finding
from gapsync.scanner.formats.streams import ByteReader, Truncated

KEEP = 1 << 20
MAX_DEPTH = 32
STANDARD_ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training",
                                   "com.microsoft", "com.microsoft.nchwc", "com.microsoft.mlfeaturizers",
                                   "com.ms.internal.nhwc", "ai.onnx.contrib"})
TF_DANGEROUS_OPS = {
    "ReadFile": "reads a file", "WriteFile": "writes a file", "MatchingFiles": "lists files",
    "DeleteFile": "deletes a file", "PyFunc": "runs Python", "PyFuncStateless": "runs Python",
    "EagerPyFunc": "runs Python", "ImmutableConst": "maps a file into memory",
    "PrintV2": "can write to a file", "DebugIdentity": "writes to debug URLs", "DebugIdentityV2": "writes debug events",
    "DebugNanCount": "writes to debug URLs", "DebugNumericSummary": "writes to debug URLs",
    "WriteAudioSummary": "writes summaries", "CreateSummaryFileWriter": "writes to a directory",
    "Save": "writes a checkpoint to a path", "SaveSlices": "writes a checkpoint to a path",
    "LoadAndRemapMatrix": "reads a checkpoint file", "TextLineDataset": "reads files",
    "FixedLengthRecordDataset": "reads files", "TFRecordDataset": "reads files",
}
TF_ROUTINE_OPS = {"SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename", "StringJoin", "Restore", "RestoreSlice"}


class ProtoError(Exception):
    pass


def _varint(r: ByteReader) -> int:
    shift = result = 0
    while True:
        b = r.read_byte()
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ProtoError(f"varint too long at {r.pos}")


def fields(r: ByteReader, end: int) -> Iterator[tuple[int, int, int | bytes | None, int]]:
    """(field number, wire type, value, length) up to ``end``; length-delimited values larger than
    KEEP are skipped (value None) unless the caller descends first: the caller gets the length
    and ``r`` positioned at the value when the value is None and wire type is 2. Every 1,024
    fields are charged to the scan budget (a field costs about three pickle opcodes)."""
    budget = r.budget
    while r.pos < end:
        if budget is not None:  # counted on the reader: each message has a generator of its own
            r.steps += 1
            if r.steps == 1024:
                budget.steps(3 * 1024)
                r.steps = 0
        key = _varint(r)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise ProtoError(f"field number 0 at {r.pos}")
        if wt == 0:
            yield num, wt, _varint(r), 0
        elif wt == 1:
            r.skip(8)
            yield num, wt, None, 8
        elif wt == 5:
            r.skip(4)
            yield num, wt, None, 4
        elif wt == 2:
            n = _varint(r)
            if r.pos + n > end:
                raise ProtoError(f"field {num} of {n} bytes overruns its message at {r.pos}")
            yield num, wt, None, n  # the caller reads, descends into or skips exactly n bytes
        else:
            raise ProtoError(f"wire type {wt} at {r.pos}")
        if r.pos > end:
            raise ProtoError("overrun")


def _message(r: ByteReader, n: int, want: dict[int, str]) -> dict[int, list]:
    """Read a small message fully: fields in ``want`` as 'str'/'int'/'raw'; others skipped."""
    end = r.pos + n
    got: dict[int, list] = {}
    for num, wt, val, ln in fields(r, end):
        kind = want.get(num)
        if wt == 2:
            if kind in ("str", "raw") and ln <= KEEP:
                data = r.read(ln)
                got.setdefault(num, []).append(data.decode("utf-8", "replace") if kind == "str" else data)
            else:
                r.skip(ln)
        elif kind == "int":
            got.setdefault(num, []).append(val)
    return got


def scan_protobuf(f: BinaryIO, where: Where) -> list[Finding]:
    r = ByteReader(f)
    r.budget = where.budget
    size = where.size if where.size is not None else 1 << 62
    out: list[Finding] = []
    try:
        # Peek at the top-level field numbers to tell ONNX (graph=7, opset_import=8) from SavedModel (meta_graphs=2).
        top = set()
        for num, wt, _val, ln in fields(r, size):
            top.add(num)
            if wt == 2:
                r.skip(ln)
    except (ProtoError, Truncated):
        return []  # not a protobuf we understand: nothing loadable here
    f.seek(0)
    r = ByteReader(f)
    r.budget = where.budget
    try:
        if 7 in top or 8 in top:
            _onnx_model(r, size, where, out)
        elif top <= {1, 2} and 2 in top:
            _saved_model(r, size, where, out)
    except (ProtoError, Truncated) as e:
        out.append(finding(where, "protobuf.malformed", Severity.MEDIUM, f"protobuf damaged: {e}", r.pos))
    return out


# -- ONNX ----------------------------------------------------------------------------------------
def _onnx_model(r: ByteReader, end: int, where: Where, out: list[Finding]) -> None:
    local_domains: set[str] = set()
    for num, wt, _val, ln in fields(r, end):
        if wt != 2:
            continue
        if num == 7:
            _onnx_graph(r, r.pos + ln, where, out, local_domains, 0)
        elif num == 8:
            m = _message(r, ln, {1: "str"})
            dom = (m.get(1) or [""])[0]
            if dom not in STANDARD_ONNX_DOMAINS:
                out.append(finding(where, "onnx.custom_domain", Severity.MEDIUM,
                                   f"opset_import of custom operator domain {dom!r}: running the model needs a "
                                   "native custom-op library", domain=dom))
        elif num == 25:
            m = _message(r, ln, {10: "str"})
            local_domains.update(m.get(10, []))
        else:
            r.skip(ln)


def _onnx_graph(r: ByteReader, end: int, where: Where, out: list[Finding], local: set[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ProtoError("subgraphs nested too deep")
    for num, wt, _val, ln in fields(r, end):
        if wt != 2:
            continue
        if num == 1:
            _onnx_node(r, r.pos + ln, where, out, local, depth)
        elif num in (5, 15):
            _onnx_tensor(r, r.pos + ln, where, out)
        else:
            r.skip(ln)


def _onnx_node(r: ByteReader, end: int, where: Where, out: list[Finding], local: set[str], depth: int) -> None:
    op_type = domain = ""
    for num, wt, _val, ln in fields(r, end):
        if wt != 2:
            continue
        if num == 4:
            op_type = r.read(min(ln, KEEP)).decode("utf-8", "replace")
            r.skip(ln - min(ln, KEEP))
        elif num == 7:
            domain = r.read(min(ln, KEEP)).decode("utf-8", "replace")
            r.skip(ln - min(ln, KEEP))
        elif num == 5:
            _onnx_attribute(r, r.pos + ln, where, out, local, depth)
        else:
            r.skip(ln)
    if domain not in STANDARD_ONNX_DOMAINS and domain not in local:
        out.append(finding(where, "onnx.custom_domain", Severity.MEDIUM,
                           f"node {op_type!r} in custom operator domain {domain!r}: needs a native custom-op library",
                           domain=domain, op_type=op_type))


def _onnx_attribute(r: ByteReader, end: int, where: Where, out: list[Finding], local: set[str], depth: int) -> None:
    for num, wt, _val, ln in fields(r, end):
        if wt != 2:
            continue
        if num in (6, 11):  # g, graphs: subgraphs of If / Loop / Scan
            _onnx_graph(r, r.pos + ln, where, out, local, depth + 1)
        elif num in (5, 10):  # t, tensors
            _onnx_tensor(r, r.pos + ln, where, out)
        else:
            r.skip(ln)


def _onnx_tensor(r: ByteReader, end: int, where: Where, out: list[Finding]) -> None:
    name = ""
    for num, wt, _val, ln in fields(r, end):
        if wt != 2:
            continue
        if num == 8 and ln <= KEEP:
            name = r.read(ln).decode("utf-8", "replace")
        elif num == 13:
            m = _message(r, ln, {1: "str", 2: "str"})
            if (m.get(1) or [""])[0] == "location":
                _check_location((m.get(2) or [""])[0], name, where, out)
        else:
            r.skip(ln)


def _check_location(loc: str, tensor: str, where: Where, out: list[Finding]) -> None:
    norm = loc.replace("\\", "/")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    depth = 0
    escapes = False
    for p in parts:
        depth += -1 if p == ".." else 1
        escapes = escapes or depth < 0
    absolute = norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or norm.startswith("//")
    if absolute or escapes or "\x00" in loc:
        out.append(finding(where, "onnx.external_data.escape", Severity.HIGH,
                           f"tensor {tensor!r} loads its data from {loc!r}, outside the model directory: "
                           "the runtime reads that file into the model", location=loc, tensor=tensor))


# -- TensorFlow SavedModel ------------------------------------------------------------------------
def _saved_model(r: ByteReader, end: int, where: Where, out: list[Finding]) -> None:
    ops: dict[str, int] = {}
    for num, wt, _val, ln in fields(r, end):
        if wt == 2 and num == 2:
            _descend(r, r.pos + ln, {2: {1: "node", 2: {1: {3: "node"}}}}, ops)  # meta_graph.graph_def
        elif wt == 2:
            r.skip(ln)
    for op, count in sorted(ops.items()):
        if op in TF_DANGEROUS_OPS:
            out.append(finding(where, "tensorflow.op", Severity.HIGH,
                               f"graph op {op} {TF_DANGEROUS_OPS[op]} when the model runs", op=op, count=count))


def _descend(r: ByteReader, end: int, plan: dict, ops: dict[str, int]) -> None:
    """Follow ``plan`` (field number -> sub-plan, or "node" for a NodeDef) and count NodeDef ops."""
    for num, wt, _val, ln in fields(r, end):
        if wt != 2:
            continue
        sub = plan.get(num)
        if sub == "node":
            m = _message(r, ln, {2: "str"})
            for op in m.get(2, []):
                ops[op] = ops.get(op, 0) + 1
        elif isinstance(sub, dict):
            _descend(r, r.pos + ln, sub, ops)
        else:
            r.skip(ln)
