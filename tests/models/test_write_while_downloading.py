"""A cold ``bundle create`` writes each blob into the bundle while it downloads (issue 21): the
download also writes the bytes into a member of the bundle's body, the start of a format 3
bundle; the BLAKE2b of the file (its minisign signature) follows those writes, and the blobs
that did not download and then the metadata are appended after the scan. What comes out must be
a bundle like any other (the stock ``minisign`` and the importer accept it, the same members as
the writer that works from the cache), and every way the body cannot be used (a blocked
artifact, a failed write, a bad download, a kill) must end in the usual bundle or in no bundle
at all, never in a half-made one.

The reader's side of format 3 (one canonical order per format, whatever a hostile file tries)
is tested at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from gapsync.bundle.archive import BLOCK, BundleBody, BundleReader, BundleWriter, member_header
from gapsync.errors import BundleFormatError
from gapsync.fsutil import UnsafeFileError
from gapsync.model import BlobRef
from tests.support.channels import new_channel
from tests.support.cli import cli
from tests.support.model_shards import (
    REPO,
    SHARDS,
    disk_full_after,
    kill_then_rerun,
    members,
    shard,
    shard_digests,
    spec_for,
)
from tests.support.models import GITATTRIBUTES, WRONG_SHA, FakeHub, config_json, write_repo


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream-hub") / "root"
    files = {".gitattributes": GITATTRIBUTES, "config.json": config_json()}
    files.update({name: shard(n, i + 1) for i, (name, n) in enumerate(SHARDS.items())})
    write_repo(root, REPO, {"main": files})
    with FakeHub(root) as h:
        yield h


def create(base: Path, spec: Path, *extra: str, ch=None, out: str = "out") -> tuple[object, dict, Path]:
    ch = ch or new_channel(base, "prod")
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", base / out,
            "--cache", base / "cache", "--json", *extra)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    return ch, doc, Path(doc["bundle"])


def layout(bundle: Path) -> list[str]:
    """The member names in file order."""
    with BundleReader(bundle) as r:
        return [ti.name for ti in sorted([*r._metadata, *r._blobs], key=lambda ti: ti.offset)]


def formats(bundle: Path) -> tuple[int, int]:
    """The format targets.json says, and the one bundle.json says."""
    with BundleReader(bundle) as r:
        targets = json.loads(r.read_metadata()["targets.json"])["signed"]
        digest = targets["targets"]["gapsync/bundle.json"]["hashes"]["sha256"]
        info = next(b"".join(r.chunks(m)) for m in r.iter_blobs() if m.digest == digest)
    return targets["x-gapsync"]["format"], json.loads(info)["format"]


def test_a_cold_create_writes_the_shards_while_they_download(hub, tmp_path, minisign_bin, monkeypatch):
    spec = spec_for(tmp_path / "g.yaml", hub.url)
    ch, doc, bundle = create(tmp_path / "a", spec)
    assert doc["blobs_written_while_downloading"] == len(SHARDS)
    # the stock minisign accepts the file the signature was computed over
    v = subprocess.run([minisign_bin, "-Vm", str(bundle), "-p", str(ch.pub[0])], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    # format 3: the shards first (in the order their downloads started), then the blobs that did
    # not download (bundle.json, the SBOM, the policy), then every metadata member
    names = layout(bundle)
    shards = {f"blobs/sha256/{d}" for d in shard_digests(hub)}
    assert set(names[:len(shards)]) == shards
    first_meta = min(i for i, n in enumerate(names) if n.startswith("metadata/"))
    assert all(n.startswith("blobs/") for n in names[:first_meta])
    assert all(n.startswith("metadata/") for n in names[first_meta:])
    assert formats(bundle) == (3, 3)
    # the same bundle, member for member, as the writer that copies from the cache (format 1)
    monkeypatch.setenv("GAPSYNC_WRITE_WHILE_DOWNLOADING", "0")
    _, doc2, bundle2 = create(tmp_path / "b", spec)
    assert doc2["blobs_written_while_downloading"] == 0
    assert layout(bundle2)[0].startswith("metadata/") and formats(bundle2) == (1, 1)
    got, want = members(bundle), members(bundle2)
    blobs = {n for n in got if n.startswith("blobs/")}
    blobs2 = {n for n in want if n.startswith("blobs/")}
    # bundle.json and the SBOM differ (their time, the format); every other blob is the same
    assert len(blobs) == len(blobs2) and len(blobs ^ blobs2) <= 4
    assert shards <= blobs & blobs2
    assert sorted(n for n in got if n.startswith("metadata/")) == sorted(n for n in want if n.startswith("metadata/"))
    # and it imports: every file of the model lands in the Hugging Face cache with its bytes
    mirror = tmp_path / "mirror"
    assert cli("trust", "pin", ch.root, "--mirror", mirror).code == 0
    # bundle inspect and verify read it as they read any bundle
    r = cli("bundle", "verify", bundle, "--mirror", mirror)
    assert r.code == 0, r.err
    r = cli("bundle", "inspect", bundle, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["version"] == 1
    r = cli("import", bundle, "--mirror", mirror)
    assert r.code == 0, r.err
    landed = {hashlib.sha256(p.read_bytes()).hexdigest() for p in mirror.rglob("*.safetensors") if p.is_file()}
    assert shard_digests(hub) <= landed


def test_unset_writes_while_downloading_and_zero_never(hub, tmp_path, monkeypatch):
    """Unset (or "1"), whatever downloads is written into the bundle as it arrives (format 3);
    "0" never (format 1: readable by a gapsync older than format 3), and it leaves nothing else
    in the output directory."""
    spec = spec_for(tmp_path / "g.yaml", hub.url)
    _, doc, bundle = create(tmp_path / "unset", spec)
    assert doc["blobs_written_while_downloading"] == len(SHARDS) and formats(bundle) == (3, 3)
    monkeypatch.setenv("GAPSYNC_WRITE_WHILE_DOWNLOADING", "1")
    _, doc, bundle = create(tmp_path / "one", spec)
    assert doc["blobs_written_while_downloading"] == len(SHARDS) and formats(bundle) == (3, 3)
    monkeypatch.setenv("GAPSYNC_WRITE_WHILE_DOWNLOADING", "0")
    _, doc, bundle = create(tmp_path / "zero", spec)
    assert doc["blobs_written_while_downloading"] == 0 and formats(bundle) == (1, 1)
    assert sorted(p.name for p in (tmp_path / "zero" / "out").iterdir()) == sorted([bundle.name, bundle.name + ".minisig"])


@pytest.fixture(scope="module")
def format3(hub, tmp_path_factory):
    """One cold create (format 3) and its channel, for the hostile imports below."""
    base = tmp_path_factory.mktemp("format3")
    ch, doc, bundle = create(base, spec_for(base / "g.yaml", hub.url))
    assert formats(bundle) == (3, 3)
    return ch, bundle


def _hostile(bundle: Path, how: str, dest: Path) -> Path:
    raw = bytearray(bundle.read_bytes())
    with BundleReader(bundle) as r:
        blobs = list(r.iter_blobs())
        meta = [(ti.name, r._read_all(ti)) for ti in r._metadata]
        first = blobs[0]._info
        if how == "tampered":  # one byte of the first shard's data, as it was written while downloading
            raw[first.offset_data + first.size // 2] ^= 0x01
        elif how == "truncated":  # the metadata at the end cut off
            del raw[-20 * BLOCK:]
        elif how == "metadata-first":  # the same signed members in the order of formats 1 and 2
            return _tar(dest, [*meta, *[(m.name, b"".join(r.chunks(m))) for m in blobs]])
        elif how == "blob-dropped":  # a shard left out (a short copy): the metadata still lists it
            kept = [m for m in blobs if m.name != blobs[0].name]
            return _tar(dest, [*[(m.name, b"".join(r.chunks(m))) for m in kept], *meta])
    dest.write_bytes(bytes(raw))
    return dest


@pytest.mark.parametrize("how", ["tampered", "truncated", "metadata-first", "blob-dropped"])
def test_a_hostile_format_3_bundle_is_refused_and_publishes_nothing(format3, tmp_path, how):
    """The bundle written while downloading, damaged or reordered on the way: refused with the
    verification exit code, naming the file, nothing published; the good one imports after, and
    imported again it is a replay (nothing new)."""
    ch, bundle = format3
    mirror = tmp_path / "mirror"
    assert cli("trust", "pin", ch.root, "--mirror", mirror).code == 0
    bad = _hostile(bundle, how, tmp_path / bundle.name)
    r = cli("import", bad, "--mirror", mirror)
    assert r.code == 3, (r.code, r.err)
    reason = {"tampered": "does not match", "truncated": "truncated", "metadata-first": "says bundle format 3",
              "blob-dropped": "lacks 1 blob"}[how]
    assert reason in r.err, r.err
    assert str(bad) in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert not [p for p in mirror.rglob("*.safetensors")]
    r = cli("import", bundle, "--mirror", mirror)
    assert r.code == 0, r.err
    assert [p for p in mirror.rglob("*.safetensors")]
    assert cli("import", bundle, "--mirror", mirror).code == 5  # the same version again: nothing new


def test_a_warm_create_writes_after_the_download_in_the_old_order(hub, tmp_path):
    spec = spec_for(tmp_path / "g.yaml", hub.url)
    _, doc, _ = create(tmp_path, spec)
    assert doc["blobs_written_while_downloading"] == len(SHARDS)
    # everything cached: nothing downloads, the usual writer copies from the cache, metadata first
    ch2 = new_channel(tmp_path / "ch2", "prod")
    _, doc, bundle = create(tmp_path, spec, ch=ch2, out="out2")
    assert doc["blobs_written_while_downloading"] == 0
    members(bundle)
    assert layout(bundle)[0].startswith("metadata/") and formats(bundle) == (1, 1)


@pytest.mark.parametrize("planted", ["dangling link", "file"])
def test_an_output_that_cannot_be_a_directory_is_refused_in_one_line(hub, tmp_path, planted):
    """-o naming a dangling link or a file (a nested path under it, so the option's own check
    does not catch it): exit 2, one line naming it, nothing downloaded, nothing created where
    the link points."""
    spec = spec_for(tmp_path / "g.yaml", hub.url)
    ch = new_channel(tmp_path, "prod")
    if planted == "file":
        (tmp_path / "o").write_bytes(b"a file")
        out = tmp_path / "o" / "out"
    else:
        (tmp_path / "o").symlink_to(tmp_path / "elsewhere")
        out = tmp_path / "o"
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", out,
            "--cache", tmp_path / "cache")
    assert r.code == 2 and "cannot write the bundle there" in r.err and str(out) in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1
    cached = {p.name for p in (tmp_path / "cache").rglob("*")} if (tmp_path / "cache").exists() else set()
    assert not any(d in name for d in shard_digests(hub) for name in cached)  # refused before any download
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("lanes", [1, 2])
def test_large_downloads_into_the_body_take_turns_in_lanes(hub, tmp_path, monkeypatch, lanes):
    """The hash follows the body from its first byte, so large downloads into it run at most
    ``GAPSYNC_BODY_LANES`` at a time (every file counts as large here): never more at once, the
    bundle the same, and the small files are not held back by them (started first)."""
    import threading
    import time

    import gapsync.bundler.create as create_mod
    import gapsync.bundler.fetch as fetch_mod

    monkeypatch.setattr(create_mod, "LARGE_BLOB", 1)
    monkeypatch.setenv("GAPSYNC_BODY_LANES", str(lanes))
    active, peak, lock = [0], [0], threading.Lock()
    real = fetch_mod._fetch_one

    def counted(cache, item, on_bytes, tee):
        if tee is None or not tee.ordered(item):  # a file the body does not take (no digest known)
            return real(cache, item, on_bytes, tee)
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.05)  # long enough for the other workers to try
            return real(cache, item, on_bytes, tee)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(fetch_mod, "_fetch_one", counted)
    spec = spec_for(tmp_path / "g.yaml", hub.url)
    ch, doc, bundle = create(tmp_path, spec)
    assert doc["blobs_written_while_downloading"] == len(SHARDS)
    assert 1 <= peak[0] <= lanes
    assert {f"blobs/sha256/{d}" for d in shard_digests(hub)} <= set(members(bundle))
    assert formats(bundle) == (3, 3)


@pytest.mark.parametrize("value", ["0", "x", "65", "-1"])
def test_a_bad_lane_count_is_refused_in_one_line(hub, tmp_path, monkeypatch, value):
    monkeypatch.setenv("GAPSYNC_BODY_LANES", value)
    spec = spec_for(tmp_path / "g.yaml", hub.url)
    ch = new_channel(tmp_path, "prod")
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "out",
            "--cache", tmp_path / "cache")
    assert r.code == 2 and "GAPSYNC_BODY_LANES" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert not (tmp_path / "out").exists()


def test_the_lanes_order_small_files_first(tmp_path):
    """``fetch_all`` starts the downloads that wait for a lane after the others."""
    from gapsync.bundler.create import LARGE_BLOB, _BodyTee
    from gapsync.bundler.fetch import FetchItem

    tee = _BodyTee(tmp_path / "b.gapsync", 1_700_000_000, set())
    big, small = FetchItem("u1", "a" * 64, LARGE_BLOB, "big"), FetchItem("u2", "b" * 64, 10, "small")
    known = FetchItem("u3", "c" * 64, LARGE_BLOB, "known")
    assert not tee.ordered(big)  # no body (not wanted): nothing waits
    tee.body = BundleBody(tmp_path / "b.gapsync", 1_700_000_000)
    tee.known = {"c" * 64}
    try:
        assert tee.ordered(big) and not tee.ordered(small) and not tee.ordered(known)
        assert sorted([big, small, known], key=tee.ordered) == [small, known, big]
    finally:
        tee.body.abort()


def test_a_blocked_artifact_falls_back_to_the_writer_and_is_not_carried(hub, tmp_path):
    """--allow-partial with a blocked model whose blobs were written into the body while they
    downloaded: the body is given up, the bundle is written from the cache without them."""
    root = hub.root
    evil = b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x02id\x94\x85\x94R\x94."
    write_repo(root, "team/evil", {"main": {".gitattributes": GITATTRIBUTES, "pytorch_model.bin": evil * 200}})
    spec = tmp_path / "g.yaml"
    spec.write_text(f"name: two\nchannel: prod\nmodels:\n  - hf: {REPO}\n    revision: main\n    endpoint: {hub.url}\n"
                    f"  - hf: team/evil\n    revision: main\n    endpoint: {hub.url}\n")
    ch = new_channel(tmp_path, "prod")
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "out",
            "--cache", tmp_path / "cache")
    assert r.code != 0 and "team/evil" in r.err
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    _, doc, bundle = create(tmp_path, spec, "--allow-partial", ch=ch)
    assert doc["blobs_written_while_downloading"] == 0
    got = members(bundle)
    assert hashlib.sha256(evil * 200).hexdigest() not in {n.rsplit("/", 1)[1] for n in got}
    assert {f"blobs/sha256/{d}" for d in shard_digests(hub)} <= set(got)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([bundle.name, bundle.name + ".minisig"])


def test_bad_bytes_from_the_hub_leave_no_bundle_and_no_partial(tmp_path):
    root = tmp_path / "hub" / "root"
    files = {".gitattributes": GITATTRIBUTES, "config.json": config_json(),
             "model.safetensors": shard(2 << 20, 1)}
    write_repo(root, REPO, {"main": files})
    with FakeHub(root, mode=WRONG_SHA) as h:
        spec = spec_for(tmp_path / "g.yaml", h.url)
        ch = new_channel(tmp_path, "prod")
        r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "out",
                "--cache", tmp_path / "cache")
    assert r.code != 0
    assert "sha256" in r.err or "does not match" in r.err, r.err
    out = tmp_path / "out"
    assert not out.exists()  # not even the directory the body was written in


def test_killed_while_downloading_then_the_rerun_finishes(hub, tmp_path, minisign_bin):
    """SIGKILL in the middle of the downloads: the .partial body stays (no process can clean up
    after SIGKILL; no reader takes it for a bundle); the re-run removes it, resumes the partial
    downloads (those go in front, copied from the cache) and makes a bundle that verifies."""
    kill_then_rerun(hub, tmp_path, minisign_bin)


# -- the body itself ------------------------------------------------------------------------------

def _body(tmp_path: Path, blobs: list[bytes], step: int = 1000) -> BundleBody:
    body = BundleBody(tmp_path / "b.gapsync", 1_700_000_000)
    for data in blobs:
        slot = body.slot(hashlib.sha256(data).hexdigest(), len(data))
        assert slot is not None
        for i in range(0, len(data), step):
            slot.write(data[i:i + step])
        slot.finish()
    return body


def test_a_planted_link_at_the_partial_is_refused_before_a_byte_is_written(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    (tmp_path / "b.gapsync.partial").symlink_to(victim)
    with pytest.raises(UnsafeFileError):
        BundleBody(tmp_path / "b.gapsync", 1_700_000_000)
    assert victim.read_bytes() == b"keep me"


def test_a_failed_write_makes_the_body_unusable_not_the_download(tmp_path, monkeypatch):
    data = os.urandom(5000)
    disk_full_after(monkeypatch, 2)
    body = _body(tmp_path, [data])
    assert body.usable({hashlib.sha256(data).hexdigest(): len(data)}) == \
        "cannot write the bundle beside the download (No space left on device)"
    body.abort()
    assert list(tmp_path.iterdir()) == []


def test_the_body_is_only_usable_for_exactly_the_blobs_carried(tmp_path):
    a, b = os.urandom(3000), os.urandom(70)
    body = _body(tmp_path, [a, b])
    da, db = hashlib.sha256(a).hexdigest(), hashlib.sha256(b).hexdigest()
    assert body.usable({da: len(a), db: len(b)}) is None
    assert "not carried" in body.usable({da: len(a)})
    assert "not carried" in body.usable({da: len(a), db: len(b) + 1})
    partial = body.slot(hashlib.sha256(b"x" * 10).hexdigest(), 10)
    partial.write(b"x" * 5)
    partial.finish()
    assert "did not finish" in body.usable({da: len(a), db: len(b), hashlib.sha256(b"x" * 10).hexdigest(): 10})
    assert body.slot(da, len(a)) is None  # one member per blob
    body.abort()
    assert list(tmp_path.iterdir()) == []


META = {"1.root.json": b'{"signed": {}}',
        "targets.json": b'{"signed": {"x-gapsync": {"format": 3}, "targets": {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}}}'}


def test_writer_after_a_body_makes_the_canonical_archive(tmp_path):
    """The body, then a cached blob, the metadata and the end: the strict reader accepts it, the
    returned digest is the BLAKE2b of the whole file, and the members are where they were put."""
    blobs = [os.urandom(n) for n in (1, 511, 513, 70_000)]
    body = _body(tmp_path, blobs)
    tail_blob = os.urandom(9000)
    cached = tmp_path / "cached"
    cached.write_bytes(tail_blob)
    w = BundleWriter(tmp_path / "b.gapsync", 1_700_000_000, body=body)
    w.add_blob(BlobRef(hashlib.sha256(tail_blob).hexdigest(), len(tail_blob)), cached)
    for name, data in META.items():
        w.add_metadata(name, data)
    with pytest.raises(ValueError, match="after the metadata"):  # one order: no blob after the metadata
        w.add_blob(BlobRef(hashlib.sha256(tail_blob).hexdigest(), len(tail_blob)), cached)
    digest = w.close()
    raw = (tmp_path / "b.gapsync").read_bytes()
    assert digest == hashlib.blake2b(raw).digest()
    assert raw[:BLOCK] == member_header(f"blobs/sha256/{hashlib.sha256(blobs[0]).hexdigest()}", 1, 1_700_000_000)
    got = members(tmp_path / "b.gapsync")
    assert {n.rsplit("/", 1)[1] for n in got if n.startswith("blobs/")} == \
        {hashlib.sha256(b).hexdigest() for b in [*blobs, tail_blob]}
    assert layout(tmp_path / "b.gapsync")[-2:] == ["metadata/1.root.json", "metadata/targets.json"]
    assert not (tmp_path / "b.gapsync.partial").exists()


def test_the_hash_follows_downloads_that_finish_out_of_order(tmp_path, monkeypatch):
    """Side by side downloads write their members in any interleaving and finish in any order:
    the hash is handed the bytes from the start of the file on as they become final (before the
    scan, while later downloads still write), and what it computed is the BLAKE2b of the file."""
    monkeypatch.setattr(BundleBody, "HASH_STEP", 4096)
    body = BundleBody(tmp_path / "b.gapsync", 1_700_000_000)
    blobs = [os.urandom(n) for n in (200_000, 50_001, 123_457, 7)]
    slots = [body.slot(hashlib.sha256(b).hexdigest(), len(b)) for b in blobs]
    pos = [0] * len(blobs)
    order = [1, 3, 2, 0, 2, 1, 0, 0, 2, 1, 2, 0] * 40  # the second blob's download runs ahead
    for i in order:
        if pos[i] < len(blobs[i]):
            n = min(9973, len(blobs[i]) - pos[i])
            slots[i].write(blobs[i][pos[i]:pos[i] + n])
            pos[i] += n
            if pos[i] == len(blobs[i]):
                slots[i].finish()
    for i, s in enumerate(slots):  # what the interleaving left
        if pos[i] < len(blobs[i]):
            s.write(blobs[i][pos[i]:])
            s.finish()
    before = body._hashed
    assert before >= slots[-1].offset  # all but the last member's tail was handed over already
    w = BundleWriter(tmp_path / "b.gapsync", 1_700_000_000, body=body)
    for name, data in META.items():
        w.add_metadata(name, data)
    digest = w.close()
    raw = (tmp_path / "b.gapsync").read_bytes()
    assert digest == hashlib.blake2b(raw).digest()
    assert {n for n in members(tmp_path / "b.gapsync") if n.startswith("blobs/")} == \
        {f"blobs/sha256/{hashlib.sha256(b).hexdigest()}" for b in blobs}


def test_an_aborted_body_stops_its_hash_and_leaves_nothing(tmp_path):
    body = _body(tmp_path, [os.urandom(300_000)])
    body.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="closed"):
        BundleWriter(tmp_path / "b.gapsync", 1_700_000_000, body=body)
    assert list(tmp_path.iterdir()) == []


# -- the reader and format 3 ----------------------------------------------------------------------

def _tar(path: Path, members_: list[tuple[str, bytes]]) -> Path:
    """A bundle file with these members in this order, in the canonical form (only the order and
    the format in targets.json are under test)."""
    out = bytearray()
    for name, data in members_:
        out += member_header(name, len(data), 1_700_000_000) + data + b"\0" * (-len(data) % BLOCK)
    out += b"\0" * (2 * BLOCK)
    out += b"\0" * (-len(out) % 10240)
    path.write_bytes(bytes(out))
    return path


def _targets(fmt: int | None, n: int = 2) -> bytes:
    ext = {} if fmt is None else {"x-gapsync": {"format": fmt}}
    return json.dumps({"signed": {**ext, "targets": {str(i): {} for i in range(n)}}}).encode()


def _blob(data: bytes) -> tuple[str, bytes]:
    return f"blobs/sha256/{hashlib.sha256(data).hexdigest()}", data


@pytest.mark.parametrize(("order", "fmt", "error"), [
    ("blobs-first", 3, None),
    ("metadata-first", 1, None),
    ("metadata-first", 2, None),
    ("blobs-first", 1, "format 1 .* does not allow"),
    ("blobs-first", 2, "format 2 .* does not allow"),
    ("blobs-first", None, "format 1 .* does not allow"),
    ("metadata-first", 3, "says bundle format 3, which puts the blobs first"),
    ("interleaved-blob-last", 3, "blob member .* after the metadata"),
    ("interleaved-meta-last", 1, "metadata member .* after the blobs"),
    ("blobs-no-targets", 3, "without metadata/targets.json after them"),
    ("blobs-first-too-many", 3, "more blob members than the 2 targets"),
    ("blobs-first", 4, "bundle format 4: this gapsync reads formats 1, 2, 3 only"),
])
def test_each_format_has_one_member_order(tmp_path, order, fmt, error):
    a, b = _blob(b"a" * 700), _blob(b"b" * 3)
    root, targets = ("metadata/1.root.json", b"{}"), ("metadata/targets.json", _targets(fmt))
    layouts = {
        "blobs-first": [a, b, root, targets],
        "metadata-first": [root, targets, a, b],
        "interleaved-blob-last": [a, root, targets, b],
        "interleaved-meta-last": [root, targets, a, ("metadata/timestamp.json", b"{}"), b],
        "blobs-no-targets": [a, b, root],
        "blobs-first-too-many": [*[_blob(bytes([i])) for i in range(19)], root, targets],
    }
    path = _tar(tmp_path / "b.gapsync", layouts[order])
    if error is None:
        with BundleReader(path) as r:
            assert r.format == (fmt or 1) and r.blob_count == 2
            assert set(r.read_metadata()) == {"1.root.json", "targets.json"}
            assert {m.name: b"".join(r.chunks(m)) for m in r.iter_blobs()} == dict([a, b])
    else:
        with pytest.raises(BundleFormatError, match=error):
            BundleReader(path)
