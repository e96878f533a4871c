"""Create and import at scale (issue 21): gapsync against the manual workflow it replaces.

For each size in ``--sizes`` (GB, decimal; default 1,4,16), a model of random (incompressible)
safetensors shards of at most 1 GB each (``bench_models.build_model``: a repo of the Hub
stand-in's on-disk format, whose revision directory is also the path model), then:

* manual: ``openssl dgst -sha256`` of each file, ``tar cf`` of the directory, ``sync``: what an
  operator would otherwise run (no signature, no scan: the floor).
* path model: ``gapsync resolve`` (not timed: it hashes the directory once, as ``openssl``
  does), then ``bundle create`` cold (empty cache) and warm (cache filled, output removed), each
  ended by ``sync FILES`` (``find TREE -type f -exec sync {} +`` for a tree) inside the timed
  command, so both sides pay for durable bytes but not for other jobs' writes (a bare ``sync``
  waits for the whole machine's dirty pages).
* import: ``gapsync import`` of the warm bundle into an empty mirror, ``sync`` included; against
  ``sha256sum`` + ``cp`` + ``sync`` of the bundle; the bundle is dropped from the page cache
  before each (read as from the medium; the writer already advises the kernel to write it out
  and drop it, ``hashing.ReadBackHash``).
* Hub (``--no-hub`` skips it): ``snapshot_download`` into an empty HF cache from the Hub
  stand-in (``tests.support.models.FakeHub``, no added latency) against ``gapsync resolve`` +
  ``bundle create`` into an empty cache (cold), ``sync`` included on both sides (the download
  alone is read from ``bundle create``'s ``fetch.done`` log event); then ``bundle create`` again
  from the filled (sealed) cache (warm), against the manual workflow. The cold create runs four times:
  as it is (the default: written while downloading, as ``=1``), with ``--no-cache`` (the model files written into the bundle
  only, once), with ``GAPSYNC_WRITE_WHILE_DOWNLOADING=1`` (each download written into the bundle
  as it arrives, ``BundleBody``, and into the cache) and with ``=0`` (the bundle written from
  the cache after the download). ``--hub-only``: the manual workflow and the Hub case alone.

Each figure is one run (``--repeat``: the median of N; every run's wall, CPU seconds and the
1-minute load average before it are in the JSON) after ``sync``, on a machine waited to be
quiet (``_common.measure``). Page cache: nothing is dropped (other jobs share the machine); every
command reads a source that was just written or read, as the workflows it stands for do.
Disk: about 3x the largest size at once (source, bundle, and the mirror, cache or manual copy); a size
that does not fit in ``df`` of the working directory is skipped and said so.

Run: ``.venv/bin/python bench/bench_scale.py --sizes 1,4`` ; results: a table on stdout and
bench/out/bench_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (  # noqa: E402
    GAPSYNC,
    MB,
    OUT,
    clean_env,
    gapsync,
    machine,
    measure,
    rmtree,
    setup_channel,
    table,
    write_result,
)
from bench_models import REPO, SNAPSHOT, build_model  # noqa: E402

from tests.support.models import FakeHub  # noqa: E402

SHARD = 1e9  # at most this many bytes per shard


def sh(script: str) -> list[str]:
    return ["sh", "-ec", script]


def _fetch_done(stderr: str) -> float | None:
    """Seconds of the download alone, from ``bundle create``'s ``fetch.done`` log event (JSON lines
    on stderr with ``GAPSYNC_LOG_FORMAT=json``), or None."""
    for line in reversed(stderr.splitlines()):
        if '"fetch.done"' in line:
            try:
                return float(json.loads(line)["seconds"])
            except (ValueError, KeyError, TypeError):
                return None
    return None


def run_size(size_gb: float, w: Path, repeat: int, hub_case: bool, hub_only: bool = False) -> dict:
    rmtree(w)
    w.mkdir(parents=True)
    shards = max(1, int(-(-size_gb * 1e9 // SHARD)))
    t0 = time.perf_counter()
    model = build_model(w / "hub", size_gb, shards)
    src = w / "hub" / REPO / "revisions" / model["commit"]
    total = model["total"]
    print(f"{size_gb:g} GB: {total / MB:,.0f} MB in {shards} shards, written in {time.perf_counter() - t0:.0f} s",
          flush=True)
    env = clean_env(GAPSYNC_QUIET="1", HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1",
                    HF_HUB_DISABLE_XET="1", HF_HOME=str(w / "hf-home"))
    g = w / "g"
    g.mkdir()
    key, root = setup_channel(g, "bench")
    cache, out, mirror, manual = g / "cache", g / "out", w / "mirror", w / "manual"
    figures: dict[str, dict] = {}

    def timed(label: str, argv: list[str], reset=None, uncached: Path | None = None) -> dict:
        """``uncached``: a file dropped from the page cache before each run (a bundle read as
        from the medium it came on, for gapsync and the manual workflow alike)."""
        def prepare() -> None:
            subprocess.run(["sync"], check=True)
            if uncached is not None:
                fd = os.open(uncached, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)

        runs = []
        for _ in range(repeat):
            load = os.getloadavg()[0]
            r, p = measure(argv, env=env, reset=reset, prepare=prepare, attempts=2)
            runs.append((r, load, p))
        runs.sort(key=lambda x: x[0].wall)
        r, _load, p = runs[len(runs) // 2]
        figures[label] = {"wall_s": round(r.wall, 2), "rss_mb": round(max(x[0].maxrss_kb for x in runs) / 1024, 1),
                          "cpu_s": round(r.user + r.sys, 2), "other_cpu_s": round(r.other_cpu, 2),
                          "runs_wall_s": [round(x[0].wall, 2) for x in runs],
                          "runs_cpu_s": [round(x[0].user + x[0].sys, 2) for x in runs],
                          "load_1min": [round(x[1], 2) for x in runs]}
        done = _fetch_done(p.stderr)
        if done is not None:
            figures[label]["download_s"] = done
        print(f"  {label:<44} {r.wall:7.2f} s  {r.user + r.sys:6.2f} cpu s  {figures[label]['rss_mb']:6.0f} MB  "
              f"(runs {', '.join(f'{x[0].wall:.2f}' for x in runs)}; load {', '.join(f'{x[1]:.1f}' for x in runs)}"
              + (f"; download {done:.2f} s" if done is not None else "") + ")", flush=True)
        return figures[label]

    def fresh(*paths: Path):
        def reset() -> None:
            for p in paths:
                rmtree(p)
        return reset

    # the manual workflow
    manual.mkdir()
    timed("manual: openssl dgst -sha256 + tar cf + sync",
          sh(f"cd '{src}'; for f in *; do openssl dgst -sha256 \"$f\"; done > '{manual}/SHA256SUMS'; "
             f"tar cf '{manual}/model.tar' .; sync '{manual}/model.tar' '{manual}/SHA256SUMS' '{manual}'"), reset=lambda: (manual / "model.tar").unlink(missing_ok=True))
    rmtree(manual)

    # path model
    if hub_only:
        return _hub_case(size_gb, total, shards, w, g, key, cache, out, env, timed, fresh, figures, True)
    spec, lock = g / "spec.yaml", g / "lock.json"
    spec.write_text(f"name: bench\nchannel: bench\nmodels:\n  - path: {src}\n    name: bench/scale\n")
    gapsync("resolve", "-f", str(spec), "-o", str(lock), "--cache", str(cache))
    create = [GAPSYNC, "bundle", "create", "-f", str(spec), "--lock", str(lock), "--state", str(g / "state"),
              "--key", str(key), "--cache", str(cache), "--json", "-o", str(out)]
    c = " ".join(f"'{a}'" for a in create)
    timed("gapsync bundle create, path, cold (+ sync)", sh(f"{c} > /dev/null; sync '{out}'/*; find '{cache}' -type f -exec sync {{}} +"),
          reset=fresh(out, cache))
    timed("gapsync bundle create, path, warm (+ sync)", sh(f"{c} > /dev/null; sync '{out}'/*"), reset=fresh(out))
    bundle = next(out.glob("*.gapsync"))

    def empty_mirror() -> None:
        rmtree(mirror)
        gapsync("trust", "pin", str(root), "--mirror", str(mirror))

    timed("gapsync import (+ sync)", sh(f"'{GAPSYNC}' import '{bundle}' --mirror '{mirror}' --json >/dev/null; find '{mirror}' -type f -exec sync {{}} +"),
          reset=empty_mirror, uncached=bundle)
    rmtree(mirror)
    manual.mkdir()
    timed("manual: sha256sum + cp + sync of the bundle",
          sh(f"sha256sum '{bundle}' >/dev/null; cp '{bundle}' '{manual}/'; sync '{manual}/{bundle.name}'"), reset=fresh(manual / bundle.name),
          uncached=bundle)
    rmtree(manual)
    rmtree(out)
    rmtree(cache)
    return _hub_case(size_gb, total, shards, w, g, key, cache, out, env, timed, fresh, figures, hub_case)


def _hub_case(size_gb, total, shards, w, g, key, cache, out, env, timed, fresh, figures, hub_case) -> dict:
    if hub_case:
        hub = FakeHub(w / "hub", delay_ms=0)
        try:
            import urllib.request

            with urllib.request.urlopen(f"{hub.url}/api/models/{REPO}/revision/main?blobs=true", timeout=1800) as r:
                json.load(r)  # the stand-in hashes every file on first sight: not timed
            hf_cache = w / "hf-cache"
            timed("snapshot_download, cold (+ sync)",
                  sh(f"'{sys.executable}' -c '{SNAPSHOT}' '{REPO}' '{hub.url}' '{hf_cache}' >/dev/null; find '{hf_cache}' -type f -exec sync {{}} +"),
                  reset=fresh(hf_cache))
            rmtree(hf_cache)
            hspec, hlock = g / "hub.yaml", g / "hub.lock"
            hspec.write_text(f"name: bench\nchannel: hub\nmodels:\n  - hf: {REPO}\n    revision: main\n"
                             f"    endpoint: {hub.url}\n")
            gapsync("channel", "init", "hub", "--state", str(g / "state"), "--key", str(key))
            hc = [GAPSYNC, "bundle", "create", "-f", str(hspec), "--lock", str(hlock), "--state", str(g / "state"),
                  "--key", str(key), "--cache", str(cache), "--json", "-o", str(out)]
            resolve = f"'{GAPSYNC}' resolve -f '{hspec}' -o '{hlock}' --cache '{cache}' >/dev/null"
            timed("gapsync resolve + bundle create from the Hub, cold (+ sync)",
                  sh(f"{resolve}; env -u GAPSYNC_QUIET GAPSYNC_LOG_FORMAT=json {' '.join(repr(a) for a in hc)} >/dev/null; "
                     f"sync '{out}'/*; "
                     f"find '{cache}' -type f -exec sync {{}} +"), reset=fresh(out, cache, hlock))
            # the same with --no-cache: the model files written once, into the bundle only
            timed("  the same, --no-cache", sh(f"{resolve}; env -u GAPSYNC_QUIET GAPSYNC_LOG_FORMAT=json "
                                             f"{' '.join(repr(a) for a in hc)} --no-cache >/dev/null; "
                                             f"sync '{out}'/*; find '{cache}' -type f -exec sync {{}} +"),
                  reset=fresh(out, cache, hlock))
            # the same, the bundle always written while downloading (=1: BundleBody) and always
            # after the download, from the cache (=0: as before); unset, gapsync picks by size
            for mode, label in (("1", "  the same, written while downloading (=1)"),
                                ("0", "  the same, written after the download (=0)")):
                timed(label, sh(f"{resolve}; env -u GAPSYNC_QUIET GAPSYNC_LOG_FORMAT=json "
                                f"GAPSYNC_WRITE_WHILE_DOWNLOADING={mode} {' '.join(repr(a) for a in hc)} >/dev/null; "
                                f"sync '{out}'/*; find '{cache}' -type f -exec sync {{}} +"), reset=fresh(out, cache, hlock))
            # the cache now holds the model, sealed: a new version of the same release
            timed("gapsync bundle create from the Hub, warm (+ sync)",
                  sh(f"{' '.join(repr(a) for a in hc)} >/dev/null; sync '{out}'/*"), reset=fresh(out))
        finally:
            hub.stop()
    rmtree(w)
    f = figures
    man = f["manual: openssl dgst -sha256 + tar cf + sync"]["wall_s"]
    ratios = {} if "gapsync import (+ sync)" not in f else {
        "warm create / manual": f["gapsync bundle create, path, warm (+ sync)"]["wall_s"] / man,
        "cold create (path) / manual": f["gapsync bundle create, path, cold (+ sync)"]["wall_s"] / man,
        "import / sha256sum+cp": f["gapsync import (+ sync)"]["wall_s"]
        / f["manual: sha256sum + cp + sync of the bundle"]["wall_s"]}
    if hub_case:
        cold = f["gapsync resolve + bundle create from the Hub, cold (+ sync)"]
        snap = f["snapshot_download, cold (+ sync)"]["wall_s"]
        ratios["cold create from the Hub / snapshot_download"] = cold["wall_s"] / snap
        if "download_s" in cold:
            ratios["  of which gapsync's download alone / snapshot_download"] = cold["download_s"] / snap
        ratios["  --no-cache / snapshot_download"] = f["  the same, --no-cache"]["wall_s"] / snap
        for mode in ("written while downloading (=1)", "written after the download (=0)"):
            ratios[f"  {mode} / snapshot_download"] = f[f"  the same, {mode}"]["wall_s"] / snap
        ratios["warm create from the Hub (sealed cache) / manual"] = (
            f["gapsync bundle create from the Hub, warm (+ sync)"]["wall_s"] / man)
    return {"size_gb": size_gb, "bytes": total, "shards": shards, "figures": figures,
            "ratios": {k: round(v, 2) for k, v in ratios.items()}}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,4,16", help="GB, comma-separated")
    ap.add_argument("--repeat", type=int, default=3, help="runs per step; the median is kept")
    ap.add_argument("--no-hub", action="store_true")
    ap.add_argument("--hub-only", action="store_true", help="only the manual workflow and the Hub case")
    ap.add_argument("--workdir", type=Path, default=OUT / "work-scale")
    a = ap.parse_args(argv)
    results = []
    for s in (float(x) for x in a.sizes.split(",")):
        probe = a.workdir.parent
        probe.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(probe).free
        # at most three copies at once: the source, the bundle, and the mirror (import), the manual
        # copy (cp) or the cache (Hub); each is removed before the next step that needs room
        need = int(s * 1e9 * 3.1) + (2 << 30)
        if free < need:
            print(f"{s:g} GB: skipped, {need / 1e9:.0f} GB of disk needed and {free / 1e9:.0f} GB free", flush=True)
            results.append({"size_gb": s, "skipped": f"{free / 1e9:.0f} GB free, {need / 1e9:.0f} GB needed"})
            continue
        results.append(run_size(s, a.workdir, a.repeat, not a.no_hub, a.hub_only))
    rows = []
    for r in results:
        if "skipped" in r:
            rows.append([f"{r['size_gb']:g} GB", "skipped: " + r["skipped"], "", "", "", ""])
            continue
        for label, v in r["figures"].items():
            rows.append([f"{r['size_gb']:g} GB", label, f"{v['wall_s']:.2f} s", f"{v['cpu_s']:.2f} s",
                         f"{v['rss_mb']:.0f} MB", "/".join(f"{x:.1f}" for x in v["load_1min"])])
        for label, v in r["ratios"].items():
            rows.append([f"{r['size_gb']:g} GB", label, f"{v:.2f}x", "", "", ""])
    print(table(rows, ["size", "step", "wall (median)", "CPU s", "peak RSS", "load before each run"]))
    print(write_result("bench_scale", {"machine": machine(), "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
