"""Tar archives, read as a stream: image layers (a gzip or zstd tar once decompressed) and
archived model directories. Every regular member is handed back to the dispatcher, so a pickle
inside a layer inside a gzip is found; nothing is extracted to disk. Links and devices are
skipped (they carry no bytes); a damaged archive is a finding, after what came before it."""

from __future__ import annotations

import tarfile
from typing import BinaryIO

from gapsync.model import Finding, Severity
from gapsync.scanner.base import Where, finding

MAX_MEMBERS = 1_000_000


def scan_tar(f: BinaryIO, where: Where) -> list[Finding]:
    """Findings for a tar stream; a damaged archive is high (what follows the damage is unread)."""
    from gapsync.scanner.models import scan_stream

    found: list[Finding] = []
    count = 0
    budget = where.budget
    try:
        with tarfile.open(fileobj=f, mode="r|") as tf:
            for member in tf:
                if budget is not None:
                    budget.entry()
                count += 1
                if count > MAX_MEMBERS:
                    found.append(finding(where, "tar.too_many_members", Severity.HIGH,
                                         f"more than {MAX_MEMBERS} members; the rest was not scanned"))
                    break
                if not member.isreg() or member.size == 0:
                    continue
                stream = tf.extractfile(member)
                if stream is None:
                    continue
                _, inner = scan_stream(stream, where.child(member.name, member.size))
                found += [x for x in inner if x.rule != "format.unrecognised"]
    except (tarfile.TarError, OSError, EOFError) as e:
        found.append(finding(where, "tar.corrupt", Severity.HIGH,
                             f"tar archive is damaged after {count} member(s) ({e}): what came before was scanned, "
                             "the rest cannot be read the way a loader would read it"))
    return found
