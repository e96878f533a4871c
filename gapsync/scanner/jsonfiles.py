"""JSON files: only Keras model configs matter here; other JSON (tokenizers, HF configs) is data."""

from __future__ import annotations

import json
from typing import BinaryIO

from gapsync.model import Finding, Severity
from gapsync.scanner.base import Where, finding
from gapsync.scanner.keras import analyse_keras_config, is_keras_config

MAX_JSON = 64 << 20


def scan_json(f: BinaryIO, where: Where) -> list[Finding]:
    data = f.read(MAX_JSON + 1)
    if len(data) > MAX_JSON:
        return []  # large JSON (tokenizer vocabularies) is data, not a model config
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return [finding(where, "json.malformed", Severity.INFO, "not valid JSON")] if where.depth == 0 else []
    if is_keras_config(doc):
        return analyse_keras_config(doc, where)
    return []
