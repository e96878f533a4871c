"""Benchmark of volumes whose blobs span volumes (issue 16): an ``--size-gb`` (8) GB bundle of
random data, made and imported in FAT32 volumes, against the same bundle unsplit.

* Data: a model from a local path (``models: - path:``) of two shards of seeded random bytes,
  5/8 and 3/8 of the size (a Llama-class 5 GB shard and a 3 GB one at 8 GB), so the large shard
  is larger than a FAT32 volume (4 GiB - 1) and spans two volumes in parts. At another size the
  volume is scaled with it (``--volume-size``, default FAT32 x size/8), so the split is the same.
* Cache: filled once, untimed (a first ``bundle create`` into a scratch channel), so both timed
  creates start from the same warm cache and measure the bundle writing, not the copy of the
  model into the cache.
* Timed, each a fresh ``gapsync`` child under /usr/bin/time (wall, peak RSS, CPU):
  ``bundle create`` unsplit, then ``import`` of the bundle into an empty mirror; then the same
  release (another channel of the same keys) with ``--media fat32`` (or ``--max-volume-size``),
  and the import of every volume, one ``import`` each, in order. Throughput = model bytes / wall
  (for the volumes: the sum of the imports' walls). Pass when split/unsplit >= 0.9 for both
  steps and every child's peak RSS < 200 MB.

Run: ``.venv/bin/python bench/bench_volumes.py [--size-gb 8] [--volume-size SIZE] [--keep]``;
``--size-gb 0.5`` for a quick run. Disk: about 4x the size at the peak (the model, the cache,
one bundle, one mirror: each is removed before the next is made). Results: a table on stdout and
bench/out/bench_volumes.json.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    GAPSYNC,
    MB,
    Measure,
    clean_env,
    gapsync,
    machine,
    measure_once,
    measures_table,
    write_result,
)

FAT32 = 4 * 1024**3 - 1
CHUNK = 64 << 20


def write_random(path: Path, size: int, seed: int) -> None:
    rnd = random.Random(seed)
    with path.open("wb") as f:
        left = size
        while left:
            n = min(CHUNK, left)
            f.write(rnd.randbytes(n))
            left -= n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gb", type=float, default=8.0)
    ap.add_argument("--volume-size", default=None, help="bytes per volume (default: FAT32 scaled by size/8)")
    ap.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / "out" / "work-volumes")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    total = int(args.size_gb * 1e9)
    volume = args.volume_size or str(FAT32 if args.size_gb == 8 else int(FAT32 * args.size_gb / 8))
    work = args.workdir
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        model = work / "model"
        model.mkdir()
        big = total * 5 // 8
        print(f"writing {total / 1e9:.2f} GB of random data ...", flush=True)
        write_random(model / "shard-00001-of-00002.dat", big, 1)
        write_random(model / "shard-00002-of-00002.dat", total - big, 2)
        (model / "config.json").write_text('{"model_type": "bench"}')
        spec = work / "g.yaml"
        spec.write_text("name: bench\nchannel: bench\nmodels:\n  - path: ./model\n    name: bench/model\n")
        gapsync("keys", "generate", "--out", str(work / "keys"), "--name", "bench")
        key = work / "keys" / "bench.key"
        gapsync("channel", "init", "bench", "--state", str(work / "whole"), "--key", str(key))
        for st in ("warm", "split"):  # one root, the same release version in each copy
            shutil.copytree(work / "whole", work / st)
        root = work / "whole" / "bench" / "1.root.json"
        cache = work / "cache"
        print("filling the cache (untimed) ...", flush=True)
        gapsync("bundle", "create", "-f", str(spec), "--state", str(work / "warm"), "--key", str(key),
                "-o", str(work / "warm-out"), "--cache", str(cache), cwd=work)
        shutil.rmtree(work / "warm-out")
        env = clean_env()
        results: list[Measure] = []
        volume_count = {}
        for mode in ("whole", "split"):
            out = work / f"out-{mode}"
            argv = [GAPSYNC, "bundle", "create", "-f", str(spec), "--state", str(work / mode), "--key", str(key),
                    "-o", str(out), "--cache", str(cache), "--json"]
            if mode == "split":
                argv += ["--max-volume-size", volume]
            print(f"create ({mode}) ...", flush=True)
            run, proc = measure_once(argv, cwd=work, env=env)
            doc = json.loads(proc.stdout)
            vols = [Path(v) for v in doc["volumes"]]
            volume_count[mode] = len(vols)
            results.append(Measure(f"create {mode} ({len(vols)} file(s))", "gapsync", [run], total))
            mirror = work / f"mirror-{mode}"
            gapsync("trust", "pin", str(root), "--mirror", str(mirror))
            print(f"import ({mode}, {len(vols)} file(s)) ...", flush=True)
            runs = []
            for v in vols:
                r, _ = measure_once([GAPSYNC, "import", str(v), "--mirror", str(mirror), "--json"], env=env)
                runs.append(r)
            combined = type(runs[0])(sum(r.wall for r in runs), max(r.maxrss_kb for r in runs),
                                     sum(r.user for r in runs), sum(r.sys for r in runs),
                                     sum(r.other_cpu for r in runs))
            results.append(Measure(f"import {mode} ({len(vols)} file(s))", "gapsync", [combined], total))
            hf = mirror / "models" / "hf" / "models--bench--model"
            assert hf.is_dir(), f"{mode}: the model was not published"
            shutil.rmtree(out)
            shutil.rmtree(mirror)
        ratio_create = results[0].wall / results[2].wall
        ratio_import = results[1].wall / results[3].wall
        peak = max(m.maxrss_mb for m in results)
        print(measures_table(results))
        print(f"volumes: {volume_count['split']} of {volume} bytes; split/unsplit throughput: create "
              f"{ratio_create:.2f}x, import {ratio_import:.2f}x; peak RSS {peak:.0f} MB")
        ok = ratio_create >= 0.9 and ratio_import >= 0.9 and peak < 200
        path = write_result("bench_volumes", {
            "machine": machine(), "size_bytes": total, "volume_size": int(volume), "volumes": volume_count,
            "results": [m.to_dict() for m in results], "ratio_create": round(ratio_create, 3),
            "ratio_import": round(ratio_import, 3), "peak_rss_mb": round(peak, 1), "pass": ok,
            "mb_per_s": {m.label: round(total / MB / m.wall, 1) for m in results}})
        print(f"{'PASS' if ok else 'FAIL'}; results in {path}")
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
