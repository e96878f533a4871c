"""sync keeps the lock it resolved, and a sync with nothing changed upstream skips the resolver
(issue 17): the index pages of the last resolve are revalidated, and only a changed page (or a
changed spec) resolves again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.channels import new_channel, write_spec
from tests.support.cli import cli
from tests.support.servers import static_server
from tests.support.wheels import make_wheel, write_index


@pytest.fixture
def upstream(tmp_path):
    root = tmp_path / "up"
    make_wheel(root / "files", "alpha", "1.0", requires=("beta>=1",))
    make_wheel(root / "files", "beta", "1.0")
    write_index(root)
    server = static_server(root)
    yield root, server.url
    server.stop()


def _sync(ch, spec: Path, out: Path, *extra: str):
    r = cli("sync", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", out, "--cache", ch.base / "cache",
            "--json", *extra)
    events = {e["event"]: e for e in (json.loads(x) for x in r.err.splitlines() if x.startswith("{"))}
    return r, events


def test_no_change_sync_skips_the_resolver_and_a_changed_page_resolves(upstream, tmp_path):
    root, url = upstream
    ch = new_channel(tmp_path)
    spec = write_spec(tmp_path / "gapsync.yaml", url, ["alpha"])
    r, ev = _sync(ch, spec, tmp_path / "o1")
    assert r.code == 0, r.err
    assert ev["sync.revalidate"]["resolve"] is True and ev["sync.lock"]["resolved"] is True
    lock = tmp_path / "gapsync.lock"
    assert "beta==1.0" in json.dumps(json.loads(lock.read_text())["python"]["pins"])
    # the kept lock is the one bundle create --lock accepts (same spec): the same bundle content
    other = new_channel(tmp_path / "other")
    r2 = cli("bundle", "create", "-f", spec, "--lock", lock, "--state", other.state, "--key", other.keys[0],
             "-o", tmp_path / "o-lock", "--cache", tmp_path / "c2", "--json")
    assert r2.code == 0, r2.err
    # nothing changed: the pages revalidate, no resolver, exit 5
    r, ev = _sync(ch, spec, tmp_path / "o2")
    assert r.code == 5, r.err
    assert ev["sync.revalidate"]["resolve"] is False and ev["sync.revalidate"]["pages"] == 2, ev["sync.revalidate"]
    assert ev["sync.lock"]["resolved"] is False
    # a new release of beta changes beta's page: resolved again, and the delta carries it
    make_wheel(root / "files", "beta", "1.1")
    write_index(root)
    r, ev = _sync(ch, spec, tmp_path / "o3")
    assert r.code == 0, r.err
    assert ev["sync.revalidate"]["resolve"] is True and ev["sync.revalidate"]["changed"] == ["beta"]
    assert "beta==1.1" in lock.read_text()
    assert any(a["name"] == "beta" and a["version"] == "1.1" for a in json.loads(r.out)["artifacts"])
    # a changed spec resolves too (and --resolve-always forces it)
    r, ev = _sync(ch, spec, tmp_path / "o4", "--resolve-always")
    assert r.code == 5 and ev["sync.revalidate"]["resolve"] is True
    spec = write_spec(tmp_path / "gapsync.yaml", url, ["alpha", "beta"])
    r, ev = _sync(ch, spec, tmp_path / "o5")
    assert ev["sync.revalidate"]["resolve"] is True and "spec changed" in ev["sync.revalidate"]["reason"]


def test_an_edited_stored_lock_is_not_reused(upstream, tmp_path):
    _, url = upstream
    ch = new_channel(tmp_path)
    spec = write_spec(tmp_path / "gapsync.yaml", url, ["alpha"])
    assert _sync(ch, spec, tmp_path / "o1")[0].code == 0
    stored = ch.state / "prod" / "sync.lock"
    stored.write_text(stored.read_text().replace("beta", "beta "))
    r, ev = _sync(ch, spec, tmp_path / "o2")
    assert r.code == 5 and ev["sync.revalidate"]["resolve"] is True and "lock changed" in ev["sync.revalidate"]["reason"]
