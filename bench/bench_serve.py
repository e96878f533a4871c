"""Benchmarks of ``gapsync serve`` (the WSGI app under waitress), each against the floor.

Part ``compile``: ``uv pip compile --no-cache`` of a large environment (50 requirements that
resolve to about 195 packages for CPython 3.11 on manylinux_2_28_x86_64) against the mirror's
index served by ``gapsync serve``, and against the same index directory over ``file://`` (no
server at all: the floor). The index is this machine's local PyPI copy (/opt/pypi: real wheels,
one version per project, ~840 projects), laid out as gapsync's importer lays out a mirror
(``pypi/files`` hard links to the wheels plus PEP 658 ``.metadata`` files, ``pypi/simple`` PEP 503
HTML and PEP 691 JSON pages with hashes and ``data-requires-python``). Without /opt/pypi, 170
generated projects with a deep dependency graph (three versions each) stand in. The target is
serve within 1.2x of file:// (issue 13: the old ``http.server`` with its listen backlog of 5
dropped 247 connections and took 14-24 s against 7.7 s).

Part ``pull``: an OCI layout holding 1 GiB of random blobs (16 x 64 MiB), served by ``gapsync
serve``; 64 clients at once (curl processes, one keep-alive connection each) each pull every
blob once (64 GiB sent in all). Reported: wall time, aggregate throughput, serve's peak RSS (its
``VmHWM``) and CPU time. The target is a peak RSS under 200 MB whatever the number of clients.

Writes bench/out/bench_serve.json (and a time-stamped copy). Run:
``.venv/bin/python bench/bench_serve.py [--part compile|pull|all] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402 - the helpers live next to this script
    GAPSYNC,
    MB,
    OUT,
    VENV_BIN,
    Measure,
    Server,
    clean_env,
    free_port,
    machine,
    measure,
    measures_table,
    sha256_file,
    table,
    write_result,
)

LOCAL_PYPI = Path("/opt/pypi")
# resolves to ~195 packages from LOCAL_PYPI (the projects it lacks were left out)
REQUIREMENTS = [
    "transformers", "fastapi", "sqlalchemy", "pandas", "scikit-learn", "aiohttp", "sphinx", "dask", "boto3",
    "uvicorn", "httpx", "pydantic", "requests", "flask", "django", "streamlit", "matplotlib", "scipy", "pytest",
    "black", "mypy", "alembic", "anthropic", "openai", "datasets", "psycopg", "python-igraph", "cartopy", "keras",
    "nbconvert", "rich", "wordcloud", "biopython", "librosa", "cbor2", "colorlog", "mako", "python-slugify", "bokeh",
    "xarray", "bcrypt", "tenacity", "configargparse", "time-machine", "apsw", "xxhash", "bitarray", "sqlparse",
    "nats-py", "highspy",
]
PLATFORM = ["--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28"]


def log(msg: str) -> None:
    print(msg, flush=True)


# -- the index, laid out as the importer lays out MIRROR/pypi -----------------------------------
def _metadata(whl: Path) -> bytes:
    with zipfile.ZipFile(whl) as zf:
        name = next(n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        return zf.read(name)


def index_rows(files: Path) -> dict[str, list[dict]]:
    """Per project, its wheels with sha256, core metadata digest and Requires-Python (and the
    PEP 658 ``.metadata`` file written beside each wheel)."""
    from email.parser import BytesHeaderParser

    from packaging.utils import canonicalize_name, parse_wheel_filename

    projects: dict[str, list[dict]] = {}
    for whl in sorted(files.glob("*.whl")):
        meta = _metadata(whl)
        (files / f"{whl.name}.metadata").write_bytes(meta)
        rp = BytesHeaderParser().parsebytes(meta).get("Requires-Python")
        projects.setdefault(str(canonicalize_name(parse_wheel_filename(whl.name)[0])), []).append(
            {"filename": whl.name, "sha256": sha256_file(whl), "meta": hashlib.sha256(meta).hexdigest(),
             "rp": str(rp).strip() if rp else None})
    return projects


def write_pages(pypi: Path, projects: dict[str, list[dict]], core_metadata: bool) -> None:
    """PEP 503 HTML and PEP 691 JSON pages as the importer writes them (with PEP 658 metadata
    links, or, for the bare variant, without: clients then read the wheels themselves)."""
    for name, rows in projects.items():
        d = pypi / "simple" / name
        d.mkdir(parents=True, exist_ok=True)
        links, entries = [], []
        for r in rows:
            attrs = f'href="../../files/{r["filename"]}#sha256={r["sha256"]}"'
            entry = {"filename": r["filename"], "url": f"../../files/{r['filename']}", "hashes": {"sha256": r["sha256"]},
                     "requires-python": r["rp"]}
            if r["rp"]:
                attrs += f' data-requires-python="{html.escape(r["rp"])}"'
            if core_metadata:
                attrs += f' data-dist-info-metadata="sha256={r["meta"]}" data-core-metadata="sha256={r["meta"]}"'
                entry["core-metadata"] = {"sha256": r["meta"]}
            links.append(f'<a {attrs}>{html.escape(r["filename"])}</a><br/>\n')
            entries.append(entry)
        (d / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "".join(links) + "</body></html>\n")
        (d / "index.json").write_text(json.dumps({"meta": {"api-version": "1.1"}, "name": name, "files": entries}))
    names = sorted(projects)
    (pypi / "simple/index.html").write_text("".join(f'<a href="{n}/">{n}</a>\n' for n in names))
    (pypi / "simple/index.json").write_text(json.dumps({"meta": {"api-version": "1.1"},
                                                        "projects": [{"name": n} for n in names]}))


def synthetic_wheels(files: Path, projects: int = 170) -> list[str]:
    """``projects`` projects, three versions each; p<i> depends on p<2i+1> and p<2i+2> (a tree
    ~8 levels deep) and, from version 2 on, on p<i+1>: every project ends up in the solution."""
    for i in range(projects):
        for v in (1, 2, 3):
            deps = [f"p{j}>={min(v, 2)}" for j in (2 * i + 1, 2 * i + 2) if j < projects]
            if v >= 2 and i + 1 < projects:
                deps.append(f"p{i + 1}")
            meta = "".join([f"Metadata-Version: 2.1\nName: p{i}\nVersion: {v}.0\nRequires-Python: >=3.8\n",
                            *(f"Requires-Dist: {d}\n" for d in sorted(set(deps)))])
            dist = f"p{i}-{v}.0.dist-info"
            with zipfile.ZipFile(files / f"p{i}-{v}.0-py3-none-any.whl", "w") as zf:
                zf.writestr(f"p{i}/__init__.py", "")
                zf.writestr(f"{dist}/METADATA", meta)
                zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
                zf.writestr(f"{dist}/RECORD", "")
    return ["p0"]


def _link_all(src: Path, dst: Path, pattern: str) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob(pattern)):
        try:
            os.link(f, dst / f.name)  # same file system: no second copy
        except OSError:
            shutil.copyfile(f, dst / f.name)


def build_mirrors(w: Path) -> tuple[dict[str, Path], list[str], str]:
    """MIRROR/pypi for part compile, twice: as the importer publishes it (PEP 658 metadata) and
    bare (wheels only, like the local PyPI copy itself). Kept between runs: building hashes ~3.6 GB."""
    mirrors = {"metadata": w / "mirror", "bare": w / "mirror-bare"}
    done = w / "mirrors-done.json"
    source = "local PyPI copy (/opt/pypi)" if (LOCAL_PYPI / "files").is_dir() else "170 generated projects"
    if done.exists():
        return mirrors, json.loads(done.read_text()), source
    for m in mirrors.values():
        shutil.rmtree(m, ignore_errors=True)
    files = mirrors["metadata"] / "pypi/files"
    files.mkdir(parents=True)
    if (LOCAL_PYPI / "files").is_dir():
        _link_all(LOCAL_PYPI / "files", files, "*.whl")
        reqs = REQUIREMENTS
    else:
        reqs = synthetic_wheels(files)
    t0 = time.perf_counter()
    projects = index_rows(files)
    write_pages(mirrors["metadata"] / "pypi", projects, core_metadata=True)
    _link_all(files, mirrors["bare"] / "pypi/files", "*.whl")
    write_pages(mirrors["bare"] / "pypi", projects, core_metadata=False)
    log(f"  indexes of {sum(len(r) for r in projects.values())} files written in {time.perf_counter() - t0:.1f} s")
    done.write_text(json.dumps(reqs))
    return mirrors, reqs, source


def part_compile(a: argparse.Namespace, w: Path) -> dict:
    mirrors, reqs, source = build_mirrors(w)
    req_in = w / "requirements.in"
    req_in.write_text("\n".join(reqs) + "\n")
    uv = str(VENV_BIN / "uv") if (VENV_BIN / "uv").exists() else "uv"
    env = clean_env(UV_PYTHON_DOWNLOADS="never", UV_NO_CACHE="1")
    out: dict = {"source": source, "requirements": len(reqs)}
    for variant in (["metadata", "bare"] if a.index == "both" else [a.index]):
        log(f"== part compile ({variant} index): uv pip compile against gapsync serve vs file://")
        mirror = mirrors[variant]
        port = free_port()
        counts: dict[str, int] = {}
        with Server([GAPSYNC, "serve", "--mirror", str(mirror), "--listen", f"127.0.0.1:{port}"], w,
                    f"http://127.0.0.1:{port}/simple/") as srv:
            ways = {"uv pip compile, file://": f"file://{mirror}/pypi/simple",
                    "uv pip compile, gapsync serve": f"http://127.0.0.1:{port}/simple/"}
            results = [Measure(label, "baseline" if "file" in label else "gapsync") for label in ways]

            def argv(url: str, dest: Path) -> list[str]:
                return [uv, "pip", "compile", "--no-config", "--no-cache", "-q", *PLATFORM, "--index-url", url,
                        str(req_in), "-o", str(dest)]

            for url in ways.values():  # warm-up, not timed: both read the same files from the page cache
                subprocess.run(argv(url, w / "warm.txt"), env=env, check=True, capture_output=True)
            cpu0 = srv.cpu_seconds()
            for _ in range(a.repeat):  # interleaved, so that a busy moment of the machine hits both
                for m, (label, url) in zip(results, ways.items(), strict=True):
                    dest = w / f"out-{variant}-{label.rsplit(' ', 1)[-1].strip(':/')}.txt"
                    run, _r = measure(argv(url, dest), env=env, ours=srv.cpu_seconds)
                    m.runs.append(run)
                    counts[label] = sum(1 for ln in dest.read_text().splitlines() if re.match(r"^[a-z0-9].*==", ln))
            server_cpu = (srv.cpu_seconds() - cpu0) / a.repeat
            server_rss = peak_rss_mb(srv.proc.pid)
        log(measures_table(results))
        ratio = results[1].wall / results[0].wall
        log(f"  packages resolved: {counts}; serve / file:// = {ratio:.2f} (target <= 1.2); serve cpu {server_cpu:.2f} s"
            f" per compile, peak RSS {server_rss:.0f} MB")
        if len(set(counts.values())) != 1:
            raise RuntimeError(f"the two resolutions differ: {counts}")
        out[variant] = {"packages": next(iter(counts.values())), "ratio_serve_over_file": round(ratio, 3),
                        "serve_cpu_s_per_compile": round(server_cpu, 3), "serve_peak_rss_mb": round(server_rss, 1),
                        "measures": [m.to_dict() for m in results]}
    return out


# -- part pull -----------------------------------------------------------------------------------
def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def build_layout(w: Path, blobs: int, blob_mib: int) -> tuple[Path, list[str]]:
    mirror = w / "pull-mirror"
    oci = mirror / "oci"
    done = mirror / ".bench-done"
    if done.exists() and json.loads(done.read_text())["shape"] == [blobs, blob_mib]:
        return mirror, json.loads(done.read_text())["digests"]
    shutil.rmtree(mirror, ignore_errors=True)
    (oci / "blobs/sha256").mkdir(parents=True)
    digests = []
    for _ in range(blobs):
        data = os.urandom(blob_mib << 20)
        d = hashlib.sha256(data).hexdigest()
        (oci / "blobs/sha256" / d).write_bytes(data)
        digests.append("sha256:" + d)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cd = hashlib.sha256(config).hexdigest()
    (oci / "blobs/sha256" / cd).write_bytes(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": f"sha256:{cd}",
                                      "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d,
                                       "size": blob_mib << 20} for d in digests]}).encode()
    md = hashlib.sha256(manifest).hexdigest()
    (oci / "blobs/sha256" / md).write_bytes(manifest)
    (oci / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (oci / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{md}", "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": "docker.io/bench/big:1.0"}}]}))
    done.write_text(json.dumps({"shape": [blobs, blob_mib], "digests": digests}))
    return mirror, digests


def part_pull(a: argparse.Namespace, w: Path) -> dict:
    log(f"== part pull: {a.clients} clients pulling {a.blobs} x {a.blob_mib} MiB of blobs each from gapsync serve")
    mirror, digests = build_layout(w, a.blobs, a.blob_mib)
    port = free_port()
    with Server([GAPSYNC, "serve", "--mirror", str(mirror), "--listen", f"127.0.0.1:{port}"], w,
                f"http://127.0.0.1:{port}/v2/") as srv:
        rss0 = peak_rss_mb(srv.proc.pid)
        cpu0 = srv.cpu_seconds()
        procs = []
        t0 = time.perf_counter()
        for i in range(a.clients):
            order = digests[i % len(digests):] + digests[:i % len(digests)]
            argv = ["curl", "-sf", "--no-progress-meter", "-w", "%{size_download}\\n"]
            for d in order:
                argv += [f"http://127.0.0.1:{port}/v2/bench/big/blobs/{d}", "-o", "/dev/null"]
            procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        sent = 0
        for p in procs:
            out, err = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"curl failed ({p.returncode}): {err[-500:]}")
            sent += sum(int(x) for x in out.split())
        wall = time.perf_counter() - t0
        cpu = srv.cpu_seconds() - cpu0
        rss = peak_rss_mb(srv.proc.pid)
    want = a.clients * a.blobs * (a.blob_mib << 20)
    if sent != want:
        raise RuntimeError(f"clients received {sent} bytes, expected {want}")
    res = {"clients": a.clients, "blobs": a.blobs, "blob_mib": a.blob_mib, "bytes_sent": sent, "wall_s": round(wall, 2),
           "mb_per_s": round(sent / MB / wall, 1), "serve_cpu_s": round(cpu, 2), "serve_peak_rss_mb": round(rss, 1),
           "serve_rss_after_start_mb": round(rss0, 1)}
    log(table([[f"{a.clients} clients x {a.blobs * a.blob_mib} MiB", f"{wall:.1f}", f"{sent / MB / wall:.0f}",
                f"{cpu:.1f}", f"{rss0:.0f}", f"{rss:.0f}"]],
              ["pull", "wall s", "MB/s", "serve cpu s", "RSS at start MB", "peak RSS MB"]))
    log(f"  serve's peak RSS {rss:.0f} MB (target < 200 MB)")
    return res


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["compile", "pull", "all"], default="all")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each uv pip compile (median)")
    ap.add_argument("--index", choices=["metadata", "bare", "both"], default="both",
                    help="part compile: the index as the importer publishes it (PEP 658 metadata), bare, or both")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--blobs", type=int, default=16)
    ap.add_argument("--blob-mib", type=int, default=64)
    ap.add_argument("--workdir", type=Path, default=OUT / "work-serve")
    a, _unknown = ap.parse_known_args(argv)  # run_all.py passes the same arguments to every script
    a.workdir.mkdir(parents=True, exist_ok=True)
    result: dict = {}
    if a.part in ("compile", "all"):
        result["compile"] = part_compile(a, a.workdir)
    if a.part in ("pull", "all"):
        result["pull"] = part_pull(a, a.workdir)
    path = write_result("bench_serve", {"machine": machine(), "result": result})
    log(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
