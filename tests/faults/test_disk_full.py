"""Disk full: a mirror on a small tmpfs (mounted by the test; needs root) that fills up in the
middle of an import. The importer checks free space before it writes (the need plus 1% and
64 MiB), so the tmpfs is large enough to pass that check, and a hook at one of the import's
named points (gapsync/faults.py) fills it the moment the import gets there, as another process
writing to the same disk would.

* Full while staging (where an import writes nearly all its bytes): exit 1 with one line that
  says what happened, the mirror byte for byte as it was, staging cleaned; after space is freed
  a re-run finishes with the mirror an uninterrupted import gives.
* Full while publishing (after the first verified blob went into the store, after the first
  project's pages were rewritten, after the whole index was published and the TUF state
  swapped): exit 1 with one line, and the publish journal (gapsync/mirror/journal.py) undoes
  what the publish did, the last change first: the mirror byte for byte as it was (the audit
  log aside, which gains the failure), the channel state unchanged, staging cleaned; no page
  names a missing file at any step of the undo. A re-run after freeing space finishes with the
  mirror an uninterrupted import gives. (A SIGKILL cannot undo: that case rolls forward on the
  re-run, see test_kill_points.py.)
* The journal's own undo on a full disk: it needs no space.
* Too little space from the start: refused before a byte is written.
* The audit log on a full disk: an entry that does not fit must not leave half a line behind,
  or every later import fails on it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gapsync import faults
from gapsync.audit import AuditLog
from gapsync.mirror import journal as journal_mod
from tests.support.cli import cli
from tests.support.trees import snapshot

SIZE_MB = 72  # the free-space check wants the need + 64 MiB: 72 MiB passes it with room to spare


@pytest.fixture
def tmpfs(tmp_path):
    d = tmp_path / "tmpfs"
    d.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m,mode=0755", "tmpfs", str(d)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield d
    finally:
        if subprocess.run(["umount", str(d)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(d)], check=True)


def fill(directory: Path) -> Path:
    """Write a file until the file system has not one byte left."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f:
        for chunk in (1 << 20, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\xaa" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    assert shutil.disk_usage(directory).free == 0
    return filler


def published(m: Path) -> dict:
    snap = snapshot(m)
    out = {k: v for k, v in snap.items() if not k.startswith((".gapsync/staging/", ".gapsync/trust/"))}
    out["state.version"] = json.loads((m / ".gapsync/trust/prod/state.json").read_text())["version"]
    return out


def page_links(m: Path) -> tuple[int, list[str]]:
    """The links of every served page, and those that name a page or a file that is not there
    (the root page's links to project pages, the project pages' links to files)."""
    n, dangling = 0, []
    root = m / "pypi/simple/index.html"
    if root.is_file():
        for href in root.read_text().split('<a href="')[1:]:
            n += 1
            if not (m / "pypi/simple" / href.split('"')[0] / "index.html").is_file():
                dangling.append(f"{root}: {href.split(chr(34))[0]}")
    for page in (m / "pypi/simple").glob("*/index.html"):
        text = page.read_text()
        if not text.rstrip().endswith("</html>"):
            dangling.append(f"{page}: cut short")
        for href in text.split('href="../../files/')[1:]:
            n += 1
            if not (m / "pypi/files" / href.split("#")[0]).is_file():
                dangling.append(f"{page}: {href.split('#')[0]}")
    return n, dangling


def pages_consistent(m: Path) -> int:
    """Every link of every served page names a file that is there; returns the links checked."""
    n, dangling = page_links(m)
    assert not dangling, dangling
    return n


def audit_entries(m: Path) -> list[dict]:
    return [json.loads(line) for line in (m / ".gapsync/audit.log").read_text().splitlines()]


@pytest.fixture(scope="module")
def clean_b2(world, tmp_path_factory):
    m = tmp_path_factory.mktemp("clean") / "m"
    assert cli("trust", "pin", world.root, "--mirror", m).code == 0
    assert cli("import", world.b1, "--mirror", m).code == 0
    assert cli("import", world.b2, "--mirror", m).code == 0
    return published(m)


@pytest.fixture(scope="module")
def figures(request):
    out: dict = {}
    yield out
    request.config.cache.set("gapsync/figures/disk-full", out)


def _mirror_with_b1(world, tmpfs: Path) -> Path:
    m = tmpfs / "mirror"
    assert cli("trust", "pin", world.root, "--mirror", m).code == 0
    assert cli("import", world.b1, "--mirror", m).code == 0
    return m


def _fill_at(monkeypatch, point: str, directory: Path, seen: list, then=None) -> None:
    real = faults.point

    def hook(name: str) -> None:
        if name == point and not seen:
            seen.append(fill(directory))
            if then:
                then()
        real(name)

    monkeypatch.setattr(faults, "point", hook)


def test_disk_fills_while_staging(world, tmpfs, clean_b2, monkeypatch, figures):
    m = _mirror_with_b1(world, tmpfs)
    before = snapshot(m)
    state = (m / ".gapsync/trust/prod/state.json").read_bytes()
    seen: list = []
    _fill_at(monkeypatch, "import.staged-blob", tmpfs, seen)
    r = cli("import", world.b2, "--mirror", m)
    monkeypatch.undo()
    assert seen, "the import never reached the point where the disk fills"
    assert r.code == 1, (r.code, r.err)
    err = r.err.strip()
    assert "\n" not in err and "internal error" not in err, err
    assert "No space left on device" in err and "before anything was published" in err and world.b2.name in err, err
    assert snapshot(m) == before  # byte for byte (the audit log aside)
    assert (m / ".gapsync/trust/prod/state.json").read_bytes() == state
    assert not any((m / ".gapsync/staging").iterdir())
    seen[0].unlink()  # space again
    r2 = cli("import", world.b2, "--mirror", m)
    assert r2.code == 0, r2.err
    assert published(m) == clean_b2
    audit = cli("audit", "verify", "--mirror", m)
    assert audit.code == 0, audit.out + audit.err
    figures["full while staging"] = {"exit": r.code, "message": err.split(": ", 2)[-1][:200],
                                     "mirror_unchanged": True, "rerun_exit": r2.code}


# where the disk fills while publishing v2 over v1 (v2 adds the project newpy)
PUBLISH_FILLS = {
    "import.stored-blob": "the first new blob is in the store",
    "publish.pep503.page": "the first project's pages are rewritten",
    "import.published.Pep503Index": "the whole index is published, the root page names newpy",
}


@pytest.mark.parametrize("point", list(PUBLISH_FILLS))
def test_disk_fills_while_publishing(world, tmpfs, clean_b2, monkeypatch, figures, point):
    m = _mirror_with_b1(world, tmpfs)
    before = snapshot(m)
    state = (m / ".gapsync/trust/prod/state.json").read_bytes()
    entries = len(audit_entries(m))
    seen: list = []
    at_fill: dict = {}

    def look() -> None:  # the mirror when the disk fills: what the publish had done by then
        now = {k: v for k, v in snapshot(m).items() if not k.startswith(".gapsync/staging/")}
        at_fill["new"] = sorted(set(now) - set(before))
        at_fill["changed"] = sorted(k for k in set(now) & set(before) if now[k] != before[k])

    _fill_at(monkeypatch, point, tmpfs, seen, then=look)
    undo: dict = {"steps": 0, "dangling": [], "changes": 0}
    real_undo, real_rollback = journal_mod._undo, journal_mod.PublishJournal.rollback

    def checked_undo(change) -> None:  # before each undo step: no page names a missing file
        undo["steps"] += 1
        undo["dangling"] += page_links(m)[1]
        real_undo(change)

    def counted_rollback(self):
        undo["changes"] = self.changes
        undo["last"] = str(list(self._changes)[-1].relative_to(m))  # what the publish was writing
        return real_rollback(self)

    monkeypatch.setattr(journal_mod, "_undo", checked_undo)
    monkeypatch.setattr(journal_mod.PublishJournal, "rollback", counted_rollback)
    r = cli("import", world.b2, "--mirror", m)
    monkeypatch.undo()
    assert seen, "the import never reached the point where the disk fills"
    assert r.code == 1, (r.code, r.err)
    err = r.err.strip()
    assert "\n" not in err and "internal error" not in err, err
    assert "No space left on device" in err and "was undone: the mirror is as it was" in err, err
    assert "run the import again" in err, err
    assert at_fill["new"], at_fill  # the publish had written something before the disk filled
    assert undo["steps"] == undo["changes"] > 0 and not undo["dangling"], undo
    assert snapshot(m) == before  # byte for byte: files, links and directories (the audit log aside)
    assert (m / ".gapsync/trust/prod/state.json").read_bytes() == state  # the channel did not advance
    assert not any((m / ".gapsync/staging").iterdir())
    log = audit_entries(m)
    assert len(log) == entries + 1 and log[-1]["action"] == "import" and log[-1]["result"] == "error", log[-1]
    assert "was undone" in log[-1]["details"]["reason"]
    links = pages_consistent(m)
    seen[0].unlink()
    r2 = cli("import", world.b2, "--mirror", m)
    assert r2.code == 0, r2.err
    assert published(m) == clean_b2
    assert cli("audit", "verify", "--mirror", m).code == 0
    figures[f"full while publishing at {point}"] = {
        "when": PUBLISH_FILLS[point], "exit": r.code, "message": err.split(": ", 2)[-1][:240], "links_checked": links,
        "new_at_fill": len(at_fill["new"]), "changed_at_fill": len(at_fill["changed"]),
        "changed_examples": at_fill["changed"][:6], "journal_changes_undone": undo["changes"],
        "failed_writing": undo["last"], "rerun_exit": r2.code}


def test_journal_undo_needs_no_space(tmpfs):
    """The undo of a publish on a disk with not one byte free: it only unlinks, renames over
    names that are there and removes empty directories."""
    root = tmpfs / "m"
    (root / "pages").mkdir(parents=True)
    old_page = root / "pages" / "index.html"
    old_page.write_bytes(b"<old page>" * 1000)
    old_link = root / "current"
    os.symlink("md-1", old_link)
    (root / "md-1").mkdir()
    (root / "md-1" / "root.json").write_bytes(b"{}")
    blob = root / "blob"
    blob.write_bytes(b"x" * 100_000)
    before = snapshot(tmpfs)
    j = journal_mod.PublishJournal(root / ".aside")
    j.link_or_copy(blob, root / "files" / "a" / "new.whl")  # new directories and a new file
    j.write_atomic(old_page, b"<new page>")
    j.symlink("md-2", old_link)
    j.remove_tree(root / "md-1")
    filler = fill(tmpfs)
    with pytest.raises(OSError) as e:
        j.write_atomic(root / "pages" / "other.html", b"y" * 10_000)
    assert e.value.errno == errno.ENOSPC
    assert shutil.disk_usage(tmpfs).free == 0  # full when the undo starts
    assert j.rollback() == []
    filler.unlink()
    assert snapshot(tmpfs) == before
def test_import_on_a_disk_already_full(world, tmpfs, clean_b2):
    """Nothing can be written at all (not even the pid in the lock file): one clear line."""
    m = _mirror_with_b1(world, tmpfs)
    _line_up(m / ".gapsync/audit.log", 2500, 4096)  # room for the entry that reports it
    before = snapshot(m)
    filler = fill(tmpfs)
    r = cli("import", world.b2, "--mirror", m)
    assert r.code == 1, (r.code, r.err)
    err = r.err.strip()
    assert "\n" not in err and "internal error" not in err and "No space left on device" in err, err
    assert "audit log could not be written completely" in err, err  # the entry is in, its head file is not
    after = snapshot(m)
    after.pop(".gapsync/audit.log.head.tmp", None)  # AuditLog.append's temporary head file, left by the ENOSPC
    assert after == before and not any((m / ".gapsync/staging").iterdir())
    filler.unlink()
    r = cli("import", world.b2, "--mirror", m)
    assert r.code == 0, r.err
    assert published(m) == clean_b2
    assert cli("audit", "verify", "--mirror", m).code == 0


def test_too_little_space_is_refused_before_writing(world, tmpfs, monkeypatch):
    m = _mirror_with_b1(world, tmpfs)
    filler = tmpfs / "filler"
    with filler.open("wb") as f:  # leave less than the 64 MiB margin free
        f.write(b"\0" * ((SIZE_MB - 60) << 20))
    before = snapshot(m)
    r = cli("import", world.b2, "--mirror", m)
    assert r.code == 1 and "free space" in r.err and "\n" not in r.err.strip(), r.err
    assert snapshot(m) == before and not any((m / ".gapsync/staging").iterdir())


def _line_up(log: Path, low: int, high: int) -> int:
    """Append padding entries until the audit log's last page has between ``low`` and ``high``
    bytes free (tmpfs allocates whole pages: that is what an append can still use on a full
    disk). Returns the bytes left in the page."""
    audit = AuditLog(log)
    overhead = 600  # the bytes of an entry besides its padding, learnt as we go
    for _ in range(20):
        size = log.stat().st_size
        slack = -size % 4096
        if low <= slack < high:
            return slack
        pad = max(0, slack - overhead - (low + high) // 2) if slack >= high else slack + 50
        audit.append("test.padding", "ok", pad="x" * pad)
        overhead = log.stat().st_size - size - pad
    raise AssertionError("could not line the audit log up with a page end")


# The fix, in gapsync/audit.py AuditLog.append: remember the end of the file before writing, write
# the line with one os.write and, if that or the fsync fails, truncate the file back to that end
# before raising; write the head file only after the line is in (its failure then leaves the head
# one entry behind, which verify should read as "head behind", not "entries cut off").
def test_audit_entry_that_does_not_fit_leaves_no_partial_line(world, tmpfs):
    m = _mirror_with_b1(world, tmpfs)
    _line_up(m / ".gapsync/audit.log", 1, 200)  # the next entry cannot be written whole
    filler = fill(tmpfs)
    r = cli("import", world.b2, "--mirror", m)
    assert r.code == 1 and "internal error" not in r.err, r.err
    filler.unlink()
    r = cli("import", world.b2, "--mirror", m)
    assert r.code == 0, r.err
    assert cli("audit", "verify", "--mirror", m).code == 0
