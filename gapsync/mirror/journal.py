"""The publish journal: what an import's publish step changed in the mirror, so that a failure
in the middle of it (a full disk, most often) can put the mirror back as it was.

Publishing writes in an order that keeps readers safe (blobs into the store, files before the
pages that name them, the channel state last), and every single write is atomic; but a publish
that stops half-way would still leave new files and new pages behind. The targets therefore do
their file operations through a writer: ``DirectWriter`` just does them (``gapsync trust pin``,
or any caller with nothing to undo); ``PublishJournal`` records, before each change, what was
at the path: nothing (the path is *created*: undone by removing it, and the directories it
needed), or an old file or link (*replaced*: the old one is first kept aside by a hard link,
so undoing it is one rename back). ``rollback()`` undoes the changes in the reverse order of
the publish, so pages go back before the files they named are removed, and a reader of
``gapsync serve`` never follows a dangling link, not even during the undo. ``commit()`` drops
what was kept aside.

Undoing needs no free space: it only unlinks, renames over existing names and removes empty
directories, because the disk it runs on is usually full. Keeping aside costs no space either
(a hard link; a copy only where the file system has no hard links).

The kept-aside copies live in the import's scratch directory under ``.gapsync/staging`` (the
same file system as the mirror, never served). A SIGKILL cannot roll back: it leaves them
there, and the next import clears stale scratch space before it starts, then publishes again
(publishing is idempotent and rolls forward).
"""

from __future__ import annotations

import itertools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from gapsync import fsutil


class DirectWriter:
    """The file operations a publish does, done directly with nothing recorded."""

    def mkdirs(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)

    def write_atomic(self, path: Path, data: bytes, mode: int = 0o644) -> None:
        fsutil.write_atomic(path, data, mode)

    def link_or_copy(self, src: Path, dst: Path) -> None:
        fsutil.link_or_copy(src, dst)

    def symlink(self, target: str, link: Path) -> None:
        """Point ``link`` at ``target`` atomically (a new link under a fresh exclusive name
        renamed over the old one: fsutil.symlink_atomic)."""
        fsutil.symlink_atomic(target, link)

    def move_in(self, src: Path, dst: Path) -> None:
        """Move a file or a whole directory from scratch space to ``dst`` (same file system)."""
        fsutil.move(src, dst)

    def remove_tree(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)


DIRECT = DirectWriter()


@dataclass
class _Change:
    path: Path
    aside: Path | None = None  # where the previous file, link or tree is kept; None: the path was created
    tree: bool = False  # created by moving a whole directory in: undone by removing the tree


class PublishJournal(DirectWriter):
    """A ``DirectWriter`` that records each change first, for ``rollback()``."""

    def __init__(self, aside: Path):
        aside.mkdir(parents=True)  # before the first change: later, the disk may be full
        self.aside = aside
        self._names = itertools.count()
        self._changes: dict[Path, _Change] = {}  # in the order of the last change to each path

    @property
    def changes(self) -> int:
        return len(self._changes)

    # -- recording ------------------------------------------------------------------------
    def _note(self, path: Path) -> bool:
        """Move the record of a path changed before to the end (its undo must come before the
        undo of what was written since: a page rewritten to name a new file is put back before
        that file goes); True when there was one."""
        change = self._changes.pop(path, None)
        if change is not None:
            self._changes[path] = change
        return change is not None

    def _make_parents(self, directory: Path) -> None:
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for d in reversed(missing):  # outermost first, so the undo removes innermost first
            if not self._note(d):
                self._changes[d] = _Change(d)
            d.mkdir(exist_ok=True)

    def _keep(self, path: Path) -> None:
        """Record what is at ``path`` before it is created or replaced."""
        if self._note(path):
            return  # the first record holds the state from before the publish
        self._make_parents(path.parent)
        aside = None
        if os.path.lexists(path):
            aside = self.aside / str(next(self._names))
            try:
                fsutil.hard_link(path, aside)  # no bytes copied, no space needed
            except OSError:  # a file system without hard links
                fsutil.copy_aside(path, aside)
        self._changes[path] = _Change(path, aside)

    # -- the operations, recorded ---------------------------------------------------------
    def mkdirs(self, directory: Path) -> None:
        self._make_parents(directory)

    def write_atomic(self, path: Path, data: bytes, mode: int = 0o644) -> None:
        self._keep(path)
        super().write_atomic(path, data, mode)

    def link_or_copy(self, src: Path, dst: Path) -> None:
        self._keep(dst)
        super().link_or_copy(src, dst)

    def symlink(self, target: str, link: Path) -> None:
        self._keep(link)
        super().symlink(target, link)

    def move_in(self, src: Path, dst: Path) -> None:
        self._keep(dst)
        self._changes[dst].tree = src.is_dir() and not src.is_symlink()
        super().move_in(src, dst)

    def remove_tree(self, path: Path) -> None:
        """Take ``path`` out of the mirror, by moving it aside: the undo moves it back."""
        if self._note(path):  # written by this publish: its old state is kept already
            shutil.rmtree(path, ignore_errors=True)
            return
        if not os.path.lexists(path):
            return
        aside = self.aside / str(next(self._names))
        fsutil.move(path, aside)
        self._changes[path] = _Change(path, aside)

    # -- the end --------------------------------------------------------------------------
    def rollback(self) -> list[str]:
        """Undo every change, the last one first; returns the path it could not put back (with
        the reason), empty when the mirror is as it was.

        The undo stops at the first change it cannot undo: undoing the last k changes always
        gives a state the publish itself went through (files before the pages that name them),
        so stopping there leaves the mirror consistent, and the re-run rolls forward. Going on
        past it could remove a file that the page left in place still names. What was kept aside
        for the changes not undone stays in scratch space until the next import clears it."""
        changes = list(self._changes.values())
        while changes:
            change = changes[-1]
            try:
                _undo(change)
            except OSError as e:
                self._changes = {c.path: c for c in changes}
                return [f"{change.path} ({e.strerror or e})"]
            changes.pop()
        self._changes.clear()
        shutil.rmtree(self.aside, ignore_errors=True)
        return []

    def commit(self) -> None:
        """The publish is complete: drop what was kept aside."""
        self._changes.clear()
        shutil.rmtree(self.aside, ignore_errors=True)


def _undo(change: _Change) -> None:
    p = change.path
    if change.aside is not None:
        fsutil.move(change.aside, p)  # over the new file or link: one rename, no space needed
    elif change.tree:
        if os.path.lexists(p):
            shutil.rmtree(p)
    elif p.is_dir() and not p.is_symlink():
        p.rmdir()  # a directory this publish made; what it put inside was undone before
    else:
        p.unlink(missing_ok=True)
