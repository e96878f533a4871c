"""Run every benchmark script in bench/ (``bench_*.py``) one after the other, with this Python.

``make bench`` runs this. Each script prints its own table and ratios and writes its JSON
result to bench/out/; this runner adds bench/out/run_all.json with each script's exit code and
duration, and exits non-zero if any script failed. Arguments after ``--`` go to every script,
e.g. ``.venv/bin/python bench/run_all.py -- --repeat 1``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"


def main(argv: list[str]) -> int:
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    scripts = sorted(BENCH.glob("bench_*.py"))
    if not scripts:
        print("no bench_*.py scripts in bench/", file=sys.stderr)
        return 1
    results = []
    for script in scripts:
        print(f"\n##### {script.name} " + "#" * max(0, 60 - len(script.name)), flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script), *extra], cwd=BENCH.parent)
        results.append({"script": script.name, "exit_code": rc, "seconds": round(time.perf_counter() - t0, 1)})
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "run_all.json").write_text(json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                  "scripts": results}, indent=1))
    print("\n##### summary")
    for r in results:
        status = "ok" if r["exit_code"] == 0 else f"FAILED (exit {r['exit_code']})"
        print(f"{r['script']:<30} {status:<16} {r['seconds']:>7.1f} s")
    return 0 if all(r["exit_code"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
