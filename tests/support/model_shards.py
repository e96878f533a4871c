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
