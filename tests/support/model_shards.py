"""A sharded safetensors model on the Hub stand-in, and how tests read the bundles made from it:
shared by the tests of writing while downloading and of ``--no-cache`` (tests/models)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

from gapsync.bundle.archive import BLOCK, BundleReader

REPO = "team/sharded"
# sizes around a tar block, and one over the 64 MiB write-back step of a slot
SHARDS = {"model-00001-of-00003.safetensors": (1 << 20) + 7, "model-00002-of-00003.safetensors": 3 * BLOCK + 1,
          "model-00003-of-00003.safetensors": (66 << 20) + 5}


def shard(n: int, seed: int) -> bytes:
    """A valid safetensors file of about ``n`` bytes of random U8 data (nothing compresses)."""
    data = os.urandom(n) if seed else b"\0" * n
    head = json.dumps({"__metadata__": {"format": "pt"},
                       "w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + data


def spec_for(path: Path, hub_url: str, name: str = "shards", repo: str = REPO) -> Path:
    path.write_text(f"name: {name}\nchannel: prod\nmodels:\n  - hf: {repo}\n    revision: main\n    endpoint: {hub_url}\n")
    return path


def members(bundle: Path) -> dict[str, str]:
    """Every member name -> sha256 of its bytes, read by the strict reader."""
    out = {}
    with BundleReader(bundle) as r:
        for name, data in r.read_metadata().items():
            out[f"metadata/{name}"] = hashlib.sha256(data).hexdigest()
        for m in r.iter_blobs():
            out[m.name] = hashlib.sha256(b"".join(r.chunks(m))).hexdigest()
            assert out[m.name] == m.digest
    return out


def shard_digests(hub) -> set[str]:
    base = hub.root / REPO / "revisions"
    [rev] = [p for p in base.iterdir() if p.is_dir()]
    return {hashlib.sha256((rev / name).read_bytes()).hexdigest() for name in SHARDS}


def kill_then_rerun(hub, tmp_path: Path, minisign_bin: str, *extra: str) -> Path:
    """``bundle create`` killed (SIGKILL) in the middle of the downloads, then run again: the
    re-run must make a bundle that the stock minisign verifies, with every shard, and nothing
    else left in the output directory. Returns the bundle."""
    import subprocess

    from tests.support.channels import new_channel
    from tests.support.cli import cli, killed

    spec = spec_for(tmp_path / "g.yaml", hub.url)
    ch = new_channel(tmp_path, "prod")
    args = ["bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "out",
            "--cache", tmp_path / "cache", "--json", *extra]
    k = killed(*args, at="fetch.chunk")
    assert k.returncode != 0
    assert not list((tmp_path / "out").glob("*.gapsync"))
    r = cli(*args)
    assert r.code == 0, r.err
    bundle = Path(json.loads(r.out)["bundle"])
    v = subprocess.run([minisign_bin, "-Vm", str(bundle), "-p", str(ch.pub[0])], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    assert {f"blobs/sha256/{d}" for d in shard_digests(hub)} <= set(members(bundle))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([bundle.name, bundle.name + ".minisig"])
    return bundle


def disk_full_after(monkeypatch, writes: int) -> None:
    """Every ``fsutil.pwrite_all`` (the body's writes) after the first ``writes`` fails with ENOSPC."""
    import errno

    from gapsync import fsutil

    real = fsutil.pwrite_all
    calls: list[int] = []

    def full(fd, buf, offset):
        calls.append(offset)
        if len(calls) > writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, buf, offset)

    monkeypatch.setattr(fsutil, "pwrite_all", full)
