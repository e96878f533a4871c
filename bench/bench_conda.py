"""Benchmark of gapsync's conda path against what a user would do by hand.

The channel: ``--packages`` packages for linux-64 (two versions each, the older one smaller)
and a quarter as many ``noarch`` ones, each holding ``--size`` bytes of random (incompressible)
data, plus ``bench-env``, which depends on the newest of each. They are real .conda packages
made by py-rattler-build and indexed by rattler's indexer (each in a process of its own),
served by bench/_latency_server.py with ``--latency`` (50 ms) added to every request, as a
remote channel would.

Measured, each with empty caches, each as a fresh child process:

  * gapsync: ``gapsync resolve`` (repodata over HTTP, py-rattler's solver, the lock) plus
    ``gapsync bundle create --lock`` (download every package into the cache, check sha256, read
    each package for metadata and licenses, sign, write the bundle);
  * by hand: a script that solves ``bench-env`` for linux-64 with py-rattler's ``Gateway`` and
    ``solve`` (a fresh cache), then downloads the same package files with ``requests`` in 8
    threads and checks each sha256: what a user would write to carry an environment's files.

The question is what the lock, the scan, the signature and the bundle cost on top of the solve
and the download that must happen anyway. Prints a table and writes bench/out/bench_conda.json.
Run: ``.venv/bin/python bench/bench_conda.py [--packages 40] [--size 1000000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    GAPSYNC,
    MB,
    Measure,
    clean_env,
    free_port,
    gapsync,
    machine,
    measure,
    measures_table,
    rmtree,
    setup_channel,
    wait_http,
    write_result,
)

BENCH = Path(__file__).resolve().parent

BY_HAND = r'''
import asyncio, hashlib, sys, os
from concurrent.futures import ThreadPoolExecutor
import requests
from rattler import Channel, Gateway, solve

channel, cache, out = sys.argv[1], sys.argv[2], sys.argv[3]

async def main():
    records = await solve([Channel(channel)], ["bench-env"], gateway=Gateway(cache_dir=cache),
                          platforms=["linux-64", "noarch"])
    return [(str(r.url), r.sha256.hex(), str(r.file_name)) for r in records]

records = asyncio.run(main())
os.makedirs(out, exist_ok=True)
session = requests.Session()

def get(rec):
    url, sha, name = rec
    h = hashlib.sha256()
    with session.get(url, stream=True, timeout=60) as r, open(os.path.join(out, name), "wb") as f:
        r.raise_for_status()
        for chunk in r.iter_content(1 << 20):
            h.update(chunk)
            f.write(chunk)
    assert h.hexdigest() == sha, name

with ThreadPoolExecutor(8) as pool:
    list(pool.map(get, records))
print(len(records))
sys.stdout.flush()
os._exit(0)  # py-rattler's runtime threads can crash the interpreter's finalization
'''


def build_channel(out: Path, packages: int, size: int) -> None:
    """Runs in a child (``--build``): py-rattler-build's assembler, never beside rattler."""
    from rattler_build import assemble_package

    def stage(name: str, n: int) -> Path:
        d = Path(tempfile.mkdtemp(prefix="bench-conda-"))
        (d / "share" / name).mkdir(parents=True)
        (d / "share" / name / "data.bin").write_bytes(os.urandom(n))
        return d

    deps = []
    for i in range(packages):
        name = f"bench-lib{i:03d}"
        for version, n in (("1.0", size // 4), ("2.0", size)):
            assemble_package(name, version, "linux-64", "h0_0", out / "linux-64", files_dir=stage(name, n),
                             license="MIT", compression_level=1)
        deps.append(f"{name} >=2")
    for i in range(max(1, packages // 4)):
        name = f"bench-py{i:03d}"
        assemble_package(name, "1.0", "noarch", "h0_0", out / "noarch", files_dir=stage(name, size), license="BSD-3-Clause",
                         noarch="generic", compression_level=1)
        deps.append(name)
    assemble_package("bench-env", "1.0", "linux-64", "h0_0", out / "linux-64", files_dir=stage("bench-env", 16),
                     license="MIT", depends=deps)


INDEX = ("import asyncio, sys; from rattler.index import index_fs; "
         "asyncio.run(index_fs(sys.argv[1], max_parallel=1, write_shards=False))")


def index(chan: Path) -> None:
    for _ in range(5):  # py-rattler 0.28's index_fs dies with SIGSEGV now and then (see tests/conda/conftest.py)
        r = subprocess.run([sys.executable, "-c", INDEX, str(chan)], capture_output=True, text=True)
        if r.returncode == 0:
            return
        for p in chan.glob("*/repodata*"):
            p.unlink()
    raise RuntimeError(f"rattler index failed: {r.stderr[-1000:]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packages", type=int, default=40)
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--build", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.build:
        build_channel(Path(a.build), a.packages, a.size)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-conda-"))
    server = None
    try:
        chan = work / "www" / "chan"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--build", str(chan), "--packages", str(a.packages), "--size", str(a.size)],
                       check=True)
        index(chan)
        print(f"channel built and indexed in {time.perf_counter() - t0:.1f} s", flush=True)
        port = free_port()
        server = subprocess.Popen([sys.executable, str(BENCH / "_latency_server.py"), "--dir", str(work / "www"),
                                   "--port", str(port), "--latency", str(a.latency)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        url = f"http://127.0.0.1:{port}/chan"
        wait_http(f"{url}/noarch/repodata.json", 120, proc=server)
        key, _ = setup_channel(work)
        spec = work / "gapsync.yaml"
        spec.write_text(f"name: bench\nchannel: bench\nconda:\n  channels: [{url}]\n  specs: [bench-env]\n"
                        "  platforms: [linux-64]\n")
        gapsync("resolve", "-f", str(spec), "-o", str(work / "probe.lock"), "--cache", str(work / "probe-cache"))
        lock = json.loads((work / "probe.lock").read_text())["conda"]
        payload = sum(p["size"] for p in lock["packages"])
        files = len(lock["packages"])
        env = clean_env(GAPSYNC_QUIET="1")
        cache, out = work / "cache", work / "out"
        (work / "no-advisories").mkdir()

        def reset() -> None:
            for d in (cache, out, work / "by-hand", work / "rattler-cache"):
                rmtree(d)

        script = ["sh", "-c", f'"{GAPSYNC}" resolve -f "{spec}" -o "{work}/g.lock" --cache "{cache}" && '
                  f'"{GAPSYNC}" bundle create -f "{spec}" --lock "{work}/g.lock" --state "{work}/state" --key "{key}" '
                  f'-o "{out}" --cache "{cache}" --advisories "{work}/no-advisories"']
        ours = Measure("gapsync resolve + bundle create (cold)", "gapsync", bytes=payload)
        hand = Measure("by hand: py-rattler solve + download (8 threads, sha256)", "baseline", bytes=payload)
        for _ in range(a.repeat):
            ours.runs.append(measure(script, env=env, reset=reset)[0])
            hand.runs.append(measure([sys.executable, "-c", BY_HAND, url, str(work / "rattler-cache"), str(work / "by-hand")],
                                     env=env, reset=reset)[0])
        print(f"\n{files} package files, {payload / MB:.0f} MB, {a.latency * 1000:.0f} ms per request\n")
        print(measures_table([ours, hand]))
        print(f"\nratio gapsync / by hand: {ours.wall / hand.wall:.2f} (wall), {ours.cpu / hand.cpu:.2f} (cpu)")
        path = write_result("bench_conda", {"machine": machine(), "packages": a.packages, "size": a.size,
                                            "latency_s": a.latency, "files": files, "payload_bytes": payload,
                                            "measures": [ours.to_dict(), hand.to_dict()]})
        print(f"wrote {path}")
    finally:
        if server is not None:
            os.killpg(server.pid, 15)
            server.wait()
        rmtree(work)


if __name__ == "__main__":
    main()
