"""gapsync's model scanner side by side with picklescan and modelscan: detection, speed, memory.

Usage: python bench/bench_scanner_compare.py [--part detection|speed|all] [--size-gib 2]
       [--pickles 1000] [--repeat 3] [--jobs 2] [--scanners-venv DIR] [--no-install] [--keep]

picklescan and modelscan run from their own venv (default ~/.cache/gapsync-bench/scanners-venv,
created with ``python3.11 -m venv`` and ``pip install picklescan modelscan`` when missing, so
the project venv is untouched). Every tool runs as its own CLI in a fresh process:
``gapsync scan FILE --json``, ``picklescan -p FILE``, ``modelscan -p FILE -r json -o OUT``.
Nothing here loads, unpickles or imports a sample: the samples are only written (by hand, as
opcode bytes) and the three tools only scan statically.

1. **Detection** on the repository's corpus (tests/data/corpus/models, manifest.json gives each file's
   expected verdict). A file is *flagged* by gapsync when it has a finding of severity high or
   critical (the default ``--fail-on``), by picklescan when it reports dangerous globals
   (``Dangerous globals: N`` > 0; "suspicious" ones do not count), by modelscan when its JSON
   report has an issue. Scanner errors and crashes are counted per tool, apart from
   detection (picklescan: ``ERROR:`` lines and unhandled exceptions; modelscan: the report's
   ``errors``, or no report at all; gapsync: ``scan.internal_error`` / ``scan.too_deep``
   findings or no JSON). modelscan picks scanners by file extension: a file it scanned nothing
   in is shown as ``skip``. The goal (issue 6): nothing that picklescan or modelscan flags is
   missed by gapsync, and gapsync flags no benign file that they pass.
   1b. (``--part issue14``) the same on the kinds of issue 14, written here: a pickle compressed
   with zstd, lz4, raw lzma, bz2, zlib, in a second gzip member, in zip / tar.xz.gz nesting, in an
   LZMA zip entry; pickles the C unpickler reads unlike pickletools (``I0x10``, a FRAME crossed by
   BINBYTES, EXT, a planted ``__setstate__``, a Python 2 name at protocol 3); budget bombs; and
   benign files of the same shapes. Exit 1 when gapsync misses one or flags a benign one.
2. **Speed and memory**: a PyTorch-style checkpoint (a stored zip with ``archive/data.pkl``
   naming torch storages, as ``torch.save`` writes it, and ``--size-gib`` of tensor data in
   ~400 ``archive/data/N`` entries; a quarter-size one too, to see what grows with the size)
   and a directory of ``--pickles`` small benign pickles (dicts of numbers, NumPy arrays and
   scikit-learn estimators, as pickle and NumPy write them). Each tool scans each, ``--repeat``
   times, interleaved, under ``/usr/bin/time`` (wall, CPU, peak RSS; see _common.measure); a
   scan of one small pickle gives each tool's start-up cost. Ratios are gapsync / the faster
   (or leaner) of the two. The goal: gapsync at least as fast as the faster one, and memory
   flat (the checkpoint's tensor bytes are never read). The page cache is warm for every tool.

Results: bench/out/bench_scanner_compare.json; a markdown table for docs/performance.md is
printed. The working directory (checkpoints, pickles) is deleted at the end unless --keep.
Exit status 1 when the detection goal is missed (a file flagged by picklescan or modelscan
that gapsync passes, or a benign file only gapsync flags); the speed goal is reported, not
enforced.
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import pickletools
import re
import shutil
import statistics
import struct
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import GAPSYNC, OUT, ROOT, Measure, clean_env, machine, measure, table, write_result  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "corpus" / "models"
SCANNERS_VENV = Path.home() / ".cache" / "gapsync-bench" / "scanners-venv"
GAPSYNC_VENV = Path.home() / ".cache" / "gapsync-bench" / "gapsync-venv"
TOOLS = ("gapsync", "picklescan", "modelscan")
FLAGGING = {"high", "critical"}
GAPSYNC_ERRORS = {"scan.internal_error", "scan.too_deep"}
DETECT_TIMEOUT = 300


# --- the other scanners ---------------------------------------------------------------------


def find_scanners(venv: Path, install: bool) -> tuple[dict[str, str], dict[str, str], str]:
    """The picklescan and modelscan executables in ``venv`` (created when missing), their
    versions, and how they were found."""
    how = f"found in {venv}"
    missing = [t for t in ("picklescan", "modelscan") if not (venv / "bin" / t).exists()]
    if missing and install:
        python = shutil.which("python3.11") or sys.executable
        how = f"installed into {venv} (pip install picklescan modelscan, {Path(python).name} -m venv)"
        try:
            if not (venv / "bin" / "python").exists():
                subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
            # the machine's own pip configuration (local indexes) is used as it is here
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "picklescan", "modelscan"],
                           check=True, capture_output=True, timeout=900)
        except (OSError, subprocess.SubprocessError) as e:
            how = f"could not be installed: {e}"
    exes = {t: str(venv / "bin" / t) for t in ("picklescan", "modelscan") if (venv / "bin" / t).exists()}
    versions = {}
    if exes:
        code = ("import importlib.metadata as m\nfor p in ('picklescan', 'modelscan', 'numpy'):\n"
                "    try: print(p, m.version(p))\n    except m.PackageNotFoundError: pass\n")
        r = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, env=clean_env())
        versions = dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)
    return exes, versions, how


def install_gapsync(venv: Path) -> tuple[str, str]:
    """gapsync as a user gets it (``pip install``: a regular install with compiled bytecode), in
    its own venv, refreshed from this checkout on every run. Why not the project's venv: it is an
    editable install, whose import hook costs a few milliseconds at every start, and on machines
    with PYTHONDONTWRITEBYTECODE set its modules are compiled again at every start, while the
    other scanners ran from regular installs: a start-up race would measure the checkout."""
    python = shutil.which("python3.11") or sys.executable
    try:
        if not (venv / "bin" / "python").exists():
            subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT)],
                           check=True, capture_output=True, timeout=1800)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
                        str(ROOT)], check=True, capture_output=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as e:
        print(f"could not install gapsync into {venv} ({e}); using {GAPSYNC}", flush=True)
        return GAPSYNC, f"the project's venv ({e})"
    return str(venv / "bin" / "gapsync"), f"pip install of this checkout into {venv}"


def gapsync_version() -> str:
    r = subprocess.run([GAPSYNC, "--version"], capture_output=True, text=True, env=clean_env())
    return (r.stdout or r.stderr).strip().splitlines()[-1] if r.returncode == 0 else "?"


# --- running one tool on one path, and reading its verdict -----------------------------------


def _tail(text: str, n: int = 200) -> str:
    text = " ".join(text.strip().split())
    return text if len(text) <= n else "..." + text[-n:]


def run_gapsync(path: Path, work: Path) -> dict:
    r = subprocess.run([GAPSYNC, "scan", str(path), "--json"], capture_output=True, text=True,
                       env=clean_env(), cwd=work, timeout=DETECT_TIMEOUT)
    return read_gapsync(r)


def read_gapsync(r: subprocess.CompletedProcess) -> dict:
    try:
        doc = json.loads(r.stdout)
        findings = doc["findings"]
    except (ValueError, KeyError, TypeError):
        return {"flagged": False, "crash": f"exit {r.returncode}, no JSON report: {_tail(r.stderr)}",
                "errors": [], "detail": "", "files": 0}
    high = [f for f in findings if f["severity"] in FLAGGING]
    shown = high or sorted(findings, key=lambda f: ["info", "low", "medium", "high", "critical"].index(f["severity"]),
                           reverse=True)
    parts: list[str] = []
    for f in shown:
        g = (f.get("evidence") or {}).get("global")
        text = f"{f['severity']} {f['rule']}" + (f" {g}" if g else "")
        if text not in parts:
            parts.append(text)
    detail = "; ".join(parts[:3]) + (f"; +{len(parts) - 3} more" if len(parts) > 3 else "")
    errors = [f"{f['rule']}: {f['message']}" for f in findings if f["rule"] in GAPSYNC_ERRORS]
    crash = None if r.returncode in (0, 4) else f"exit {r.returncode}: {_tail(r.stderr)}"
    return {"flagged": bool(high), "crash": crash, "errors": errors, "detail": detail or "no finding",
            "files": doc.get("files", 0), "findings": len(findings)}


def run_picklescan(exe: str, path: Path, work: Path) -> dict:
    r = subprocess.run([exe, "-p", str(path), "-g"], capture_output=True, text=True, env=clean_env(), cwd=work,
                       timeout=DETECT_TIMEOUT)
    return read_picklescan(r)


def read_picklescan(r: subprocess.CompletedProcess) -> dict:
    out = r.stdout + r.stderr

    def count(label: str) -> int:
        m = re.search(rf"{label}: (\d+)", out)
        return int(m.group(1)) if m else 0

    dangerous = re.findall(r"dangerous import '([^']+)' FOUND", out)
    suspicious = re.findall(r"^\s+\* (\S+) - suspicious$", out, re.MULTILINE)  # listed with -g
    errors = [_tail(line[len("ERROR: "):]) for line in out.splitlines() if line.startswith("ERROR: ")]
    warnings = [_tail(line) for line in out.splitlines() if line.startswith("WARNING: ")
                or "Invalid file" in line]
    crash = None
    if "Unhandled exception" in out or "Traceback" in out:
        last = [ln for ln in out.splitlines() if ln.strip()][-1]
        crash = _tail(last)
    elif r.returncode not in (0, 1, 2):
        crash = f"exit {r.returncode}: {_tail(out)}"
    parts = [f"dangerous {', '.join(sorted(set(dangerous))[:3])}"] if dangerous else []
    if suspicious:
        parts.append(f"suspicious (only --strict flags it) {', '.join(sorted(set(suspicious))[:3])}")
    parts += [f"warning: {w}" for w in warnings[:2]]
    return {"flagged": count("Dangerous globals") > 0, "crash": crash, "errors": errors,
            "detail": "; ".join(parts) or "no dangerous global", "files": count("Scanned files"),
            "suspicious": sorted(set(suspicious))}


def run_modelscan(exe: str, path: Path, work: Path, report: Path) -> dict:
    report.unlink(missing_ok=True)
    r = subprocess.run([exe, "-p", str(path), "--show-skipped", "-r", "json", "-o", str(report)],
                       capture_output=True, text=True, env=clean_env(), cwd=work, timeout=DETECT_TIMEOUT)
    return read_modelscan(r, report)


def read_modelscan(r: subprocess.CompletedProcess, report: Path) -> dict:
    try:
        doc = json.loads(report.read_text())
        summary = doc["summary"]
    except (OSError, ValueError, KeyError):
        return {"flagged": False, "crash": f"exit {r.returncode}, no JSON report: {_tail(r.stdout + r.stderr)}",
                "errors": [], "detail": "", "files": 0, "skipped": False}
    issues = doc.get("issues") or []
    errors = [_tail(f"{e.get('category')}: {e.get('description')}") for e in doc.get("errors") or []]
    scanned = (summary.get("scanned") or {}).get("total_scanned", 0)
    skipped = [s for s in (summary.get("skipped") or {}).get("skipped_files", [])
               if s.get("category") != "SCAN_NOT_SUPPORTED"]
    parts = []
    if issues:
        ops = sorted({f"{i.get('severity', '?').lower()} {i.get('module')}.{i.get('operator')}" for i in issues})
        parts.append(", ".join(ops[:3]) + (f", +{len(ops) - 3} more" if len(ops) > 3 else ""))
    parts += [f"skipped: {_tail(s.get('description', ''), 120)}" for s in skipped[:2]]
    if not scanned and not issues:
        parts.append("nothing scanned (no scanner for this file name)" if not skipped and not errors else "nothing scanned")
    return {"flagged": bool(issues), "crash": None, "errors": errors, "detail": "; ".join(parts) or "no issue",
            "files": scanned, "skipped": not scanned and not issues and not errors}


# --- 1. detection on the corpus --------------------------------------------------------------


def cell(res: dict | None) -> str:
    if res is None:
        return "n/a"
    if res.get("crash"):
        return "CRASH"
    flag = "FLAG" if res["flagged"] else ("skip" if res.get("skipped") else "-")
    return flag + ("+err" if res["errors"] else "")


def detection(corpus: Path, exes: dict[str, str], work: Path, jobs: int) -> dict:
    manifest = json.loads((corpus / "manifest.json").read_text())
    tools = ["gapsync", *exes]
    rows: list[dict] = []
    work.mkdir(parents=True, exist_ok=True)

    def one(i: int, rec: dict) -> dict:
        path = corpus / rec["path"]
        res = {"gapsync": run_gapsync(path, work)}
        if "picklescan" in exes:
            res["picklescan"] = run_picklescan(exes["picklescan"], path, work)
        if "modelscan" in exes:
            res["modelscan"] = run_modelscan(exes["modelscan"], path, work, work / f"modelscan-{i}.json")
        return {"path": rec["path"], "format": rec["format"], "expected": rec["expected"], "results": res}

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        rows = list(pool.map(lambda ir: one(*ir), enumerate(manifest)))
    elapsed = time.perf_counter() - t0

    print(f"\n## Detection on {corpus} ({len(rows)} files, {elapsed:.0f} s)\n")
    print(table([[r["path"], r["expected"], *(cell(r["results"].get(t)) for t in TOOLS)] for r in rows],
                ["file", "expected", *TOOLS]))
    print("\nFLAG: flagged (gapsync: a high/critical finding; picklescan: dangerous globals; modelscan: an issue);"
          " skip: modelscan scanned nothing in it; +err: the tool also reported an error; CRASH: no result")

    malicious = [r for r in rows if r["expected"] == "malicious"]
    benign = [r for r in rows if r["expected"] == "benign"]
    summary: dict = {"files": len(rows), "malicious": len(malicious), "benign": len(benign), "tools": {}}
    srows = []
    for t in tools:
        caught = [r["path"] for r in malicious if r["results"][t]["flagged"]]
        fps = [r["path"] for r in benign if r["results"][t]["flagged"]]
        errs = {r["path"]: r["results"][t]["errors"] for r in rows if r["results"][t]["errors"]}
        crashes = {r["path"]: r["results"][t]["crash"] for r in rows if r["results"][t].get("crash")}
        skipped = [r["path"] for r in rows if r["results"][t].get("skipped")]
        summary["tools"][t] = {"malicious_caught": len(caught), "missed": [r["path"] for r in malicious
                                                                             if not r["results"][t]["flagged"]],
                               "false_positives": fps, "errors": errs, "crashes": crashes, "skipped": skipped}
        srows.append([t, f"{len(caught)}/{len(malicious)}", f"{len(fps)}/{len(benign)}", str(len(errs)),
                      str(len(crashes)), str(len(skipped)) if t == "modelscan" else "-"])
    print("\n" + table(srows, ["tool", "malicious caught", "benign flagged", "files with errors", "crashes",
                              "nothing scanned"]))

    others = [t for t in tools if t != "gapsync"]
    missed_by_us = [r for r in rows if not r["results"]["gapsync"]["flagged"]
                    and any(r["results"][t]["flagged"] for t in others)]
    fp_only_us = [r for r in benign if r["results"]["gapsync"]["flagged"]
                  and not all(r["results"][t]["flagged"] for t in others)]
    summary["flagged_by_others_not_gapsync"] = [r["path"] for r in missed_by_us]
    summary["benign_flagged_by_gapsync_not_others"] = [r["path"] for r in fp_only_us]
    summary["gapsync_wrong_verdicts"] = [r["path"] for r in rows
                                         if r["results"]["gapsync"]["flagged"] != (r["expected"] == "malicious")]
    print(f"\nflagged by {' or '.join(others) or '(no other tool)'} but not by gapsync: "
          f"{len(missed_by_us)} {[r['path'] for r in missed_by_us] if missed_by_us else '(goal: none)'}")
    print(f"benign files gapsync flags that {' or '.join(others) or '(no other tool)'} pass: "
          f"{len(fp_only_us)} {[r['path'] for r in fp_only_us] if fp_only_us else '(goal: none)'}")
    print(f"gapsync verdicts different from the manifest: {len(summary['gapsync_wrong_verdicts'])} "
          f"{summary['gapsync_wrong_verdicts'] or ''}")

    if "picklescan" in exes:
        strict = [r["path"] for r in malicious if not r["results"]["picklescan"]["flagged"]
                  and r["results"]["picklescan"].get("suspicious")]
        summary["tools"]["picklescan"]["missed_but_suspicious"] = strict
        print(f"picklescan: {len(strict)} of the malicious files it misses have globals it calls 'suspicious' "
              "(flagged only with --strict, which is not its default)")
    for t in others:
        s = summary["tools"][t]
        if s["crashes"] or s["errors"]:
            print(f"\n{t}: errors and crashes")
            for p, c in s["crashes"].items():
                print(f"  {p}: CRASH {c}")
            for p, es in s["errors"].items():
                print(f"  {p}: {'; '.join(es)[:240]}")

    print("\n## Disagreements (any tool's verdict differs from the manifest), with each tool's reason\n")
    dis = [r for r in rows if any(r["results"][t]["flagged"] != (r["expected"] == "malicious") for t in tools)]
    for r in dis:
        print(f"{r['path']} (expected {r['expected']}, format {r['format']})")
        for t in tools:
            res = r["results"][t]
            extra = "; ".join(filter(None, [res.get("crash"), *res["errors"]]))
            print(f"  {t:10s} {cell(res):9s} {res['detail']}" + (f" | error: {extra[:240]}" if extra else ""))
    summary["disagreements"] = len(dis)
    return {"summary": summary, "rows": rows, "seconds": round(elapsed, 1)}


# --- 1b. issue 14: what loaders open that a scanner must not wave through ----------------------


def issue14_samples(folder: Path) -> Path:
    """The kinds of issue 14 as files (written by hand, never loaded), with a manifest.json like the
    corpus's: compression and containers at any nesting, pickles the C unpickler reads unlike
    pickletools, and budget bombs; and benign files of the same shapes that must stay clean."""
    import bz2
    import gzip
    import lzma
    import tarfile
    import zlib

    import lz4.frame
    import zstandard

    folder.mkdir(parents=True, exist_ok=True)
    evil = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."
    benign = pickle.dumps({"weights": [0.5] * 100, "name": "ok"}, 4)

    def zipped(members: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
        b = io.BytesIO()
        with zipfile.ZipFile(b, "w", method) as z:
            for name, data in members.items():
                z.writestr(name, data)
        return b.getvalue()

    def tarred(members: dict[str, bytes]) -> bytes:
        b = io.BytesIO()
        with tarfile.open(fileobj=b, mode="w") as tf:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        return b.getvalue()

    zst = zstandard.ZstdCompressor().compress
    bomb = b"\x80\x04N."
    for level in range(5):
        bomb = zipped({f"l{level}_{i}.{'zip' if level else 'pkl'}": bomb for i in range(8)})
    frame = (b"\x80\x05\x95" + struct.pack("<Q", 2) + b"B" + struct.pack("<I", 0x107) + b"A" * 0x107 + b"0"
             + b"\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.")
    samples = {
        ("malicious", "m/model.pkl.zst"): zst(evil),
        ("malicious", "zst-in-zip.zip"): zipped({"model.pkl.zst": zst(evil)}),
        ("malicious", "zip-in-tar.xz-in.gz"): gzip.compress(lzma.compress(tarred({"d/in.zip": zipped(
            {"model.pkl.zst": zst(evil)})}))),
        ("malicious", "model.pkl.lzma"): lzma.compress(evil, format=lzma.FORMAT_ALONE,
                                                       filters=[{"id": lzma.FILTER_LZMA1, "lc": 2, "lp": 1}]),
        ("malicious", "model.pkl.lz4"): lz4.frame.compress(evil),
        ("malicious", "model.pkl.bz2"): bz2.compress(evil),
        ("malicious", "joblib-zlib.pkl"): zlib.compress(evil),
        ("malicious", "second-gzip-member.pkl.gz"): gzip.compress(benign) + gzip.compress(evil),
        ("malicious", "lzma-entry.zip"): zipped({"model.pkl": evil}, zipfile.ZIP_LZMA),
        ("malicious", "int-base0.pkl"): b"I0x10\n0cos\nsystem\n(S'id'\ntR.",
        ("malicious", "frame-crossing.pkl"): frame,
        ("malicious", "ext-code.pkl"): b"\x80\x02\x82\x01X\x02\x00\x00\x00id\x85R.",
        ("malicious", "build-dunder.pkl"): (b"\x80\x02ccollections\nOrderedDict\n)R}X\x0c\x00\x00\x00__setstate__"
                                           b"cbuiltins\nlen\nsb."),
        ("malicious", "py2-name-proto3.pkl"): b"\x80\x03c__builtin__\nset\n.",
        ("malicious", "truncated-after-proto.pkl"): evil[:12],
        ("malicious", "nested-zip-bomb.zip"): bomb,
        ("malicious", "ops-10MB.pkl"): b"(" + b"N0" * (5 << 20) + b".",
        ("malicious", "7z-in-zip.zip"): zipped({"payload.7z": b"7z\xbc\xaf\x27\x1c" + bytes(64)}),
        ("benign", "benign.pkl.zst"): zst(benign),
        ("benign", "benign.pkl.gz"): gzip.compress(benign),
        ("benign", "benign.tar.gz"): gzip.compress(tarred({"a/model.pkl": benign, "a/readme.txt": b"hi"})),
        ("benign", "benign-lzma-entry.zip"): zipped({"model.pkl": benign}, zipfile.ZIP_LZMA),
        ("benign", "benign-p0.pkl"): pickle.dumps({"a": [1, 2.5, "x"]}, 0),
    }
    manifest = []
    for (expected, name), data in samples.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        manifest.append({"path": name, "format": name.rsplit(".", 1)[-1], "expected": expected})
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return folder


# --- 2. the samples for speed and memory ------------------------------------------------------
#
# Written as opcode bytes, in the layout torch.save / pickle / NumPy produce, so that no
# sample ever has to be built by unpickling (or importing torch, NumPy or scikit-learn).


class PickleWriter:
    """A few pickle opcodes, memoizing globals like the pickler does (``h``/``j`` on reuse)."""

    def __init__(self, protocol: int):
        self.out = io.BytesIO()
        self.out.write(pickle.PROTO + bytes([protocol]))
        self.memo: dict[tuple[str, str], int] = {}

    def op(self, data: bytes) -> PickleWriter:
        self.out.write(data)
        return self

    def glob(self, module: str, name: str) -> PickleWriter:
        key = (module, name)
        if key in self.memo:
            i = self.memo[key]
            return self.op(pickle.BINGET + bytes([i]) if i < 256 else pickle.LONG_BINGET + struct.pack("<I", i))
        self.op(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        i = self.memo[key] = len(self.memo)
        return self.op(pickle.BINPUT + bytes([i]) if i < 256 else pickle.LONG_BINPUT + struct.pack("<I", i))

    def num(self, n: int) -> PickleWriter:
        if 0 <= n < 256:
            return self.op(pickle.BININT1 + bytes([n]))
        if 0 <= n < 65536:
            return self.op(pickle.BININT2 + struct.pack("<H", n))
        return self.op(pickle.BININT + struct.pack("<i", n))

    def text(self, s: str) -> PickleWriter:
        b = s.encode()
        return self.op(pickle.BINUNICODE + struct.pack("<I", len(b)) + b)

    def raw(self, b: bytes) -> PickleWriter:
        return self.op(pickle.SHORT_BINBYTES + bytes([len(b)]) + b)

    def ints(self, items: list[int]) -> PickleWriter:
        if not items:
            return self.op(pickle.EMPTY_TUPLE)
        if len(items) > 3:
            self.op(pickle.MARK)
        for x in items:
            self.num(x)
        return self.op({1: pickle.TUPLE1, 2: pickle.TUPLE2, 3: pickle.TUPLE3}.get(len(items), pickle.TUPLE))

    def done(self) -> bytes:
        data = self.out.getvalue() + pickle.STOP
        for _ in pickletools.genops(data):  # parses the opcodes only: a malformed sample fails here
            pass
        return data


def torch_tensors(size_gib: float) -> list[tuple[str, tuple[int, ...]]]:
    """A transformer-like state dict (hidden 1024, float32) of about ``size_gib`` GiB."""
    h, vocab = 1024, 32000
    tensors: list[tuple[str, tuple[int, ...]]] = [("embed_tokens.weight", (vocab, h))]
    per_layer = (4 * h * h + 2 * 4 * h * h + 4 * h) * 4
    layers = max(1, round((size_gib * (1 << 30) - vocab * h * 4) / per_layer))
    for i in range(layers):
        p = f"layers.{i}."
        tensors += [(p + f"attn.{x}_proj.weight", (h, h)) for x in "qkvo"]
        tensors += [(p + "mlp.up_proj.weight", (4 * h, h)), (p + "mlp.down_proj.weight", (h, 4 * h))]
        tensors += [(p + f"{n}.{w}", (h,)) for n in ("norm1", "norm2") for w in ("weight", "bias")]
    tensors.append(("norm.weight", (h,)))
    return tensors


def torch_data_pkl(tensors: list[tuple[str, tuple[int, ...]]]) -> bytes:
    """``data.pkl`` as torch.save writes a state dict (protocol 2): an OrderedDict of
    ``_rebuild_tensor_v2(persistent_id(('storage', FloatStorage, key, 'cpu', numel)), ...)``."""
    w = PickleWriter(2)
    w.glob("collections", "OrderedDict").op(pickle.EMPTY_TUPLE + pickle.REDUCE)
    for start in range(0, len(tensors), 1000):  # SETITEMS in batches, as the pickler does
        w.op(pickle.MARK)
        for key, (name, shape) in enumerate(tensors[start:start + 1000], start):
            numel = 1
            for d in shape:
                numel *= d
            strides = [1] * len(shape)
            for j in range(len(shape) - 2, -1, -1):
                strides[j] = strides[j + 1] * shape[j + 1]
            w.text(name).glob("torch._utils", "_rebuild_tensor_v2").op(pickle.MARK)
            w.op(pickle.MARK).text("storage").glob("torch", "FloatStorage").text(str(key)).text("cpu").num(numel)
            w.op(pickle.TUPLE + pickle.BINPERSID)
            w.num(0).ints(list(shape)).ints(strides).op(pickle.NEWFALSE)
            w.glob("collections", "OrderedDict").op(pickle.EMPTY_TUPLE + pickle.REDUCE)
            w.op(pickle.TUPLE + pickle.REDUCE)
        w.op(pickle.SETITEMS)
    return w.done()


def make_checkpoint(path: Path, size_gib: float) -> int:
    """A zip like torch.save's (stored entries, ``archive/`` prefix), written as a stream.
    Returns the number of tensors."""
    tensors = torch_tensors(size_gib)
    block = bytes(range(1, 256)) * 4112  # ~1 MiB of non-zero bytes
    tmp = path.with_name(path.name + ".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        z.writestr("archive/data.pkl", torch_data_pkl(tensors))
        z.writestr("archive/.format_version", "1")
        z.writestr("archive/.storage_alignment", "64")
        z.writestr("archive/byteorder", "little")
        for key, (_, shape) in enumerate(tensors):
            size = 4
            for d in shape:
                size *= d
            with z.open(f"archive/data/{key}", "w", force_zip64=size >= (1 << 31) - 1) as out:
                while size > 0:
                    n = min(size, len(block))
                    out.write(block[:n])
                    size -= n
        z.writestr("archive/version", "3\n")
        z.writestr("archive/.data/serialization_id", "1234567890123456789012345678901234567890")
    tmp.replace(path)
    return len(tensors)


def _ndarray(w: PickleWriter, values: list[float]) -> None:
    """A float64 vector as NumPy pickles it: _reconstruct(ndarray, (0,), b'b') + BUILD state."""
    w.glob("numpy.core.multiarray", "_reconstruct").glob("numpy", "ndarray").ints([0]).raw(b"b")
    w.op(pickle.TUPLE3 + pickle.REDUCE + pickle.MARK).num(1).ints([len(values)])
    w.glob("numpy", "dtype").text("f8").op(pickle.NEWFALSE + pickle.NEWTRUE + pickle.TUPLE3 + pickle.REDUCE)
    # dtype state: (3, '<', subarray, names, fields, elsize, alignment, flags)
    w.op(pickle.MARK).num(3).text("<").op(pickle.NONE * 3 + (pickle.BININT + struct.pack("<i", -1)) * 2)
    w.num(0).op(pickle.TUPLE + pickle.BUILD)
    raw = struct.pack(f"<{len(values)}d", *values)
    w.op(pickle.NEWFALSE + pickle.SHORT_BINBYTES + bytes([len(raw)]) + raw + pickle.TUPLE + pickle.BUILD)


ESTIMATORS = [("sklearn.linear_model._base", "LinearRegression"),
              ("sklearn.linear_model._logistic", "LogisticRegression"),
              ("sklearn.preprocessing._data", "StandardScaler")]


def small_pickle(i: int) -> bytes:
    kind = i % 3
    if kind == 0:  # plain data, written by the pickle module itself (protocol 4)
        return pickle.dumps({"id": i, "scores": [x * 0.5 for x in range(40)], "name": f"run-{i}",
                             "tags": ("a", "b"), "ok": True}, 4)
    w = PickleWriter(3)
    vec = [float((i * 7 + k) % 13) for k in range(3 + i % 5)]
    if kind == 1:  # a NumPy array on its own
        _ndarray(w, vec)
        return w.done()
    module, name = ESTIMATORS[i % len(ESTIMATORS)]  # an estimator: cls.__new__ + BUILD(__dict__)
    w.glob(module, name).op(pickle.EMPTY_TUPLE + pickle.NEWOBJ + pickle.EMPTY_DICT + pickle.MARK)
    w.text("fit_intercept").op(pickle.NEWTRUE).text("n_jobs").op(pickle.NONE)
    w.text("n_features_in_").num(len(vec)).text("coef_")
    _ndarray(w, vec)
    w.text("intercept_").op(pickle.BINFLOAT + struct.pack(">d", i / 7)).text("_sklearn_version").text("1.5.2")
    w.op(pickle.SETITEMS + pickle.BUILD)
    return w.done()


def make_pickles(folder: Path, count: int) -> None:
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i in range(count):
        (tmp / f"model-{i:05d}.pkl").write_bytes(small_pickle(i))
    tmp.replace(folder)


# --- 2. speed and memory ------------------------------------------------------------------------


def command(tool: str, exes: dict[str, str], path: Path, work: Path) -> list[str]:
    if tool == "gapsync":
        return [GAPSYNC, "scan", str(path), "--json"]
    if tool == "picklescan":
        return [exes["picklescan"], "-p", str(path)]
    return [exes["modelscan"], "-p", str(path), "-r", "json", "-o", str(work / "modelscan-speed.json")]


def outcome(tool: str, r: subprocess.CompletedProcess, work: Path) -> str:
    """What the tool said about a benign sample: files scanned, clean or not."""
    if tool == "gapsync":
        res = read_gapsync(r)
    elif tool == "picklescan":
        res = read_picklescan(r)
    else:
        res = read_modelscan(r, work / "modelscan-speed.json")
    if res.get("crash"):
        return f"CRASH {res['crash'][:80]}"
    what = f"{res['files']} scanned, " + ("FLAGGED" if res["flagged"] else "clean")
    return what + (f", {len(res['errors'])} errors" if res["errors"] else "")


def speed(exes: dict[str, str], work: Path, size_gib: float, count: int, repeat: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    small_gib = size_gib / 4
    big, quarter, small = work / "checkpoint.pt", work / "checkpoint-quarter.pt", work / "pickles"
    t0 = time.perf_counter()
    for path, gib in ((big, size_gib), (quarter, small_gib)):
        if not path.exists():
            print(f"writing a {gib:g} GiB PyTorch-style checkpoint ...", flush=True)
            make_checkpoint(path, gib)
    if not small.exists() or len(list(small.iterdir())) != count:
        shutil.rmtree(small, ignore_errors=True)
        make_pickles(small, count)
    with zipfile.ZipFile(big) as z:
        entries = len(z.infolist())
    print(f"samples in {work} ({time.perf_counter() - t0:.0f} s): {big.stat().st_size / (1 << 30):.2f} GiB "
          f"checkpoint ({entries} zip entries), a {quarter.stat().st_size / (1 << 30):.2f} GiB one, "
          f"{count} small pickles", flush=True)
    tools = ["gapsync", *exes]
    others = [t for t in tools if t != "gapsync"]
    one = sorted(small.iterdir())[2]  # an estimator pickle

    def gib(p: Path) -> str:
        return f"{p.stat().st_size / (1 << 30):.1f} GiB"

    cases = [("one small pickle (start-up)", one), (f"checkpoint {gib(quarter)}", quarter),
             (f"checkpoint {gib(big)}", big), (f"{count:,} small pickles", small)]
    results: dict[str, dict[str, Measure]] = {c: {t: Measure(f"{t}: {c}", t) for t in tools} for c, _ in cases}
    seen: dict[str, dict[str, str]] = {c: {} for c, _ in cases}
    for label, path in cases:
        for _ in range(repeat):
            for t in tools:  # interleaved, so that a noisy moment does not hit one tool only
                run, r = measure(command(t, exes, path, work), cwd=work, check=False)
                results[label][t].runs.append(run)
                seen[label][t] = outcome(t, r, work)
    rows = []
    md = ["| sample | tool | wall s (median) | CPU s | peak RSS MiB | result | gapsync / faster of the two |",
          "| --- | --- | ---: | ---: | ---: | --- | ---: |"]
    data: dict = {"cases": {}}
    for label, _ in cases:
        ms = results[label]
        fastest = min(others, key=lambda t: ms[t].wall) if others else None
        leanest = min(others, key=lambda t: ms[t].maxrss_mb) if others else None
        ratio = ms["gapsync"].wall / ms[fastest].wall if fastest else None
        rss_ratio = ms["gapsync"].maxrss_mb / ms[leanest].maxrss_mb if leanest else None
        data["cases"][label] = {"measures": {t: ms[t].to_dict() | {"result": seen[label][t]} for t in tools},
                                "faster_other": fastest, "wall_ratio_gapsync_over_faster": ratio,
                                "leaner_other": leanest, "rss_ratio_gapsync_over_leaner": rss_ratio}
        for t in tools:
            m = ms[t]
            spread = f"{min(r.wall for r in m.runs):.2f}-{max(r.wall for r in m.runs):.2f}"
            rows.append([label if t == "gapsync" else "", t, f"{m.wall:.2f}", spread, f"{m.cpu:.2f}",
                         f"{m.maxrss_mb:.0f}", seen[label][t]])
            cell_ = f"{ratio:.2f}x wall (vs {fastest}), {rss_ratio:.2f}x RSS" if t == "gapsync" and ratio else ""
            md.append(f"| {label if t == 'gapsync' else ''} | {t} | {m.wall:.2f} | {m.cpu:.2f} | {m.maxrss_mb:.0f} "
                      f"| {seen[label][t]} | {cell_} |")
        if ratio is not None:
            rows.append(["", f"gapsync / {fastest}", f"{ratio:.2f}x", "", "", f"{rss_ratio:.2f}x vs {leanest}",
                         "ok (goal <= 1.00x)" if ratio <= 1 else "SLOWER than the goal (<= 1.00x)"])
    print(f"\n## Speed and memory ({repeat} runs each, median wall; peak RSS is the largest run)\n")
    print(table(rows, ["sample", "tool", "wall s", "range", "cpu s", "peak RSS MiB", "result"]))
    lab = [c for c, _ in cases]
    for t in tools:
        r0, rq, rb = (results[c][t].maxrss_mb for c in lab[:3])
        w0, wq, wb = (results[c][t].wall for c in lab[:3])
        print(f"{t:10s} checkpoint {gib(quarter)} -> {gib(big)}: wall {wq:.2f} -> {wb:.2f} s, peak RSS "
              f"{rq:.0f} -> {rb:.0f} MiB (start-up alone: {w0:.2f} s, {r0:.0f} MiB)")
        data.setdefault("scaling", {})[t] = {"rss_mib": [r0, rq, rb], "wall_s": [w0, wq, wb]}
    noisy = [m.label for ms in results.values() for m in ms.values()
             if any(getattr(r, "other_cpu", 0) > 0.3 + 0.15 * r.wall for r in m.runs)]
    if noisy:
        print("WARNING: other processes used CPU during a run of: " + "; ".join(noisy))
    print("\nMarkdown (for docs/performance.md):\n")
    print("\n".join(md))
    data["markdown"] = "\n".join(md)
    data["checkpoint"] = {"bytes": big.stat().st_size, "quarter_bytes": quarter.stat().st_size,
                          "zip_entries": entries}
    data["pickles"] = count
    return data


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--part", choices=["detection", "issue14", "speed", "all"], default="all")
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--size-gib", type=float, default=2.0, help="checkpoint size (GiB of tensor data)")
    ap.add_argument("--pickles", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool and sample; the median is reported")
    ap.add_argument("--jobs", type=int, default=2, help="detection: files scanned at once")
    ap.add_argument("--scanners-venv", type=Path, default=SCANNERS_VENV)
    ap.add_argument("--gapsync-venv", type=Path, default=GAPSYNC_VENV,
                    help="where this checkout is pip-installed for the measurements")
    ap.add_argument("--project-venv", action="store_true",
                    help="run the project's own (editable) gapsync instead of a regular install")
    ap.add_argument("--no-install", action="store_true", help="do not create the scanners venv when missing")
    ap.add_argument("--workdir", type=Path, default=OUT / "work-scanner-compare")
    ap.add_argument("--keep", action="store_true", help="keep the working directory (checkpoint, pickles)")
    a = ap.parse_args(argv)

    global GAPSYNC
    exes, versions, how = find_scanners(a.scanners_venv, not a.no_install)
    installed = "the project's venv (editable)"
    if not a.project_venv:
        GAPSYNC, installed = install_gapsync(a.gapsync_venv)
    ours = gapsync_version()
    print(f"gapsync: {ours} ({GAPSYNC}: {installed})")
    print(f"picklescan / modelscan: {how}; versions {versions or 'n/a'}")
    result: dict = {"machine": machine(), "gapsync": ours, "gapsync_setup": installed, "versions": versions,
                    "scanners_setup": how,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    rc = 0
    try:
        if a.part in ("detection", "all"):
            det = detection(a.corpus, exes, a.workdir / "detection", a.jobs)
            result["detection"] = det
            s = det["summary"]
            if s["flagged_by_others_not_gapsync"] or s["benign_flagged_by_gapsync_not_others"]:
                rc = 1
        if a.part in ("issue14", "all"):
            det = detection(issue14_samples(a.workdir / "issue14-samples"), exes, a.workdir / "issue14", a.jobs)
            result["issue14"] = det
            if det["summary"]["tools"]["gapsync"]["missed"] or det["summary"]["tools"]["gapsync"]["false_positives"]:
                rc = 1
        if a.part in ("speed", "all"):
            result["speed"] = speed(exes, a.workdir, a.size_gib, a.pickles, a.repeat)
            walls = [c["wall_ratio_gapsync_over_faster"] for c in result["speed"]["cases"].values()]
            result["speed"]["median_wall_ratio"] = statistics.median([w for w in walls if w]) if any(walls) else None
    finally:
        if not a.keep:
            shutil.rmtree(a.workdir, ignore_errors=True)
    path = write_result("bench_scanner_compare", result)
    print(f"\nresults: {path}" + ("" if a.keep else f"; {a.workdir} removed"))
    return rc


if __name__ == "__main__":
    sys.exit(main())
