"""What scanners and the policy look at: one artifact, its files, and the facts a scanner needs.

Both sides build subjects from what they hold (the DMZ from its cache, the air side from its
staging area), so the same scanners and the same policy run on both sides of the gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapsync.model import artifact_key


@dataclass(frozen=True)
class SubjectFile:
    name: str  # how findings name it: a wheel file name, "layer sha256:…", a model file path
    sha256: str
    size: int
    path: Path  # where its verified bytes are on this machine (cache, staging or blob store)
    media_type: str | None = None  # OCI layers: the layer media type


@dataclass
class ScanSubject:
    kind: str  # python | oci | model
    name: str  # python: PEP 503 name; oci: registry/repository; model: org/name
    version: str  # python: version; oci: tag or digest; model: revision
    files: list[SubjectFile] = field(default_factory=list)
    # python: {"metadata": Path to the wheel's core METADATA or None};
    # model: {"license": raw card license, "source": hf|mlflow|url|path, "formats": [...]}
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The artifact's name in bundle.json's findings and decisions."""
        return artifact_key(self.kind, self.name, self.version)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)
