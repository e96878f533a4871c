"""The publish journal (gapsync/mirror/journal.py) on its own, and the importer's use of it for
failures other than a full disk (tests/faults/test_disk_full.py has the full disk, including an
undo that runs with not one byte free).

What it must do: a path the publish created is removed, with the directories made for it; a
path it replaced gets its old bytes back (kept aside by a hard link, so no space is needed);
the undo runs the last change first, so a page goes back before the file it named goes; commit
drops what was kept aside; an undo that fails says which paths, and the import says so too.
"""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import pytest

from gapsync.errors import PublishError
from gapsync.mirror import journal as journal_mod
from gapsync.mirror.importer import import_bundle
from gapsync.mirror.journal import PublishJournal
from gapsync.mirror.targets.oci_layout import OciLayout
from tests.support.cli import cli, killed
from tests.support.trees import snapshot


@pytest.fixture
def tree(tmp_path) -> Path:
    """A small mirror-like tree: a page naming an old file, a blob, a TUF-like current link."""
    root = tmp_path / "m"
    (root / "files").mkdir(parents=True)
    (root / "files" / "old.whl").write_bytes(b"old wheel")
    (root / "simple").mkdir()
    (root / "simple" / "index.html").write_bytes(b'<a href="../files/old.whl">old</a>')
    (root / "blob").write_bytes(b"new wheel")
    (root / "md-1").mkdir()
    (root / "md-1" / "root.json").write_bytes(b"{}")
    os.symlink("md-1", root / "current")
    return root


def changed(root: Path) -> dict:
    return {k: v for k, v in snapshot(root).items() if not k.startswith(".aside")}


def test_created_and_replaced_are_undone(tree):
    before = changed(tree)
    j = PublishJournal(tree / ".aside")
    j.link_or_copy(tree / "blob", tree / "files" / "sub" / "new.whl")  # a new file in a new directory
    j.write_atomic(tree / "simple" / "index.html", b'<a href="../files/sub/new.whl">new</a>')  # replaced
    j.write_atomic(tree / "simple" / "new" / "index.html", b"new page")  # created, in a new directory
    j.mkdirs(tree / "oci" / "blobs" / "sha256")  # empty directories
    (tree / "md-2").mkdir()
    (tree / "md-2" / "root.json").write_bytes(b"{2}")
    j.move_in(tree / "md-2", tree / "md-3")  # a whole directory moved in
    j.symlink("md-3", tree / "current")  # a link replaced
    j.remove_tree(tree / "md-1")  # taken out (kept aside)
    assert j.changes == 11  # 5 directories made; 6 paths written, moved in or taken out
    assert (tree / "simple" / "index.html").read_bytes().startswith(b'<a href="../files/sub/')
    assert os.readlink(tree / "current") == "md-3" and not (tree / "md-1").exists()
    assert j.rollback() == []
    assert changed(tree) == before
    assert not (tree / ".aside").exists()
    assert (tree / "simple" / "index.html").stat().st_nlink == 1  # the old inode came back, no copy left


def test_commit_keeps_the_new_state_and_drops_what_was_kept_aside(tree):
    j = PublishJournal(tree / ".aside")
    j.write_atomic(tree / "simple" / "index.html", b"new page")
    j.remove_tree(tree / "md-1")
    assert any((tree / ".aside").iterdir())
    j.commit()
    assert not (tree / ".aside").exists() and not (tree / "md-1").exists()
    assert (tree / "simple" / "index.html").read_bytes() == b"new page"
    assert j.rollback() == []  # nothing left to undo
    assert (tree / "simple" / "index.html").read_bytes() == b"new page"


def test_undo_puts_a_page_back_before_the_file_it_named_goes(tree, monkeypatch):
    """The page is written twice (as the root index is, once per project, in principle): its
    undo moves to its last write, so it comes before the undo of a file written in between."""
    j = PublishJournal(tree / ".aside")
    page = tree / "simple" / "index.html"
    j.write_atomic(page, b"first rewrite")
    j.link_or_copy(tree / "blob", tree / "files" / "new.whl")
    j.write_atomic(page, b'<a href="../files/new.whl">new</a>')
    order: list[str] = []
    real = journal_mod._undo

    def spy(change) -> None:
        order.append(change.path.name)
        if change.path == tree / "files" / "new.whl":  # the file goes: the page must be old already
            assert b"new.whl" not in page.read_bytes()
        real(change)

    monkeypatch.setattr(journal_mod, "_undo", spy)
    assert j.rollback() == []
    assert order == ["index.html", "new.whl"]
    assert page.read_bytes() == b'<a href="../files/old.whl">old</a>'


def test_without_hard_links_the_old_file_is_copied_aside(tree, monkeypatch):
    before = changed(tree)

    def no_links(*a, **k):
        raise OSError(errno.EPERM, "Operation not permitted")

    j = PublishJournal(tree / ".aside")
    monkeypatch.setattr(journal_mod.os, "link", no_links)
    j.write_atomic(tree / "simple" / "index.html", b"new page")
    j.symlink("md-9", tree / "current")
    monkeypatch.undo()
    assert j.rollback() == []
    assert changed(tree) == before


def test_an_undo_that_fails_names_the_path(tree, monkeypatch):
    j = PublishJournal(tree / ".aside")
    j.write_atomic(tree / "simple" / "new" / "index.html", b"new page")
    (tree / "simple" / "new" / "stray").write_bytes(b"not the journal's")  # the directory will not be empty
    failed = j.rollback()
    assert len(failed) == 1 and failed[0].startswith(f"{tree / 'simple' / 'new'} (") and "empty" in failed[0], failed


def test_an_undo_stops_at_the_first_failure_and_leaves_no_dangling_link(tree, monkeypatch):
    """Undoing the last k changes gives a state the publish went through; going on past a
    failure could remove a file that the page left in place still names."""
    j = PublishJournal(tree / ".aside")
    j.link_or_copy(tree / "files" / "old.whl", tree / "files" / "new.whl")
    page = tree / "simple" / "index.html"
    j.write_atomic(page, b'<a href="../files/new.whl">new</a>')
    j.write_atomic(tree / "simple" / "other.html", b"other")
    real = journal_mod._undo

    def stuck(change) -> None:
        if change.path == page:
            raise OSError(errno.EIO, "Input/output error")
        real(change)

    monkeypatch.setattr(journal_mod, "_undo", stuck)
    failed = j.rollback()
    assert failed == [f"{page} (Input/output error)"]
    assert not (tree / "simple" / "other.html").exists()  # the changes after it were undone
    assert b"new.whl" in page.read_bytes() and (tree / "files" / "new.whl").is_file()  # the page's file stays
    assert j.aside.is_dir() and any(j.aside.iterdir())  # the old page is kept for the re-run, not deleted


# -- the importer: any failure while publishing is undone -------------------------------------------
def _mirror_with_b1(world, tmp_path) -> Path:
    m = tmp_path / "m"
    assert cli("trust", "pin", world.root, "--mirror", m).code == 0
    assert cli("import", world.b1, "--mirror", m).code == 0
    return m


def _refusing(monkeypatch, error: BaseException) -> None:
    """OciLayout.publish (after the whole PEP 503 index went in) fails with ``error``."""
    def publish(self, targets, blob_path, fs):
        raise error

    monkeypatch.setattr(OciLayout, "publish", publish)


def test_a_target_that_refuses_is_undone(world, tmp_path, monkeypatch):
    m = _mirror_with_b1(world, tmp_path)
    before = snapshot(m)
    _refusing(monkeypatch, PublishError("oci: refused for the test"))
    with pytest.raises(PublishError, match=r"^oci: refused for the test$"):
        import_bundle(world.b2, m)
    assert snapshot(m) == before
    monkeypatch.undo()
    assert cli("import", world.b2, "--mirror", m).code == 0


def test_ctrl_c_while_publishing_is_undone(world, tmp_path, monkeypatch):
    m = _mirror_with_b1(world, tmp_path)
    before = snapshot(m)
    _refusing(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        import_bundle(world.b2, m)
    assert snapshot(m) == before


def test_a_failed_undo_is_reported_and_audited(world, tmp_path, monkeypatch):
    m = _mirror_with_b1(world, tmp_path)
    _refusing(monkeypatch, OSError(errno.EIO, "Input/output error"))
    real = journal_mod._undo

    def stuck(change) -> None:
        if change.path == m / "pypi" / "simple" / "index.html":  # the union's root page (not a target view's)
            raise OSError(errno.EIO, "Input/output error")
        real(change)

    monkeypatch.setattr(journal_mod, "_undo", stuck)
    r = cli("import", world.b2, "--mirror", m)
    monkeypatch.undo()
    err = r.err.strip()
    assert r.code == 1 and "\n" not in err, err
    assert "publishing version 2 failed (Input/output error) and undoing it stopped at" in err, err
    assert "pypi/simple/index.html (Input/output error)" in err and "run the import again to finish" in err, err
    log = [json.loads(line) for line in (m / ".gapsync/audit.log").read_text().splitlines()]
    assert [e["action"] for e in log[-2:]] == ["import.rollback", "import"], log[-2:]
    assert log[-2]["result"] == "error" and log[-2]["details"]["failed"] == [
        f"{m / 'pypi/simple/index.html'} (Input/output error)"]
    assert "newpy/" in (m / "pypi/simple/index.html").read_text()  # the page left new ...
    assert (m / "pypi/simple/newpy/index.html").is_file()  # ... names a page that is there
    assert json.loads((m / ".gapsync/trust/prod/state.json").read_text())["version"] == 1  # ... channel at v1
    assert cli("import", world.b2, "--mirror", m).code == 0
    assert cli("audit", "verify", "--mirror", m).code == 0


def test_what_a_sigkill_kept_aside_stays_out_of_the_mirror(world, tmp_path):
    """A SIGKILL cannot undo: the copies kept aside stay in the killed run's scratch space
    (never served), and the re-run clears them before it publishes again."""
    m = _mirror_with_b1(world, tmp_path)
    r = killed("import", world.b2, "--mirror", m, at="import.published.Pep503Index")
    assert r.returncode == -signal.SIGKILL, r.stderr
    kept = [p for p in (m / ".gapsync/staging").glob("*/aside/*")]
    # the old pages (HTML, JSON) and inventories of v1's projects, and the root page (17 today)
    assert len(kept) >= 8, kept
    assert not [p for p in m.rglob("*") if "aside" in p.parts and ".gapsync" not in p.parts]
    r = cli("import", world.b2, "--mirror", m)
    assert r.code == 0, r.err
    assert not any((m / ".gapsync/staging").iterdir())
    assert cli("import", world.b2, "--mirror", m).code == 5
