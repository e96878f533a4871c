"""HDF5 (Keras ``.h5``): find the ``model_config`` attribute's JSON and analyse it as a Keras config.

Why not h5py: it would add a native HDF5 library to the DMZ host for one attribute. Keras
writes ``model_config`` (a JSON string) as an attribute of the root group before any weights,
so it sits near the start of the file, stored verbatim (attributes are not compressed). The
scanner looks for the JSON object that starts with ``{"class_name"`` or ``{"module"`` in the
first HEAD_LIMIT bytes and decodes it with a JSON decoder. A file where none is found is
reported as info (weights only, or a config this heuristic misses; see docs/scanner.md).
"""

from __future__ import annotations

import json
from typing import BinaryIO

from gapsync.model import Finding, Severity
from gapsync.scanner.base import Where, finding
from gapsync.scanner.keras import analyse_keras_config, is_keras_config

HEAD_LIMIT = 64 << 20
MARKERS = (b'{"class_name"', b'{"module"')


def scan_hdf5(f: BinaryIO, where: Where) -> list[Finding]:
    data = f.read(HEAD_LIMIT)
    decoder = json.JSONDecoder()
    out: list[Finding] = []
    found = False
    for marker in MARKERS:
        start = data.find(marker)
        while start >= 0:
            try:
                doc, _ = decoder.raw_decode(data[start:start + (16 << 20)].decode("utf-8", "replace"))
            except (ValueError, RecursionError):
                doc = None
            if is_keras_config(doc):
                found = True
                out.extend(analyse_keras_config(doc, where.child(f"<model_config@{start}>")))
                break
            start = data.find(marker, start + 1)
        if found:
            break
    if not found:
        out.append(finding(where, "hdf5.no_model_config", Severity.INFO,
                           "HDF5 file without a Keras model_config found in its first "
                           f"{HEAD_LIMIT >> 20} MiB: weights only, nothing to analyse"))
    return out
