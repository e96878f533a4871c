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
from gapsync.scanner.formats.keras import analyse_keras_config, is_keras_config

HEAD_LIMIT = 64 << 20
MARKERS = ('{"class_name"', '{"module"')
MAX_CANDIDATES = 256  # JSON objects tried; Keras writes one model_config, so more is a decoy field


def scan_hdf5(f: BinaryIO, where: Where) -> list[Finding]:
    # decoded once, and parsed in place (raw_decode from an index): a file of nothing but markers
    # must not cost a copy and a parse of the rest of the file per marker
    text = f.read(HEAD_LIMIT).decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    out: list[Finding] = []
    tried = 0
    for marker in MARKERS:
        start = text.find(marker)
        while start >= 0:
            tried += 1
            if tried > MAX_CANDIDATES:
                return [finding(where, "hdf5.unreadable", Severity.HIGH,
                                f"more than {MAX_CANDIDATES} places look like the start of a model_config: the "
                                "real one cannot be told from decoys, so the file was not scanned")]
            if where.budget is not None:
                where.budget.steps(1000)
            try:
                doc, _ = decoder.raw_decode(text, start)
            except (ValueError, RecursionError):
                doc = None
            if is_keras_config(doc):
                out.extend(analyse_keras_config(doc, where.child(f"<model_config@{start}>")))
                return out
            start = text.find(marker, start + 1)
    out.append(finding(where, "hdf5.no_model_config", Severity.INFO,
                       "HDF5 file without a Keras model_config found in its first "
                       f"{HEAD_LIMIT >> 20} MiB: weights only, nothing to analyse"))
    return out
