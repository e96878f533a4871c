"""Red-team cases of issue 13 not listed in the issue, against the real CLI: each is refused with
one line naming the file and the reason, with the documented exit code, and writes nothing."""

from __future__ import annotations

import pytest

from tests.support.channels import write_spec
from tests.support.cli import cli
from tests.support.servers import free_port


@pytest.mark.parametrize("url", [
    "http://alice:s3cretpw@127.0.0.1:99999/simple/",  # port out of range: urlsplit().port raises ValueError
    "http://127.0.0.1:99999/simple/",
    "http://127.0.0.1:12x/simple/",
    "http://[::1/simple/",  # unbalanced IPv6 bracket
    "http:///simple/",  # no host
])
def test_an_index_url_that_does_not_parse_is_one_line_naming_the_spec(tmp_path, url):
    spec = write_spec(tmp_path / "gapsync.yaml", url, ["alpha"])
    lock = tmp_path / "lock.json"
    r = cli("resolve", "-f", spec, "-o", lock, "--cache", tmp_path / "cache")
    assert r.code == 2, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "internal error" not in r.err, r.err
    assert str(spec) in r.err and "index_url" in r.err
    assert "s3cret" not in r.err
    assert not lock.exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/m.bin", "https://[::1/m.bin", "https:///m.bin"])
def test_a_model_url_that_does_not_parse_is_one_line_naming_the_spec(tmp_path, url):
    spec = tmp_path / "gapsync.yaml"
    spec.write_text(f"name: t\nchannel: prod\nmodels:\n  - url: {url}\n    sha256: '{'a' * 64}'\n")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "lock.json", "--cache", tmp_path / "cache")
    assert r.code == 2, r.err
    assert len(r.err.strip().splitlines()) == 1 and "internal error" not in r.err, r.err
    assert str(spec) in r.err and "url" in r.err
    assert free_port()  # the machine is fine; nothing was listened on


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/charts/", "https://[::1/charts/", "http:///charts/"])
def test_a_chart_repo_url_that_does_not_parse_is_one_line_naming_the_spec(tmp_path, url):
    spec = tmp_path / "gapsync.yaml"
    spec.write_text(f"name: t\nchannel: prod\ncharts:\n  refs:\n    - {{repo: '{url}', name: c, version: 1.0.0}}\n")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "lock.json", "--cache", tmp_path / "cache")
    assert r.code == 2, r.err
    assert len(r.err.strip().splitlines()) == 1 and "internal error" not in r.err, r.err
    assert str(spec) in r.err and "repo" in r.err


# -- class 4: a model file name the air side's file system cannot hold is never signed ----------
@pytest.mark.parametrize("name", [
    "é" * 200,  # 200 characters, 400 bytes: over a file system's 255-byte name (ENAMETOOLONG at publish)
    "a/" + "\U0001F600" * 100,  # one segment of 400 bytes
    "x\udc80y",  # a lone surrogate (JSON may carry one): not UTF-8, was "internal error: UnicodeEncodeError"
])
def test_model_file_name_no_file_system_holds_is_refused_at_the_dmz(tmp_path, monkeypatch, name):
    import json

    from tests.support.channels import model_bundle

    src = tmp_path / "model-src"
    src.mkdir()
    (src / "a_file").write_bytes(b"one")
    spec = tmp_path / "gapsync.yaml"
    spec.write_text(f"name: t\nchannel: prod\nmodels:\n  - {{path: {src}, name: team/m1}}\n")
    lock = tmp_path / "gapsync.lock"
    assert cli("resolve", "-f", spec, "-o", lock, "--cache", tmp_path / "cache").code == 0
    doc = json.loads(lock.read_text())
    doc["models"][0]["files"][0]["path"] = name
    lock.write_text(json.dumps(doc))
    from tests.support.channels import new_channel

    ch = new_channel(tmp_path / "dmz", "prod")
    out = tmp_path / "out"
    r = cli("bundle", "create", "-f", spec, "--lock", lock, "--state", ch.state, "--key", ch.keys[0],
            "-o", out, "--cache", tmp_path / "cache")
    assert r.code == 2, (r.code, r.err)
    assert len(r.err.strip().splitlines()) == 1 and "internal error" not in r.err, r.err
    assert str(lock) in r.err and "file name" in r.err, r.err
    assert not out.exists() or not any(out.iterdir())
    assert model_bundle  # the air side's refusal of a signed one: test_signed_model_with_a_long_name...


def test_signed_model_with_a_file_name_too_long_is_refused_before_publishing(tmp_path, monkeypatch):
    """A DMZ without the check (or a stolen key) signs it anyway: the import refuses it before
    publishing anything (exit 3, naming the bundle), and a re-run gives the same answer."""
    import gapsync.names
    from gapsync.cli.exit_codes import ExitCode
    from tests.support.channels import model_bundle
    from tests.support.trees import snapshot

    real = gapsync.names.check_model_path
    monkeypatch.setattr(gapsync.names, "check_model_path", lambda p: p)  # the DMZ's check, skipped
    ch, bundle = model_bundle(tmp_path, {"a_file": b"one"}, {"a_file": "é" * 200}, monkeypatch)
    assert gapsync.names.check_model_path is real
    m = tmp_path / "mirror"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    before = snapshot(m)
    for _ in range(2):
        r = cli("import", bundle, "--mirror", m)
        assert r.code == ExitCode.VERIFICATION_FAILED, (r.code, r.err)
        assert "internal error" not in r.err and str(bundle) in r.err.strip().splitlines()[-1], r.err
        assert snapshot(m) == before


# -- class 1: the mirror's own state files are read through fsutil too ---------------------------
@pytest.mark.parametrize("plant", ["symlink", "fifo", "dir", "garbage"])
def test_a_planted_inventory_is_refused_not_followed(world, tmp_path, plant):
    """``.gapsync/pypi/<project>.json`` (what the next import merges into the project's page) was
    read with ``read_text()``: a link was followed (its target parsed: 'internal error:
    JSONDecodeError'), a FIFO blocked the import forever while it held the mirror lock."""
    import os

    from gapsync.cli.exit_codes import ExitCode
    from tests.support.trees import snapshot

    m = tmp_path / "mirror"
    assert cli("trust", "pin", world.root, "--mirror", m).code == 0
    assert cli("import", world.b1, "--mirror", m).code == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("root:x:0:0:root:/root:/bin/bash\n")  # an operator's file: never parsed, never written
    inv = m / ".gapsync/pypi/alpha.json"
    inv.unlink()
    if plant == "symlink":
        inv.symlink_to(victim)
    elif plant == "fifo":
        os.mkfifo(inv)
    elif plant == "dir":
        inv.mkdir()
    else:
        inv.write_bytes(b"\xff not json")
    before = snapshot(m)
    for _ in range(2):
        r = cli("import", world.b2, "--mirror", m)
        assert r.code == ExitCode.VERIFICATION_FAILED, (r.code, r.err)
        line = r.err.strip()
        assert len(line.splitlines()) == 1 and "internal error" not in line, line
        assert str(inv) in line, line
        assert snapshot(m) == before
    assert victim.read_text() == "root:x:0:0:root:/root:/bin/bash\n"


def test_a_directory_planted_at_a_cache_entry_is_one_line_naming_it(world, tmp_path):
    """A file put into place by rename (the cache's verified blob, any ``fsutil.move``) over a
    directory planted at its name was 'internal error: IsADirectoryError' naming the temporary
    name; now refused naming the entry, the directory left as it was, nothing written to -o."""
    import shutil

    from gapsync.cli.exit_codes import ExitCode

    cache = tmp_path / "cache"
    shutil.copytree(world.base / "cache", cache, symlinks=True)
    blobs = [p for p in sorted(cache.rglob("*")) if p.is_file() and len(p.name) == 64]
    for blob in blobs:  # every entry (the world's cache may hold more than this spec needs)
        blob.unlink()
        blob.mkdir()
    out = tmp_path / "out"
    r = cli("bundle", "create", "-f", world.spec, "--state", world.state, "-o", out, "--cache", cache,
            "--key", world.keys[0])
    assert r.code == ExitCode.VERIFICATION_FAILED, (r.code, r.err)
    line = r.err.strip()
    assert len(line.splitlines()) == 1 and "internal error" not in line, line
    assert any(str(b) in line for b in blobs) and "directory" in line, line
    assert all(b.is_dir() for b in blobs)
    assert not out.exists() or not list(out.glob("*.gapsync"))


@pytest.mark.parametrize("name, plant", [("2.root.json", "symlink"), ("2.root.json", "garbage"),
                                         ("targets.json", "symlink"), ("targets.json", "fifo"), ("targets.json", "garbage")])
def test_a_planted_channel_state_file_is_one_line_never_followed(world, tmp_path, name, plant):
    """The channel state (``STATE/<channel>/N.root.json``, ``targets.json``...) was read with
    ``read_bytes()``/``Metadata.from_file``: a link was followed and its target parsed ('internal
    error: DeserializationError'), a FIFO blocked."""
    import os
    import shutil

    victim = tmp_path / "victim"
    victim.write_text("VICTIM\n")
    st = tmp_path / "state"
    shutil.copytree(world.state, st, symlinks=True)
    p = st / "prod" / name
    if p.exists():
        p.unlink()
    if plant == "symlink":
        p.symlink_to(victim)
    elif plant == "fifo":
        os.mkfifo(p)
    else:
        p.write_bytes(b"\x00 not json")
    out = tmp_path / "out"
    r = cli("bundle", "create", "-f", world.spec, "--state", st, "-o", out, "--cache", world.base / "cache",
            "--key", world.keys[0])
    assert r.code in (2, 3), (r.code, r.err)
    line = r.err.strip()
    assert len(line.splitlines()) == 1 and "internal error" not in line, line
    assert str(p) in line, line
    assert victim.read_text() == "VICTIM\n"
    assert not out.exists() or not list(out.glob("*.gapsync"))


def test_approve_of_a_deeply_nested_approvals_file_is_one_line(world, tmp_path):
    import shutil

    b = tmp_path / world.b1.name
    shutil.copy(world.b1, b)
    side = tmp_path / (b.name + ".approvals.json")
    side.write_text("[" * 100_000 + "]" * 100_000)
    before = side.read_bytes()
    r = cli("bundle", "approve", b, "--key", world.keys[0])
    assert r.code == 3, (r.code, r.err)
    line = r.err.strip()
    assert len(line.splitlines()) == 1 and "internal error" not in line, line
    assert "approvals.json" in line and "nested too deeply" in line, line
    assert side.read_bytes() == before


@pytest.mark.parametrize("plant", ["symlink", "fifo", "garbage"])
def test_a_planted_model_index_is_refused_not_followed(tmp_path, plant):
    """``.gapsync/models/index.json`` (the HF cache target's index of models) was read with
    ``read_text()``: a link was followed and a FIFO hung the import while it held the mirror
    lock. It is read like every other state file: refused in one line, mirror unchanged, and an
    import after the operator removes it finishes."""
    import os
    import signal

    from gapsync.cli.exit_codes import ExitCode
    from tests.support.channels import model_bundle
    from tests.support.trees import snapshot

    ch, bundle = model_bundle(tmp_path, {"config.json": b"{}", "model.safetensors": b"\x08\0\0\0\0\0\0\0{}      "})
    m = tmp_path / "mirror"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    victim = tmp_path / "victim.json"
    victim.write_text('{"models": {}}')
    index = m / ".gapsync" / "models" / "index.json"
    index.parent.mkdir(parents=True, exist_ok=True)
    if plant == "symlink":
        index.symlink_to(victim)
    elif plant == "fifo":
        os.mkfifo(index)
    else:
        index.write_bytes(b"\xff not json")
    before = snapshot(m)
    signal.alarm(60)  # a read that blocks on the FIFO fails the test instead of hanging the suite
    try:
        r = cli("import", bundle, "--mirror", m)
    finally:
        signal.alarm(0)
    assert r.code == ExitCode.VERIFICATION_FAILED, (r.code, r.err)
    line = r.err.strip()
    assert len(line.splitlines()) == 1 and "internal error" not in line and str(index) in line, line
    assert snapshot(m) == before and victim.read_text() == '{"models": {}}'
    index.unlink()
    r = cli("import", bundle, "--mirror", m)
    assert r.code == 0, r.err


@pytest.mark.parametrize("opener", ["append", "partial", "partial-resume", "state"])
@pytest.mark.parametrize("plant", ["fifo", "symlink", "dir"])
def test_files_opened_in_place_refuse_fifos_links_and_dirs(tmp_path, opener, plant):
    """The files gapsync opens in place (history log, resumable download, lock file, audit log)
    share one opener: a FIFO with no reader (ENXIO for a writer) used to escape as a raw OSError
    from all but the lock file's opener; a link is never followed, a directory never opened."""
    import os

    from gapsync import fsutil

    target = tmp_path / "victim"
    target.write_bytes(b"keep")
    path = tmp_path / "own" / "file"
    path.parent.mkdir()
    if plant == "fifo":
        os.mkfifo(path)
    elif plant == "symlink":
        path.symlink_to(target)
    else:
        path.mkdir()
    with pytest.raises(fsutil.UnsafeFileError, match=str(path)):
        if opener == "append":
            fsutil.open_append(path).close()
        elif opener == "state":
            with fsutil.open_state_fd(path):
                pass
        else:
            fsutil.open_partial(path, resume=opener == "partial-resume").close()
    assert target.read_bytes() == b"keep"
