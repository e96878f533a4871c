"""Benchmark the model scanner: a large PyTorch-style checkpoint and a directory of small pickles.

Usage: python bench/bench_scanner.py [--size-gib 2] [--pickles 1000] [--workdir DIR]

Writes the samples (never loads them), scans them with gapsync's scanner in this process and
reports wall time and peak RSS. If ``picklescan`` or ``modelscan`` are on PATH, the same files
are scanned with them too, side by side. The checkpoint is a zip of stored tensor entries with
a ``data.pkl`` like torch.save writes; the scanner must not read the tensor bytes, so its time
should stay flat as --size-gib grows.
"""

from __future__ import annotations

import argparse
import io
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gapsync.scanner.base import scan_path  # noqa: E402

TENSOR = 64 << 20


def _torch_like_pickle(n: int) -> bytes:
    """A protocol-2 pickle with the globals torch.save writes, without needing torch."""
    out = io.BytesIO()
    out.write(b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01")
    for i in range(n):
        key = f"layer{i}.weight".encode()
        out.write(b"X" + len(key).to_bytes(4, "little") + key)
        out.write(b"ctorch._utils\n_rebuild_tensor_v2\n(")
        out.write(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX" + len(str(i)).to_bytes(4, "little")
                  + str(i).encode() + b"X\x03\x00\x00\x00cpuJ" + (TENSOR // 4).to_bytes(4, "little") + b"tQ")
        out.write(b"K\x00J" + (TENSOR // 4).to_bytes(4, "little") + b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR")
        out.write(b"s")
    out.write(b".")
    return out.getvalue()


def make_checkpoint(path: Path, size_gib: float) -> None:
    n = max(1, int(size_gib * (1 << 30)) // TENSOR)
    block = bytes(range(256)) * (1 << 12)  # 1 MiB of non-zero bytes
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        z.writestr("archive/data.pkl", _torch_like_pickle(n))
        z.writestr("archive/version", "3\n")
        for i in range(n):
            with z.open(f"archive/data/{i}", "w", force_zip64=True) as w:
                for _ in range(TENSOR // len(block)):
                    w.write(block)


def make_pickles(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"p{i:05d}.pkl").write_bytes(pickle.dumps({"i": i, "v": list(range(50)), "s": "x" * 100}, 4))


def timed(label: str, fn) -> None:
    t = time.perf_counter()
    result = fn()
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{label:40s} {dt:8.2f} s   peak RSS {rss:7.1f} MiB   {result}")


def external(tool: str, path: Path) -> str:
    exe = shutil.which(tool)
    if not exe:
        return "not installed"
    args = [exe, "-p", str(path)] if tool == "picklescan" else [exe, "-p", str(path)]
    t = time.perf_counter()
    subprocess.run(args, capture_output=True, check=False)
    return f"{time.perf_counter() - t:.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--pickles", type=int, default=1000)
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="gapsync-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    ckpt, small = work / "checkpoint.pt", work / "pickles"
    if not ckpt.exists():
        make_checkpoint(ckpt, a.size_gib)
    if not small.exists():
        make_pickles(small, a.pickles)
    print(f"samples in {work}: {ckpt.stat().st_size / (1 << 30):.2f} GiB checkpoint, {a.pickles} pickles")
    timed("gapsync: checkpoint", lambda: f"{len(scan_path(ckpt).findings)} findings")
    timed("gapsync: small pickles", lambda: f"{len(scan_path(small).findings)} findings")
    for tool in ("picklescan", "modelscan"):
        print(f"{tool}: checkpoint {external(tool, ckpt)}, small pickles {external(tool, small)}")


if __name__ == "__main__":
    main()
