"""Benchmark of gapsync's model path against ``huggingface_hub.snapshot_download``.

Issue 5 ("Performance") sets the bar: downloading a multi-GB model from a Hugging Face Hub into
an empty cache, gapsync must be at least as fast as ``snapshot_download`` (what a data scientist
would otherwise run) and store each shard once. This script measures that end to end, with the
real ``huggingface_hub`` client and the real gapsync CLI and nothing mocked but the Hub itself:

* Model: ``--size-gb`` (2) GB in ``--shards`` (4) safetensors shards of seeded random F16 tensors
  (incompressible), written by a streaming writer (8-byte little-endian header length, JSON
  header, raw bytes; never a whole shard in memory), plus config.json,
  model.safetensors.index.json and .gitattributes, into a repo of the Hub stand-in's on-disk
  format (see ``gapsync/demo/hub_standin.py``), written by hand because ``write_repo`` wants the
  files in memory. One shard is opened with ``safetensors`` to prove the files are valid.

* Hub: the stand-in (``tests.support.models.FakeHub``) on 127.0.0.1 with ``--delay-ms`` (20) of
  latency before every answer; LFS files are 302-redirected to its "CDN" host name, as on the
  Hub. It hashes every file on first sight, so one model-info request warms it before timing.
  It never sends ``X-Xet-Hash``, and the client runs with ``HF_HUB_DISABLE_XET=1`` too, so
  ``hf_xet`` stays out of it: both tools fetch the same bytes over plain HTTP (the request log
  proves it: CDN GETs, no xet endpoint).

* Cold: ``snapshot_download(repo, revision="main", endpoint=URL, cache_dir=EMPTY)`` in a fresh
  child (default ``max_workers``, progress bars off) against ``gapsync resolve`` + ``gapsync
  bundle create --cache EMPTY2 -j 8`` (each a fresh child). gapsync does more than download: it
  verifies each file's sha256 while it streams, then writes and signs the bundle (a second copy
  of the bytes, the thing that crosses the gap), so besides each command's wall time the bench
  watches the cache and reports when the last shard landed ("download done at"). Also: MB/s
  (model bytes / wall time), peak RSS and CPU (``/usr/bin/time``), the Hub's own CPU time
  (recorded apart, not counted as noise), HTTP requests per tool (the stand-in's log), bytes on
  disk (``du -sb``, which counts a hard-linked file once) of the HF cache, of gapsync's cache and
  of the bundle, and that each shard is one blob in gapsync's cache and one member of the bundle.

* Warm: ``snapshot_download`` again into its filled cache (it still asks the Hub about each
  file) and ``bundle create`` again with the filled cache, after the Hub is stopped (so it
  provably downloads nothing; it writes and signs a new bundle).

* Import: ``gapsync import`` of the bundle into an empty mirror (time), the Hugging Face layout's
  blobs checked to be hard links of the mirror's blob store (same inode, ``st_nlink`` 2), and the
  model loaded offline with ``HF_HUB_OFFLINE=1`` + ``snapshot_download`` + ``safetensors``.

Each measurement runs after ``sync`` and ``_common.prime_page_cache`` (this VM hands idle memory
back to the host, which skews whatever runs next) on a quiet machine; an attempt during which
other processes used the CPU is run again (``--attempts``). Wall times are medians of
``--repeat`` runs. Ratios are gapsync / huggingface_hub: above 1 means gapsync is slower or uses
more. ``--profile`` also runs one cold ``bundle create`` and one ``snapshot_download`` under
cProfile (every thread) and prints the hottest functions.

Run: ``.venv/bin/python bench/bench_models.py [--size-gb 2] [--repeat N] [--keep] [--profile]``
(about 2.5 minutes for 2 GB, ``--repeat 1`` and ``--profile`` on a quiet 2-core machine).
Results: a table on stdout (plain text, then Markdown) and bench/out/bench_models.json (plus a
time-stamped copy). Disk: at most ~3x the model size at any time (the source repo, gapsync's
cache and one bundle; the HF cache is removed before gapsync runs, the source once the Hub is no
longer needed); with ``--keep`` nothing is removed, so up to ~5x, and the working directory
(``--workdir``, default bench/out/work-models) stays.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402 - the helpers live next to this script
    GAPSYNC,
    MB,
    OUT,
    RUSAGE_WRAPPER,
    TIME_BIN,
    Measure,
    Run,
    busy_seconds,
    clean_env,
    cpu_seconds,
    disturbed,
    du,
    gapsync,
    machine,
    measures_table,
    prime_page_cache,
    profile,
    rmtree,
    setup_channel,
    wait_quiet,
    write_result,
)

from tests.support.models import FakeHub  # noqa: E402 - the test fixture is this bench's Hub

REPO = "bench/big-model"
CHANNEL = "bench"
COLS = 4096  # tensor width (F16): rows are sized to reach the shard size
TENSORS_PER_SHARD = 8
WRITE_CHUNK = 8 << 20
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"

# The baseline: what a user runs. Prints one JSON line (timings inside the child, whether the
# hf_xet module was even imported).
SNAPSHOT = r"""
import json, sys, time
t0 = time.perf_counter()
from huggingface_hub import snapshot_download
t1 = time.perf_counter()
path = snapshot_download(sys.argv[1], revision="main", endpoint=sys.argv[2], cache_dir=sys.argv[3])
t2 = time.perf_counter()
print(json.dumps({"path": path, "import_s": round(t1 - t0, 3), "download_s": round(t2 - t1, 3),
                  "hf_xet_imported": "hf_xet" in sys.modules}))
"""

# The air-gapped side after import: the HF layout under MIRROR/models/hf, read offline.
OFFLINE_LOAD = r"""
import json, os, sys
from huggingface_hub import snapshot_download
from safetensors import safe_open
path = snapshot_download(sys.argv[1], revision="main")
files = sorted(os.path.relpath(os.path.join(d, n), path) for d, _, ns in os.walk(path) for n in ns)
shard = next(f for f in files if f.endswith(".safetensors"))
with safe_open(os.path.join(path, shard), framework="np") as st:
    keys = list(st.keys())
    t = st.get_tensor(keys[0])
print(json.dumps({"path": path, "files": files, "shard": shard, "tensors": len(keys),
                  "first": [keys[0], list(t.shape), str(t.dtype)]}))
"""


# -- the model -----------------------------------------------------------------------------

def write_shard(path: Path, names: list[str], rows: int, seed: int) -> tuple[str, int]:
    """One safetensors file, streamed: header length (u64 LE), JSON header padded to 8 bytes,
    then the tensors' bytes (seeded random), never more than WRITE_CHUNK in memory.
    Returns (sha256, size)."""
    per = rows * COLS * 2
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    for i, name in enumerate(names):
        header[name] = {"dtype": "F16", "shape": [rows, COLS], "data_offsets": [i * per, (i + 1) * per]}
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    h = hashlib.sha256()
    rng = np.random.default_rng(seed)
    size = 0
    with path.open("wb") as f:
        for piece in (struct.pack("<Q", len(head)), head):
            f.write(piece)
            h.update(piece)
            size += len(piece)
        left = per * len(names)
        while left:
            chunk = rng.bytes(min(WRITE_CHUNK, left))
            f.write(chunk)
            h.update(chunk)
            size += len(chunk)
            left -= len(chunk)
    return h.hexdigest(), size


def build_model(hub_root: Path, size_gb: float, shards: int) -> dict:
    """The repo ``REPO`` with one revision, in the stand-in's on-disk format:
    ROOT/<org>/<name>/revisions/<commit>/<files>, refs.json, card.json.
    Returns {"commit", "files": {path: {"sha256", "size", "lfs"}}, "total", "shards": [paths]}."""
    repo_dir = hub_root / REPO
    tmp = repo_dir / "revisions" / "incoming.tmp"
    tmp.mkdir(parents=True)
    rows = max(1, int(size_gb * 1e9 / shards) // (TENSORS_PER_SHARD * COLS * 2))
    files: dict[str, dict] = {}
    weight_map: dict[str, str] = {}
    shard_paths = []
    for s in range(shards):
        fn = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        names = [f"model.layers.{s}.block.{j}.weight" for j in range(TENSORS_PER_SHARD)]
        sha, size = write_shard(tmp / fn, names, rows, seed=1000 + s)
        files[fn] = {"sha256": sha, "size": size, "lfs": True}
        weight_map.update(dict.fromkeys(names, fn))
        shard_paths.append(fn)
    total_tensor_bytes = shards * TENSORS_PER_SHARD * rows * COLS * 2
    small = {
        "config.json": json.dumps({"architectures": ["BenchForCausalLM"], "model_type": "bench", "hidden_size": COLS,
                                   "num_hidden_layers": shards, "torch_dtype": "float16"}, indent=2).encode() + b"\n",
        "model.safetensors.index.json": json.dumps({"metadata": {"total_size": total_tensor_bytes},
                                                    "weight_map": weight_map}, indent=2).encode() + b"\n",
        ".gitattributes": GITATTRIBUTES,
    }
    for fn, data in small.items():
        (tmp / fn).write_bytes(data)
        files[fn] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "lfs": False}
    c = hashlib.sha1(b"gapsync-bench big model\n")
    for fn in sorted(files):
        c.update(f"{fn}\0{files[fn]['sha256']}\n".encode())
    commit = c.hexdigest()
    os.replace(tmp, repo_dir / "revisions" / commit)
    (repo_dir / "refs.json").write_text(json.dumps({"main": commit}))
    (repo_dir / "card.json").write_text(json.dumps({"license": "apache-2.0", "library_name": "transformers"}))
    return {"commit": commit, "files": files, "total": sum(f["size"] for f in files.values()), "shards": shard_paths,
            "rows": rows}


def check_shard(path: Path) -> dict:
    """Open a shard with the ``safetensors`` package: proof that the streaming writer is right."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as st:
        keys = list(st.keys())
        t = st.get_tensor(keys[-1])
    return {"tensors": len(keys), "last": keys[-1], "shape": list(t.shape), "dtype": str(t.dtype)}


# -- measuring -----------------------------------------------------------------------------







class Watch:
    """Polls (every 20 ms) for files appearing while a command runs: when the first partial
    download showed up, and when every one of ``done`` paths existed (the last shard landed)."""

    def __init__(self, partial_dir: Path | None, partial_suffix: str, done: list[Path]):
        self.partial_dir, self.suffix, self.done = partial_dir, partial_suffix, done
        self.started: float | None = None
        self.finished: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self, t0: float) -> None:
        self.t0 = t0
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.perf_counter() - self.t0
            if self.started is None and self.partial_dir is not None and self.partial_dir.is_dir():
                if any(n.endswith(self.suffix) for n in os.listdir(self.partial_dir)):
                    self.started = now
            if self.finished is None and all(p.exists() for p in self.done):
                self.finished = now
                return
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Bench:
    """The measurements, with the Hub's CPU time and request log kept apart per attempt."""

    def __init__(self, scratch: Path, attempts: int):
        self.scratch = scratch
        self.attempts = attempts
        self.ms: dict[str, Measure] = {}
        self.extra: dict[str, dict[str, list]] = {}
        self.hub: FakeHub | None = None

    def measure(self, label: str, kind: str, nbytes: int | None = None) -> Measure:
        if label not in self.ms:
            self.ms[label] = Measure(label, kind, bytes=nbytes)
            self.extra[label] = {}
        return self.ms[label]

    def _log_len(self) -> int:
        return len(self.hub.log()) if self.hub else 0

    def timed(self, label: str, kind: str, argv: list[str], env: dict[str, str], *, nbytes: int | None = None,
              reset: Callable[[], None] | None = None, watch: Callable[[], Watch] | None = None
              ) -> subprocess.CompletedProcess:
        """Measure one run of ``argv`` and add it to ``label``. Per attempt: ``reset()`` (back to
        the starting state), sync, wait for a quiet machine, prime the page cache, run under
        /usr/bin/time. The Hub's CPU time is subtracted from "other cpu" (it is part of the
        work, not noise) and recorded apart; a disturbed attempt is run again when there is a
        ``reset``, and the least disturbed one is kept."""
        m = self.measure(label, kind, nbytes)
        best = None
        for _ in range(self.attempts if reset else 1):
            if reset:
                reset()
            os.sync()
            wait_quiet()
            prime_page_cache(self.scratch)
            os.sync()
            hub_pid = self.hub.pid if self.hub else None
            n0, c0 = self._log_len(), cpu_seconds(hub_pid) if hub_pid else 0.0
            w = watch() if watch else None
            run, r = self._once(argv, env, w)
            hub_cpu = (cpu_seconds(hub_pid) - c0) if hub_pid else 0.0
            log = self.hub.log()[n0:] if self.hub else []
            run.other_cpu = round(max(0.0, run.other_cpu - hub_cpu), 2)
            if best is None or run.other_cpu < best[0].other_cpu:
                best = (run, r, hub_cpu, log, w)
            if not disturbed(run):
                break
        assert best is not None
        run, r, hub_cpu, log, w = best
        m.runs.append(run)
        x = self.extra[label]
        x.setdefault("hub_cpu_s", []).append(round(hub_cpu, 2))
        x.setdefault("requests", []).append(len(log))
        x.setdefault("cdn_gets", []).append(sum(1 for e in log if e.get("path", "").startswith("/lfs-cdn/")
                                                and e.get("method") == "GET"))
        x.setdefault("xet_requests", []).append(sum(1 for e in log if "xet" in e.get("path", "").lower()))
        if w is not None:
            x.setdefault("first_partial_s", []).append(None if w.started is None else round(w.started, 2))
            x.setdefault("download_done_s", []).append(None if w.finished is None else round(w.finished, 2))
        return r

    @staticmethod
    def _once(argv: list[str], env: dict[str, str], w: Watch | None) -> tuple[Run, subprocess.CompletedProcess]:
        fd, tfile = tempfile.mkstemp(prefix="bench-time-", suffix=".txt")
        os.close(fd)
        try:
            if TIME_BIN:
                cmd = [TIME_BIN, "-f", "%e %M %U %S", "-o", tfile, *argv]
            else:
                cmd = [sys.executable, "-c", RUSAGE_WRAPPER, tfile, *argv]
            b0, t0 = busy_seconds(), time.perf_counter()
            if w:
                w.start(t0)
            try:
                r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            finally:
                if w:
                    w.stop()
            wall, busy = time.perf_counter() - t0, busy_seconds() - b0
            last = Path(tfile).read_text().strip().splitlines()[-1].split()
        finally:
            os.unlink(tfile)
        if r.returncode != 0:
            raise RuntimeError(f"command failed (exit {r.returncode}): {' '.join(argv)[:300]}\n"
                               f"{(r.stdout + r.stderr).strip()[-2000:]}")
        user, system = float(last[2]), float(last[3])
        return Run(wall=wall, maxrss_kb=int(float(last[1])), user=user, sys=system,
                   other_cpu=round(max(0.0, busy - user - system), 2)), r

    def med(self, label: str, key: str) -> float | None:
        vals = [v for v in self.extra[label].get(key, []) if v is not None]
        return statistics.median(vals) if vals else None


# gapsync's phases in a cold ``bundle create``: download (fetch_all) and bundle writing.
CREATE_FOCUS = r"fetch\.py.*\((fetch_all|fetch_one)\)|bundle\.py.*\((add_blob|close|_write)\)|hashing\.py|create\.py.*_create|sign_release"


# -- report --------------------------------------------------------------------------------

def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def fmt_mb(n: float | None) -> str:
    return "-" if n is None else f"{n / MB:,.0f} MB"


def fmt_s(s: float | None) -> str:
    return "-" if s is None else f"{s:.2f} s"


def markdown(res: dict) -> str:
    t, d, p = res["times"], res["disk"], res["params"]
    total = res["model"]["total"]
    sd, rs, cc = t["snapshot_download (cold)"], t["gapsync resolve"], t["gapsync bundle create (cold)"]
    cold = rs["wall_s_median"] + cc["wall_s_median"]
    sdw = sd["wall_s_median"]
    x = res["extra"]
    rows: list[list[str]] = []
    done = x["gapsync bundle create (cold)"].get("download_done_s_median")
    sd_done = x["snapshot_download (cold)"].get("download_done_s_median")
    rows.append(["cold, empty cache: resolve + bundle create / snapshot_download", fmt_s(cold), fmt_s(sdw),
                 ratio(cold, sdw), f"resolve {rs['wall_s_median']:.2f} s + create {cc['wall_s_median']:.2f} s; "
                 f"the last shard was in the cache {fmt_s(done)} into create (HF: {fmt_s(sd_done)}), "
                 f"the other {cc['wall_s_median'] - (done or 0):.2f} s write and sign the bundle"])
    if done is not None:
        dl = rs["wall_s_median"] + done
        rows.append(["cold, download only: resolve + create until the last shard landed", fmt_s(dl), fmt_s(sd_done or sdw),
                     ratio(dl, sd_done or sdw), "both sides measured from process start"])
    rows.append(["throughput (model bytes / wall)", f"{total / MB / cold:.0f} MB/s", f"{total / MB / sdw:.0f} MB/s",
                 ratio(total / cold, total / sdw), f"model {fmt_mb(total)} in {len(res['model']['shards'])} shards, "
                 f"{p['delay_ms']} ms Hub latency"])
    rows.append(["peak RSS: bundle create (cold) / snapshot_download", f"{cc['peak_rss_mb']:.0f} MB",
                 f"{sd['peak_rss_mb']:.0f} MB", ratio(cc["peak_rss_mb"], sd["peak_rss_mb"]),
                 f"resolve {rs['peak_rss_mb']:.0f} MB"])
    cpu_g = rs["cpu_s_median"] + cc["cpu_s_median"]
    rows.append(["CPU: resolve + create / snapshot_download", f"{cpu_g:.1f} s", f"{sd['cpu_s_median']:.1f} s",
                 ratio(cpu_g, sd["cpu_s_median"]), "user + system of the client process(es); the Hub's apart"])
    rq_g = x["gapsync resolve"]["requests_median"] + x["gapsync bundle create (cold)"]["requests_median"]
    rows.append(["HTTP requests to the Hub (cold)", f"{rq_g:.0f}", f"{x['snapshot_download (cold)']['requests_median']:.0f}",
                 ratio(rq_g, x["snapshot_download (cold)"]["requests_median"]),
                 "incl. CDN GETs; no xet request from either"])
    rows.append(["disk: gapsync cache / HF cache (du -sb)", fmt_mb(d["gapsync cache"]["real"]), fmt_mb(d["hf cache"]["real"]),
                 ratio(d["gapsync cache"]["real"], d["hf cache"]["real"]),
                 f"{res['stored_once']['cache_blobs_per_shard']} blob per shard in gapsync's cache, "
                 f"{res['stored_once']['hf_blobs_per_shard']} in HF's blobs/; model {fmt_mb(total)}"])
    both = d["gapsync cache"]["real"] + d["gapsync bundle"]["real"]
    rows.append(["disk: gapsync cache + bundle / HF cache", fmt_mb(both), fmt_mb(d["hf cache"]["real"]),
                 ratio(both, d["hf cache"]["real"]),
                 "the bundle (what crosses the gap) is the second copy; each shard is one member of it"])
    wg, ws = t["gapsync bundle create (warm)"], t["snapshot_download (warm)"]
    rows.append(["warm (cache filled): bundle create / snapshot_download", fmt_s(wg["wall_s_median"]),
                 fmt_s(ws["wall_s_median"]), ratio(wg["wall_s_median"], ws["wall_s_median"]),
                 f"gapsync: Hub stopped, 0 bytes downloaded, a new {fmt_mb(d['gapsync bundle']['real'])} bundle "
                 f"written and signed; HF: {x['snapshot_download (warm)']['requests_median']:.0f} request(s) "
                 "to the Hub, nothing written"])
    im = t.get("gapsync import")
    if im:
        rows.append(["import into an empty mirror (gapsync only)", fmt_s(im["wall_s_median"]), "-", "-",
                     f"{total / MB / im['wall_s_median']:.0f} MB/s; mirror {fmt_mb(d['gapsync mirror']['real'])} (du), "
                     f"HF-layout blobs are hard links of the blob store (st_nlink "
                     f"{res['import']['nlink']})"])
    head = ["", "gapsync", "huggingface_hub", "gapsync / hf", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * 3 + ["---"]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gb", type=float, default=2.0, help="model size (decimal GB), default 2")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--delay-ms", type=int, default=20, help="Hub latency before each answer")
    ap.add_argument("--jobs", type=int, default=8, help="gapsync -j")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--attempts", type=int, default=2, help="runs per measurement when the machine was busy")
    ap.add_argument("--workdir", type=Path, default=OUT / "work-models")
    ap.add_argument("--keep", action="store_true", help="keep the working directory (model, caches, bundle, mirror)")
    ap.add_argument("--no-import", action="store_true", help="skip the import step")
    ap.add_argument("--profile", action="store_true", help="also profile a cold bundle create and a snapshot_download")
    a = ap.parse_args(argv)
    if shutil.which("du") is None:
        print("missing du (coreutils)", file=sys.stderr)
        return 2
    w = a.workdir.resolve()
    rmtree(w)
    w.mkdir(parents=True)
    b = Bench(w, a.attempts)
    t_start = time.perf_counter()
    try:
        return run(a, w, b, t_start)
    finally:
        if b.hub is not None:
            b.hub.stop()
        if a.keep:
            print(f"\nkept {w}")
        else:
            rmtree(w)


def run(a: argparse.Namespace, w: Path, b: Bench, t_start: float) -> int:
    # 1. the model, into the Hub stand-in's root
    hub_root = w / "hub"
    print(f"writing a {a.size_gb:g} GB model in {a.shards} safetensors shards ...", flush=True)
    t0 = time.perf_counter()
    model = build_model(hub_root, a.size_gb, a.shards)
    total = model["total"]
    rev_dir = hub_root / REPO / "revisions" / model["commit"]
    model["check"] = check_shard(rev_dir / model["shards"][0])
    print(f"  {total / MB:,.0f} MB, {len(model['files'])} files, commit {model['commit'][:12]}, "
          f"{time.perf_counter() - t0:.0f} s; safetensors reads shard 1: {model['check']}", flush=True)
    shard_shas = [model["files"][s]["sha256"] for s in model["shards"]]

    # 2. the Hub, warmed (it hashes every file the first time it lists it)
    b.hub = hub = FakeHub(hub_root, delay_ms=a.delay_ms)
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"{hub.url}/api/models/{REPO}/revision/main?blobs=true", timeout=600) as r:
        info = json.load(r)
    warm_s = time.perf_counter() - t0
    announced = {s["rfilename"]: s.get("lfs", {}).get("sha256") for s in info["siblings"]}
    assert all(announced[s] == model["files"][s]["sha256"] for s in model["shards"]), "Hub announces other digests"
    print(f"Hub stand-in on {hub.url} (pid {hub.pid}, {a.delay_ms} ms latency), hashed the model in {warm_s:.1f} s",
          flush=True)

    env = clean_env(HF_HOME=str(w / "hf-home"), HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1",
                    HF_HUB_DISABLE_XET="1", GAPSYNC_QUIET="1")
    for k in [k for k in env if k.startswith("HF_") and k not in ("HF_HOME", "HF_HUB_DISABLE_PROGRESS_BARS",
                                                                  "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_DISABLE_XET")]:
        del env[k]  # no token, no endpoint, no cache location from this machine

    probe = subprocess.run([sys.executable, "-c", "import gapsync; print(gapsync.__file__, gapsync.__version__)"],
                           env=env, capture_output=True, text=True, cwd=OUT)
    gapsync_module = probe.stdout.strip() or probe.stderr.strip()[-300:]
    print(f"gapsync under test: {gapsync_module}", flush=True)

    hf_cache = w / "hf-cache"
    hf_repo = hf_cache / ("models--" + REPO.replace("/", "--"))
    g = w / "gapsync"
    g.mkdir()
    key, root = setup_channel(g, CHANNEL)
    spec, lock, cache = g / "spec.yaml", g / "lock.json", g / "cache"
    spec.write_text(f"name: bench\nchannel: {CHANNEL}\nmodels:\n  - hf: {REPO}\n    revision: main\n"
                    f"    endpoint: {hub.url}\n")
    cold_out, warm_out = g / "out-cold", g / "out-warm"
    resolve_argv = [GAPSYNC, "resolve", "-f", str(spec), "-o", str(lock), "--cache", str(cache), "-j", str(a.jobs)]
    create = [GAPSYNC, "bundle", "create", "-f", str(spec), "--lock", str(lock), "--state", str(g / "state"),
              "--key", str(key), "--cache", str(cache), "-j", str(a.jobs), "--json", "-o"]
    snapshot_argv = [sys.executable, "-c", SNAPSHOT, REPO, hub.url, str(hf_cache)]

    def gapsync_empty() -> None:
        rmtree(cache)
        lock.unlink(missing_ok=True)
        rmtree(cold_out)

    def hf_empty() -> None:
        rmtree(hf_cache)
        gapsync_empty()  # never both copies at once: disk stays within ~3x the model

    def resolved() -> None:
        gapsync_empty()
        r = subprocess.run(resolve_argv, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"gapsync resolve failed: {r.stderr[-2000:]}")

    def hf_watch() -> Watch:
        return Watch(hf_repo / "blobs", ".incomplete", [hf_repo / "blobs" / s for s in shard_shas])

    def gapsync_watch() -> Watch:
        return Watch(cache / "partial", ".part", [cache / "sha256" / s[:2] / s for s in shard_shas])

    disk: dict[str, dict[str, int]] = {}
    profs: dict[str, str] = {}
    hf_blobs: list[str] = []
    hf_snapshot: list[str] = []
    snap_info: list[dict] = []
    downloaded: list[int] = []
    for i in range(a.repeat):
        print(f"cold + warm snapshot_download, run {i + 1}/{a.repeat} ...", flush=True)
        r = b.timed("snapshot_download (cold)", "baseline", snapshot_argv, env, nbytes=total, reset=hf_empty,
                    watch=hf_watch)
        snap_info.append(json.loads(r.stdout.strip().splitlines()[-1]))
        b.timed("snapshot_download (warm)", "baseline", snapshot_argv, env)
        if "hf cache" not in disk:
            disk["hf cache"] = {"real": du(hf_cache), "apparent": du(hf_cache, apparent=True)}
            hf_blobs = sorted(p.name for p in (hf_repo / "blobs").iterdir())
            hf_snapshot = sorted(str(p.relative_to(hf_repo / "snapshots")) for p in (hf_repo / "snapshots").rglob("*")
                                 if p.is_symlink() or p.is_file())
        rmtree(hf_cache)

        if i == 0 and a.profile:
            print("profiling a cold bundle create and a snapshot_download (cProfile, all threads) ...", flush=True)
            resolved()
            profs = {"gapsync bundle create (cold)": profile(
                ["gapsync", *create[1:], str(g / "out-profile")], OUT / "bench_models-create.prof", env, CREATE_FOCUS)}
            gapsync_empty()
            rmtree(g / "out-profile")
            profs["snapshot_download (cold)"] = profile(["-c", SNAPSHOT, REPO, hub.url, str(hf_cache)],
                                                        OUT / "bench_models-snapshot.prof", env)
            rmtree(hf_cache)

        print(f"cold gapsync resolve + bundle create, run {i + 1}/{a.repeat} ...", flush=True)
        b.timed("gapsync resolve", "gapsync", resolve_argv, env, reset=gapsync_empty)
        r = b.timed("gapsync bundle create (cold)", "gapsync", [*create, str(cold_out)], env, nbytes=total,
                    reset=resolved, watch=gapsync_watch)
        downloaded.append(json.loads(r.stdout)["downloaded_bytes"])

    bundle = next(cold_out.glob("*.gapsync"))
    disk["gapsync cache"] = {"real": du(cache), "apparent": du(cache, apparent=True)}
    disk["gapsync bundle"] = {"real": du(bundle), "apparent": du(bundle, apparent=True)}
    cache_blobs = [p for p in (cache / "sha256").rglob("*") if p.is_file()]
    per_shard = {s: sum(1 for p in cache_blobs if p.name == s) for s in shard_shas}
    big_files = [p for p in cache.rglob("*") if p.is_file() and p.stat().st_size >= min(
        model["files"][s]["size"] for s in model["shards"])]
    with tarfile.open(bundle) as tf:
        members = [m.name for m in tf.getmembers()]
    in_bundle = {s: members.count(f"blobs/sha256/{s}") for s in shard_shas}
    stored_once = {
        "cache_blobs_per_shard": "1" if set(per_shard.values()) == {1} else str(per_shard),
        "cache_files_of_shard_size": len(big_files),
        "cache_partial_left": len(list((cache / "partial").iterdir())),
        "bundle_members_per_shard": "1" if set(in_bundle.values()) == {1} else str(in_bundle),
        "bundle_blob_members": sum(1 for n in members if n.startswith("blobs/")),
        "hf_blobs_per_shard": "1" if all(hf_blobs.count(s) == 1 for s in shard_shas) else str(hf_blobs),
        "hf_blobs": len(hf_blobs),
        "hf_snapshot_entries": hf_snapshot,
    }

    # 3. warm: the Hub is no longer needed (and is stopped, so gapsync provably downloads nothing)
    hub_log = hub.log()
    hub.stop()
    b.hub = None
    if not a.keep:
        rmtree(hub_root)  # the source: disk stays within ~3x the model
    for i in range(a.repeat):
        print(f"warm bundle create (Hub stopped), run {i + 1}/{a.repeat} ...", flush=True)
        r = b.timed("gapsync bundle create (warm)", "gapsync", [*create, str(warm_out)], env, nbytes=total,
                    reset=lambda: rmtree(warm_out))
        assert json.loads(r.stdout)["downloaded_bytes"] == 0, "warm bundle create downloaded something"
    if not a.keep:
        rmtree(warm_out)

    # 4. import into an empty mirror; the HF layout must be hard links of the blob store
    imp: dict = {}
    if not a.no_import:
        mirror = w / "mirror"

        def empty_mirror() -> None:
            rmtree(mirror)
            gapsync("trust", "pin", str(root), "--mirror", str(mirror))

        for i in range(a.repeat):
            print(f"import, run {i + 1}/{a.repeat} ...", flush=True)
            b.timed("gapsync import", "gapsync", [GAPSYNC, "import", str(bundle), "--mirror", str(mirror), "--json"],
                    env, nbytes=total, reset=empty_mirror)
        disk["gapsync mirror"] = {"real": du(mirror), "apparent": du(mirror, apparent=True)}
        layout_repo = mirror / "models" / "hf" / ("models--" + REPO.replace("/", "--"))
        links = {}
        for fn, f in model["files"].items():
            store = mirror / ".gapsync" / "blobs" / "sha256" / f["sha256"][:2] / f["sha256"]
            snap = layout_repo / "snapshots" / model["commit"] / fn
            blob = snap.resolve()
            links[fn] = {"nlink": blob.stat().st_nlink, "same_inode_as_store": blob.stat().st_ino == store.stat().st_ino,
                         "blob": blob.name}
        nlinks = sorted({v["nlink"] for v in links.values()})
        imp = {"files": links, "nlink": ",".join(map(str, nlinks)),
               "all_hard_links": all(v["same_inode_as_store"] and v["nlink"] >= 2 for v in links.values())}
        off_env = {k: v for k, v in env.items() if not k.startswith("HF_")}
        off_env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(mirror / "models" / "hf"), HF_HUB_DISABLE_TELEMETRY="1",
                       HF_HOME=str(w / "hf-home-offline"))
        r = subprocess.run([sys.executable, "-c", OFFLINE_LOAD, REPO], env=off_env, capture_output=True, text=True)
        imp["offline_load"] = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else r.stderr[-1500:]
        if not a.keep:
            rmtree(mirror)

    # 5. report
    order = ["snapshot_download (cold)", "gapsync resolve", "gapsync bundle create (cold)", "snapshot_download (warm)",
             "gapsync bundle create (warm)", *(["gapsync import"] if "gapsync import" in b.ms else [])]
    extra = {}
    for k in order:
        e = dict(b.extra[k])
        for key in ("hub_cpu_s", "requests", "cdn_gets", "xet_requests", "first_partial_s", "download_done_s"):
            if key in e:
                e[f"{key}_median"] = b.med(k, key)
        extra[k] = e
    res = {
        "bench": "models",
        "machine": machine(),
        "params": {"size_gb": a.size_gb, "shards": a.shards, "delay_ms": a.delay_ms, "jobs": a.jobs,
                   "repeat": a.repeat, "attempts": a.attempts, "tensors_per_shard": TENSORS_PER_SHARD,
                   "tensor_shape": [model["rows"], COLS], "dtype": "F16"},
        "model": {"repo": REPO, "commit": model["commit"], "total": total, "files": model["files"],
                  "shards": model["shards"], "safetensors_check": model["check"]},
        "hub_hash_warmup_s": round(warm_s, 2),
        "gapsync_module": gapsync_module,
        "times": {k: b.ms[k].to_dict() for k in order},
        "extra": extra,
        "snapshot_download_child": snap_info,
        "gapsync_downloaded_bytes_cold": downloaded,
        "disk": disk,
        "stored_once": stored_once,
        "import": imp,
        "hub_requests_total": len(hub_log),
        "hub_xet_requests_total": sum(1 for e in hub_log if "xet" in e.get("path", "").lower()),
    }
    print("\n" + measures_table([b.ms[k] for k in order]))
    print("(MB/s: model bytes / wall time; \"other cpu s\" leaves out the Hub's own CPU time)")
    rows = []
    for k in order:
        e = extra[k]
        rows.append(f"  {k:<32} Hub cpu {e['hub_cpu_s_median']:5.2f} s, {e['requests_median']:3.0f} requests "
                    f"({e['cdn_gets_median']:.0f} CDN GETs, {e['xet_requests_median']:.0f} xet)"
                    + (f", first partial file at {fmt_s(e.get('first_partial_s_median'))}, last shard in at "
                       f"{fmt_s(e.get('download_done_s_median'))}" if "download_done_s" in e else ""))
    print("\n".join(rows))
    print(f"  snapshot_download child: {snap_info[-1]}")
    print(f"\nmodel: {total / MB:,.1f} MB; gapsync downloaded cold: {statistics.median(downloaded) / MB:,.1f} MB")
    for k, v in disk.items():
        print(f"{k:<16} du -sb {v['real'] / MB:9,.1f} MB   apparent {v['apparent'] / MB:9,.1f} MB   "
              f"= {v['real'] / total:.2f} x model")
    print(f"stored once: {json.dumps({k: v for k, v in stored_once.items() if k != 'hf_snapshot_entries'})}")
    if imp:
        print(f"import: HF-layout blobs hard links of the store: {imp['all_hard_links']} (st_nlink {imp['nlink']}); "
              f"offline load: {imp['offline_load'] if isinstance(imp['offline_load'], str) else imp['offline_load']['first']}")
    cold = b.ms["gapsync resolve"].wall + b.ms["gapsync bundle create (cold)"].wall
    sdw = b.ms["snapshot_download (cold)"].wall
    print("\nratios gapsync / huggingface_hub (above 1: gapsync slower or bigger)")
    print(f"  cold: resolve + create / snapshot_download    {cold / sdw:.2f}")
    done = extra["gapsync bundle create (cold)"].get("download_done_s_median")
    sd_done = extra["snapshot_download (cold)"].get("download_done_s_median") or sdw
    if done is not None:
        print(f"  cold, until the last shard landed             {(b.ms['gapsync resolve'].wall + done) / sd_done:.2f}")
    print(f"  peak RSS: create / snapshot_download           "
          f"{b.ms['gapsync bundle create (cold)'].maxrss_mb / b.ms['snapshot_download (cold)'].maxrss_mb:.2f}")
    print(f"  disk: gapsync cache / HF cache                 {disk['gapsync cache']['real'] / disk['hf cache']['real']:.2f}")
    print(f"  warm: bundle create / snapshot_download        "
          f"{b.ms['gapsync bundle create (warm)'].wall / b.ms['snapshot_download (warm)'].wall:.2f}")
    md = markdown(res)
    res["markdown"] = md
    print("\n" + md)
    if a.profile:
        for k, v in profs.items():
            print(f"\n--- profile: {k} " + "-" * 50 + "\n" + v)
        res["profiles"] = profs
    res["workdir_bytes_at_end"] = du(w)
    res["total_s"] = round(time.perf_counter() - t_start, 1)
    path = write_result("bench_models", res)
    print(f"\nwrote {path} (and {OUT / 'bench_models.json'}); {res['total_s']:.0f} s in all")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
