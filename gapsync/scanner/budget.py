"""Scan budgets: how much work one artifact may cost before its scan stops with a finding.

Why: a scan reads attacker-chosen bytes. An 8 KiB zip nested five deep with eight copies per
level is 37,448 entries; a 10 MB gzip can hold gigabytes; a pickle can be millions of opcodes.
Without a limit such a file costs minutes of CPU on both sides of the gap, and a scan that was
cut short must not look like a clean one. So every artifact gets a :class:`Budget` (decompressed
bytes, container nesting depth, container entries, pickle objects held, wall time), charged by
the readers as they go. Exceeding one raises :class:`BudgetExceeded`; the scan of that artifact
stops and reports ``scan.budget`` (high), which the default policy blocks (fail closed).

The time and decompressed-bytes budgets grow with the artifact's size (a 20 GB checkpoint may take
longer than a 10 KB pickle), from a floor that keeps any input of 10 MB or less under 2 seconds.
The limits come from the policy (``models.scan_budget``, docs/policy.md); :data:`DEFAULT_LIMITS`
are used when a scan has no policy (``gapsync scan FILE`` without ``--policy``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

MIB = 1 << 20


class BudgetExceeded(Exception):  # noqa: N818 (not an error of the scanner: a verdict on the input)
    """A scan budget ran out; ``budget`` names which one, ``message`` says by how much."""

    def __init__(self, budget: str, message: str) -> None:
        super().__init__(message)
        self.budget = budget


@dataclass(frozen=True)
class BudgetLimits:
    """The configurable limits (policy ``models.scan_budget``); see docs/policy.md."""

    seconds: float = 1.0  # wall time for any artifact ...
    seconds_per_gib: float = 50.0  # ... plus this much per GiB of the artifact's own size
    decompressed_bytes: int = 1 << 30  # bytes out of decompressors, at least ...
    decompressed_ratio: int = 200  # ... or this many times the artifact's size
    depth: int = 8  # containers inside containers (zip in tar in gzip ...)
    entries: int = 200_000  # container entries (zip entries, tar members, decompressed streams)
    pickle_objects: int = 2_000_000  # objects one pickle keeps on its stack and memo at once

    def for_size(self, size: int) -> Budget:
        return Budget(self, size)


DEFAULT_LIMITS = BudgetLimits()


class Budget:
    """What is left for one artifact. Cheap to charge: the readers call it per chunk and entry."""

    __slots__ = ("limits", "deadline", "seconds", "max_bytes", "out_bytes", "entries")

    def __init__(self, limits: BudgetLimits = DEFAULT_LIMITS, size: int = 0) -> None:
        self.limits = limits
        self.seconds = limits.seconds + limits.seconds_per_gib * max(0, size) / (1 << 30)
        self.deadline = time.monotonic() + self.seconds
        self.max_bytes = max(limits.decompressed_bytes, limits.decompressed_ratio * max(0, size))
        self.out_bytes = 0
        self.entries = 0

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise BudgetExceeded("time", f"the scan took longer than its time budget of {self.seconds:.1f} s")

    def decompressed(self, n: int) -> None:
        self.out_bytes += n
        if self.out_bytes > self.max_bytes:
            raise BudgetExceeded("decompressed_bytes",
                                 f"more than {self.max_bytes:,} bytes came out of decompression "
                                 "(a decompression bomb, or set models.scan_budget.decompressed_bytes)")
        self.check_time()

    def entry(self) -> None:
        self.entries += 1
        if self.entries > self.limits.entries:
            raise BudgetExceeded("entries", f"more than {self.limits.entries:,} container entries "
                                            "(zip entries, tar members, compressed streams)")
        self.check_time()

    def depth(self, depth: int) -> None:
        if depth > self.limits.depth:
            raise BudgetExceeded("depth", f"containers nested more than {self.limits.depth} deep")

    def objects(self, n: int) -> None:
        if n > self.limits.pickle_objects:
            raise BudgetExceeded("pickle_objects", f"a pickle holds more than {self.limits.pickle_objects:,} "
                                                   "objects on its stack and memo")
        self.check_time()


def unlimited() -> Budget:
    """A budget for callers that scan without one (tests of a single format)."""
    return Budget(BudgetLimits(seconds=1e9, decompressed_bytes=1 << 62, depth=8, entries=1 << 62,
                               pickle_objects=1 << 62))
