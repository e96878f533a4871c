"""Benchmarks of gapsync's Python path, each against what a user would do instead by hand.

Part ``create-import`` (warm cache, about 1 GB): 40 valid wheels of ~25 MiB each whose payload is
random (incompressible, stored uncompressed), served as a static PEP 503 index with PEP 658
.metadata files on 127.0.0.1 (by bench/_latency_server.py at 0 ms: a threaded static server like
``python -m http.server``, whose listen backlog of 5 would drop uv's parallel connections).
After one ``bundle create`` that fills the cache, it times

  * ``gapsync bundle create --lock`` from the warm cache (the channel's next version), against
    ``tar cf - FILES | sha256sum`` (read, frame and hash the same bytes; writes nothing), the
    same with ``openssl dgst -sha256`` (coreutils' sha256 does not use the CPU's SHA
    instructions; OpenSSL, which Python's hashlib uses, does), and a manual create,
    ``sha256sum FILES > SHA256SUMS; tar cf bundle.tar ...; sync bundle.tar``;
  * ``gapsync bundle verify`` of that bundle against a freshly pinned mirror (read and check
    every blob, publish nothing), against ``sha256sum FILES`` and ``openssl dgst -sha256 FILES``;
  * ``gapsync import`` into a freshly pinned mirror, against ``sha256sum FILES`` and a manual
    import, ``tar xf bundle.tar; sha256sum -c SHA256SUMS; sync FILES``.

  Both manual workflows run a second time with ``openssl dgst -sha256`` in place of coreutils:
  those are the fair floor (hash, frame, write durably).

  The question is what the signing, the TUF checks and the bundle format cost on top of the
  bytes that must be read, hashed and written anyway: the baselines are that floor.

Part ``cold-download`` (~40 real wheels, ~100 MB): a requirement set that resolves to about 40
wheels for CPython 3.11 on manylinux_2_17_x86_64 is downloaded once from PyPI with pip into a
seed directory (kept in bench/out/seed/), turned into a static index like PyPI's (sha256
fragments, data-requires-python, PEP 658 .metadata files) and served by bench/_latency_server.py,
which adds a fixed latency (50 ms) to every request, as a remote index would. It times, with
empty caches, ``gapsync resolve`` + ``gapsync bundle create --lock`` against ``pip download
--isolated --no-cache-dir --only-binary=:all: --index-url LOCAL`` for the same requirements and
target, and a warm re-run of ``bundle create`` (nothing downloaded). The question is whether
gapsync's two-step path (uv resolves, then gapsync fetches in parallel) is at least as fast as the
tool a user would otherwise reach for. The server counts the requests and bytes of each client.
With ``--index both`` (the default) it runs a second time against a bare index without the
.metadata files (like ``python -m http.server`` over a folder of wheels, which also ignores
Range requests): there the resolver has to read whole wheels to learn their dependencies.

Before each measurement of part create-import the bench writes and deletes 1.2 GB (see
``prime_page_cache`` in _common.py): on this VM, memory idle for ~2 s goes back to the host and
getting it back made the same 1 GB write cost 0.2 s or 1.5-2 s depending on what ran before.

Each part prints a table and ratios (gapsync / baseline: above 1 means gapsync is slower) and
writes bench/out/bench_python.json (and a time-stamped copy). Wall times are medians of
``--repeat`` runs; peak RSS is the largest over the runs (of the process tree: for gapsync
resolve it includes uv). Run: ``.venv/bin/python bench/bench_python.py [--part ...]``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import os
import pstats
import shutil
import sys
import time
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
    clean_env,
    free_port,
    gapsync,
    machine,
    make_wheel,
    measure,
    measures_table,
    prime_page_cache,
    setup_channel,
    sh,
    table,
    write_result,
    write_spec,
)

COLD_REQUIREMENTS = ["boto3", "pandas", "scikit-learn", "requests", "rich", "httpx", "pydantic", "sqlalchemy",
                     "jinja2", "click", "pyyaml", "attrs", "tqdm"]
TARGET_PIP = ["--platform", "manylinux_2_17_x86_64", "--python-version", "3.11", "--implementation", "cp"]


def log(msg: str) -> None:
    print(msg, flush=True)


def ratio(a: Measure, b: Measure) -> str:
    return f"{a.wall / b.wall:.2f}x"


def profile(argv: list[str], prof: Path, top: int = 14) -> str:
    """Run a gapsync command once under cProfile; return the top functions by own time."""
    import subprocess

    r = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), GAPSYNC, *argv],
                       env=clean_env(), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"profiled gapsync {' '.join(argv)} failed: {r.stderr[-1000:]}")
    buf = io.StringIO()
    st = pstats.Stats(str(prof), stream=buf)
    st.strip_dirs().sort_stats("tottime").print_stats(top)
    text = buf.getvalue()
    return text[text.find("   ncalls"):].rstrip() if "   ncalls" in text else text


# -- part a: warm create and import of ~1 GB ------------------------------------------------

def _make_data(data: Path, n: int, mib: int) -> list[Path]:
    files = data / "files"
    want = {"wheels": n, "mib": mib}
    marker = data / "params.json"
    import json

    if marker.exists() and json.loads(marker.read_text()) == want and len(list(files.glob("*.whl"))) == n:
        log(f"reusing {n} wheels in {files}")
        return sorted(files.glob("*.whl"))
    if data.exists():
        shutil.rmtree(data)
    files.mkdir(parents=True)
    log(f"making {n} wheels of {mib} MiB of random bytes in {files} ...")
    t0 = time.perf_counter()
    for i in range(n):
        make_wheel(files, f"gsbench-p{i:02d}", "1.0", os.urandom(mib << 20))
    build_index(files, data)
    marker.write_text(json.dumps(want))
    log(f"  done in {time.perf_counter() - t0:.1f} s")
    return sorted(files.glob("*.whl"))


def part_create_import(a: argparse.Namespace) -> dict:
    work = a.workdir / "create-import"
    data, run, man = work / "data", work / "run", work / "manual"
    wheels = _make_data(data, a.wheels, a.wheel_mib)
    total = sum(w.stat().st_size for w in wheels)
    names = [w.name.split("-")[0].replace("_", "-") for w in wheels]
    fnames = " ".join(w.name for w in wheels)
    files, x = data / "files", man / "x"
    for d in (run, man):
        if d.exists():
            shutil.rmtree(d)
    run.mkdir(parents=True)
    man.mkdir()
    port = free_port()
    ms: dict[str, Measure] = {}
    profiles: dict[str, str] = {}

    def m(key: str, label: str, kind: str, nbytes: int | None = total) -> Measure:
        return ms.setdefault(key, Measure(label, kind, bytes=nbytes))

    def prime() -> None:
        if not a.no_prime:
            prime_page_cache(work)

    # bench/_latency_server.py at 0 ms rather than `python -m http.server`: the latter's listen
    # backlog of 5 drops the SYNs of uv's 40+ parallel connections (1 s retransmits), which
    # would add ~3 s of nothing to `resolve` (seen as TcpExtListenOverflows in `nstat`)
    server = [sys.executable, str(BENCH / "_latency_server.py"), "--dir", str(data), "--port", str(port),
              "--latency", "0"]
    with Server(server, data, f"http://127.0.0.1:{port}/simple/") as srv:
        timed = functools.partial(measure, ours=srv.cpu_seconds)
        url = f"http://127.0.0.1:{port}/simple/"
        key, root = setup_channel(run)
        spec, lock, cache, out = run / "gapsync.yaml", run / "gapsync.lock", run / "cache", run / "out"
        mirror = run / "mirror"
        write_spec(spec, url, names)

        def fresh_mirror() -> None:
            if mirror.exists():
                shutil.rmtree(mirror)
            gapsync("trust", "pin", str(root), "--mirror", str(mirror))

        def empty_cache() -> None:
            for d in ("sha256", "partial"):
                shutil.rmtree(cache / d, ignore_errors=True)
            _rm_bundles(out)

        r, _ = timed([GAPSYNC, "resolve", "-f", str(spec), "-o", str(lock), "--cache", str(cache)],
                       reset=lambda: shutil.rmtree(cache, ignore_errors=True), prepare=prime)
        m("resolve", f"gapsync resolve ({len(names)} projects, local index)", "info", None).runs.append(r)
        create = [GAPSYNC, "bundle", "create", "-f", str(spec), "--lock", str(lock), "--state", str(run / "state"),
                  "--key", str(key), "-o", str(out), "--cache", str(cache)]
        log("warming the cache: bundle create (downloads from the local index) ...")
        r, _ = timed(create, reset=empty_cache, prepare=prime)
        m("create_cold", "gapsync bundle create, cold cache (local index)", "info").runs.append(r)
        for i in range(a.repeat):
            log(f"run {i + 1}/{a.repeat}: gapsync create, verify, import; baselines ...")
            r, _ = timed(create, reset=lambda: _rm_bundles(out), prepare=prime)
            m("create", "gapsync bundle create (warm cache)", "gapsync").runs.append(r)
            bundle = next(out.glob("*.gapsync"))
            r, _ = timed([GAPSYNC, "bundle", "verify", str(bundle), "--mirror", str(mirror)],
                           reset=fresh_mirror, prepare=prime)
            m("verify", "gapsync bundle verify (fresh mirror)", "gapsync").runs.append(r)
            r, _ = timed([GAPSYNC, "import", str(bundle), "--mirror", str(mirror)], reset=fresh_mirror, prepare=prime)
            m("import", "gapsync import (fresh mirror)", "gapsync").runs.append(r)
            if a.profile and i == a.repeat - 1:
                _rm_bundles(out)
                prime()
                profiles["bundle create"] = profile(create[1:], a.workdir / "profile-create.prof")
                bundle = next(out.glob("*.gapsync"))
                fresh_mirror()
                prime()
                profiles["import"] = profile(["import", str(bundle), "--mirror", str(mirror)],
                                             a.workdir / "profile-import.prof")
            shutil.rmtree(mirror)
            _rm_bundles(out)

            ossl = bool(shutil.which("openssl"))  # the same hash with SHA-NI, as Python's hashlib has it
            baselines = [
                ("b_tar_sha", "tar cf - FILES | sha256sum", True,
                 f"tar cf - {fnames} | sha256sum >/dev/null"),
                ("b_tar_ossl", "tar cf - FILES | openssl dgst -sha256", ossl,
                 f"tar cf - {fnames} | openssl dgst -sha256 >/dev/null"),
                ("b_manual_create", "sha256sum > SUMS; tar cf; sync (manual create)", True,
                 f"sha256sum {fnames} > {man}/SUMS && tar cf {man}/b.tar -C {man} SUMS -C {files} {fnames} && "
                 f"sync {man}/b.tar"),
                ("b_manual_create_ossl", "openssl sha256 > SUMS; tar cf; sync (manual create)", ossl,
                 f"openssl dgst -sha256 -r {fnames} > {man}/SUMS.ossl && "
                 f"tar cf {man}/b-ossl.tar -C {man} SUMS.ossl -C {files} {fnames} && sync {man}/b-ossl.tar"),
                ("b_sha", "sha256sum FILES", True, f"sha256sum {fnames} >/dev/null"),
                ("b_ossl", "openssl dgst -sha256 FILES", ossl, f"openssl dgst -sha256 {fnames} >/dev/null"),
                ("b_manual_import", "tar xf; sha256sum -c; sync (manual import)", True,
                 f"mkdir {x} && tar xf {man}/b.tar -C {x} && cd {x} && sha256sum -c --quiet SUMS && sync {fnames}"),
                ("b_manual_import_ossl", "tar xf; openssl sha256 | cmp SUMS; sync (manual import)", ossl,
                 f"mkdir {x} && tar xf {man}/b-ossl.tar -C {x} && cd {x} && "
                 f"openssl dgst -sha256 -r {fnames} | cmp -s - SUMS.ossl && sync {fnames}"),
            ]
            for k, label, wanted, script in baselines:
                if wanted:
                    r, _ = timed(sh(script), cwd=files, reset=lambda: shutil.rmtree(x, ignore_errors=True),
                                   prepare=prime)
                    m(k, label, "baseline").runs.append(r)
            shutil.rmtree(x, ignore_errors=True)
            for p in man.glob("*.tar"):
                p.unlink()

    order = ["create", "b_tar_sha", "b_tar_ossl", "b_manual_create", "b_manual_create_ossl", "verify", "b_sha",
             "b_ossl", "import", "b_manual_import", "b_manual_import_ossl", "resolve", "create_cold"]
    shown = [ms[k] for k in order if k in ms]
    pairs = [("bundle create / tar|sha256sum", "create", "b_tar_sha"),
             ("bundle create / tar|openssl sha256", "create", "b_tar_ossl"),
             ("bundle create / manual create (sha256sum)", "create", "b_manual_create"),
             ("bundle create / manual create (openssl)", "create", "b_manual_create_ossl"),
             ("bundle verify / sha256sum FILES", "verify", "b_sha"),
             ("bundle verify / openssl sha256 FILES", "verify", "b_ossl"),
             ("import / sha256sum FILES", "import", "b_sha"),
             ("import / openssl sha256 FILES", "import", "b_ossl"),
             ("import / manual import (sha256sum)", "import", "b_manual_import"),
             ("import / manual import (openssl)", "import", "b_manual_import_ossl")]
    ratios = [[label, ratio(ms[x], ms[y])] for label, x, y in pairs if x in ms and y in ms]
    log(f"\n== create-import: {len(wheels)} wheels, {total / MB:,.0f} MB, warm page cache ==")
    log(measures_table(shown))
    log("\nratios (wall time, gapsync / baseline):")
    log(table(ratios, ["pair", "ratio"]))
    for what, text in profiles.items():
        log(f"\n-- cProfile of {what} (top by own time) --\n{text}")
    if not a.keep:
        shutil.rmtree(work)
    else:
        log(f"kept {work}")
    return {"wheels": len(wheels), "bytes": total, "measures": {k: v.to_dict() for k, v in ms.items()},
            "ratios": dict(ratios), "profiles": profiles}


def _rm_bundles(out: Path) -> None:
    for p in out.glob("*.gapsync*"):
        p.unlink()


# -- part b: cold download of ~40 real wheels -----------------------------------------------

def _seed(reqs: list[str]) -> Path:
    """The stand-in for PyPI: pip downloads the wheels once; later runs reuse them."""
    tag = hashlib.sha256(" ".join(sorted(reqs)).encode()).hexdigest()[:12]
    seed = OUT / "seed" / f"cp311-manylinux_2_17_x86_64-{tag}"
    if (seed / ".complete").exists():
        log(f"reusing the seed wheels in {seed}")
        return seed
    seed.mkdir(parents=True, exist_ok=True)
    log(f"downloading the seed wheels from PyPI into {seed} ...")
    measure([sys.executable, "-m", "pip", "download", "--isolated", "--no-cache-dir", "--disable-pip-version-check",
             "--only-binary=:all:", *TARGET_PIP, "-q", "-d", str(seed), *reqs], attempts=1)
    (seed / ".complete").write_text("")
    return seed


def _count(logfile: Path, start: int) -> tuple[dict[str, int], int]:
    lines = logfile.read_text().splitlines()
    c = {"pages": 0, "metadata": 0, "wheels": 0, "other": 0, "bytes": 0}
    for ln in lines[start:]:
        parts = ln.split()
        path = parts[1] if len(parts) > 1 else ""
        c["bytes"] += int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 0
        if path.endswith(".whl"):
            c["wheels"] += 1
        elif path.endswith(".metadata"):
            c["metadata"] += 1
        elif "/simple/" in path:
            c["pages"] += 1
        else:
            c["other"] += 1
    return c, len(lines)


def part_cold_download(a: argparse.Namespace, plain: bool) -> dict:
    reqs = a.requirements or COLD_REQUIREMENTS
    seed = _seed(reqs)
    work = a.workdir / ("cold-download-plain" if plain else "cold-download")
    if work.exists():
        shutil.rmtree(work)
    index = work / "index"
    files = index / "files"
    files.mkdir(parents=True)
    for w in seed.glob("*.whl"):
        os.link(w, files / w.name)
    wheels = sorted(files.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels)
    build_index(files, index, core_metadata=not plain)
    port = free_port()
    url = f"http://127.0.0.1:{port}/simple/"
    srvlog = work / "server.log"
    ms: dict[str, Measure] = {}
    requests: dict[str, dict[str, int]] = {}
    mismatch: list[str] = []

    def m(key: str, label: str, kind: str, nbytes: int | None = total) -> Measure:
        return ms.setdefault(key, Measure(label, kind, bytes=nbytes))

    server = [sys.executable, str(BENCH / "_latency_server.py"), "--dir", str(index), "--port", str(port),
              "--latency", str(a.latency_ms / 1000)]
    with Server(server, work, url, log=srvlog) as srv:
        timed = functools.partial(measure, ours=srv.cpu_seconds)
        for i in range(a.repeat):
            log(f"run {i + 1}/{a.repeat}: gapsync resolve + bundle create (empty cache), warm create, pip download ...")
            run = work / f"gapsync-{i}"
            run.mkdir()
            key, _root = setup_channel(run)
            spec, lock, cache, out = run / "gapsync.yaml", run / "gapsync.lock", run / "cache", run / "out"
            pipd = work / f"pip-{i}"
            write_spec(spec, url, reqs)
            mark = {"pos": 0}

            def then(action=None, mark=mark):
                def reset() -> None:
                    if action:
                        action()
                    mark["pos"] = _count(srvlog, 0)[1]  # count only the requests of the kept attempt
                return reset

            def empty_blobs(cache=cache, out=out) -> None:
                for d in ("sha256", "partial"):
                    shutil.rmtree(cache / d, ignore_errors=True)
                _rm_bundles(out)

            r1, _ = timed([GAPSYNC, "resolve", "-f", str(spec), "-o", str(lock), "--cache", str(cache)],
                            reset=then(lambda cache=cache: shutil.rmtree(cache, ignore_errors=True)))
            m("resolve", "gapsync resolve (empty cache)", "gapsync", None).runs.append(r1)
            requests["gapsync resolve"] = _count(srvlog, mark["pos"])[0]
            create = [GAPSYNC, "bundle", "create", "-f", str(spec), "--lock", str(lock), "--state", str(run / "state"),
                      "--key", str(key), "-o", str(out), "--cache", str(cache)]
            r2, _ = timed(create, reset=then(empty_blobs))
            m("create", "gapsync bundle create (empty cache)", "gapsync").runs.append(r2)
            requests["gapsync bundle create"] = _count(srvlog, mark["pos"])[0]
            m("total", "gapsync resolve + bundle create (cold)", "gapsync").runs.append(
                Run(r1.wall + r2.wall, max(r1.maxrss_kb, r2.maxrss_kb), r1.user + r2.user, r1.sys + r2.sys,
                    r1.other_cpu + r2.other_cpu))
            r, _ = timed(create, reset=then(lambda out=out: _rm_bundles(out)))
            m("create_warm", "gapsync bundle create (warm re-run)", "gapsync").runs.append(r)
            requests["gapsync bundle create (warm)"] = _count(srvlog, mark["pos"])[0]
            r, _ = timed([GAPSYNC, "resolve", "-f", str(spec), "-o", str(run / "again.lock"), "--cache", str(cache)],
                           reset=then())
            m("resolve_warm", "gapsync resolve (warm uv cache)", "info", None).runs.append(r)
            requests["gapsync resolve (warm)"] = _count(srvlog, mark["pos"])[0]
            r, _ = timed([sys.executable, "-m", "pip", "download", "--isolated", "--no-cache-dir",
                            "--disable-pip-version-check", "--only-binary=:all:", *TARGET_PIP, "--index-url", url,
                            "-d", str(pipd), *reqs],
                           reset=then(lambda pipd=pipd: shutil.rmtree(pipd, ignore_errors=True)))
            m("pip", "pip download --no-cache-dir (same index)", "baseline").runs.append(r)
            requests["pip download"] = _count(srvlog, mark["pos"])[0]
            locked = {ln.split('"filename": "')[1].split('"')[0] for ln in lock.read_text().splitlines()
                      if '"filename": "' in ln}
            got = {p.name for p in pipd.glob("*.whl")}
            if got != locked:
                mismatch = sorted(got ^ locked)
            if not a.keep:
                shutil.rmtree(pipd)
                shutil.rmtree(run)
    order = ["resolve", "create", "total", "pip", "create_warm", "resolve_warm"]
    shown = [ms[k] for k in order]
    ratios = [
        ["resolve + create (cold) / pip download", ratio(ms["total"], ms["pip"])],
        ["bundle create (cold, after resolve) / pip download", ratio(ms["create"], ms["pip"])],
        ["bundle create (warm) / pip download", ratio(ms["create_warm"], ms["pip"])],
    ]
    kind = "plain PEP 503 (no .metadata)" if plain else "PEP 503 + PEP 658 .metadata, like PyPI"
    log(f"\n== cold-download: {len(wheels)} wheels, {total / MB:,.1f} MB, index {kind}, "
        f"{a.latency_ms:g} ms per request ==")
    log(measures_table(shown))
    log("\nratios (wall time, gapsync / pip):")
    log(table(ratios, ["pair", "ratio"]))
    log("\nrequests seen by the index server (last run):")
    log(table([[k, v["pages"], v["metadata"], v["wheels"], v["other"], f"{v['bytes'] / MB:.1f}"]
               for k, v in requests.items()],
              ["client", "pages", ".metadata", "wheels", "other", "MB sent"]))
    if mismatch:
        log(f"\nWARNING: pip and gapsync chose different files: {mismatch}")
    else:
        log(f"\npip and gapsync chose the same {len(wheels)} files")
    if not a.keep:
        shutil.rmtree(work)
    return {"requirements": reqs, "wheels": len(wheels), "bytes": total, "latency_ms": a.latency_ms,
            "index": kind, "measures": {k: v.to_dict() for k, v in ms.items()}, "ratios": dict(ratios),
            "requests_last_run": requests, "file_set_mismatch": mismatch}


def main() -> int:
    ap = argparse.ArgumentParser(description="gapsync Python-path benchmarks (see the module docstring).")
    ap.add_argument("--part", choices=["create-import", "cold-download", "all"], default="all")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is reported")
    ap.add_argument("--wheels", type=int, default=40, help="create-import: number of wheels")
    ap.add_argument("--wheel-mib", type=int, default=25, help="create-import: payload MiB per wheel")
    ap.add_argument("--latency-ms", type=float, default=50, help="cold-download: latency added per request")
    ap.add_argument("--index", choices=["pep658", "plain", "both"], default="both",
                    help="cold-download: index with PEP 658 .metadata files like PyPI, a bare one, or both")
    ap.add_argument("--requirements", nargs="*", help="cold-download: requirements instead of the default set")
    ap.add_argument("--profile", action="store_true", help="create-import: also run create and import under cProfile")
    ap.add_argument("--no-prime", action="store_true",
                    help="create-import: do not write+delete 1.2 GB before each measurement (see _common.py)")
    ap.add_argument("--keep", action="store_true", help="keep the generated data and work directories")
    ap.add_argument("--workdir", type=Path, default=OUT / "work", help="scratch space [bench/out/work]")
    a = ap.parse_args()
    a.workdir = a.workdir.resolve()
    a.workdir.mkdir(parents=True, exist_ok=True)
    result: dict = {"bench": "bench_python", "machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "repeat": a.repeat}
    try:
        if a.part in ("create-import", "all"):
            result["create_import"] = part_create_import(a)
        if a.part in ("cold-download", "all"):
            if a.index in ("pep658", "both"):
                result["cold_download"] = part_cold_download(a, plain=False)
            if a.index in ("plain", "both"):
                result["cold_download_plain"] = part_cold_download(a, plain=True)
    finally:  # the 1 GB of wheels, the cache and the bundles must not outlive a failed run either
        if not a.keep:
            for d in ("create-import", "cold-download", "cold-download-plain"):
                shutil.rmtree(a.workdir / d, ignore_errors=True)
    end = machine()
    result["gapsync_commit_end"], result["gapsync_dirty_end"] = end.get("gapsync_commit"), end.get("gapsync_dirty")
    if end.get("gapsync_commit") != result["machine"].get("gapsync_commit"):
        log(f"\nWARNING: gapsync changed during the run ({result['machine'].get('gapsync_commit')} -> "
            f"{end.get('gapsync_commit')}): the figures mix two versions")
    path = write_result("bench_python", result)
    log(f"\nresult: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
