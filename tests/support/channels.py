"""Channels and bundles made the way an operator makes them: keys, ``channel init``, a spec,
``bundle create`` or ``sync`` (all through the in-process command line)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from types import SimpleNamespace

from tests.support.cli import ARCH, Result, cli


def write_spec(path: Path, index_url: str, requirements: list[str], channel: str = "prod",
               pythons: tuple[str, ...] = ("3.11", "3.12"), extra: str = "") -> Path:
    targets = "".join(f'    - {{python: "{p}", platform: manylinux_2_17_{ARCH}}}\n' for p in pythons)
    path.write_text(f"name: t\nchannel: {channel}\npython:\n  index_url: {index_url}\n"
                    f"  requirements: {requirements!r}\n  targets:\n{targets}{extra}")
    return path


def new_channel(base: Path, channel: str = "prod", keys: int = 1, threshold: int = 1) -> SimpleNamespace:
    """Keys + a channel's state; returns paths."""
    key_files = []
    for i in range(keys):
        r = cli("keys", "generate", "--out", base / "keys", "--name", f"{channel}{i}")
        assert r.code == 0, r.err
        key_files.append(base / "keys" / f"{channel}{i}.key")
    args = ["channel", "init", channel, "--state", base / "state", "--threshold", str(threshold)]
    for k in key_files:
        args += ["--key", k]
    r = cli(*args)
    assert r.code == 0, r.err
    return SimpleNamespace(base=base, keys=key_files, state=base / "state", root=base / "state" / channel / "1.root.json",
                           pub=[k.with_suffix(".pub") for k in key_files], channel=channel)


def create(ch: SimpleNamespace, spec: Path, out: Path, *extra, keys=None) -> Path:
    args = ["bundle", "create", "-f", spec, "--state", ch.state, "-o", out, "--cache", ch.base / "cache", *extra]
    for k in keys if keys is not None else ch.keys[:1]:
        args += ["--key", k]
    r = cli(*args)
    assert r.code == 0, r.err
    return next(out.glob("*.gapsync"))


def sync(ch, spec, out, *extra) -> Result:
    args = ["sync", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", out, "--cache", ch.base / "cache", "--json", *extra]
    return cli(*args)


def carried(bundle: Path) -> list[str]:
    """The target paths whose bytes the bundle carries (a blob), gapsync's own targets left out."""
    with tarfile.open(bundle) as tf:
        targets = json.loads(tf.extractfile("metadata/targets.json").read())["signed"]["targets"]
        digests = {n.rsplit("/", 1)[1] for n in tf.getnames() if n.startswith("blobs/")}
    return sorted(p for p, t in targets.items() if t["hashes"]["sha256"] in digests and not p.startswith("gapsync/"))


def model_bundle(tmp_path: Path, files: dict[str, bytes], rename: dict[str, str] | None = None,
                 monkeypatch=None) -> tuple[object, Path]:
    """A bundle of one path model; ``rename`` edits the lock's file paths before signing (what a
    DMZ without gapsync's checks, or a stolen key, could sign)."""
    src = tmp_path / "model-src"
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    spec = tmp_path / "gapsync.yaml"
    spec.write_text(f"name: t\nchannel: prod\nmodels:\n  - {{path: {src}, name: team/m1}}\n")
    lock = tmp_path / "gapsync.lock"
    r = cli("resolve", "-f", spec, "-o", lock, "--cache", tmp_path / "cache")
    assert r.code == 0, r.err
    if rename:
        doc = json.loads(lock.read_text())
        for f in doc["models"][0]["files"]:
            f["path"] = rename.get(f["path"], f["path"])
        lock.write_text(json.dumps(doc))
        import gapsync.names

        monkeypatch.setattr(gapsync.names, "check_model_tree", lambda paths: None)  # the DMZ's check, skipped
    ch = new_channel(tmp_path / "dmz", "prod")
    r = cli("bundle", "create", "-f", spec, "--lock", lock, "--state", ch.state, "--key", ch.keys[0],
            "-o", tmp_path / "out", "--cache", tmp_path / "cache")
    assert r.code == 0, r.err
    if rename:
        monkeypatch.undo()
    return ch, next((tmp_path / "out").glob("*.gapsync"))
