"""Canonical JSON: the one way gapsync turns a document into the bytes it hashes or signs.

Why one helper: a signature or a hash chain holds only while every writer and every reader
produce the same bytes for the same document, and three hand-written ``json.dumps`` calls that
differ in one keyword (``ensure_ascii``) are how that breaks unnoticed. The form: keys sorted,
no whitespace (separators ``","`` and ``":"``), encoded as UTF-8.

The bytes of existing documents must not change (receipt signatures, the audit log's hash chain,
parity headers' checks and chart config digests are on disk), so the sites keep the form each
one wrote, spelled here:

- :func:`canonical_json` (ASCII: anything else as ``\\uXXXX`` escapes) for receipts
  (``bundle/receipt.py``), parity headers (``bundle/parity.py``), the OCI config of an HTTP chart
  (``bundler/sources/charts.py``, ``default=str`` for the dates YAML gives) and key material
  compared in memory (``bundle/tuf.py``);
- ``canonical_json(..., ensure_ascii=False)`` (raw UTF-8) for the audit log (``audit.py``):
  its entries have been hash-chained in that form since the first release;
- :func:`sorted_json` (keys sorted, json's default ``", "``/``": "`` separators), older and kept
  only because its hashes are stored: a lock's ``spec_digest`` (``bundler/spec.py``; another form
  would call every existing ``gapsync.lock`` stale) and a conda package's claim value
  (``mirror/claims.py``; another form would make a mirror's claims disagree with a re-import of
  the same package). New code uses :func:`canonical_json`.

TUF metadata is not serialized here: python-tuf's ``CanonicalJSONSerializer`` (OLPC canonical
JSON) is what TUF signatures cover (:mod:`gapsync.bundle.tuf`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def canonical_json(obj: Any, *, ensure_ascii: bool = True, default: Callable[[Any], Any] | None = None) -> bytes:
    """``obj`` as canonical JSON bytes: sorted keys, no whitespace, UTF-8; non-ASCII characters
    escaped unless ``ensure_ascii`` is False (the audit log's form); ``default`` as in
    :func:`json.dumps` (how values JSON has no type for are written)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=ensure_ascii,
                      default=default).encode()


def sorted_json(obj: Any, *, default: Callable[[Any], Any] | None = None) -> bytes:
    """The older sorted form (json's default separators, ASCII): only where its hashes are
    already stored (see the module docstring); new code uses :func:`canonical_json`."""
    return json.dumps(obj, sort_keys=True, default=default).encode()
