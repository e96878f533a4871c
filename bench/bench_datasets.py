"""Benchmark of gapsync's dataset path against ``huggingface_hub.snapshot_download(repo_type="dataset")``.

Issue 18 asks for a 2 GB dataset's download through gapsync against what a data scientist would
otherwise run. Both tools use the real code and the Hub stand-in (``gapsync/demo/hub_standin.py``)
on 127.0.0.1, nothing mocked but the Hub:

* Dataset: ``--size-gb`` (2) GB in ``--files`` (8) shards ``data/train-0000K-of-0000N.parquet``
  of seeded random bytes (incompressible; stored in LFS by their extension, as parquet shards are
  on the Hub; nobody parses them here), a README.md with ``configs:``, written into the stand-in's
  on-disk format by a streaming writer (never a whole shard in memory).

* Hub: the stand-in with ``--delay-ms`` (20) of latency before every answer; LFS files are
  302-redirected to its "CDN" host name. With ``--xet`` every shard is announced as Xet-backed
  (``X-Xet-Hash``, the ``xet-auth`` link) and redirected to its ``/xet-bridge/``; the client runs
  with ``HF_HUB_DISABLE_XET=1`` in both cases (the stand-in has no Xet CAS), so both tools fetch the
  same bytes over plain HTTP, which is what gapsync always does (docs/operator-guide.md, "Xet").
  The stand-in hashes every file on first sight, so one request warms it before timing.

* Cold: ``snapshot_download(repo, repo_type="dataset", cache_dir=EMPTY)`` in a fresh child
  (default ``max_workers``) against ``gapsync resolve`` + ``gapsync bundle create --cache EMPTY2
  -j 8`` (fresh children). gapsync also verifies each file's sha256 while it streams and then
  writes and signs the bundle (a second copy of the bytes): the bench reports both the download
  (resolve + the fetch, read from bundle create's ``fetch.done`` event) and the whole command;
  before each timed ``bundle create`` the cache is emptied and ``resolve`` run again (untimed).
  Wall time, MB/s (dataset bytes / wall), peak RSS, CPU, per tool (``_common.measure``: medians of
  ``--repeat`` runs, a disturbed attempt run again).

Run: ``.venv/bin/python bench/bench_datasets.py [--size-gb 2] [--files 8] [--repeat 1] [--xet]``;
``--size-gb 0.1`` for a quick run. Results: a table on stdout and bench/out/bench_datasets.json.
Disk: about 3x the dataset (the source, one cache, one bundle); the working directory
(``--workdir``, default bench/out/work-datasets) is removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402
    GAPSYNC,
    MB,
    OUT,
    Server,
    clean_env,
    free_port,
    gapsync,
    machine,
    measure,
    rmtree,
    setup_channel,
    table,
    write_result,
)

REPO = "bench/big-dataset"
SNAPSHOT = r"""
import sys
from huggingface_hub import snapshot_download
print(snapshot_download(sys.argv[1], repo_type="dataset", revision="main", endpoint=sys.argv[2], cache_dir=sys.argv[3]))
"""


def write_dataset(root: Path, size: int, files: int) -> int:
    """The repo in the stand-in's format: ROOT/datasets/<org>/<name>/revisions/<commit>/...;
    returns the bytes written. The commit is any 40-hex name (the stand-in takes refs.json)."""
    from gapsync.demo.hub_standin import commit_id

    readme = (b"---\nlicense: cc-by-4.0\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n"
              b"    path: data/train-*.parquet\n---\n# bench dataset\n")
    names = [f"data/train-{i:05d}-of-{files:05d}.parquet" for i in range(files)]
    commit = commit_id({"README.md": readme, **{n: n.encode() for n in names}})  # a name, not the content's id
    repo = root / "datasets" / REPO
    rev = repo / "revisions" / commit
    (rev / "data").mkdir(parents=True, exist_ok=True)
    (rev / "README.md").write_bytes(readme)
    rnd = random.Random(18)
    per = size // files
    total = len(readme)
    for n in names:
        with open(rev / n, "wb") as f:
            left = per
            while left:
                k = min(left, 8 << 20)
                f.write(rnd.randbytes(k))
                left -= k
        total += per
    (repo / "refs.json").write_text(json.dumps({"main": commit}))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gb", type=float, default=2.0)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--delay-ms", type=int, default=20)
    ap.add_argument("--xet", action="store_true", help="the stand-in announces the shards as Xet-backed")
    ap.add_argument("--workdir", type=Path, default=OUT / "work-datasets")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    work = a.workdir
    rmtree(work)
    work.mkdir(parents=True)
    root = work / "hub"
    t0 = time.perf_counter()
    size = write_dataset(root, int(a.size_gb * 1e9), a.files)
    print(f"dataset: {size / MB:.0f} MB in {a.files} shards, written in {time.perf_counter() - t0:.1f} s", flush=True)
    port = free_port()
    argv = [sys.executable, str(Path(__file__).resolve().parents[1] / "tests/support/servers/fake_hub.py"), str(root), str(port),
            "--delay-ms", str(a.delay_ms), "--log", str(work / "hub.log")] + (["--xet"] if a.xet else [])
    hub = Server(argv, work, f"http://127.0.0.1:{port}/_control/health")
    url = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        urllib.request.urlopen(f"{url}/api/datasets/{REPO}/tree/main?recursive=true", timeout=600).read()  # warm the hashes
        env = {k: v for k, v in clean_env().items() if not k.startswith(("HF_", "HUGGINGFACE"))}
        env.update(HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                   HF_HOME=str(work / "hf-home"))
        hf_cache = work / "hf-cache"
        hf_runs = []
        for _ in range(a.repeat):
            run, _r = measure([sys.executable, "-c", SNAPSHOT, REPO, url, str(hf_cache)], env=env,
                              reset=lambda: rmtree(hf_cache), ours=hub.cpu_seconds)
            hf_runs.append(run)
        rmtree(hf_cache)
        d = work / "dmz"
        d.mkdir()
        key = d / "keys" / "bench.key"
        spec = d / "g.yaml"
        spec.write_text(f"name: bench\nchannel: bench\ndatasets:\n  - hf: {REPO}\n    endpoint: {url}\n")
        cache, out, lock = d / "cache", d / "out", d / "g.lock"

        def reset() -> None:  # an empty cache and a new channel: nothing downloaded yet
            for p in (cache, out, d / "state", d / "keys"):
                rmtree(p)
            setup_channel(d)

        def resolved() -> None:  # as after resolve (its small regular files cached), before create
            reset()
            gapsync("resolve", "-f", str(spec), "-o", str(lock), "--cache", str(cache))

        gs_env = {**env, "GAPSYNC_LOG_FORMAT": "json"}  # bundle create's progress events (fetch.done) off a terminal
        gs_resolve, gs_create, fetch_s = [], [], []
        for _ in range(a.repeat):
            r1, _r = measure([GAPSYNC, "resolve", "-f", str(spec), "-o", str(lock), "--cache", str(cache)], env=env,
                             reset=reset, ours=hub.cpu_seconds)
            r2, res = measure([GAPSYNC, "bundle", "create", "-f", str(spec), "--lock", str(lock), "--state", str(d / "state"),
                               "--key", str(key), "-o", str(out), "--cache", str(cache), "-j", "8"], env=gs_env,
                              reset=resolved, ours=hub.cpu_seconds)
            gs_resolve.append(r1)
            gs_create.append(r2)
            done = [json.loads(x) for x in res.stderr.splitlines() if x.startswith("{") and '"fetch.done"' in x]
            if not done or "seconds" not in done[-1]:
                raise SystemExit(f"no fetch.done event from bundle create (was the cache empty?): {res.stderr[-500:]}")
            fetch_s.append(float(done[-1]["seconds"]))
        bundle = next(out.glob("*.gapsync"))
        log = [json.loads(x) for x in (work / "hub.log").read_text().splitlines()]
    finally:
        hub.stop()

    def med(runs, f) -> float:
        return statistics.median(f(r) for r in runs)

    hf_wall = med(hf_runs, lambda r: r.wall)
    gs_dl = med(gs_resolve, lambda r: r.wall) + statistics.median(fetch_s)
    gs_all = med(gs_resolve, lambda r: r.wall) + med(gs_create, lambda r: r.wall)
    rows = [
        ["snapshot_download (dataset)", f"{hf_wall:.1f}", f"{size / MB / hf_wall:.0f}",
         f"{med(hf_runs, lambda r: r.user + r.sys):.1f}", f"{med(hf_runs, lambda r: r.maxrss_kb) / 1024:.0f}"],
        ["gapsync resolve", f"{med(gs_resolve, lambda r: r.wall):.1f}", "-",
         f"{med(gs_resolve, lambda r: r.user + r.sys):.1f}", f"{med(gs_resolve, lambda r: r.maxrss_kb) / 1024:.0f}"],
        ["gapsync bundle create (fetch+verify+bundle+sign)", f"{med(gs_create, lambda r: r.wall):.1f}", "-",
         f"{med(gs_create, lambda r: r.user + r.sys):.1f}", f"{med(gs_create, lambda r: r.maxrss_kb) / 1024:.0f}"],
        ["gapsync download (resolve + fetch)", f"{gs_dl:.1f}", f"{size / MB / gs_dl:.0f}", "-", "-"],
        ["gapsync resolve + bundle create", f"{gs_all:.1f}", f"{size / MB / gs_all:.0f}", "-", "-"],
    ]
    print(table(rows, ["step", "wall s", "MB/s", "cpu s", "peak RSS MB"]))
    xet_gets = sum(1 for e in log if e["path"].startswith("/xet-bridge/"))
    print(f"download ratio gapsync/snapshot_download: {gs_dl / hf_wall:.2f}; bundle {bundle.stat().st_size / MB:.0f} MB; "
          f"requests: {len(log)} ({xet_gets} to the Xet bridge)")
    result = {"machine": machine(), "size_bytes": size, "files": a.files, "delay_ms": a.delay_ms, "xet": a.xet,
              "repeat": a.repeat, "snapshot_download_s": hf_wall, "gapsync_resolve_s": med(gs_resolve, lambda r: r.wall),
              "gapsync_create_s": med(gs_create, lambda r: r.wall), "gapsync_download_s": gs_dl,
              "ratio_download": gs_dl / hf_wall, "runs": {"hf": [r.__dict__ for r in hf_runs],
                                                          "resolve": [r.__dict__ for r in gs_resolve],
                                                          "create": [r.__dict__ for r in gs_create]}}
    print("written", write_result("bench_datasets", result))
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
