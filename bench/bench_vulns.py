"""Benchmark the offline vulnerability matcher against the full PyPA advisory snapshot.

Usage: python bench/bench_vulns.py [--pins 5000] [--audit-pins 1000] [--repeat 3] [--no-pip-audit]

1. import the snapshot (gapsync/demo/data) into a store, then time ``AdvisoryDB.load`` (in this
   process, and in a fresh Python process including the imports);
2. draw ``--pins`` pinned (name, version) pairs from the snapshot's own package names, with a mix
   of versions (listed as affected, fix versions, branch starts, pre-releases of fixes, far-future
   releases, spellings that need canonicalizing, and a few versions that are not PEP 440), and
   time ``scan_subject`` over all of them on a freshly loaded database (each package's advisories
   are compiled on first use, so this is the cold cost), then a warm ``match`` pass;
3. where ``pip-audit`` can be had (on PATH, ``$PIP_AUDIT``, or installed into a venv under
   ~/.cache/gapsync-bench), serve the same file through a local OSV ``/v1/query`` shim on
   127.0.0.1 and time ``pip-audit -s osv --osv-url ... --no-deps --disable-pip -r req.txt`` on the
   same pins (PEP 440 ones only), print the ratio and compare its answers with ours.

The shim answers like osv.dev does: the records that affect the version, withdrawn ones included
(pip-audit drops those itself); it uses gapsync's matcher, so the comparison checks pip-audit's
client side (withdrawn, aliases, fix versions), not osv.dev's server. Results: bench/out/bench_vulns.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import OUT, ROOT, clean_env, machine, write_result  # noqa: E402

from gapsync.advisories import AdvisoryDB, import_db  # noqa: E402
from gapsync.scanner.artifacts.vulns import AFFECTED, compile_record, parse_version, scan_subject  # noqa: E402
from gapsync.scanner.subject import ScanSubject  # noqa: E402

SNAPSHOT = ROOT / "gapsync" / "demo" / "data" / "pypa-advisory-db.osv.jsonl.gz"
AUDIT_VENV = Path.home() / ".cache" / "gapsync-bench" / "pip-audit-venv"


# --- pins -----------------------------------------------------------------------------------


def draw_pins(db: AdvisoryDB, n: int, seed: int = 7) -> list[tuple[str, str]]:
    """``n`` (name, version) pairs, deterministic for a seed, from the snapshot's own names."""
    rnd = random.Random(seed)
    names = db.packages()
    pins = []
    for _ in range(n):
        name = rnd.choice(names)
        advs = db.advisories_for(name)
        adv = rnd.choice(advs)
        listed = sorted(adv.versions)
        bounds = [raw for r in adv.ranges for kind, _, raw in r.events if raw != "0"]
        fixes = [raw for r in adv.ranges for kind, _, raw in r.events if kind == "fixed"]
        roll = rnd.random()
        if roll < 0.35 and listed:
            version = rnd.choice(listed)
        elif roll < 0.55 and fixes:
            version = rnd.choice(fixes)
        elif roll < 0.65 and bounds:
            version = rnd.choice(bounds)
        elif roll < 0.72 and fixes:
            version = rnd.choice(fixes) + "rc1"
        elif roll < 0.80:
            version = f"{rnd.randint(50, 999)}.0"
        elif roll < 0.81:
            version = "1.0-custom"  # not PEP 440
        else:
            version = f"{rnd.randint(0, 5)}.{rnd.randint(0, 20)}.{rnd.randint(0, 9)}"
        if rnd.random() < 0.1:  # spellings that only PEP 503 makes equal
            name = name.replace("-", "_").upper()
        pins.append((name, version))
    return pins


# --- gapsync --------------------------------------------------------------------------------


def time_load(store: Path, repeat: int) -> dict:
    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        AdvisoryDB.load(store)
        walls.append(time.perf_counter() - t0)
    code = ("import time; t = time.perf_counter(); from gapsync.advisories import AdvisoryDB; "
            f"AdvisoryDB.load({str(store)!r}); print(time.perf_counter() - t)")
    fresh = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                  cwd=ROOT, env=clean_env()).stdout) for _ in range(repeat)]
    return {"in_process_s_median": round(statistics.median(walls), 4), "in_process_s_all": [round(w, 4) for w in walls],
            "fresh_process_with_imports_s_median": round(statistics.median(fresh), 4)}


def time_scan(store: Path, pins: list[tuple[str, str]], repeat: int) -> tuple[dict, dict]:
    cold, warm = [], []
    results: dict = {}
    for _ in range(repeat):
        db = AdvisoryDB.load(store)
        t0 = time.perf_counter()
        findings = [scan_subject(db, ScanSubject("python", n, v)) for n, v in pins]
        cold.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        results = {(n, v): db.match(n, v) for n, v in pins}
        warm.append(time.perf_counter() - t0)
    statuses: dict[str, int] = {}
    for r in results.values():
        statuses[r.status] = statuses.get(r.status, 0) + 1
    timing = {"pins": len(pins), "scan_subject_cold_s_median": round(statistics.median(cold), 4),
              "scan_subject_cold_s_all": [round(x, 4) for x in cold],
              "match_warm_s_median": round(statistics.median(warm), 4),
              "findings": sum(len(f) for f in findings), "unique_pins": len(results), "statuses": statuses,
              "vulns": sum(len(r.vulns) for r in results.values())}
    return timing, results


# --- pip-audit against a local OSV shim -----------------------------------------------------


def find_pip_audit() -> tuple[str | None, str]:
    for cand in (os.environ.get("PIP_AUDIT"), shutil.which("pip-audit"), str(Path(sys.executable).with_name("pip-audit")),
                 str(AUDIT_VENV / "bin" / "pip-audit")):
        if cand and Path(cand).exists():
            return cand, "found"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(AUDIT_VENV)], check=True, capture_output=True, timeout=300)
        subprocess.run([str(AUDIT_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "pip-audit"], check=True,
                       capture_output=True, timeout=600, env=clean_env())
    except (subprocess.SubprocessError, OSError) as e:
        return None, f"pip-audit could not be installed: {e}"
    return str(AUDIT_VENV / "bin" / "pip-audit"), f"installed into {AUDIT_VENV}"


class OsvShim:
    """POST /v1/query -> {"vulns": [records]} for the records affecting the version, the way
    osv.dev answers (withdrawn records included), from the same snapshot file."""

    def __init__(self, db: AdvisoryDB) -> None:
        self.index: dict = {}
        cache: dict = {}
        for rec in db.records:
            for name, adv in compile_record(rec, cache).items():
                self.index.setdefault(name, []).append(adv)
        self.queries = 0
        shim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                q = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                body = json.dumps({"vulns": shim.answer(q["package"]["name"], q["version"])}).encode()
                shim.queries += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/query"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, name: str, version: str) -> list[dict]:
        from packaging.utils import canonicalize_name

        from gapsync.scanner.artifacts.vulns import parse

        v, canon = parse(version)
        return [adv.record for adv in self.index.get(canonicalize_name(name), [])
                if adv.evaluate(version, v, canon)[0] == AFFECTED]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def split_unique(pins: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """pip-audit refuses a requirements file that names one package twice ("duplicate
    requirements"), so the pins go into as many files as the most repeated name needs."""
    from packaging.utils import canonicalize_name

    files: list[list[tuple[str, str]]] = []
    seen: list[set[str]] = []
    for n, v in pins:
        key = canonicalize_name(n)
        i = next((i for i, s in enumerate(seen) if key not in s), None)
        if i is None:
            files.append([])
            seen.append(set())
            i = len(files) - 1
        files[i].append((n, v))
        seen[i].add(key)
    return files


def run_pip_audit(exe: str, db: AdvisoryDB, pins: list[tuple[str, str]], ours: dict, work: Path) -> dict:
    valid = [(n, v) for n, v in pins if parse_version(v) is not None]
    chunks = split_unique(valid)
    shim = OsvShim(db)
    data: dict = {"dependencies": []}
    wall = 0.0
    res: dict = {"pins": len(valid), "runs": len(chunks)}
    try:
        for k, chunk in enumerate(chunks):
            req, out = work / f"req-{k}.txt", work / f"pip-audit-{k}.json"
            req.write_text("".join(f"{n}=={v}\n" for n, v in chunk))
            argv = [exe, "--osv-url", shim.url, "-s", "osv", "--no-deps", "--disable-pip", "-r", str(req),
                    "--progress-spinner", "off", "--cache-dir", str(work / "pip-audit-cache"), "-f", "json",
                    "-o", str(out)]
            t0 = time.perf_counter()
            r = subprocess.run(argv, capture_output=True, text=True, env=clean_env())
            wall += time.perf_counter() - t0
            if not out.exists():
                res.update(exit=r.returncode, error=(r.stderr or r.stdout).strip()[-1500:], argv=" ".join(argv))
                return res
            data["dependencies"] += json.loads(out.read_text()).get("dependencies", [])
    finally:
        shim.close()
    res.update(wall_s=round(wall, 3), queries=shim.queries, argv=" ".join(argv))
    from packaging.utils import canonicalize_name

    def key(n: str, v: str) -> tuple[str, str]:  # pip-audit prints normalized versions (1.5.0-1 -> 1.5.0.post1)
        return canonicalize_name(n), str(parse_version(v))

    theirs: dict[tuple[str, str], list[dict]] = {}
    for dep in data.get("dependencies", []):
        theirs.setdefault(key(dep["name"], dep["version"]), []).extend(dep.get("vulns", []))
    same = differ = fixes_differ = 0
    examples, fix_examples = [], []
    for n, v in valid:
        mine = ours[(n, v)].vulns
        got = theirs.get(key(n, v), [])
        mine_ids = {i for x in mine for i in x.ids if i.startswith("PYSEC-")}
        got_ids = {i for x in got for i in (x["id"], *x.get("aliases", [])) if i.startswith("PYSEC-")}
        if mine_ids == got_ids:
            same += 1
        else:
            differ += 1
            if len(examples) < 10:
                examples.append({"pin": f"{n}=={v}", "gapsync": sorted(mine_ids), "pip_audit": sorted(got_ids)})
        for x in got:  # fix versions: pip-audit lists every fixed event of the range, all branches
            ours_x = next((m for m in mine if x["id"] in m.ids), None)
            if ours_x and {str(parse_version(f)) for f in ours_x.fixed} != set(x.get("fix_versions", [])):
                fixes_differ += 1
                if len(fix_examples) < 5:
                    fix_examples.append({"pin": f"{n}=={v}", "id": x["id"], "gapsync": ours_x.fixed,
                                         "pip_audit": x.get("fix_versions", [])})
    res.update(agree=same, disagree=differ, disagreements=examples, fix_versions_differ=fixes_differ,
               fix_version_examples=fix_examples,
               skipped=[d for d in data.get("dependencies", []) if d.get("skip_reason")][:5])
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pins", type=int, default=5000)
    ap.add_argument("--audit-pins", type=int, default=1000,
                    help="how many of the pins pip-audit gets (it takes ~50 ms a pin)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-pip-audit", action="store_true")
    args = ap.parse_args(argv)
    if not SNAPSHOT.exists():
        print(f"no snapshot at {SNAPSHOT}", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-vulns-", dir=OUT))
    try:
        store = work / "store"
        t0 = time.perf_counter()
        info = import_db(SNAPSHOT, store)
        import_s = time.perf_counter() - t0
        load = time_load(store, args.repeat)
        db = AdvisoryDB.load(store)
        pins = draw_pins(db, args.pins)
        scan, ours = time_scan(store, pins, args.repeat)
        print(f"snapshot: {info.advisories} advisories, {info.packages} packages ({SNAPSHOT.name})")
        print(f"import:   {import_s:.3f} s")
        print(f"load:     {load['in_process_s_median']:.3f} s in process (median of {args.repeat}); "
              f"{load['fresh_process_with_imports_s_median']:.3f} s in a fresh Python with imports")
        print(f"scan:     {scan['pins']} pins in {scan['scan_subject_cold_s_median']:.3f} s cold "
              f"(scan_subject, advisories compiled on first use), {scan['match_warm_s_median']:.3f} s warm "
              f"(match); {scan['unique_pins']} distinct pins: {scan['statuses']}; {scan['findings']} findings")
        result = {"machine": machine(), "snapshot": str(SNAPSHOT), "db": info.to_dict(), "import_s": round(import_s, 3),
                  "load": load, "scan": scan}
        if not args.no_pip_audit:
            exe, how = find_pip_audit()
            result["pip_audit_setup"] = how
            if exe is None:
                print(f"pip-audit: skipped ({how})")
            else:
                version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
                audit = run_pip_audit(exe, db, pins[:args.audit_pins], ours, work)
                audit["version"] = version
                result["pip_audit"] = audit
                if "error" in audit:
                    print(f"pip-audit: failed (exit {audit['exit']}): {audit['error'][-300:]}")
                else:
                    ours_per_pin = scan["scan_subject_cold_s_median"] / scan["pins"]
                    theirs_per_pin = audit["wall_s"] / audit["pins"]
                    audit["ratio_per_pin"] = round(theirs_per_pin / ours_per_pin, 1)
                    print(f"pip-audit: {version}, {audit['pins']} pins in {audit['wall_s']:.2f} s via a local OSV "
                          f"shim ({audit['queries']} queries): {audit['ratio_per_pin']}x gapsync's cold scan per pin; "
                          f"same PYSEC ids for {audit['agree']}, different for {audit['disagree']}")
                    for d in audit["disagreements"][:5]:
                        print(f"  differs: {d['pin']}: gapsync {d['gapsync']} pip-audit {d['pip_audit']}")
                    print(f"  fix versions shown differ for {audit['fix_versions_differ']} findings "
                          "(pip-audit lists every branch's fix), e.g.:")
                    for d in audit["fix_version_examples"][:3]:
                        print(f"    {d['pin']} {d['id']}: gapsync {d['gapsync']} pip-audit {d['pip_audit']}")
        path = write_result("bench_vulns", result)
        print(f"results: {path}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
