"""The interface every publish target implements.

Contract (as containers/image's ImageDestination): every blob is verified and in the mirror's
blob store before ``publish``; ``check`` runs for all artifacts of a bundle before anything is
written, so a conflict refuses the whole bundle; ``publish`` is idempotent, so a re-run after an
interruption finishes the job. Every write goes through ``fs`` (the import's publish journal),
so that a publish that fails half-way can be undone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Protocol

from gapsync.mirror.journal import DirectWriter
from gapsync.model import Target


class PublishTarget(Protocol):
    kinds: ClassVar[frozenset[str]]

    def check(self, targets: list[Target]) -> None:
        """Raise before any write if these targets cannot be published (unsafe name, conflict)."""

    def publish(self, targets: list[Target], blob_path: Callable[[str], Path], fs: DirectWriter) -> list[str]:
        """Publish (idempotently), writing only through ``fs``; return what became visible."""

    def is_published(self, target: Target) -> bool: ...
