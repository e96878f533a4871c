"""The file-system discipline (gapsync/fsutil.py), held two ways.

1. A walk of the source (ast): no module but fsutil.py creates, replaces, renames or copies a
   file itself, and the modules that read the medium open nothing but through fsutil. It fails
   naming file:line, so a new write path cannot slip in.
2. The hostile files on a real medium (planted links at the names gapsync writes, links and
   FIFOs where it reads, forged parity) are in tests/faults/test_fs_hostile.py; here, the
   module's own promises on one directory.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "gapsync"

# writes: call names that create, replace, rename or copy a file
WRITE_CALLS = {
    "write_bytes", "write_text", "symlink_to", "hardlink_to", "touch", "mkfifo", "mknod",
    "mkstemp", "mkdtemp", "mktemp", "NamedTemporaryFile", "TemporaryDirectory",
}
WRITE_ATTRS_OF = {  # module.function
    ("os", "replace"), ("os", "rename"), ("os", "renames"), ("os", "link"), ("os", "symlink"),
    ("os", "open"), ("os", "truncate"), ("shutil", "copy"), ("shutil", "copy2"), ("shutil", "copyfile"),
    ("shutil", "copytree"), ("shutil", "move"),
}
WRITE_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"}  # os.open with any of these writes
# the files that are not gapsync's writers, each with its reason (never a write of the product)
ALLOWED_WRITES: dict[str, str] = {
    "demo/hub_standin.py": "a stand-in for the Hugging Face Hub (an upstream server for the demo and tests): "
                           "it writes its own repository store, never gapsync's files or a medium",
    "demo/images.py": "builds the demo's source OCI layout (upstream images) in the demo's fresh work directory",
}
# single calls that write to something that is not a file of a directory
ALLOWED_CALLS: dict[tuple[str, str], str] = {
    ("scanner/parallel.py", "fdopen(mode='wb')"): "the write end of a pipe from a scan worker to its parent",
}
# modules that read the medium or the mirror: every open() in them must be fsutil's
MEDIUM_READERS = [
    "bundle/archive.py", "bundle/parity.py", "bundle/volumes.py", "bundle/approvals.py", "bundle/minisign.py",
    "bundle/inspect.py", "bundle/receipt.py", "audit.py", "mirror/importer.py", "mirror/trust.py", "mirror/layout.py",
    "cli/commands/repair.py", "cli/commands/receipt.py", "cli/commands/bundle.py",
]
# gapsync/mirror/serve.py reads the mirror with its own dir-fd walk (O_NOFOLLOW|O_NONBLOCK, then
# fstat S_ISREG): its READS are left to it (owned by serve); its writes are held like any other.
READ_ALLOWED = {"mirror/serve.py"}


def _mode_of(call: ast.Call) -> str | None:
    """The mode argument of an open()-like call, when it is a constant."""
    for kw in call.keywords:
        if kw.arg == "mode" and isinstance(kw.value, ast.Constant):
            return str(kw.value.value)
    func = call.func
    module_open = isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in (
        "io", "builtins", "tarfile", "gzip", "bz2", "lzma")
    pos = 0 if isinstance(func, ast.Attribute) and func.attr == "open" and not module_open else 1
    if isinstance(func, ast.Attribute) and func.attr == "fdopen":
        pos = 1
    if len(call.args) > pos and isinstance(call.args[pos], ast.Constant):
        return str(call.args[pos].value)
    return None


def _writes(call: ast.Call) -> bool:
    """An os.open call whose flags name a write flag (or are not spelled out: held as a write)."""
    if len(call.args) < 2:
        return True
    names = {n.attr for n in ast.walk(call.args[1]) if isinstance(n, ast.Attribute)}
    names |= {n.id for n in ast.walk(call.args[1]) if isinstance(n, ast.Name)}
    return bool(names & WRITE_FLAGS) or not (names & {"O_RDONLY", "O_DIRECTORY", "O_PATH"})


def _violations() -> tuple[list[str], list[str]]:
    writes: list[str] = []
    reads: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "fsutil.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            where = f"gapsync/{rel}:{node.lineno}"
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else None
            what = None
            if name in WRITE_CALLS:
                what = name
            elif owner is not None and (owner, name) in WRITE_ATTRS_OF:
                if (owner, name) == ("os", "open") and not _writes(node):
                    continue  # a read-only descriptor (O_RDONLY, O_DIRECTORY)
                what = f"{owner}.{name}"
            elif name == "rename" and isinstance(func, ast.Attribute):
                what = ".rename"
            elif (name == "replace" and isinstance(func, ast.Attribute) and len(node.args) == 1
                  and not node.keywords):  # Path.replace(dst); str.replace takes two arguments
                what = ".replace"
            elif name in ("open", "fdopen"):
                if owner in ("zf", "tf", "urllib") or (
                        isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute)
                        and func.value.attr in ("request",)):
                    continue  # a member of an archive already open, a URL
                if owner in ("tarfile", "gzip", "bz2", "lzma"):  # module.open(name, mode): a file unless fileobj=
                    mode = _mode_of(node)
                    if mode and any(c in mode for c in "wax+") and not any(k.arg == "fileobj" for k in node.keywords):
                        what = f"{owner}.open(mode={mode!r})"
                    else:
                        continue
                mode = _mode_of(node)
                if mode is not None and any(c in mode for c in "wax+"):
                    what = f"{name}(mode={mode!r})"
                elif name == "open" and rel in MEDIUM_READERS and rel not in READ_ALLOWED and not (
                        owner == "fsutil" or (isinstance(func, ast.Attribute) and func.attr == "open" and owner in ("d", "out"))):
                    reads.append(f"{where}: {name}() of a medium reader outside fsutil.open_regular")
            if what is not None and rel not in ALLOWED_WRITES and (rel, what) not in ALLOWED_CALLS:
                writes.append(f"{where}: {what}")
    return writes, reads


def test_every_write_goes_through_fsutil():
    writes, _ = _violations()
    assert not writes, "file writes outside gapsync/fsutil.py (route them through it):\n" + "\n".join(writes)


def test_medium_readers_open_through_fsutil():
    _, reads = _violations()
    assert not reads, "reads of the medium outside fsutil.open_regular:\n" + "\n".join(reads)


def test_the_walk_can_fail():
    """The walk sees each kind of write it is meant to catch (so a passing walk means something)."""
    probe = SRC / "_fs_discipline_probe.py"
    probe.write_text("import gzip, os, shutil, tempfile\nfrom pathlib import Path\n"
                     "def f(p):\n    open(p, 'wb')\n    Path(p).write_text('x')\n    os.replace(p, p)\n"
                     "    shutil.copy(p, p)\n    tempfile.mkstemp()\n    os.open(p, 0)\n    Path(p).open('ab')\n"
                     "    Path(p).replace(p)\n    gzip.open(p, 'wb')\n", encoding="utf-8")
    try:
        writes, _ = _violations()
    finally:
        probe.unlink()
    mine = [w for w in writes if "_fs_discipline_probe" in w]
    assert len(mine) == 9, mine


def test_fsutil_never_writes_through_a_link(tmp_path):
    from gapsync import fsutil

    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    d = tmp_path / "d"
    d.mkdir()
    (d / "page.html").symlink_to(victim)
    (d / "dangling").symlink_to(tmp_path / "new-file")
    for name in ("page.html", "dangling"):
        try:
            fsutil.write_atomic(d / name, b"attacker")
        except fsutil.UnsafeFileError as e:
            assert str(d / name) in str(e) and "symlink" in str(e)
        else:
            raise AssertionError(f"{name}: written through a link")
    try:
        fsutil.link_or_copy(victim, d / "page.html")
    except fsutil.UnsafeFileError:
        pass
    else:
        raise AssertionError("link_or_copy replaced a link")
    assert victim.read_bytes() == b"keep" and not (tmp_path / "new-file").exists()
    # temporary names never touch an existing file, whatever its name
    (d / "config.json").write_bytes(b"published")
    fsutil.write_atomic(d / "other.json", b"x")
    assert (d / "config.json").read_bytes() == b"published"
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "dangling", "other.json", "page.html"]


def test_open_regular_refuses_at_once(tmp_path):
    import os
    import time

    from gapsync import fsutil

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "link").symlink_to(tmp_path / "fifo")
    start = time.monotonic()
    for p, kind in ((fifo, "FIFO"), (tmp_path / "link", "symlink"), (tmp_path, "directory")):
        try:
            fsutil.open_regular(p)
        except fsutil.UnsafeFileError as e:
            assert kind in str(e) and str(p) in str(e), e
        else:
            raise AssertionError(f"{p} opened")
    assert time.monotonic() - start < 5
    (tmp_path / "f").write_bytes(b"data")
    with fsutil.open_regular(tmp_path / "f") as f:
        assert f.read() == b"data"  # blocking mode again: a normal read
