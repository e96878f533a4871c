"""What every model source shares: safe file paths, git blob ids, formats by name, commits for
sources that have none, and the model manifest that travels as the model's target."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from gapsync.names import safe_model_path  # noqa: F401  (moved to the shared rules)

MAX_FILES = 20_000
FORMATS = {".safetensors": "safetensors", ".bin": "pytorch", ".pt": "pytorch", ".pth": "pytorch", ".ckpt": "pytorch",
           ".onnx": "onnx", ".gguf": "gguf", ".h5": "keras-h5", ".keras": "keras", ".pb": "tensorflow",
           ".pkl": "pickle", ".pickle": "pickle", ".joblib": "joblib", ".skops": "skops", ".npy": "numpy",
           ".npz": "numpy", ".msgpack": "flax", ".tflite": "tflite", ".mlmodel": "coreml"}


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def formats_of(paths: list[str]) -> list[str]:
    found = set()
    for p in paths:
        for ext, fmt in FORMATS.items():
            if p.lower().endswith(ext):
                found.add(fmt)
    return sorted(found)


def synthetic_commit(files: list[dict[str, Any]]) -> str:
    """A 40-hex commit for sources that have none (URL, path, MLflow): a digest of the file list,
    so the same files give the same commit and the Hugging Face cache layout has a snapshot name."""
    body = json.dumps(sorted((f["path"], f["sha256"]) for f in files)).encode()
    return hashlib.sha256(body).hexdigest()[:40]


def manifest(model: Any) -> bytes:
    """The model's own target: what the air side needs to lay it out (a LockedModel; a dataset's
    manifest also says ``repo_type: dataset``, a model's is unchanged)."""
    doc = {"format": 1, "source": model.source, "name": model.name, "revision": model.revision,
           "commit": model.commit, "meta": model.meta,
           "files": sorted(({k: f.get(k) for k in ("path", "sha256", "size", "etag", "lfs")} for f in model.files),
                           key=lambda f: f["path"])}
    if getattr(model, "repo_type", "model") != "model":
        doc["repo_type"] = model.repo_type
    return json.dumps(doc, indent=1, sort_keys=True).encode()
