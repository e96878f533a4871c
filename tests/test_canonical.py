"""gapsync/canonical.py: the one canonical-JSON helper gives, byte for byte, what each site wrote
before it existed (receipt signatures, the audit chain, parity checks, chart config digests, lock
spec digests and conda claims are on disk in those forms)."""

from __future__ import annotations

import datetime
import hashlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gapsync.canonical import canonical_json, sorted_json

# JSON values with the characters where the forms differ: non-ASCII, astral, controls, quotes.
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_each_form_is_the_bytes_its_site_wrote(value):
    assert canonical_json(value) == json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    assert canonical_json(value, ensure_ascii=False) == json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical_json(value, default=str) == json.dumps(
        value, sort_keys=True, separators=(",", ":"), default=str).encode()
    assert sorted_json(value) == json.dumps(value, sort_keys=True).encode()


def test_known_digests_do_not_move():
    """Digests computed with the hand-written calls before the helper: an audit entry (UTF-8,
    the chain on disk), a receipt body (ASCII escapes, the signature on disk), a chart config
    with a YAML date (default=str), a spec body (the older separators, in every lock)."""
    entry = {"seq": 7, "prev": "0" * 64, "actor": "opérateur", "action": "import", "bundle": "prod-3.gapsync",
             "result": "ok", "digests": ["sha256:ab"], "n": 1.5, "t": None, "z": {"b": 1, "a": [True, False]}}
    body = {"channel": "prod", "version": 3, "blobs": ["ab", "cd"], "note": "naïve ✓"}
    chart = {"apiVersion": "v2", "name": "demo", "version": "1.0.0", "created": datetime.date(2024, 1, 2),
             "description": "ü"}
    spec = {"python": {"requirements": ["a==1"], "targets": ["cp311"]}, "images": None}

    def sha(b: bytes) -> str:
        return hashlib.sha256(b).hexdigest()

    assert sha(canonical_json(entry, ensure_ascii=False)) == \
        "2569538ce984fffed6a578a9a0bcc2fcd64495d801dc5d333d74c6c3fc05c1dc"
    assert sha(canonical_json(body)) == "00a3d7038d790c6c338bcbbfb25e016662529e53ececeee2e5970a666e24a393"
    assert sha(canonical_json(chart, default=str)) == \
        "42d1aa1734343b5877c72552108fda8cea0bb73c65213f2092dabed294165fd1"
    assert sha(sorted_json(spec)) == "605e699bed0db7d219ce9dbee0d9a1df67096bfe442fa7064b30da29c4937301"
    # the two compact forms really differ on non-ASCII: the audit log could not switch to ASCII
    assert canonical_json(entry) != canonical_json(entry, ensure_ascii=False)


def test_the_sites_use_it():
    """The audit chain and the receipt signature go through the helper (a private copy of the
    form would drift unnoticed)."""
    from gapsync import audit
    from gapsync.bundle import receipt

    entry = {"b": "é", "a": 1}
    assert audit._canonical(entry) == canonical_json(entry, ensure_ascii=False)
    assert receipt._canonical(entry) == canonical_json(entry)


def test_a_helm_config_keeps_its_bytes():
    """An HTTP chart's OCI config (its digest is in locks and bundles) through the helper: the
    same bytes as the call it replaced, YAML dates written with str()."""
    from gapsync.bundler.sources.charts import helm_manifest

    chart = {"apiVersion": "v2", "name": "démo", "version": "1.0.0", "created": datetime.date(2024, 1, 2)}
    _, config = helm_manifest(b"archive", chart)
    assert config == json.dumps(chart, sort_keys=True, separators=(",", ":"), default=str).encode()
    assert b'"created":"2024-01-02"' in config and b"d\\u00e9mo" in config
