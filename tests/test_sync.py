"""The scheduled job: delta bundles from the channel's history or a receipt, nothing-new, locks, logs."""

from __future__ import annotations

import json
from pathlib import Path

from gapsync.locking import exclusive
from tests.support.channels import carried, new_channel, sync, write_spec
from tests.support.cli import cli
from tests.support.trees import snapshot


def pypi(m: Path) -> dict:
    return {k: v for k, v in snapshot(m).items() if k.startswith("pypi/")}


def test_sync_full_then_nothing_new_then_small_delta(world, tmp_path):
    ch = new_channel(tmp_path, "prod")
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha", "gamma"])
    r = sync(ch, spec, tmp_path / "o1")
    assert r.code == 0, r.err
    v1 = json.loads(r.out)
    assert v1["kind"] == "full" and v1["version"] == 1
    logs = [json.loads(line) for line in r.err.splitlines() if line.startswith("{")]
    events = [e["event"] for e in logs]  # JSON lines: stderr is not a terminal
    assert events[0] == "sync.start" and events[-1] == "sync.bundle" and "sync.lock" in events, events
    r = sync(ch, spec, tmp_path / "o2")
    assert r.code == 5 and json.loads(r.out)["nothing_new"] is True
    assert not (tmp_path / "o2").exists() or not list((tmp_path / "o2").iterdir())
    assert json.loads(r.err.splitlines()[-1])["event"] == "sync.nothing_new"
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha", "gamma", "later"])
    r = sync(ch, spec, tmp_path / "o3")
    assert r.code == 0, r.err
    v2 = json.loads(r.out)
    b2 = Path(v2["bundle"])
    assert v2["kind"] == "delta" and v2["version"] == 2
    assert carried(b2) == ["python/later/later-1.0-py3-none-any.whl", "python/later/later-1.0-py3-none-any.whl.metadata"]
    # the air side: v1 then the delta gives the same index as a full bundle of the same version
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    assert cli("import", Path(v1["bundle"]), "--mirror", m).code == 0
    assert cli("import", b2, "--mirror", m).code == 0
    full = tmp_path / "full"
    r = sync(ch, spec, tmp_path / "o4", "--full")
    assert r.code == 5  # nothing changed since v2: no bundle even when asked for a full one
    other = new_channel(tmp_path / "other", "prod")
    assert cli("bundle", "create", "-f", spec, "--state", other.state, "--key", other.keys[0], "-o", full,
               "--cache", tmp_path / "c2").code == 0
    m2 = tmp_path / "m2"
    assert cli("trust", "pin", other.root, "--mirror", m2).code == 0
    assert cli("import", next(full.glob("*.gapsync")), "--mirror", m2).code == 0
    assert pypi(m) == pypi(m2)


def test_delta_whose_base_was_never_imported_is_refused(world, tmp_path):
    ch = new_channel(tmp_path, "prod")
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha"])
    assert sync(ch, spec, tmp_path / "o1").code == 0
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha", "later"])
    b2 = Path(json.loads(sync(ch, spec, tmp_path / "o2").out)["bundle"])
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    before = snapshot(m)
    r = cli("import", b2, "--mirror", m)
    assert r.code == 3 and "a delta made for a mirror that has version 1" in r.err and "full bundle" in r.err
    assert snapshot(m) == before


def test_receipt_makes_the_delta_against_what_the_air_side_holds(world, tmp_path):
    ch = new_channel(tmp_path, "prod")
    assert cli("keys", "generate", "--out", tmp_path / "air", "--name", "air").code == 0
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha"])
    b1 = Path(json.loads(sync(ch, spec, tmp_path / "o1").out)["bundle"])
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    assert cli("import", b1, "--mirror", m).code == 0
    assert cli("receipt", "--mirror", m, "-o", tmp_path / "r.json", "--key", tmp_path / "air/air.key").code == 0
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha", "later"])
    r = sync(ch, spec, tmp_path / "o2", "--receipt", tmp_path / "r.json", "--receipt-key", tmp_path / "air/air.pub")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["kind"] == "delta" and carried(Path(doc["bundle"])) == [
        "python/later/later-1.0-py3-none-any.whl", "python/later/later-1.0-py3-none-any.whl.metadata"]
    assert cli("import", Path(doc["bundle"]), "--mirror", m).code == 0
    # a receipt signed by another key, or edited, is refused
    assert cli("keys", "generate", "--out", tmp_path / "rogue", "--name", "rogue").code == 0
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha", "later", "delta"])
    r = sync(ch, spec, tmp_path / "o3", "--receipt", tmp_path / "r.json", "--receipt-key", tmp_path / "rogue/rogue.pub")
    assert r.code == 3 and "r.json" in r.err
    doc = json.loads((tmp_path / "r.json").read_text())
    doc["body"]["blobs"].append("f" * 64)
    (tmp_path / "r2.json").write_text(json.dumps(doc))
    r = sync(ch, spec, tmp_path / "o3", "--receipt", tmp_path / "r2.json", "--receipt-key", tmp_path / "air/air.pub")
    assert r.code == 3 and "does not match" in r.err


def test_two_runs_at_once_are_refused_clearly(world, tmp_path):
    ch = new_channel(tmp_path, "prod")
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha"])
    with exclusive(ch.state / "prod" / ".lock", "held by the test"):
        r = sync(ch, spec, tmp_path / "o")
    assert r.code == 1 and "in use by another gapsync process" in r.err
    assert sync(ch, spec, tmp_path / "o").code == 0


def test_free_space_is_checked_before_writing_or_importing(world, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    real = shutil.disk_usage
    ch = new_channel(tmp_path, "prod")
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha"])
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    r = sync(ch, spec, tmp_path / "o")
    assert r.code == 1 and "GB is free" in r.err and str(tmp_path / "o") in r.err
    m = tmp_path / "m"
    monkeypatch.setattr(shutil, "disk_usage", real)
    assert cli("trust", "pin", world.root, "--mirror", m).code == 0
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    before = snapshot(m)
    r = cli("import", world.b2, "--mirror", m)
    assert r.code == 1 and "importing" in r.err and "GB is free" in r.err
    assert snapshot(m) == before


def test_a_clean_exit_leaves_no_pid_and_a_dead_runs_pid_is_logged(world, tmp_path):
    ch = new_channel(tmp_path, "prod")
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha"])
    assert sync(ch, spec, tmp_path / "o").code == 0
    lock = ch.state / "prod" / ".lock"
    assert lock.read_text() == ""
    r = sync(ch, spec, tmp_path / "o")
    assert "lock.taken_over" not in r.err
    lock.write_text("999999999")  # what a run killed with SIGKILL leaves
    r = sync(ch, spec, tmp_path / "o")
    taken = [json.loads(x) for x in r.err.splitlines() if '"lock.taken_over"' in x]
    assert taken and taken[0]["dead_pid"] == 999999999
