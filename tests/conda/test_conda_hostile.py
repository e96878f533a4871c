"""Hostile input for the conda path: signed targets that lie (names, paths, records), packages
that would write outside the environment, damaged packages, a publish that fails half-way, an
upstream that serves other bytes, and specs and policies that must be refused."""

from __future__ import annotations

import copy
import errno
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from gapsync.errors import BundleFormatError, GapsyncError, PublishError
from gapsync.mirror.journal import PublishJournal
from gapsync.mirror.layout import MirrorLayout
from gapsync.mirror.targets.conda_channel import CondaChannel
from gapsync.model import BlobRef, Target
from gapsync.scanner.artifacts.conda_pkg import check_record, read_package
from tests.support.channels import new_channel
from tests.support.cli import GAPSYNC, cli, isolated_env
from tests.support.conda import conda_spec
from tests.support.trees import snapshot

# -- the publish target against lying targets ------------------------------------------------


def _target(data: bytes, **over) -> Target:
    digest = hashlib.sha256(data).hexdigest()
    c = {"kind": "conda", "name": "gs-lib", "version": "1.0", "build": "h0_0", "subdir": "linux-64",
         "filename": "gs-lib-1.0-h0_0.conda", "channel": "https://example.org/chan", "channel_name": "chan"}
    c["record"] = {"name": "gs-lib", "version": "1.0", "build": "h0_0", "subdir": "linux-64", "depends": [],
                   "sha256": digest, "size": len(data), "license": "MIT"}
    record_over = over.pop("record", None)
    path = over.pop("path", None)
    c.update(over)
    if record_over is not None:
        c["record"] = record_over if not isinstance(record_over, dict) or "_merge" not in record_over else \
            {**c["record"], **{k: v for k, v in record_over.items() if k != "_merge"}}
    path = path or f"conda/{c['channel_name']}/{c['subdir']}/{c['filename']}"
    return Target(path, BlobRef(digest, len(data)), c)


@pytest.fixture
def channel(tmp_path):
    layout = MirrorLayout(tmp_path / "m")
    layout.ensure()
    blobs = tmp_path / "blobs"
    blobs.mkdir()

    def blob_path(digest: str) -> Path:
        return blobs / digest

    def put(data: bytes) -> None:
        (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)

    return layout, blob_path, put


LIES = {
    "channel traversal": {"channel_name": "..", "path": "conda/../linux-64/gs-lib-1.0-h0_0.conda"},
    "channel with slash": {"channel_name": "a/b"},
    "subdir traversal": {"subdir": "../../etc"},
    "unknown subdir": {"subdir": "linux-65"},
    "file name traversal": {"filename": "../../../x.conda"},
    "file name of another package": {"filename": "evil-1.0-h0_0.conda"},
    "file name not a package": {"filename": "gs-lib-1.0-h0_0.sh"},
    "path elsewhere": {"path": "conda/chan/linux-64/other.conda"},
    "bad name": {"name": "GS LIB"},
    "record missing": {"record": "missing"},
    "record for another package": {"record": {"_merge": 1, "name": "evil"}},
    "record for another subdir": {"record": {"_merge": 1, "subdir": "noarch"}},
    "record with another sha256": {"record": {"_merge": 1, "sha256": "0" * 64}},
    "record with another size": {"record": {"_merge": 1, "size": 1}},
    "depends not strings": {"record": {"_merge": 1, "depends": [{"x": 1}]}},
    "record with odd keys": {"record": {"_merge": 1, "Evil Key": 1}},
    "record pointing elsewhere": {"record": {"_merge": 1, "url": "http://intranet.example/x.conda"}},
    "record with a base_url": {"record": {"_merge": 1, "base_url": "http://intranet.example/"}},
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_lying_targets_are_refused_before_anything_is_written(channel, lie):
    layout, blob_path, put = channel
    data = b"package bytes"
    put(data)
    before = snapshot(layout.root)
    t = _target(data, **copy.deepcopy(LIES[lie]))
    target = CondaChannel(layout)
    with pytest.raises(BundleFormatError):
        target.check([t])
    with pytest.raises(BundleFormatError):
        target.publish([t], blob_path, PublishJournal(layout.meta / "staging" / "aside"))
    after = snapshot(layout.root)
    assert {k: v for k, v in after.items() if not k.startswith(".gapsync/staging")} == \
        {k: v for k, v in before.items() if not k.startswith(".gapsync/staging")}
    assert not (layout.root / "conda").exists()


def test_a_name_belongs_to_who_published_it_first(channel):
    layout, blob_path, put = channel
    put(b"first")
    put(b"second")
    CondaChannel(layout).publish([_target(b"first")], blob_path, PublishJournal(layout.meta / "staging" / "a1"))
    repodata = layout.conda_file("chan", "linux-64", "repodata.json").read_bytes()
    with pytest.raises(PublishError, match="already has a different file"):
        CondaChannel(layout).check([_target(b"second")])
    assert layout.conda_file("chan", "linux-64", "repodata.json").read_bytes() == repodata
    assert layout.conda_file("chan", "linux-64", "gs-lib-1.0-h0_0.conda").read_bytes() == b"first"


class _FullDisk(PublishJournal):
    """Fails the n-th write of a repodata.json as a full disk would."""

    def write_atomic(self, path, data, mode=0o644):
        if path.name == "repodata.json" and path.parent.name == "noarch":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        super().write_atomic(path, data, mode)


def test_a_publish_that_fails_half_way_is_undone(channel):
    layout, blob_path, put = channel
    put(b"first")
    CondaChannel(layout).publish([_target(b"first")], blob_path, PublishJournal(layout.meta / "staging" / "a1"))
    put(b"other")
    new = _target(b"other", filename="gs-lib-2.0-h0_0.conda", version="2.0", record={"_merge": 1, "version": "2.0"})
    new.custom["record"].update(sha256=new.blob.digest, size=new.blob.size)
    layout.conda_file("chan", "noarch", "repodata.json").unlink()  # so that the publish writes it, and fails there
    before = {k: v for k, v in snapshot(layout.root).items() if not k.startswith(".gapsync/staging")}
    journal = _FullDisk(layout.meta / "staging" / "a2")
    with pytest.raises(OSError):
        CondaChannel(layout).publish([new], blob_path, journal)
    assert journal.rollback() == []
    assert {k: v for k, v in snapshot(layout.root).items() if not k.startswith(".gapsync/staging")} == before


# -- packages that lie or would escape -------------------------------------------------------


def _tar_bz2(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:bz2") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _member(name: str, data: bytes | None = b"x", kind=tarfile.REGTYPE, link: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info, data if kind == tarfile.REGTYPE else None


INDEX = json.dumps({"name": "gs-x", "version": "1.0", "build": "h0_0", "subdir": "linux-64"}).encode()
ESCAPES = {
    "climbs out": [_member("../../etc/cron.d/x")],
    "absolute": [_member("/etc/passwd")],
    "symlink absolute": [_member("bin/sh", kind=tarfile.SYMTYPE, link="/etc/passwd")],
    "symlink climbs out": [_member("lib/x", kind=tarfile.SYMTYPE, link="../../../../root/.ssh/id_rsa")],
    "hard link out": [_member("lib/y", kind=tarfile.LNKTYPE, link="../outside")],
    "fifo": [_member("bin/pipe", kind=tarfile.FIFOTYPE)],
    "device": [_member("dev/sda", kind=tarfile.BLKTYPE)],
}


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_packages_that_would_write_outside_the_environment(tmp_path, case):
    pkg = _tar_bz2(tmp_path / "gs-x-1.0-h0_0.tar.bz2", [_member("info/index.json", INDEX), *ESCAPES[case]])
    facts = read_package(pkg, "linux-64/gs-x-1.0-h0_0.tar.bz2")
    rules = {f.rule for f in facts.findings}
    assert rules & {"conda.unsafe_path", "conda.special_file"}, facts.findings
    assert all(f.severity.value == "high" for f in facts.findings)


def test_a_safe_relative_symlink_is_no_finding(tmp_path):
    pkg = _tar_bz2(tmp_path / "gs-x-1.0-h0_0.tar.bz2", [_member("info/index.json", INDEX), _member("lib/libx.so.1"),
                                                         _member("lib/libx.so", kind=tarfile.SYMTYPE, link="libx.so.1")])
    assert read_package(pkg, "gs-x-1.0-h0_0.tar.bz2").findings == []


def test_damaged_packages_are_unreadable_findings(tmp_path, conda_upstream):
    good = (conda_upstream.dir / "linux-64" / "gs-lib-1.0-h0_0.conda").read_bytes()
    cases = {
        "truncated.conda": good[: len(good) // 2],
        "notzip.conda": b"PK\x03\x04" + b"\0" * 100,
        "garbage.tar.bz2": b"BZh9" + os.urandom(200),
        "empty.conda": b"",
        "noindex.tar.bz2": None,
        "badjson.tar.bz2": None,
    }
    for name, data in cases.items():
        p = tmp_path / name
        if name == "noindex.tar.bz2":
            _tar_bz2(p, [_member("bin/x")])
        elif name == "badjson.tar.bz2":
            _tar_bz2(p, [_member("info/index.json", b"[[[[[[[[")])
        else:
            p.write_bytes(data)
        rules = {f.rule for f in read_package(p, name).findings}
        assert rules == {"conda.unreadable"}, (name, rules)
    # a .conda whose inner tars are named for another package
    p = tmp_path / "gs-lib-9.9-h0_0.conda"
    p.write_bytes(good)
    assert {f.rule for f in read_package(p, p.name).findings} == {"conda.unreadable"}


def test_index_json_naming_another_package_is_a_finding(conda_upstream):
    p = conda_upstream.dir / "linux-64" / "gs-lib-1.0-h0_0.conda"
    facts = read_package(p, "linux-64/gs-lib-1.0-h0_0.conda")
    assert facts.findings == [] and facts.index["name"] == "gs-lib"
    found = check_record(facts, p.name, {"name": "gs-lib", "version": "2.0", "build": "h0_0", "subdir": "linux-64"})
    assert [f.rule for f in found] == ["conda.metadata_mismatch"] and "version" in found[0].message


# -- the connected side: spec, upstream, policy ----------------------------------------------

BAD_SPECS = {
    "platform": ("channels: [conda-forge]\n  specs: [x]\n  platforms: [linux-65]", "linux-65"),
    "noarch listed": ("specs: [x]\n  platforms: [noarch]", "noarch is always included"),
    "plain http elsewhere": ("channels: [http://example.org/chan]\n  specs: [x]", "loopback"),
    "defaults": ("channels: [defaults]\n  specs: [x]", "alias"),
    "match spec": ("specs: ['numpy >=>2']", "not a match spec"),
    "same channel name": ("channels: [https://a.example/c, https://b.example/c]\n  specs: [x]", "same name"),
    "unknown key": ("specs: [x]\n  pltforms: [linux-64]", "unknown key"),
    "no specs": ("specs: []", "no match specs"),
    "query in url": ("channels: ['https://a.example/c?token=x']\n  specs: [x]", "query"),
    "virtual package form": ("specs: [x]\n  virtual_packages: {linux-64: ['glibc']}", "NAME=VERSION=BUILD"),
    "virtual package platform": ("specs: [x]\n  virtual_packages: {win-64: ['__win=0=0']}", "not one of the platforms"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_conda_sections_are_refused_with_the_line(tmp_path, case):
    body, words = BAD_SPECS[case]
    spec = tmp_path / "g.yaml"
    spec.write_text(f"name: n\nchannel: prod\nconda:\n  {body}\n")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
    assert r.code == 2 and words in r.err and "g.yaml:" in r.err, r.err


def test_unsatisfiable_spec_names_the_platform(conda_upstream, tmp_path):
    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-tool >=5"], platforms=["linux-64"])
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
    assert r.code == 2 and "linux-64" in r.err and "gs-tool" in r.err, r.err


def test_upstream_serving_other_bytes_is_refused(conda_upstream, tmp_path):
    """The channel's repodata says one sha256, the server sends other bytes: nothing is kept."""
    from tests.support.servers import serve_dir

    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-lib"], platforms=["linux-64"])
    assert cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c").code == 0
    lock = json.loads((tmp_path / "l").read_text())
    served = tmp_path / "lying"
    (served / "upstream" / "linux-64").mkdir(parents=True)
    for p in lock["conda"]["packages"]:
        src = conda_upstream.dir / p["subdir"] / p["filename"]
        (served / "upstream" / p["subdir"]).mkdir(parents=True, exist_ok=True)
        (served / "upstream" / p["subdir"] / p["filename"]).write_bytes(_flip_last(src.read_bytes()))
    (served / "upstream" / "noarch").mkdir(exist_ok=True)
    (served / "upstream" / "noarch" / "repodata.json").write_text("{}")
    server = serve_dir(served, "upstream/noarch/repodata.json")
    try:
        url = server.url.removesuffix("/noarch/repodata.json")
        for p in lock["conda"]["packages"]:
            p["url"], p["channel"] = p["url"].replace(conda_upstream.url, url), url
        (tmp_path / "l").write_text(json.dumps(lock))
        ch = new_channel(tmp_path / "ch")
        r = cli("bundle", "create", "-f", spec, "--lock", tmp_path / "l", "--state", ch.state, "--key", ch.keys[0],
                "-o", tmp_path / "out", "--cache", tmp_path / "c2")
        assert r.code == 3 and "sha256" in r.err.lower(), r.err
        assert not list((tmp_path / "out").glob("*.gapsync")) if (tmp_path / "out").exists() else True
        assert not any((tmp_path / "c2" / "sha256").rglob("*")) or all(
            p.is_dir() for p in (tmp_path / "c2" / "sha256").rglob("*"))
    finally:
        server.stop()


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


def _create(tmp_path: Path, spec: Path, policy: Path | None = None):
    ch = new_channel(tmp_path / "ch")
    args = ["bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "out",
            "--cache", tmp_path / "c"]
    if policy:
        args += ["--policy", policy]
    return cli(*args)


def test_restricted_channel_is_blocked_unless_waived(conda_upstream, tmp_path):
    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-lib"], platforms=["linux-64"])
    host = conda_upstream.url.split("://", 1)[1]
    policy = tmp_path / "p.yaml"
    policy.write_text(f"name: p\nconda:\n  channels:\n    restricted: ['{host.rsplit(':', 1)[0]}:*/upstream']\n")
    r = _create(tmp_path / "a", spec, policy)
    assert r.code == 4 and "conda:gs-lib@2.0" in r.err and "terms restrict mirroring" in r.err, r.err
    policy.write_text(policy.read_text() + "waivers:\n  - {id: conda.channel.restricted, package: 'gs-*', until: 2099-12-31,"
                      " reason: mirroring agreement 42, approved_by: legal}\n")
    r = _create(tmp_path / "b", spec, policy)
    assert r.code == 0, r.err


def test_channel_allowlist(conda_upstream, tmp_path):
    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-lib"], platforms=["linux-64"])
    policy = tmp_path / "p.yaml"
    policy.write_text("name: p\nconda:\n  channels:\n    allow: [conda.anaconda.org/conda-forge]\n")
    r = _create(tmp_path / "a", spec, policy)
    assert r.code == 4 and "conda.channels.allow" in r.err or "not in the policy's conda.channels.allow" in r.err, r.err
    host = conda_upstream.url.split("://", 1)[1]
    policy.write_text(f"name: p\nconda:\n  channels:\n    allow: ['{host}']\n")
    assert _create(tmp_path / "b", spec, policy).code == 0


def test_default_policy_restricts_anaconda_repository():
    from gapsync.policies.evaluate import evaluate
    from gapsync.policies.schema import load_policy
    from gapsync.scanner.subject import ScanSubject

    for name in ("default", "strict"):
        policy = load_policy(name)
        for url, blocked in (("https://repo.anaconda.com/pkgs/main", True), ("https://conda.anaconda.org/main", True),
                             ("https://conda.anaconda.org/conda-forge", False)):
            s = ScanSubject("conda", "x", "1", [], {"channels": [url]})
            d = evaluate(policy, s, [], license_spdx="MIT", vulns_checked=True, now=__import__("datetime").datetime(2026, 1, 1))
            assert (d.action.value == "block") is blocked, (name, url, d)


def test_pickles_in_packages_block_when_the_policy_asks(conda_upstream, tmp_path):
    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-pickle"], platforms=["linux-64"])
    assert _create(tmp_path / "a", spec).code == 0  # default policy: not looked for
    policy = tmp_path / "p.yaml"
    policy.write_text("name: p\nmodels:\n  scan_pickles_in_packages: true\n")
    r = _create(tmp_path / "b", spec, policy)
    assert r.code == 4 and "conda:gs-pickle@1.0" in r.err and "system" in r.err, r.err


def test_import_killed_while_publishing_finishes_on_rerun(conda_upstream, tmp_path):
    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-tool"], platforms=["linux-64", "osx-arm64"])
    assert _create(tmp_path, spec).code == 0
    bundle = next((tmp_path / "out").glob("*.gapsync"))
    mirror = tmp_path / "m"
    assert cli("trust", "pin", tmp_path / "ch" / "state" / "prod" / "1.root.json", "--mirror", mirror).code == 0
    r = subprocess.run([GAPSYNC, "import", str(bundle), "--mirror", str(mirror)], capture_output=True, text=True,
                       env=isolated_env(GAPSYNC_KILL_AT="publish.conda.repodata"))
    assert r.returncode == -9, r.stderr
    r = subprocess.run([GAPSYNC, "import", str(bundle), "--mirror", str(mirror)], capture_output=True, text=True,
                       env=isolated_env())
    assert r.returncode == 0, r.stderr
    doc = json.loads((mirror / "conda" / "upstream" / "osx-arm64" / "repodata.json").read_text())
    assert sorted(doc["packages"]) == ["gs-tool-0.1-h0_0.tar.bz2"] and len(doc["packages.conda"]) == 1


@pytest.mark.parametrize("field,value", [("filename", "../../evil.conda"), ("subdir", "../x"), ("channel_name", ".."),
                                         ("url", "https://elsewhere.example/x.conda"), ("channel", "http://example.org/c"),
                                         ("record", None)])
def test_an_edited_lock_is_refused_before_fetching(conda_upstream, tmp_path, field, value):
    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-lib"], platforms=["linux-64"])
    assert cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c").code == 0
    lock = json.loads((tmp_path / "l").read_text())
    lock["conda"]["packages"][0][field] = value
    (tmp_path / "l").write_text(json.dumps(lock))
    ch = new_channel(tmp_path / "ch")
    r = cli("bundle", "create", "-f", spec, "--lock", tmp_path / "l", "--state", ch.state, "--key", ch.keys[0],
            "-o", tmp_path / "out", "--cache", tmp_path / "c2")
    assert r.code == 2 and "lock: conda package" in r.err, r.err
    assert not (tmp_path / "c2" / "sha256").exists() or not any(p.is_file() for p in (tmp_path / "c2" / "sha256").rglob("*"))


@pytest.mark.parametrize("body", ["not json at all", '{"packages": {"x.conda": 5}}', "[" * 100000])
def test_hostile_upstream_repodata_is_a_fetch_error(tmp_path, body):
    from tests.support.servers import serve_dir

    for subdir in ("linux-64", "noarch"):
        (tmp_path / "www" / "bad" / subdir).mkdir(parents=True)
        (tmp_path / "www" / "bad" / subdir / "repodata.json").write_text(body)
    server = serve_dir(tmp_path / "www", "bad/noarch/repodata.json")
    try:
        spec = conda_spec(tmp_path / "g.yaml", server.url.removesuffix("/noarch/repodata.json"), ["x"],
                          platforms=["linux-64"])
        r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
        assert r.code in (1, 2) and "internal error" not in r.err and ("repodata" in r.err or "solve" in r.err), r.err
    finally:
        server.stop()


def test_a_pax_header_bomb_is_refused_without_reading_it(tmp_path):
    """8 MiB of pax header data compress to a few hundred bytes; the reader must not take them in."""
    info = tarfile.TarInfo("bin/x")
    info.pax_headers = {"comment": "A" * (8 << 20)}
    info.size = 1
    pkg = tmp_path / "gs-x-1.0-h0_0.tar.bz2"
    with tarfile.open(pkg, "w:bz2", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(info, io.BytesIO(b"x"))
    assert pkg.stat().st_size < 10_000
    facts = read_package(pkg, pkg.name)
    assert [f.rule for f in facts.findings] == ["conda.unreadable"] and "pax header" in facts.findings[0].message


def test_another_channel_may_not_change_a_published_package_or_its_record(conda_upstream, tmp_path):
    """Same file name, same bytes, but other dependencies in the record: that would rewrite what
    the first channel's users install, so it is refused; the identical package is fine."""
    m = tmp_path / "m"
    bundles = {}
    for name, edit in (("prod", False), ("research", True), ("research2", False)):
        ch = new_channel(tmp_path / name, name)
        spec = conda_spec(tmp_path / f"{name}.yaml", conda_upstream.url, ["gs-tool"], platforms=["linux-64"],
                          channel=name)
        assert cli("resolve", "-f", spec, "-o", tmp_path / f"{name}.lock", "--cache", tmp_path / "c").code == 0
        if edit:
            lock = json.loads((tmp_path / f"{name}.lock").read_text())
            tool = next(p for p in lock["conda"]["packages"] if p["name"] == "gs-tool")
            tool["record"]["depends"] = ["gs-lib >=1,<2", "evil-dep"]
            (tmp_path / f"{name}.lock").write_text(json.dumps(lock))
        r = cli("bundle", "create", "-f", spec, "--lock", tmp_path / f"{name}.lock", "--state", ch.state, "--key",
                ch.keys[0], "-o", tmp_path / f"out-{name}", "--cache", tmp_path / "c")
        assert r.code == 0, r.err
        assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
        bundles[name] = next((tmp_path / f"out-{name}").glob("*.gapsync"))
    assert cli("import", bundles["prod"], "--mirror", m).code == 0
    repodata = (m / "conda" / "upstream" / "linux-64" / "repodata.json").read_bytes()
    r = cli("import", bundles["research"], "--mirror", m)
    assert r.code == 3 and "research" in r.err and "prod" in r.err and "gs-tool-0.1-h0_0.tar.bz2" in r.err, r.err
    assert (m / "conda" / "upstream" / "linux-64" / "repodata.json").read_bytes() == repodata
    assert cli("import", bundles["research2"], "--mirror", m).code == 0
    assert (m / "conda" / "upstream" / "linux-64" / "repodata.json").read_bytes() == repodata


def test_virtual_packages_are_the_air_sides_not_the_dmz_hosts(conda_upstream, tmp_path):
    """gs-newglibc needs glibc >= 2.34: not solvable with the default assumption (2.28), whatever
    this machine's glibc is; solvable once the spec says the air side's machines have 2.35."""
    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-newglibc"], platforms=["linux-64"])
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
    assert r.code == 2 and "__glibc" in r.err and "linux-64" in r.err, r.err
    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-newglibc"], platforms=["linux-64"],
                      extra="  virtual_packages: {linux-64: ['__unix=0=0', '__linux=6.1=0', '__glibc=2.35=0']}\n")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
    assert r.code == 0, r.err
    assert json.loads((tmp_path / "l").read_text())["conda"]["solved"]["linux-64"] == ["gs-newglibc=1.0=h0_0"]


def test_scan_spec_reports_conda_findings_without_a_bundle(conda_upstream, tmp_path):
    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-pickle", "gs-tool"], platforms=["linux-64"])
    policy = tmp_path / "p.yaml"
    policy.write_text("name: p\nmodels:\n  scan_pickles_in_packages: true\n")
    r = cli("scan", "--spec", spec, "--policy", policy, "--cache", tmp_path / "c", "--json")
    assert r.code == 4, r.err
    doc = json.loads(r.out)
    text = json.dumps(doc)
    assert "conda:gs-pickle@1.0" in text and "pickle.global" in text and "noarch/gs-pickle-1.0-h0_0.conda" in text
    assert "Apache-2.0" in text  # gs-tool's license, read from the package


def test_blocked_list_and_license_deny_apply_to_conda(conda_upstream, tmp_path):
    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-tool"], platforms=["linux-64"])
    policy = tmp_path / "p.yaml"
    policy.write_text("name: p\nblocked:\n  - {kind: conda, name: 'gs-l*', reason: not here}\n")
    r = _create(tmp_path / "a", spec, policy)
    assert r.code == 4 and "conda:gs-lib@1.0" in r.err and "not here" in r.err and "gs-tool" not in r.err, r.err
    policy.write_text("name: p\nlicenses:\n  deny: [Apache-2.0]\n")
    r = _create(tmp_path / "b", spec, policy)
    assert r.code == 4 and "conda:gs-tool@0.1" in r.err and "Apache-2.0" in r.err, r.err
    r = cli("bundle", "create", "-f", spec, "--state", tmp_path / "b" / "ch" / "state", "--key",
        tmp_path / "b" / "ch" / "keys" / "prod0.key", "-o", tmp_path / "partial", "--cache", tmp_path / "b" / "c",
        "--policy", policy, "--allow-partial")
    assert r.code == 0, r.err
    bundle = next((tmp_path / "partial").glob("*.gapsync"))
    r = cli("bundle", "inspect", bundle, "--json")
    names = {(a["name"], a.get("decision")) for a in json.loads(r.out)["artifacts"] if a["kind"] == "conda"}
    assert ("gs-tool", "block") in names and ("gs-lib", "allow") in names
    with tarfile.open(bundle) as tf:
        carried = [n for n in tf.getnames() if n.startswith("blobs/")]
        targets = json.loads(tf.extractfile("metadata/targets.json").read())["signed"]["targets"]
    assert not any("gs-tool" in p for p in targets) and any("gs-lib" in p for p in targets)
    assert len(carried) >= 1


def test_the_air_side_scans_again_under_its_own_policy(conda_upstream, tmp_path):
    spec = conda_spec(tmp_path / "g.yaml", conda_upstream.url, ["gs-pickle", "gs-lib"], platforms=["linux-64"])
    assert _create(tmp_path, spec).code == 0  # the DMZ's default policy does not look for pickles
    bundle = next((tmp_path / "out").glob("*.gapsync"))
    m = tmp_path / "m"
    assert cli("trust", "pin", tmp_path / "ch" / "state" / "prod" / "1.root.json", "--mirror", m).code == 0
    policy = tmp_path / "air.yaml"
    policy.write_text("name: air\nmodels:\n  scan_pickles_in_packages: true\n")
    r = cli("import", bundle, "--mirror", m, "--policy", policy)
    assert r.code == 4 and "conda:gs-pickle@1.0" in r.err and "nothing was published" in r.err, r.err
    assert not (m / "conda").exists()
    r = cli("import", bundle, "--mirror", m, "--policy", policy, "--allow-partial")
    assert r.code == 0, r.err
    doc = json.loads((m / "conda" / "upstream" / "noarch" / "repodata.json").read_text())
    assert doc["packages.conda"] == {}  # gs-pickle left out; gs-lib (linux-64) published
    assert (m / "conda" / "upstream" / "linux-64" / "gs-lib-2.0-h0_0.conda").is_file()


@pytest.mark.parametrize("damage", ["not json", "list", "symlink", "fifo"])
def test_a_damaged_inventory_stops_the_publish_before_it_writes(channel, tmp_path, damage):
    layout, blob_path, put = channel
    put(b"first")
    inv = layout.meta / "conda" / "chan" / "linux-64.json"
    inv.parent.mkdir(parents=True)
    if damage == "not json":
        inv.write_text("{{{")
    elif damage == "list":
        inv.write_text("[]")
    elif damage == "symlink":
        (tmp_path / "elsewhere.json").write_text('{"packages": {}, "packages.conda": {}}')
        inv.symlink_to(tmp_path / "elsewhere.json")
    else:
        os.mkfifo(inv)
    with pytest.raises(GapsyncError):
        CondaChannel(layout).publish([_target(b"first")], blob_path, PublishJournal(layout.meta / "staging" / "a"))
    assert not (layout.root / "conda").exists()


def test_a_package_that_escapes_is_blocked_on_both_sides(conda_upstream, tmp_path):
    """An upstream package whose member climbs out of the environment: the DMZ blocks it; a DMZ
    policy that waives it does not make the air side publish it (its own policy blocks it)."""
    import shutil

    from tests.support.conda import rattler_index
    from tests.support.servers import serve_dir

    chan = tmp_path / "www" / "evil"
    shutil.copytree(conda_upstream.dir / "noarch", chan / "noarch", ignore=shutil.ignore_patterns("repodata*", "shards"))
    (chan / "linux-64").mkdir()
    index = json.dumps({"name": "gs-evil", "version": "1.0", "build": "h0_0", "build_number": 0, "subdir": "linux-64",
                        "arch": "x86_64", "platform": "linux", "depends": [], "license": "MIT"}).encode()
    _tar_bz2(chan / "linux-64" / "gs-evil-1.0-h0_0.tar.bz2",
             [_member("info/index.json", index), _member("../../../../etc/profile.d/evil.sh", b"echo owned\n")])
    rattler_index(chan)
    server = serve_dir(tmp_path / "www", "evil/noarch/repodata.json")
    try:
        spec = conda_spec(tmp_path / "g.yaml", server.url.removesuffix("/noarch/repodata.json"), ["gs-evil"],
                          platforms=["linux-64"])
        r = _create(tmp_path / "a", spec)
        assert r.code == 4 and "conda:gs-evil@1.0" in r.err and "outside the environment" in r.err, r.err
        policy = tmp_path / "lax.yaml"
        policy.write_text("name: lax\nwaivers:\n  - {id: conda.unsafe_path, package: gs-evil, until: 2099-12-31,"
                          " reason: test, approved_by: nobody}\n")
        r = _create(tmp_path / "b", spec, policy)
        assert r.code == 0, r.err
    finally:
        server.stop()
    m = tmp_path / "m"
    assert cli("trust", "pin", tmp_path / "b" / "ch" / "state" / "prod" / "1.root.json", "--mirror", m).code == 0
    r = cli("import", next((tmp_path / "b" / "out").glob("*.gapsync")), "--mirror", m)
    assert r.code == 4 and "conda:gs-evil@1.0" in r.err and "nothing was published" in r.err, r.err
    assert not (m / "conda").exists()
