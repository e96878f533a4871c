"""Benchmark the model scanner: a large PyTorch-style checkpoint, a directory of small pickles,
the model corpus, and hostile inputs that must be refused fast.

Usage: python bench/bench_scanner.py [--size-gib 2] [--pickles 1000] [--workdir DIR]
       [--baseline TREE] [--repeat 7] [--no-hostile]

Writes the samples (never loads them), scans them with gapsync's scanner in this process and
reports wall time and peak RSS. If ``picklescan`` or ``modelscan`` are on PATH, the same files
are scanned with them too, side by side. The checkpoint is a zip of stored tensor entries with
a ``data.pkl`` like torch.save writes; the scanner must not read the tensor bytes, so its time
should stay flat as --size-gib grows.

``--baseline TREE`` (a checkout of an earlier commit, e.g. ``git worktree add /tmp/base HEAD~5``
or ``git archive``) compares the scan speed of that tree with this one on the same files: each
tree scans each sample in a fresh process, alternately, ``--repeat`` times, and the least CPU
time of each is kept (CPU time of the process, so that other jobs on the machine disturb it
less than wall time). Issue 14's goal: this tree within 1.1x of the baseline.

Hostile inputs (issue 14 §4): the nested zip of the issue (five levels, eight copies of the level
below in each), a 10 MB pickle of 1-byte opcodes, a 10 MB pickle that fills its memo, a gzip
bomb of opcodes, a tar.gz of zeros, a flat zip of 100,000 tiny entries and an ONNX file of a
million tiny nodes, each scanned by ``gapsync scan`` in a fresh process
under /usr/bin/time: the goal is a verdict (blocked) in well under 2 s with flat memory.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import pickle
import resource
import shutil
import subprocess
import sys
import tarfile
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


ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "corpus" / "models"

# Run in a fresh process with a tree on sys.path: the least CPU time of scanning each sample.
_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from gapsync.scanner.base import scan_path
out = {}
for label, path in json.loads(sys.argv[2]).items():
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if label == "corpus" else [path]
    for f in files:  # warm: imports, page cache, the allowlist
        scan_path(f)
    best = None
    for _ in range(3):
        t = time.process_time()
        for f in files:
            scan_path(f)
        t = time.process_time() - t
        best = t if best is None else min(best, t)
    out[label] = best
print(json.dumps(out))
"""


def compare_trees(baseline: Path, samples: dict[str, Path], repeat: int) -> None:
    """This tree against ``baseline`` on the same samples, alternating fresh processes."""
    arg = json.dumps({k: str(v) for k, v in samples.items()})
    best: dict[str, dict[str, float]] = {"baseline": {}, "this": {}}
    for _ in range(repeat):
        for name, tree in (("baseline", baseline), ("this", ROOT)):
            r = subprocess.run([sys.executable, "-c", _CHILD, str(tree), arg], capture_output=True, text=True,
                               check=True)
            for label, t in json.loads(r.stdout).items():
                best[name][label] = min(t, best[name].get(label, t))
    print(f"\nscan CPU time, least of {repeat} runs x 3 scans (baseline: {baseline})")
    print(f"{'sample':24s} {'baseline':>10s} {'this tree':>10s} {'ratio':>7s}")
    for label in samples:
        b, t = best["baseline"][label], best["this"][label]
        print(f"{label:24s} {b * 1000:8.1f}ms {t * 1000:8.1f}ms {t / b:7.2f}")


def _zip(members: dict[str, bytes]) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return b.getvalue()


def make_hostile(folder: Path) -> dict[str, Path]:
    """Inputs of 10 MB or less that a scan must refuse fast (written, never loaded)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = b"\x80\x04N." + bytes(4096)
    for level in range(5):  # issue 14: five deep, eight members per level, each a copy of the level below
        data = _zip({f"l{level}_{i}.{'zip' if level else 'pkl'}": data for i in range(8)})
    out = {"nested zip (5 x 8)": data,
           "10 MB of 1-byte opcodes": b"(" + b"N0" * (5 << 20) + b".",
           "10 MB filling the memo": b"\x80\x04" + b"N\x94" * (5 << 20) + b".",
           "gzip of 512 MiB of opcodes": gzip.compress(b"N0" * (256 << 20), 9)}
    flat = io.BytesIO()
    with zipfile.ZipFile(flat, "w", zipfile.ZIP_STORED) as z:
        for i in range(100_000):
            z.writestr(f"f{i}", b"x")
    out["zip of 100,000 tiny entries"] = flat.getvalue()
    node = b"\x22\x04Relu\x3a\x00"  # NodeProto: op_type "Relu", domain ""
    graph = (b"\x0a" + bytes([len(node)]) + node) * 1_000_000
    out["ONNX of 1,000,000 nodes"] = b"\x08\x07\x3a" + _varint(len(graph)) + graph
    b = io.BytesIO()
    with gzip.GzipFile(fileobj=b, mode="wb", compresslevel=6) as gz, tarfile.open(fileobj=gz, mode="w|") as tf:
        info = tarfile.TarInfo("zeros.bin")
        info.size = 2 << 30
        tf.addfile(info, _Zeros(info.size))
    out["tar.gz of 2 GiB of zeros"] = b.getvalue()
    paths = {}
    for i, (label, content) in enumerate(out.items()):
        paths[label] = folder / f"hostile{i}.bin"
        paths[label].write_bytes(content)
    return paths


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.n = n

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        k = min(len(b), self.n)
        b[:k] = bytes(k)
        self.n -= k
        return k


def hostile(paths: dict[str, Path]) -> None:
    gapsync = str(Path(sys.executable).parent / "gapsync")
    print(f"\nhostile inputs, gapsync scan in a fresh process ({gapsync})")
    print(f"{'input':28s} {'size':>9s} {'wall':>7s} {'cpu':>7s} {'peak RSS':>9s}  verdict")
    for label, path in paths.items():
        t = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", gapsync, "scan", str(path), "--json"],
                           capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t
        user, sys_, rss = r.stderr.strip().splitlines()[-1].split()
        doc = json.loads(r.stdout)
        budgets = sorted({f["evidence"].get("budget") for f in doc["findings"] if f["rule"] == "scan.budget"})
        verdict = f"exit {r.returncode}, worst {doc['worst']}" + (f", budget {', '.join(budgets)}" if budgets else "")
        print(f"{label:28s} {path.stat().st_size:9,d} {wall:6.2f}s {float(user) + float(sys_):6.2f}s "
              f"{int(rss) / 1024:7.1f}MiB  {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--pickles", type=int, default=1000)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--baseline", type=Path, default=None, help="an earlier checkout to compare the speed with")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-hostile", action="store_true")
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
    if a.baseline is not None:
        compare_trees(a.baseline, {"checkpoint": ckpt, "1000 small pickles": small, "corpus": CORPUS}, a.repeat)
    if not a.no_hostile:
        hostile(make_hostile(work / "hostile"))


if __name__ == "__main__":
    main()
