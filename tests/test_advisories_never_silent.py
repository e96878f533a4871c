"""A missing or stale advisory database is never silent (issue 14 §7): the shipped default
policy blocks what could not be checked (fail closed), and scan, bundle create, sync and import
each print ONE line naming ``gapsync advisories import`` and ``update``; the report groups the
reason repeated on every package into one line. The session's store (tests/conftest.py) is
current and prints nothing; the repository's snapshot as shipped (2024-10) is stale by the
default ``advisories.max_age`` of 30 days."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.channels import new_channel, write_spec
from tests.support.cli import cli
from tests.support.data import ADVISORIES


def notice_lines(err: str) -> list[str]:
    """The notices (a JSON event in a pipe, as here; plain text on a terminal), each checked to
    name both ways to load a database."""
    out = [ln for ln in err.splitlines() if '"event": "advisories"' in ln or ln.startswith("gapsync: warning:")]
    assert all("gapsync advisories update" in ln and "gapsync advisories import" in ln for ln in out), out
    return out


@pytest.fixture
def empty_store(tmp_path) -> Path:
    d = tmp_path / "no-advisories"
    d.mkdir()
    return d


def create(ch, spec, out, *extra):
    return cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", out,
               "--cache", ch.base / "cache", *extra)


def test_default_policy_blocks_create_without_a_database(world, tmp_path, empty_store):
    ch = new_channel(tmp_path)
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha", "gamma"])
    r = create(ch, spec, tmp_path / "o", "--advisories", empty_store, "--report", tmp_path / "r.html")
    assert r.code == 4
    [line] = notice_lines(r.err)
    assert "gapsync advisories import" in line and "NOT checked" in line and "blocks" in line
    # the error names the reason once, not once per package
    error = [ln for ln in r.err.splitlines() if "blocks" in ln and "artifact(s)" in ln]
    assert len(error) == 1 and error[0].count("no advisory database") == 1
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())
    # the report: one grouped line with the count and the artifacts, not a row per package
    page = (tmp_path / "r.html").read_text()
    decisions = page[page.index('id="decisions"'):page.index('id="findings"')]
    assert "Repeated reasons" in decisions and "vulnerabilities.no_database</span> <b>×4</b>" in decisions
    assert decisions.count("no advisory database") == 1
    assert "python:alpha@1.0" in decisions and "python:delta@1.0" in decisions and "No other reason" in decisions


def test_a_policy_that_allows_it_still_says_so_and_the_air_side_blocks(world, tmp_path, empty_store, monkeypatch):
    ch = new_channel(tmp_path)
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha"], pythons=("3.11",))
    pol = tmp_path / "p.yaml"
    pol.write_text("vulnerabilities: {no_database: warn}\n")
    r = create(ch, spec, tmp_path / "o", "--advisories", empty_store, "--policy", pol, "--json")
    assert r.code == 0, r.err
    [line] = notice_lines(r.err)
    assert "warns about" in line
    bundle = Path(json.loads(r.out)["bundle"])
    # the air side has no database either (none in the bundle, none in its store): the default blocks
    monkeypatch.setenv("GAPSYNC_ADVISORIES", str(empty_store))
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    r = cli("import", bundle, "--mirror", m)
    assert r.code == 4 and "nothing was published" in r.err
    assert len(notice_lines(r.err)) == 1
    assert not (m / "pypi/files/alpha-1.0-py3-none-any.whl").exists()
    # with a database on this side it imports (and says the database is stale)
    stale = tmp_path / "stale"
    assert cli("advisories", "import", ADVISORIES, "--store", stale).code == 0
    monkeypatch.setenv("GAPSYNC_ADVISORIES", str(stale))
    r = cli("import", bundle, "--mirror", m)
    assert r.code == 0, r.err
    [line] = notice_lines(r.err)
    assert "days old" in line and "30 days" in line


def test_a_current_database_says_nothing(world, tmp_path):
    ch = new_channel(tmp_path)
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha"], pythons=("3.11",))
    r = create(ch, spec, tmp_path / "o", "--json")
    assert r.code == 0 and notice_lines(r.err) == [], r.err


def test_create_and_sync_say_once_that_the_database_is_stale(world, tmp_path):
    ch = new_channel(tmp_path)
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha", "gamma"])
    r = create(ch, spec, tmp_path / "o", "--json", "--advisories", ADVISORIES)
    assert r.code == 0, r.err
    [line] = notice_lines(r.err)
    assert "days old (newest advisory modified 2024-" in line and "'gapsync advisories import FILE'" in line
    # the scan of the bundle (with the database it carries) shows the stale database on each package
    r = cli("scan", json.loads(r.out)["bundle"], "--json")
    assert r.code == 0 and len(notice_lines(r.err)) == 1
    doc = json.loads(r.out)
    assert doc["advisories"]["stale"] is True and doc["advisories"]["age_days"] > 30
    [d] = [d for d in doc["decisions"] if d["artifact"] == "python:alpha@1.0"]
    assert [(x["rule"], x["action"]) for x in d["reasons"]] == [("advisories.stale", "warn")]
    r = cli("sync", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "s", "--cache",
            ch.base / "cache", "--full", "--json", "--advisories", ADVISORIES)
    assert r.code in (0, 5), r.err
    assert len(notice_lines(r.err)) == 1
    # a policy without a limit says nothing
    pol = tmp_path / "p.yaml"
    pol.write_text("advisories: {max_age: none}\n")
    r = cli("scan", "--spec", spec, "--policy", pol, "--cache", ch.base / "cache", "--json", "--advisories", ADVISORIES)
    assert r.code == 0 and notice_lines(r.err) == []
    assert json.loads(r.out)["advisories"]["stale"] is False


def test_strict_stale_block_refuses_everything_checked_with_an_old_database(world, tmp_path):
    ch = new_channel(tmp_path)
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha"], pythons=("3.11",))
    pol = tmp_path / "p.yaml"
    pol.write_text("advisories: {max_age: 2w, stale: block}\n")
    r = cli("scan", "--spec", spec, "--policy", pol, "--cache", ch.base / "cache", "--json", "--advisories", ADVISORIES)
    assert r.code == 4
    doc = json.loads(r.out)
    assert "python:alpha@1.0" in doc["blocked"]
    [d] = [d for d in doc["decisions"] if d["artifact"] == "python:alpha@1.0"]
    assert [x["rule"] for x in d["reasons"] if x["action"] == "block"] == ["advisories.stale"]
    assert "14 days" in notice_lines(r.err)[0]


def test_gapsync_advisories_tilde_is_expanded_in_one_place(tmp_path, monkeypatch):
    from gapsync.assess import advisory_file
    from tests.support.data import ADVISORIES

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GAPSYNC_ADVISORIES", "~/adv")
    r = cli("advisories", "import", ADVISORIES)
    assert r.code == 0, r.err
    assert (tmp_path / "adv" / "pypi.osv.jsonl.gz").is_file() and not Path("~").exists()
    # the scans read the very store the advisories command wrote
    assert advisory_file(None) == tmp_path / "adv" / "pypi.osv.jsonl.gz"
    r = cli("advisories", "info", "--json")
    assert r.code == 0 and json.loads(r.out)["advisories"] == 2661
