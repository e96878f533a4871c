"""What bounding the upstream costs and saves (issue 13 §4).

Part ``proxy``: ``resolve`` reads the index through gapsync's capping loopback proxy (uv never
reads an uncapped page). Its cost: the Python resolve of a synthetic environment (40 projects
required at the top, 3 versions each, 2 targets) against bench/_latency_server.py at
``--latency`` (default 50 ms, a remote index, as bench_python_targets.py), with the proxy and
with uv pointed at the index directly (the proxy replaced by a pass-through in this process).
Medians of ``--repeat`` runs.

Part ``huge-page``: an 81 MB project page (tests/support/servers/hostile_upstream.py ``huge-page``,
no Content-Length) against ``gapsync resolve``: wall time and the peak RSS of the process tree
(gapsync and uv), and uv alone on the same page (what resolve cost before the proxy).

Writes bench/out/bench_upstream.json. Run:
``.venv/bin/python bench/bench_upstream.py [--part proxy|huge-page|all] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402
    BENCH,
    GAPSYNC,
    Server,
    build_index,
    clean_env,
    free_port,
    machine,
    make_wheel,
    table,
    write_result,
)

ROOT = BENCH.parent


def proxy_part(repeat: int, latency: float) -> dict:
    from gapsync.bundler.cache import BlobCache
    from gapsync.bundler.sources import pypi
    from gapsync.bundler.spec import load_spec

    work = Path(tempfile.mkdtemp(prefix="bench-upstream-"))
    names = [f"chain{i}" for i in range(40)]
    files = work / "index" / "files"
    files.mkdir(parents=True)
    for n in names:
        for v in ("1.0", "1.1", "2.0"):
            make_wheel(files, n, v, f"{n} {v}".encode())
    build_index(files, work / "index")
    port = free_port()
    srv = Server([sys.executable, str(BENCH / "_latency_server.py"), "--dir", str(work / "index"), "--port", str(port),
                  "--latency", str(latency)], work, f"http://127.0.0.1:{port}/simple/")
    spec = work / "g.yaml"
    spec.write_text(f"name: b\nchannel: bench\npython:\n  index_url: {srv.url}\n  requirements: {names!r}\n"
                    "  targets:\n    - {python: '3.11', platform: manylinux_2_17_x86_64}\n"
                    "    - {python: '3.12', platform: manylinux_2_17_x86_64}\n")

    class Passthrough:
        def __init__(self, url: str):
            self.url, self.refused = url, []

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    def runs(label: str) -> list[float]:
        out = []
        for k in range(repeat):
            t = time.monotonic()
            pypi.resolve(load_spec(spec), BlobCache(work / f"cache-{label}-{k}"), jobs=4)
            out.append(time.monotonic() - t)
        return out

    try:
        real = pypi.IndexProxy
        proxied = runs("proxy")
        pypi.IndexProxy = Passthrough
        try:
            direct = runs("direct")
        finally:
            pypi.IndexProxy = real
    finally:
        srv.stop()
    return {"projects": len(names), "versions": 3, "targets": 2, "latency_s": latency,
            "proxy_s": statistics.median(proxied), "direct_s": statistics.median(direct),
            "runs": {"proxy": proxied, "direct": direct}}


def _tree(argv: list[str], env: dict) -> dict:
    probe = ("import json, resource, subprocess, sys, time\n"
             "t = time.monotonic()\n"
             "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "print(json.dumps({'code': r.returncode, 'err': r.stderr.strip().splitlines()[-1:],"
             " 'seconds': time.monotonic() - t,"
             " 'maxrss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))")
    r = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, env=env, timeout=600)
    return json.loads(r.stdout)


def huge_page_part() -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-hugepage-"))
    port = free_port()
    srv = Server([sys.executable, str(ROOT / "tests/support/servers/hostile_upstream.py"), str(port), "--mode", "huge-page"],
                 work, f"http://127.0.0.1:{port}/health")
    try:
        spec = work / "g.yaml"
        spec.write_text(f"name: b\nchannel: bench\npython:\n  index_url: http://127.0.0.1:{port}/simple/\n"
                        "  requirements: ['x']\n  targets:\n    - {python: '3.11', platform: manylinux_2_17_x86_64}\n")
        gs = _tree([GAPSYNC, "resolve", "-f", str(spec), "-o", str(work / "lock"), "--cache", str(work / "c")], clean_env())
        req = work / "req.in"
        req.write_text("x\n")
        uv = str(Path(sys.executable).with_name("uv"))
        uv_alone = _tree([uv, "pip", "compile", "--no-config", "--quiet", "--python-version", "3.11",
                          "--index-url", f"http://127.0.0.1:{port}/simple/", "--cache-dir", str(work / "uvc"),
                          "--refresh", str(req)], clean_env())
    finally:
        srv.stop()
    return {"page_mb": 81, "gapsync_resolve": gs, "uv_alone": uv_alone}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("proxy", "huge-page", "all"), default="all")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--latency", type=float, default=0.05)
    a = ap.parse_args(argv)
    result: dict = {"machine": machine()}
    if a.part in ("proxy", "all"):
        p = result["proxy"] = proxy_part(a.repeat, a.latency)
        print(table([["through the proxy", f"{p['proxy_s']:.2f} s"], ["uv direct", f"{p['direct_s']:.2f} s"],
                     ["ratio", f"{p['proxy_s'] / p['direct_s']:.2f}x"]],
                    ["resolve, 40 projects x 3 versions, 2 targets", f"median of {a.repeat}"]))
    if a.part in ("huge-page", "all"):
        h = result["huge_page"] = huge_page_part()
        print(table([["gapsync resolve", f"{h['gapsync_resolve']['seconds']:.2f} s", f"{h['gapsync_resolve']['maxrss_mb']:.0f} MB",
                      str(h["gapsync_resolve"]["code"])],
                     ["uv alone", f"{h['uv_alone']['seconds']:.2f} s", f"{h['uv_alone']['maxrss_mb']:.0f} MB",
                      str(h["uv_alone"]["code"])]],
                    ["81 MB project page", "wall", "peak RSS (largest process)", "exit"]))
    print(write_result("bench_upstream", result))
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    sys.exit(main(sys.argv[1:]))
