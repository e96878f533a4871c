"""JSON files: Keras model configs and chat templates matter here; other JSON (vocabularies, HF configs) is data.

``chat_template`` at the top level of ``tokenizer_config.json`` (a string, or a list of
``{"name", "template"}``) and of ``chat_template.json`` is a Jinja2 program that inference
servers render: it is judged by gapsync/scanner/formats/templates.py.
"""

from __future__ import annotations

import json
import re
from typing import BinaryIO

from gapsync.model import Finding, Severity
from gapsync.scanner.base import Where, finding
from gapsync.scanner.formats.keras import analyse_keras_config, is_keras_config
from gapsync.scanner.formats.templates import template_findings

MAX_JSON = 64 << 20
CHUNK = 1 << 20
# the string "chat_template", each character possibly written as a \\u escape (json.loads decodes them)
def _char(c: int) -> bytes:
    hexa = b"".join(b"[%s%s]" % (bytes([h]), bytes([h]).upper()) if h > 0x39 else bytes([h]) for h in b"%04x" % c)
    return b"(?:%s|\\\\u%s)" % (re.escape(bytes([c])), hexa)


_TEMPLATE_KEY = re.compile(b'"' + b"".join(_char(c) for c in b"chat_template") + b'"')
_KEY_SPAN = 100  # longer than any match: the overlap kept between chunks


def scan_json(f: BinaryIO, where: Where) -> list[Finding]:
    data = f.read(MAX_JSON + 1)
    if len(data) > MAX_JSON:
        # large JSON (tokenizer vocabularies) is data, not parsed; but a chat template hidden in it
        # cannot be judged, so the string "chat_template" anywhere in the file fails closed
        return _large_json(f, data, where)
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return [finding(where, "json.malformed", Severity.INFO, "not valid JSON")] if where.depth == 0 else []
    if is_keras_config(doc):
        return analyse_keras_config(doc, where)
    if isinstance(doc, dict) and doc.get("chat_template") is not None:
        return template_findings(where, "chat_template", doc["chat_template"], None, "json.chat_template")
    return []


def _large_json(f: BinaryIO, data: bytes, where: Where) -> list[Finding]:
    tail = b""
    while data:
        window = tail + data
        if _TEMPLATE_KEY.search(window):
            return [finding(where, "json.chat_template.suspicious", Severity.HIGH,
                            f"\"chat_template\" in JSON over {MAX_JSON >> 20} MiB: too large to parse and "
                            "judge the template (fail closed)", None, key="chat_template")]
        tail = window[-_KEY_SPAN:]
        data = f.read(CHUNK)
    return []
