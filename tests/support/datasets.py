"""Dataset repos in the Hub stand-in's on-disk format (``ROOT/datasets/<org>/<name>``), the stand-in
server with its Xet switch, and the consumer scripts the tests run in subprocesses.

Why: the tests prove that what ``datasets.load_dataset`` reads on the connected side (from the
stand-in) is what it reads on the air side (from ``gapsync serve``, and offline from the mirror's
cache), so the repos are real parquet, CSV and JSON Lines files with several configs and splits.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from gapsync.demo.hub_standin import write_repo
from tests.support.servers import Server, free_port

FAKE_HUB = Path(__file__).resolve().parent / "servers" / "fake_hub.py"
PARQUET = "acme/parquet-data"  # two configs: default (train in two files, test) and small
CSV = "acme/csv-data"  # no configs: one split per file, by file name (train.csv, test.csv)
JSONL = "acme/jsonl-data"  # two configs of JSON Lines, with train and validation splits
SCRIPTED = "acme/scripted-data"  # a loading script: blocked by the default policy
PICKLED = "acme/pickled-data"  # a pickle that calls os.system: blocked like a model's
# what each repo's configs are (datasets infers one builder per repo from its files' extensions)
CONFIGS = {PARQUET: ["default", "small"], CSV: ["default"], JSONL: ["first", "second"]}


def card(configs: str = "") -> bytes:
    return f"---\nlicense: cc-by-4.0\n{configs}---\n\n# test data\n\nA small test dataset for gapsync.\n".encode()


PARQUET_CONFIGS = """configs:
- config_name: default
  default: true
  data_files:
  - split: train
    path: data/train-*.parquet
  - split: test
    path: data/test.parquet
- config_name: small
  data_files:
  - split: train
    path: small/train.parquet
"""
JSONL_CONFIGS = """configs:
- config_name: first
  data_files:
  - split: train
    path: first/train.jsonl
  - split: validation
    path: first/validation.jsonl
- config_name: second
  data_files:
  - split: train
    path: second/train.jsonl
"""


def rows(n: int, seed: int) -> list[dict]:
    return [{"id": seed * 1000 + i, "text": f"row {i} of set {seed}: the air gap is crossed", "label": (i * seed) % 3,
             "score": round((i * 7 + seed) % 100 / 10, 1)} for i in range(n)]


def parquet_bytes(data: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(data), buf)
    return buf.getvalue()


def csv_bytes(data: list[dict]) -> bytes:
    cols = list(data[0])
    lines = [",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in data]
    return ("\n".join(lines) + "\n").encode()


def jsonl_bytes(data: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in data).encode()


def repo_files() -> dict[str, dict[str, bytes]]:
    return {
        PARQUET: {".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n", "README.md": card(PARQUET_CONFIGS),
                  "data/train-00000-of-00002.parquet": parquet_bytes(rows(20, 1)),
                  "data/train-00001-of-00002.parquet": parquet_bytes(rows(15, 2)),
                  "data/test.parquet": parquet_bytes(rows(10, 3)), "small/train.parquet": parquet_bytes(rows(4, 9))},
        CSV: {"README.md": card(), "train.csv": csv_bytes(rows(12, 4)), "test.csv": csv_bytes(rows(5, 10))},
        JSONL: {"README.md": card(JSONL_CONFIGS), "first/train.jsonl": jsonl_bytes(rows(8, 5)),
                "first/validation.jsonl": jsonl_bytes(rows(6, 6)), "second/train.jsonl": jsonl_bytes(rows(3, 11))},
    }


SCRIPT = b'''import datasets


class Scripted(datasets.GeneratorBasedBuilder):
    """A loading script: code that runs when the dataset is loaded."""

    def _info(self):
        return datasets.DatasetInfo(features=datasets.Features({"text": datasets.Value("string")}))

    def _split_generators(self, dl_manager):
        return [datasets.SplitGenerator(name="train")]

    def _generate_examples(self):
        yield 0, {"text": "hello"}
'''


class _Boom:
    def __reduce__(self):  # the classic: a pickle whose loading runs a command (made here, never loaded)
        return (os.system, ("echo pwned > /tmp/gapsync-dataset-pwned",))


def write_datasets(root: Path) -> dict[str, str]:
    """The test repos under ROOT/datasets; returns {repo: main commit}."""
    droot = Path(root) / "datasets"
    # card.json: the cardData the Hub derives from README.md's front matter (the stand-in reads it from there)
    out = {repo: write_repo(droot, repo, {"main": files}, card={"license": "cc-by-4.0"})["main"]
           for repo, files in repo_files().items()}
    out[SCRIPTED] = write_repo(droot, SCRIPTED, {"main": {
        "README.md": b"---\nlicense: mit\n---\n# scripted\n", "scripted-data.py": SCRIPT,
        "data.csv": csv_bytes(rows(3, 7))}})["main"]
    out[PICKLED] = write_repo(droot, PICKLED, {"main": {
        "README.md": b"---\nlicense: mit\n---\n# pickled\n", "train.csv": csv_bytes(rows(3, 8)),
        "extra/features.pkl": pickle.dumps(_Boom())}})["main"]
    return out


@dataclass
class Hub:
    """The Hub stand-in on 127.0.0.1 (free port), optionally with every LFS file Xet-backed; stopped by PID."""

    root: Path
    xet: bool = False
    mode: str = "honest"
    port: int = 0
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.log_path = self.root.parent / f"hub-{self.port}.log"
        argv = [sys.executable, str(FAKE_HUB), str(self.root), str(self.port), "--log", str(self.log_path),
                "--mode", self.mode]
        self._server = Server(argv + (["--xet"] if self.xet else []), f"{self.url}/_control/health")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> list[dict]:
        return [json.loads(x) for x in self.log_path.read_text().splitlines()] if self.log_path.is_file() else []

    def stop(self) -> None:
        self._server.stop()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    env.update(extra)
    return env


# Loads every config and split of a dataset with the real `datasets` library and prints the rows.
LOAD_DATASET = r"""
import json, sys
import datasets
repo, configs = sys.argv[1], sys.argv[2].split(",")
out = {}
for c in configs:
    d = datasets.load_dataset(repo, c)
    out[c] = {split: d[split].to_list() for split in sorted(d)}
print(json.dumps(out, sort_keys=True))
"""

# snapshot_download of a dataset repo, the files' sha256 by path.
SNAPSHOT = r"""
import hashlib, json, os, sys
from huggingface_hub import snapshot_download
path = snapshot_download(sys.argv[1], repo_type="dataset", revision=sys.argv[2])
files = {}
for root, _, names in os.walk(path):
    for n in names:
        p = os.path.join(root, n)
        files[os.path.relpath(p, path)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
print(json.dumps({"path": path, "files": files}))
"""


def run_py(code: str, args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> dict:
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=cwd,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.splitlines()[-1])
