"""Benchmarks of a multi-target Python environment (issue 17), each against what a user would do
by hand.

Set-up: a requirement set resolved for four targets (CPython 3.11 manylinux_2_17 x86_64, 3.12
manylinux_2_28 x86_64, 3.11 manylinux_2_17 aarch64, 3.12 win_amd64) is downloaded once from PyPI
with ``pip download --platform --python-version`` into a seed directory (bench/out/seed-targets/,
reused by later runs), turned into a static index like PyPI's (sha256 fragments,
data-requires-python, PEP 658 .metadata) and served by bench/_latency_server.py, which adds a
fixed latency (default 50 ms) to every request, as a remote index would.

Part ``resolve-create`` (empty caches): ``gapsync resolve`` (the four targets at once) +
``gapsync bundle create --lock``, against ``pip download --only-binary=:all: --platform ...
--python-version ...`` run once per target, one after another (how a user gets the files for
four targets with pip), into empty directories. Both must get the same files per target.

Part ``sync``: on a warm download cache, the first ``gapsync sync`` of a fresh channel (resolve,
scan, bundle), then a ``sync`` with nothing changed upstream (the index pages revalidate, the
resolver is skipped, exit 5), against the same no-change ``sync --resolve-always`` (what every
no-change sync cost before: a full resolve of all targets).

Wall times are medians of ``--repeat`` runs; each table row also shows peak RSS and CPU time.
Writes bench/out/bench_python_targets.json. Run:
``.venv/bin/python bench/bench_python_targets.py [--part resolve-create|sync|all] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402 - the helpers live next to this script
    BENCH,
    GAPSYNC,
    MB,
    OUT,
    Measure,
    Run,
    Server,
    build_index,
    free_port,
    machine,
    measure,
    measures_table,
    setup_channel,
    table,
    write_result,
)

REQUIREMENTS = ["requests", "pyyaml", "markupsafe", "jinja2", "charset-normalizer", "msgpack", "attrs",
                "python-dateutil", "click", "packaging", "pydantic", "numpy"]
TARGETS = [("3.11", "manylinux_2_17_x86_64"), ("3.12", "manylinux_2_28_x86_64"),
           ("3.11", "manylinux_2_17_aarch64"), ("3.12", "win_amd64")]


def log(msg: str) -> None:
    print(msg, flush=True)


def tid(py: str, plat: str) -> str:
    return f"cp{py.replace('.', '')}-{plat}"


def pip_download(url: str | None, dest: Path, py: str, plat: str, reqs: list[str]) -> list[str]:
    index = ["--index-url", url] if url else []
    return [sys.executable, "-m", "pip", "download", "--isolated", "--no-cache-dir", "--disable-pip-version-check",
            "--only-binary=:all:", "--platform", plat, "--python-version", py, "--implementation", "cp", "-q",
            *index, "-d", str(dest), *reqs]


def seed(reqs: list[str]) -> Path:
    """The stand-in for PyPI: the files pip downloads for each target, once."""
    d = OUT / "seed-targets"
    marker = d / ".complete"
    if marker.exists() and json.loads(marker.read_text()) == reqs:
        log(f"reusing the seed wheels in {d}")
        return d
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for py, plat in TARGETS:
        log(f"downloading the seed wheels for {tid(py, plat)} from PyPI ...")
        measure(pip_download(None, d, py, plat, reqs), attempts=1)
    marker.write_text(json.dumps(reqs))
    return d


def write_spec(path: Path, url: str, reqs: list[str]) -> None:
    ts = "".join(f'    - {{python: "{py}", platform: {plat}}}\n' for py, plat in TARGETS)
    path.write_text(f"name: bench\nchannel: bench\npython:\n  index_url: {url}\n"
                    f"  requirements: {json.dumps(reqs)}\n  targets:\n{ts}")


def run_parts(a: argparse.Namespace) -> dict:
    reqs = a.requirements or REQUIREMENTS
    seeded = seed(reqs)
    work = a.workdir
    shutil.rmtree(work, ignore_errors=True)
    files = work / "index" / "files"
    files.mkdir(parents=True)
    for w in seeded.glob("*.whl"):
        os.link(w, files / w.name)
    wheels = sorted(files.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels)
    build_index(files, work / "index")
    port = free_port()
    url = f"http://127.0.0.1:{port}/simple/"
    ms: dict[str, Measure] = {}
    mismatch: dict[str, list[str]] = {}

    def m(key: str, label: str, kind: str, nbytes: int | None = None) -> Measure:
        return ms.setdefault(key, Measure(label, kind, bytes=nbytes))

    from _common import gapsync

    adv = work / "advisories"  # the shipped PyPA snapshot: without a database the default policy blocks (fail closed)
    gapsync("advisories", "import", str(BENCH.parent / "gapsync/demo/data/pypa-advisory-db.osv.jsonl.gz"),
            "--store", str(adv))
    server = [sys.executable, str(BENCH / "_latency_server.py"), "--dir", str(work / "index"), "--port", str(port),
              "--latency", str(a.latency_ms / 1000)]
    with Server(server, work, url, log=work / "server.log") as srv:
        timed = functools.partial(measure, ours=srv.cpu_seconds)
        for i in range(a.repeat):
            run = work / f"run-{i}"
            run.mkdir()
            key, _root = setup_channel(run)
            spec, lock, cache = run / "gapsync.yaml", run / "gapsync.lock", run / "cache"
            write_spec(spec, url, reqs)
            if a.part in ("resolve-create", "all"):
                log(f"run {i + 1}/{a.repeat}: resolve + bundle create (empty caches) vs pip download x{len(TARGETS)} ...")
                r1, _ = timed([GAPSYNC, "resolve", "-f", str(spec), "-o", str(lock), "--cache", str(cache)],
                              reset=lambda cache=cache: shutil.rmtree(cache, ignore_errors=True))
                m("resolve", f"gapsync resolve, {len(TARGETS)} targets at once (empty cache)", "gapsync").runs.append(r1)

                def empty_blobs(cache=cache, out=run / "out") -> None:
                    for d in ("sha256", "partial"):
                        shutil.rmtree(cache / d, ignore_errors=True)
                    shutil.rmtree(out, ignore_errors=True)

                r2, _ = timed([GAPSYNC, "bundle", "create", "-f", str(spec), "--lock", str(lock), "--state",
                               str(run / "state"), "--key", str(key), "-o", str(run / "out"), "--cache", str(cache), "--advisories", str(adv)],
                              reset=empty_blobs)
                m("create", "gapsync bundle create --lock (empty cache)", "gapsync", total).runs.append(r2)
                m("total", "gapsync resolve + bundle create", "gapsync", total).runs.append(
                    Run(r1.wall + r2.wall, max(r1.maxrss_kb, r2.maxrss_kb), r1.user + r2.user, r1.sys + r2.sys,
                        r1.other_cpu + r2.other_cpu))
                pip_runs = []
                for py, plat in TARGETS:
                    d = run / "pip" / tid(py, plat)
                    r, _ = timed(pip_download(url, d, py, plat, reqs), reset=lambda d=d: shutil.rmtree(d, ignore_errors=True))
                    pip_runs.append(r)
                    locked = {f["filename"] for f in json.loads(lock.read_text())["python"]["files"]
                              if tid(py, plat) in f["targets"]}
                    got = {p.name for p in d.glob("*.whl")}
                    if got != locked:
                        mismatch[tid(py, plat)] = sorted(got ^ locked)
                m("pip", f"pip download, once per target ({len(TARGETS)} runs)", "baseline", total).runs.append(
                    Run(sum(r.wall for r in pip_runs), max(r.maxrss_kb for r in pip_runs), sum(r.user for r in pip_runs),
                        sum(r.sys for r in pip_runs), sum(r.other_cpu for r in pip_runs)))
            if a.part in ("sync", "all"):
                log(f"run {i + 1}/{a.repeat}: sync (first, warm download cache), no-change sync, with --resolve-always ...")
                sync = [GAPSYNC, "sync", "-f", str(spec), "--state", str(run / "sync-state"), "--key", str(key),
                        "--cache", str(cache), "--lock-out", str(run / "sync.lock"), "--advisories", str(adv)]
                ss = run / "sync-state"

                def fresh_channel(ss=ss, run=run) -> None:
                    shutil.rmtree(ss, ignore_errors=True)
                    shutil.rmtree(run / "o-full", ignore_errors=True)
                    gapsync("channel", "init", "bench", "--state", str(ss), "--key", str(run / "keys" / "bench.key"))

                r, _ = timed([*sync, "-o", str(run / "o-full")], reset=fresh_channel)
                m("sync_full", "gapsync sync, first (resolve + scan + bundle)", "gapsync").runs.append(r)
                r, _ = timed([*sync, "-o", str(run / "o-same")], ok_codes=(5,))
                m("sync_nochange", "gapsync sync, nothing changed (pages revalidated)", "gapsync").runs.append(r)
                r, _ = timed([*sync, "-o", str(run / "o-same"), "--resolve-always"], ok_codes=(5,))
                m("sync_resolve", "gapsync sync --resolve-always, nothing changed", "baseline").runs.append(r)
            if not a.keep:
                shutil.rmtree(run)
    out: dict = {"requirements": reqs, "targets": [tid(*t) for t in TARGETS], "wheels": len(wheels), "bytes": total,
                 "latency_ms": a.latency_ms, "measures": {k: v.to_dict() for k, v in ms.items()},
                 "file_set_mismatch": mismatch}
    log(f"\n== {len(wheels)} wheels, {total / MB:,.1f} MB for {len(TARGETS)} targets, "
        f"{a.latency_ms:g} ms per request ==")
    log(measures_table(list(ms.values())))
    ratios = []
    if "total" in ms:
        ratios.append(["resolve + create / pip download x4", f"{ms['total'].wall / ms['pip'].wall:.2f}x"])
    if "sync_nochange" in ms:
        ratios.append(["no-change sync / no-change sync with resolve", f"{ms['sync_nochange'].wall / ms['sync_resolve'].wall:.2f}x"])
        ratios.append(["no-change sync / first sync", f"{ms['sync_nochange'].wall / ms['sync_full'].wall:.2f}x"])
    log(table(ratios, ["pair", "ratio"]))
    out["ratios"] = dict(ratios)
    if mismatch:
        log(f"\nWARNING: pip and gapsync chose different files: {mismatch}")
    elif "pip" in ms:
        log("\npip and gapsync chose the same files for every target")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description="gapsync multi-target Python benchmarks (see the module docstring).")
    ap.add_argument("--part", choices=["resolve-create", "sync", "all"], default="all")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is reported")
    ap.add_argument("--latency-ms", type=float, default=50, help="latency the index server adds per request")
    ap.add_argument("--requirements", nargs="*", help="requirements instead of the default set")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    ap.add_argument("--workdir", type=Path, default=OUT / "work-targets", help="scratch space [bench/out/work-targets]")
    a = ap.parse_args()
    result = {"machine": machine(), "results": run_parts(a)}
    log(f"\nwrote {write_result('bench_python_targets', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
