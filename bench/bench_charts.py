"""Benchmark reading Helm charts (bundler/sources/charts.py): a large legitimate chart, and the
hostile archives that must be refused fast with flat memory.

Usage: python bench/bench_charts.py [--repeat 5]

Each sample is built in memory (deterministic), then read with ``read_chart`` and
``images_named`` in this process: wall time, best of --repeat. The chart is never rendered; the
samples are never extracted.

Samples: a chart of 2,000 templates and a 1 MB values.yaml (the size of the largest public
charts' values), a gzip bomb (200 MB of zeros in 200 KB), 5,001 empty members, and a values.yaml
alias bomb (10^7 nodes in a few hundred bytes).
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gapsync.bundler.sources.charts import ChartError, images_named, read_chart  # noqa: E402


def targz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return raw.getvalue()


def samples() -> dict[str, bytes]:
    chart = b"apiVersion: v2\nname: big\nversion: 1.0.0\nappVersion: '2.1'\n"
    values = b"".join(b"svc%d:\n  image:\n    repository: org/app%d\n    tag: '1.%d'\n  replicas: 2\n" % (i, i, i)
                      for i in range(12000))
    templates = {f"big/templates/t{i}.yaml": b"kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n"
                 b"        - image: registry.example.org/team/side:%d\n" % i + b"          args: ['{{ .Values.x }}']\n" * 20
                 for i in range(2000)}
    levels = [b"l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        b"l%d: &l%d [" % (i, i) + b", ".join([b"*l%d" % (i - 1)] * 10) + b"]" for i in range(1, 8)]
    return {
        "large chart (2,000 templates, 1 MB values)": targz({"big/Chart.yaml": chart, "big/values.yaml": values, **templates}),
        "gzip bomb (200 MB of zeros)": targz({"x/Chart.yaml": b"name: x\nversion: 1\n", "x/zeros": b"\0" * (200 << 20)}),
        "5,001 members": targz({f"x/f{i}": b"" for i in range(5001)}),
        "values alias bomb (10^7 nodes)": targz({"x/Chart.yaml": b"name: x\nversion: 1\n", "x/values.yaml": b"\n".join(levels)}),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    for name, data in samples().items():
        best, verdict = float("inf"), ""
        for _ in range(a.repeat):
            t = time.perf_counter()
            try:
                images, _ = images_named(read_chart(data, name), name)
                verdict = f"read, {len(images)} images"
            except ChartError as e:
                verdict = "refused: " + str(e).split(": ", 1)[1][:60]
            best = min(best, time.perf_counter() - t)
        print(f"{name:45s} {len(data) / 1e6:7.2f} MB  {best * 1000:8.1f} ms  {verdict}")


if __name__ == "__main__":
    main()
