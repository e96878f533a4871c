"""Hostile files on a real medium (issue 13, classes 1 and 2): planted symlinks at the names
gapsync writes, symlinks and FIFOs where it reads, and a forged parity file.

Every command runs as a real process with a timeout (a FIFO must never block it, not even while
it holds the mirror lock). Each refusal is checked for its exit code, for one error line that
names the file, and for the files outside: the target of a planted link is byte for byte as it
was and no new file appeared outside. Where a mirror is involved, it is as before, and a later
run works.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gapsync.bundle.archive import BundleReader
from gapsync.bundle.parity import write_parity
from tests.support.channels import new_channel, write_spec
from tests.support.cli import GAPSYNC, cli, isolated_env
from tests.support.servers import static_server
from tests.support.trees import snapshot
from tests.support.wheels import make_wheel, write_index

TIMEOUT = 120
VICTIM = b"the operator's own file: must never change\n"


def gapsync(*args, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """The real command line; a hang fails the test (TimeoutExpired) instead of blocking it."""
    return subprocess.run([GAPSYNC, *map(str, args)], capture_output=True, text=True, env=isolated_env(),
                          timeout=timeout, stdin=subprocess.DEVNULL)


def refused(r: subprocess.CompletedProcess, code: int, *names: str) -> str:
    """The run failed with ``code`` and one error line naming every one of ``names``."""
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("gapsync: error:")]
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert len(errors) == 1 and "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    for n in names:
        assert n in errors[0], (n, errors[0])
    return errors[0]


def outside_state(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and not p.is_symlink()}


@pytest.fixture
def outside(tmp_path) -> Path:
    """A directory of the operator's, with one precious file, that gapsync must never touch."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "victim").write_bytes(VICTIM)
    return d


def assert_untouched(outside: Path) -> None:
    assert outside_state(outside) == {"victim": VICTIM}
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("fs-index")
    for i in range(4):
        make_wheel(root / "files", f"pkg{i}", "1.0", payload=os.urandom(60_000))
    write_index(root)
    srv = static_server(root)
    yield srv.url
    srv.stop()


def _channel(base: Path, index: str):
    ch = new_channel(base)
    spec = write_spec(base / "gapsync.yaml", index, [f"pkg{i}" for i in range(4)], pythons=("3.12",))
    return ch, spec


def _create(ch, spec: Path, out: Path, *extra) -> subprocess.CompletedProcess:
    return gapsync("bundle", "create", "-f", spec, "--state", ch.state, "-o", out, "--cache", ch.base / "cache",
                   "--key", ch.keys[0], *extra)


@pytest.fixture(scope="module")
def volset(index, tmp_path_factory):
    """A bundle in volumes with one parity file, the channel's root and the mirror-less pieces."""
    base = tmp_path_factory.mktemp("fs-vols")
    ch, spec = _channel(base, index)
    r = _create(ch, spec, base / "out", "--max-volume-size", "200KB", "--parity", "1")
    assert r.returncode == 0, r.stderr
    vols = sorted((base / "out").glob("*.gapsync"))
    assert len(vols) >= 3
    return ch, base / "out", vols


def copy_out(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# -- writes: planted links at the names gapsync writes -------------------------------------

@pytest.mark.parametrize("planted", ["t-prod-1.gapsync.partial", "t-prod-1.gapsync.minisig",
                                     "t-prod-1.p01of01.gapsync-parity.partial"])
def test_create_never_writes_through_a_planted_link(index, tmp_path, outside, planted):
    ch, spec = _channel(tmp_path / "dmz", index)
    out = tmp_path / "usb"
    out.mkdir()
    (out / planted).symlink_to(outside / "victim")
    r = _create(ch, spec, out, "--parity", "1")
    refused(r, 3, planted)
    assert_untouched(outside)
    assert sorted(p.name for p in out.iterdir()) == [planted]  # no bundle, no volume, nothing else
    assert (out / planted).is_symlink()
    # the operator removes the link: the run finishes
    (out / planted).unlink()
    r = _create(ch, spec, out, "--parity", "1")
    assert r.returncode == 0, r.stderr
    assert (out / "t-prod-1.gapsync").is_file() and not (out / "t-prod-1.gapsync").is_symlink()
    assert_untouched(outside)


def test_create_refuses_a_dangling_link_at_the_bundle_name(index, tmp_path, outside):
    ch, spec = _channel(tmp_path / "dmz", index)
    out = tmp_path / "usb"
    out.mkdir()
    (out / "t-prod-1.gapsync").symlink_to(outside / "created-by-gapsync")
    refused(_create(ch, spec, out), 3, "t-prod-1.gapsync")
    assert_untouched(outside)


def _lose(d: Path, vol: Path) -> str:
    (d / vol.name).unlink()
    (d / (vol.name + ".minisig")).unlink()
    return vol.name


def test_repair_refuses_a_dangling_minisig_link(volset, tmp_path, outside):
    _, out, vols = volset
    d = copy_out(out, tmp_path / "medium")
    lost = _lose(d, vols[1])
    (d / (lost + ".minisig")).symlink_to(outside / "cron-job")  # dangling: a write would create it
    before = snapshot(d)
    r = gapsync("bundle", "repair", d)
    refused(r, 3, lost + ".minisig")
    assert_untouched(outside)
    assert not (d / lost).exists() and snapshot(d) == before


def test_repair_refuses_a_planted_partial_link(volset, tmp_path, outside):
    _, out, vols = volset
    d = copy_out(out, tmp_path / "medium")
    lost = _lose(d, vols[0])
    (d / (lost + ".partial")).symlink_to(outside / "victim")
    refused(gapsync("bundle", "repair", d), 3, lost + ".partial")
    assert_untouched(outside)
    assert not (d / lost).exists()


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_repair_refuses_a_volume_that_is_not_a_regular_file(volset, tmp_path, outside, kind):
    _, out, vols = volset
    d = copy_out(out, tmp_path / "medium")
    name = vols[2].name
    (d / name).unlink()
    if kind == "symlink":
        shutil.copy(vols[2], outside / "copy")
        (d / name).symlink_to(outside / "copy")
    else:
        os.mkfifo(d / name)
    refused(gapsync("bundle", "repair", d), 3, name)
    if kind == "symlink":
        assert (outside / "copy").read_bytes() == vols[2].read_bytes()
        (outside / "copy").unlink()
    assert_untouched(outside)


# -- section 2: a forged parity header ------------------------------------------------------

def _forge_parity(d: Path, vols: list[Path], index: int, forged: bytes, work: Path) -> None:
    """What an attacker holding the medium can do: describe other bytes for volume ``index`` in a
    parity set whose headers (unkeyed sha256) and payload agree with those bytes."""
    work.mkdir()
    fake = []
    for i, v in enumerate(vols):
        p = work / v.name
        p.write_bytes(forged if i == index else v.read_bytes())
        fake.append(p)
    [par] = write_parity(fake, 1, work / "par")
    for old in d.glob("*.gapsync-parity"):
        old.unlink()
    shutil.copy(par, d / par.name)


def _flip_in_blob(vol: Path) -> bytes:
    data = bytearray(vol.read_bytes())
    with BundleReader(vol) as r:
        m = next(iter(r.iter_blobs()))
        at = m._info.offset_data + m.size // 2
    data[at] ^= 0x01
    return bytes(data)


@pytest.mark.parametrize("forgery", ["blob-byte", "not-a-bundle", "other-bundle", "another-volume"])
def test_repair_never_names_forged_bytes_a_volume(volset, world, tmp_path, outside, forgery):
    ch, out, vols = volset
    d = copy_out(out, tmp_path / "medium")
    target = vols[1]
    if forgery == "blob-byte":  # same size, same metadata, one byte of a blob changed
        forged = _flip_in_blob(target)
    elif forgery == "not-a-bundle":
        forged = os.urandom(target.stat().st_size)
    elif forgery == "other-bundle":  # a well-formed, signed bundle, but of another channel
        forged = world.b1.read_bytes()
    else:  # a real volume of this bundle under another volume's name
        forged = vols[0].read_bytes()
    _forge_parity(d, vols, 1, forged, tmp_path / "forge")
    lost = _lose(d, target)
    before = snapshot(d)
    r = gapsync("bundle", "repair", d)
    line = refused(r, 3, lost)
    assert "nothing was rebuilt" in line, line
    why = {"blob-byte": "does not match its signed sha256", "not-a-bundle": "not a well-formed bundle",
           "other-bundle": "does not carry the signed metadata", "another-volume": "carries already"}[forgery]
    assert why in line, line
    assert not (d / lost).exists() and snapshot(d) == before
    assert_untouched(outside)


def test_repair_with_the_real_parity_still_rebuilds(volset, tmp_path):
    _, out, vols = volset
    d = copy_out(out, tmp_path / "medium")
    lost = _lose(d, vols[1])
    r = gapsync("bundle", "repair", d)
    assert r.returncode == 0, r.stderr
    assert (d / lost).read_bytes() == vols[1].read_bytes()
    assert (d / (lost + ".minisig")).is_file()


# -- reads: symlinks and FIFOs where the importer reads a file ------------------------------

@pytest.fixture
def medium(world, tmp_path) -> Path:
    d = tmp_path / "usb"
    d.mkdir()
    shutil.copy(world.b1, d / world.b1.name)
    return d


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_import_refuses_a_bundle_that_is_not_a_regular_file(world, mirror, medium, outside, kind):
    bad = medium / "evil.gapsync"
    if kind == "fifo":
        os.mkfifo(bad)
    else:
        shutil.copy(world.b1, outside / "real.gapsync")
        bad.symlink_to(outside / "real.gapsync")
    before = snapshot(mirror)
    refused(gapsync("import", bad, "--mirror", mirror), 3, "evil.gapsync")
    refused(gapsync("bundle", "verify", bad, "--mirror", mirror), 3, "evil.gapsync")
    assert snapshot(mirror) == before
    # the lock was given back: the next import works at once
    r = gapsync("import", medium / world.b1.name, "--mirror", mirror)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_import_refuses_an_approvals_side_file_that_is_not_a_regular_file(world, mirror, medium, outside, kind):
    side = medium / (world.b1.name + ".approvals.json")
    if kind == "fifo":
        os.mkfifo(side)
    else:
        side.symlink_to(outside / "victim")
    before = snapshot(mirror)
    refused(gapsync("import", medium / world.b1.name, "--mirror", mirror), 3, side.name)
    assert snapshot(mirror) == before
    assert_untouched(outside)
    side.unlink()
    r = gapsync("import", medium / world.b1.name, "--mirror", mirror)
    assert r.returncode == 0, r.stderr


def test_inspect_and_approve_do_not_block_on_a_fifo(world, medium):
    side = medium / (world.b1.name + ".approvals.json")
    os.mkfifo(side)
    r = gapsync("bundle", "inspect", medium / world.b1.name, "--json")
    assert r.returncode == 0, r.stderr  # inspect reports the side file's problem, it does not fail on it
    assert "FIFO" in r.stdout
    refused(gapsync("bundle", "approve", medium / world.b1.name, "--key", world.keys[0]), 3, side.name)


def test_an_import_volume_that_is_a_symlink_is_refused(volset, tmp_path, outside, mirror):
    ch, out, vols = volset
    m = tmp_path / "m2"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    shutil.copy(vols[0], outside / "v")
    link = tmp_path / vols[0].name
    link.symlink_to(outside / "v")
    refused(gapsync("import", link, "--mirror", m), 3, vols[0].name)
    (outside / "v").unlink()
    assert_untouched(outside)


@pytest.mark.parametrize("kind", ["fifo", "symlink", "nested"])
def test_a_receipt_that_is_not_a_regular_file_or_too_deep(index, tmp_path, outside, kind):
    ch, spec = _channel(tmp_path / "dmz", index)
    receipt = tmp_path / "receipt.json"
    if kind == "fifo":
        os.mkfifo(receipt)
        code = 3
    elif kind == "symlink":
        (outside / "receipt.json").write_text('{"body": {}, "signature": {}}')
        receipt.symlink_to(outside / "receipt.json")
        code = 3
    else:
        receipt.write_text('{"body": ' + "[" * 200_000 + "]" * 200_000 + ', "signature": {}}')
        code = 2
    r = gapsync("sync", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "out",
                "--cache", ch.base / "cache", "--receipt", receipt, "--receipt-key", ch.pub[0])
    refused(r, code, "receipt.json")
    if kind == "symlink":
        (outside / "receipt.json").unlink()
    assert_untouched(outside)


@pytest.fixture(scope="module")
def single(index, tmp_path_factory):
    """One volume with one parity file: when it is lost, no volume survives to compare with."""
    base = tmp_path_factory.mktemp("fs-single")
    ch, spec = _channel(base, index)
    r = _create(ch, spec, base / "out", "--parity", "1")
    assert r.returncode == 0, r.stderr
    m = base / "mirror"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    return ch, base / "out", sorted((base / "out").glob("*.gapsync")), m


def test_repair_with_a_mirror_verifies_with_tuf_when_no_volume_survives(single, world, tmp_path, outside):
    """A forged parity file that rebuilds a well-formed bundle of another channel: with no volume
    left to compare with, only TUF against the pinned root can tell; --mirror makes repair ask it."""
    ch, out, vols, m = single
    d = copy_out(out, tmp_path / "medium")
    _forge_parity(d, vols, 0, world.b1.read_bytes(), tmp_path / "forge")
    lost = _lose(d, vols[0])
    before = snapshot(d)
    line = refused(gapsync("bundle", "repair", d, "--mirror", m), 3)
    assert "trusted root" in line or "signature" in line or "threshold" in line, line  # TUF's refusal
    assert not (d / lost).exists() and snapshot(d) == before
    assert_untouched(outside)
    # the real parity, with --mirror: rebuilt, TUF-checked
    d2 = copy_out(out, tmp_path / "medium2")
    _lose(d2, vols[0])
    r = gapsync("bundle", "repair", d2, "--mirror", m)
    assert r.returncode == 0, r.stderr
    assert (d2 / lost).read_bytes() == vols[0].read_bytes()


def test_a_link_at_the_mirror_lock_is_refused_not_followed(world, mirror, medium, outside):
    lock = mirror / ".gapsync" / "lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(outside / "victim")
    before = snapshot(mirror)
    refused(gapsync("import", medium / world.b1.name, "--mirror", mirror), 3, str(lock))
    assert_untouched(outside)
    assert {k: v for k, v in snapshot(mirror).items() if "audit" not in k} == {
        k: v for k, v in before.items() if "audit" not in k}


def test_a_link_at_the_audit_log_is_refused_before_anything_is_done(world, mirror, medium, outside):
    log = mirror / ".gapsync" / "audit.log"
    if log.exists():
        log.unlink()
    log.symlink_to(outside / "victim")
    before = snapshot(mirror)
    refused(gapsync("import", medium / world.b1.name, "--mirror", mirror), 3, str(log))
    assert_untouched(outside)
    assert snapshot(mirror) == before
