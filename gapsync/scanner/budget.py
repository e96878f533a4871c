"""Scan budgets: how much work one artifact may cost before its scan stops with a finding.

Why: a scan reads attacker-chosen bytes. An 8 KiB zip nested five deep with eight copies per
level is 37,448 entries; a 10 MB gzip can hold gigabytes; a pickle can be millions of opcodes.
Without a limit such a file costs minutes of CPU on both sides of the gap, and a scan that was
cut short must not look like a clean one. So every artifact gets a :class:`Budget` (decompressed
bytes, container nesting depth, container entries, pickle objects held, wall time), charged by
the readers as they go. Exceeding one raises :class:`BudgetExceeded`; the scan of that artifact
stops and reports ``scan.budget`` (high), which the default policy blocks (fail closed).

The budgets count work, not wall-clock time, so that a verdict is the same on a busy machine and
an idle one, and on both sides of the gap: pickle opcodes and protobuf fields followed
("parse steps"), container entries opened,
bytes out of decompressors, nesting depth, and the objects one pickle holds at once (memory).
Each grows with the artifact's size from a floor (a 20 GB checkpoint may hold more than a 10 KB
pickle); the floors keep any input of 10 MB or less under 2 seconds. CPU time of the scanning
thread is the backstop for work the counters do not see. The limits come from the policy
(``models.scan_budget``, docs/policy.md); :data:`DEFAULT_LIMITS` apply without one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

MIB = 1 << 20
FREE_SIZE = 10 * MIB  # inputs up to this size get the floors alone


class BudgetExceeded(Exception):  # noqa: N818 (not an error of the scanner: a verdict on the input)
    """A scan budget ran out; ``budget`` names which one, ``message`` says by how much."""

    def __init__(self, budget: str, message: str) -> None:
        super().__init__(message)
        self.budget = budget


@dataclass(frozen=True)
class BudgetLimits:
    """The configurable limits (policy ``models.scan_budget``); see docs/policy.md."""

    parse_steps: int = 2_000_000  # pickle opcodes (1 each) and protobuf fields (3 each), at least; or one per 4 bytes
    entries: int = 5_000  # container entries (zip entries, tar members, streams), at least; or one per 512 bytes
    decompressed_bytes: int = 128 * MIB  # bytes out of decompressors, at least ...
    decompressed_ratio: int = 32  # ... or this many times the artifact's size
    depth: int = 8  # containers inside containers (zip in tar in gzip ...)
    pickle_objects: int = 1_000_000  # objects one pickle keeps on its stack and memo at once
    cpu_seconds: float = 5.0  # CPU time of the scanning thread (a backstop), at least ...
    cpu_seconds_per_gib: float = 100.0  # ... plus this much per GiB of the artifact beyond 10 MiB

    def for_size(self, size: int) -> Budget:
        return Budget(self, size)


DEFAULT_LIMITS = BudgetLimits()


class Budget:
    """What is left for one artifact. Cheap to charge: the readers call it per chunk, entry and
    16,384 opcodes."""

    __slots__ = ("limits", "max_ops", "max_entries", "max_bytes", "seconds", "deadline", "ops", "entries",
                 "out_bytes")

    def __init__(self, limits: BudgetLimits = DEFAULT_LIMITS, size: int = 0) -> None:
        size = max(0, size)
        self.limits = limits
        self.max_ops = max(limits.parse_steps, size // 4)
        self.max_entries = max(limits.entries, size // 512)
        self.max_bytes = max(limits.decompressed_bytes, limits.decompressed_ratio * size)
        self.seconds = limits.cpu_seconds + limits.cpu_seconds_per_gib * max(0, size - FREE_SIZE) / (1 << 30)
        self.deadline: float | None = None  # set at the first check: reading the clock is a system call
        self.ops = self.entries = self.out_bytes = 0

    def check_time(self) -> None:
        now = time.thread_time()
        if self.deadline is None:
            self.deadline = now + self.seconds
        elif now > self.deadline:
            raise BudgetExceeded("cpu_seconds", f"the scan used more than its {self.seconds:.1f} s of CPU time")

    def decompressed(self, n: int) -> None:
        before = self.out_bytes
        self.out_bytes = before + n
        if self.out_bytes > self.max_bytes:
            raise BudgetExceeded("decompressed_bytes",
                                 f"more than {self.max_bytes:,} bytes came out of decompression (a bomb?)")
        if self.out_bytes >> 22 != before >> 22:  # the clock every 4 MiB (reading it is a system call)
            self.check_time()

    def entry(self) -> None:
        self.entries += 1
        if self.entries > self.max_entries:
            raise BudgetExceeded("entries", f"more than {self.max_entries:,} container entries "
                                            "(zip entries, tar members, compressed streams)")
        if not self.entries & 63:
            self.check_time()

    def depth(self, depth: int) -> None:
        if depth > self.limits.depth:
            raise BudgetExceeded("depth", f"containers nested more than {self.limits.depth} deep")

    def steps(self, n: int) -> None:
        """Parsing work outside pickles (protobuf fields), in the unit of a pickle opcode."""
        self.ops += n
        if self.ops > self.max_ops:
            raise BudgetExceeded("parse_steps", f"more than {self.max_ops:,} parse steps (pickle opcodes, "
                                                "protobuf fields)")
        self.check_time()

    def pickle(self, ops: int, objects: int) -> None:
        self.ops += ops
        if self.ops > self.max_ops:
            raise BudgetExceeded("parse_steps", f"more than {self.max_ops:,} parse steps (pickle opcodes, "
                                                "protobuf fields)")
        if objects > self.limits.pickle_objects:
            raise BudgetExceeded("pickle_objects", f"a pickle holds more than {self.limits.pickle_objects:,} "
                                                   "objects on its stack and memo")
        if ops >= 0x4000:  # a full slice of opcodes (not the end of a small pickle)
            self.check_time()
