"""JSON files: Keras model configs and chat templates matter here; other JSON (vocabularies, HF configs) is data.

``chat_template`` at the top level of ``tokenizer_config.json`` (a string, or a list of
``{"name", "template"}``) and of ``chat_template.json`` is a Jinja2 program that inference
servers render: it is judged by gapsync/scanner/templates.py.
"""

from __future__ import annotations

import json
from typing import BinaryIO

from gapsync.model import Finding, Severity
from gapsync.scanner.base import Where, finding
from gapsync.scanner.keras import analyse_keras_config, is_keras_config
from gapsync.scanner.templates import template_findings

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
    if isinstance(doc, dict) and doc.get("chat_template") is not None:
        return template_findings(where, "chat_template", doc["chat_template"], None, "json.chat_template")
    return []
