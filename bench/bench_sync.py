"""Benchmark of the scheduled job, ``gapsync sync``: what a delta costs and what "nothing new" costs.

Set-up: a channel of about 1 GB, 40 valid wheels of 25 MiB each whose payload is random
(incompressible, stored), in a static PEP 503 index with PEP 658 ``.metadata`` files served on
127.0.0.1 by this script itself (``--serve``: a threaded static server whose listen backlog does not
drop uv's parallel connections, that logs ``METHOD PATH STATUS BYTES`` for every request, and
sends ``Cache-Control: max-age=0``). That header matters: uv keeps index pages without it for 600 s
and would not ask again (see tests/test_sync_scenario.py); with it, every run revalidates every page,
as a daily timer's run does against any index once uv's 600 s have passed. The requirements are the
40 project names, unpinned.

Part (a), the delta after one package changed:
  1. ``gapsync sync`` (the first: a full bundle; timed once);
  2. one project gets a new release upstream (a new 25 MiB wheel, version 1.1, nothing else);
  3. ``gapsync sync`` again: a delta. Reported: the delta bundle's bytes against the changed bytes
     (the new wheel), the overhead split into metadata members (TUF metadata, bundle.json, the
     SBOM, the wheel's .metadata) and tar framing, and what was downloaded (server log).
     Goal: within 1 % of the changed bytes, plus the metadata.

Part (b), ``gapsync sync`` when nothing changed (exit 5), ``--repeat`` times (median): its wall
time (goal: seconds) and the server log of each run, which must show no wheel fetched (pages and
their revalidation only).

Prints a table, writes bench/out/bench_sync.json (and a time-stamped copy), and deletes the
~3 GB it wrote (index, cache, bundles) unless ``--keep``. Run:
``.venv/bin/python bench/bench_sync.py [--wheels 40] [--wheel-mib 25] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tarfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402 - the helpers live next to this script
    GAPSYNC,
    MB,
    OUT,
    Measure,
    Server,
    build_index,
    free_port,
    machine,
    make_wheel,
    measure,
    setup_channel,
    sha256_file,
    table,
    write_result,
    write_spec,
)

PROJECT = "gsbsync-p{:02d}"
CHANGED = 7  # the project that gets a new release (the last one with fewer than 8 wheels)


def log(msg: str) -> None:
    print(msg, flush=True)


# -- the index server (this script with --serve) ---------------------------------------------

def serve(root: str, port: int) -> None:
    lock = threading.Lock()

    class Handler(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def __init__(self, *args, **kw):
            super().__init__(*args, directory=root, **kw)

        def end_headers(self) -> None:
            self.send_header("Cache-Control", "max-age=0")
            super().end_headers()

        def _logged(self, method) -> None:
            self._code, self._sent = "-", 0
            try:
                method()
            finally:
                with lock:
                    sys.stdout.write(f"{self.command} {self.path} {self._code} {self._sent}\n")
                    sys.stdout.flush()

        def do_GET(self) -> None:  # noqa: N802 - the base class's name
            self._logged(super().do_GET)

        def do_HEAD(self) -> None:  # noqa: N802
            self._logged(super().do_HEAD)

        def copyfile(self, source, outputfile) -> None:
            while chunk := source.read(1 << 16):
                outputfile.write(chunk)
                self._sent += len(chunk)

        def log_request(self, code="-", size="-") -> None:
            self._code = getattr(code, "value", code)

        def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's signature
            pass

    class Httpd(ThreadingHTTPServer):
        request_queue_size = 128
        daemon_threads = True

    Httpd(("127.0.0.1", port), Handler).serve_forever()


class RequestLog:
    """The server's log, read by phase: what each command asked for."""

    def __init__(self, path: Path):
        self.path = path
        self.mark = 0

    def since_mark(self) -> dict:
        lines = self.path.read_text().splitlines()
        new, self.mark = lines[self.mark:], len(lines)
        c = {"requests": 0, "pages": 0, "pages_not_modified": 0, "metadata_files": 0, "wheel_requests": 0,
             "wheel_bytes": 0, "bytes": 0, "wheels": []}
        for ln in new:
            method, path, code, sent = (ln.split() + ["", "", "", "0"])[:4]
            if path == "/":
                continue  # the readiness probe
            c["requests"] += 1
            c["bytes"] += int(sent) if sent.isdigit() else 0
            if path.endswith(".whl"):
                c["wheel_requests"] += 1
                c["wheel_bytes"] += int(sent) if sent.isdigit() else 0
                c["wheels"].append(f"{method} {path.rsplit('/', 1)[-1]} {code}")
            elif path.endswith(".metadata"):
                c["metadata_files"] += 1
            elif "/simple/" in path:
                c["pages"] += 1
                c["pages_not_modified"] += code == "304"
        return c


# -- the bench -------------------------------------------------------------------------------

def bundle_breakdown(bundle: Path, changed_digest: str) -> dict:
    """Where a bundle's bytes go: the changed wheel's blob, the other members, tar framing."""
    out = {"file_bytes": bundle.stat().st_size, "changed_blob": 0, "metadata_members": 0, "other_blobs": 0,
           "members": {}}
    with tarfile.open(bundle) as tf:
        targets = json.loads(tf.extractfile("metadata/targets.json").read())["signed"]["targets"]
        by_digest = {t["hashes"]["sha256"]: p for p, t in targets.items()}
        for m in tf.getmembers():
            if not m.isfile():
                continue
            digest = m.name.rsplit("/", 1)[-1]
            what = m.name if m.name.startswith("metadata/") else by_digest.get(digest, m.name)
            out["members"][what] = m.size
            if digest == changed_digest:
                out["changed_blob"] += m.size
            elif m.name.startswith("metadata/") or (what.startswith(("gapsync/", "python/"))
                                                    and what.endswith((".json", ".metadata"))):
                out["metadata_members"] += m.size
            else:
                out["other_blobs"] += m.size
    out["tar_framing"] = out["file_bytes"] - out["changed_blob"] - out["metadata_members"] - out["other_blobs"]
    return out


def run(a: argparse.Namespace) -> dict:
    work = a.workdir
    if work.exists():
        shutil.rmtree(work)
    data, files = work / "index", work / "index" / "files"
    files.mkdir(parents=True)
    log(f"making {a.wheels} wheels of {a.wheel_mib} MiB of random bytes in {files} ...")
    t0 = time.perf_counter()
    for i in range(a.wheels):
        make_wheel(files, PROJECT.format(i), "1.0", os.urandom(a.wheel_mib << 20))
    build_index(files, data)
    total = sum(w.stat().st_size for w in files.glob("*.whl"))
    log(f"  {total / MB:,.0f} MB in {time.perf_counter() - t0:.1f} s")

    port = free_port()
    url = f"http://127.0.0.1:{port}/simple/"
    srvlog = work / "server.log"
    requests = RequestLog(srvlog)
    result: dict = {"wheels": a.wheels, "wheel_mib": a.wheel_mib, "channel_bytes": total,
                    "index": "static, PEP 658 .metadata files, Cache-Control: max-age=0 (every run revalidates)"}
    with Server([sys.executable, str(Path(__file__).resolve()), "--serve", str(data), str(port)], data, url, log=srvlog):
        key, _root = setup_channel(work)
        spec, state, cache = work / "gapsync.yaml", work / "state", work / "cache"
        write_spec(spec, url, [PROJECT.format(i) for i in range(a.wheels)])

        def sync(out: Path) -> list[str]:
            return [GAPSYNC, "sync", "-f", str(spec), "--state", str(state), "--key", str(key), "-o", str(out),
                    "--cache", str(cache), "--json"]

        requests.since_mark()
        log("sync 1: the first, a full bundle (downloads ~1 GB from the local index) ...")
        r_full, p = measure(sync(work / "out-1"), attempts=1)
        full = json.loads(p.stdout)
        assert full["kind"] == "full", full
        full_requests = requests.since_mark()

        changed = PROJECT.format(min(CHANGED, a.wheels - 1))
        log(f"one project gets a new release upstream: {changed} 1.1 ...")
        new = make_wheel(files, changed, "1.1", os.urandom(a.wheel_mib << 20))
        build_index(files, data)
        changed_bytes, changed_digest = new.stat().st_size, sha256_file(new)
        log("sync 2: a delta ...")
        r_delta, p = measure(sync(work / "out-2"), attempts=1)
        delta = json.loads(p.stdout)
        assert delta["kind"] == "delta", delta
        delta_requests = requests.since_mark()
        bundle = Path(delta["bundle"])
        parts = bundle_breakdown(bundle, changed_digest)
        assert parts["changed_blob"] == changed_bytes and parts["other_blobs"] == 0, parts
        overhead = parts["file_bytes"] - changed_bytes

        nothing = Measure("gapsync sync, nothing changed (exit 5)", "gapsync")
        nothing_requests = []
        for i in range(a.repeat):
            log(f"sync, nothing changed: run {i + 1}/{a.repeat} ...")
            # prepare runs before each attempt (measure runs a disturbed one again): count the last one only
            r, p = measure(sync(work / "out-nothing"), ok_codes=(5,), prepare=requests.since_mark)
            assert json.loads(p.stdout)["nothing_new"] is True
            nothing.runs.append(r)
            nothing_requests.append(requests.since_mark())
            assert not (work / "out-nothing").exists()
        fetched = [c["wheels"] for c in nothing_requests if c["wheel_requests"]]

    result.update({
        "full": {"bundle_bytes": full["bundle_size"], "wall_s": round(r_full.wall, 2), "cpu_s": round(r_full.user + r_full.sys, 2),
                 "peak_rss_mb": round(r_full.maxrss_kb / 1024), "downloaded_bytes": full["downloaded_bytes"],
                 "requests": {k: v for k, v in full_requests.items() if k != "wheels"}},
        "delta": {"bundle_bytes": parts["file_bytes"], "changed_bytes": changed_bytes, "overhead_bytes": overhead,
                  "overhead_pct_of_changed": round(100 * overhead / changed_bytes, 3),
                  "metadata_members_bytes": parts["metadata_members"], "tar_framing_bytes": parts["tar_framing"],
                  "members": parts["members"], "blobs_carried": delta["blobs_carried"],
                  "wall_s": round(r_delta.wall, 2), "cpu_s": round(r_delta.user + r_delta.sys, 2),
                  "downloaded_bytes": delta["downloaded_bytes"], "requests": delta_requests,
                  # the goal: within 1 % of the changed bytes plus the metadata (tar framing counts in the 1 %)
                  "goal_met": parts["file_bytes"] - parts["metadata_members"] <= changed_bytes * 1.01},
        "nothing_new": {**nothing.to_dict(), "requests": nothing_requests, "wheels_fetched": fetched,
                        "goal_met": not fetched and nothing.wall < 10},
    })

    d, n = result["delta"], result["nothing_new"]
    rows = [
        ["channel", f"{a.wheels} wheels x {a.wheel_mib} MiB", f"{total / MB:,.1f} MB"],
        ["sync 1 (full): bundle", f"{full['bundle_size'] / MB:,.1f} MB", f"{r_full.wall:.1f} s"],
        ["sync 2 (delta, 1 project bumped): bundle", f"{d['bundle_bytes']:,} B", f"{r_delta.wall:.1f} s"],
        ["  changed bytes (the new wheel)", f"{changed_bytes:,} B", ""],
        ["  overhead (bundle - changed)", f"{overhead:,} B", f"{d['overhead_pct_of_changed']:.3f} %"],
        ["    metadata members (TUF, bundle.json, SBOM, .metadata)", f"{d['metadata_members_bytes']:,} B", ""],
        ["    tar framing (headers, padding, end)", f"{d['tar_framing_bytes']:,} B", ""],
        ["  downloaded by sync 2 (wheel bytes served)", f"{delta_requests['wheel_bytes']:,} B",
         f"{delta_requests['wheel_requests']} wheel request(s)"],
        ["sync, nothing changed (exit 5), median", f"{n['wall_s_median']:.2f} s",
         f"{len(nothing.runs)} runs, {min(n['wall_s_all']):.2f}-{max(n['wall_s_all']):.2f} s"],
        *[[f"  run {i + 1}: index requests", f"{c['requests']} ({c['bytes']:,} B)",
            f"{c['pages']} pages ({c['pages_not_modified']} x 304), {c['metadata_files']} .metadata, "
            f"{c['wheel_requests']} wheels"] for i, c in enumerate(nothing_requests)],
    ]
    log("\n== sync: delta after one package changed, and nothing changed ==")
    log(table(rows, ["what", "value", ""]))
    log(f"\ngoal (a) delta within 1 % of the changed bytes plus metadata: {'met' if d['goal_met'] else 'NOT met'}")
    log(f"goal (b) nothing-new in seconds, no wheel downloaded: {'met' if n['goal_met'] else 'NOT met'}"
        + (f" (fetched: {fetched})" if fetched else ""))
    if statistics.median(r.other_cpu for r in nothing.runs) > 0.5:
        log("WARNING: other processes used CPU during the nothing-new runs; run again on a quiet machine")
    return result


def main(argv: list[str]) -> int:
    if argv[:1] == ["--serve"]:
        serve(argv[1], int(argv[2]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheels", type=int, default=40)
    ap.add_argument("--wheel-mib", type=int, default=25)
    ap.add_argument("--repeat", type=int, default=3, help="runs of the nothing-new sync (median)")
    ap.add_argument("--workdir", type=Path, default=OUT / "work" / "sync")
    ap.add_argument("--keep", action="store_true", help="keep the index, cache and bundles")
    a, _unknown = ap.parse_known_args(argv)  # run_all.py passes the same arguments to every script
    try:
        result = run(a)
    finally:
        if not a.keep:
            shutil.rmtree(a.workdir, ignore_errors=True)
        else:
            log(f"kept {a.workdir}")
    path = write_result("bench_sync", {"machine": machine(), "result": result})
    log(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
