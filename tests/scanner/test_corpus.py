"""Every file of the repository's model corpus (tests/data/corpus/models) gets the verdict its manifest expects.

Verdict: "malicious" when the scanner reports at least one finding of severity high or worse
(the default of ``gapsync scan --fail-on``), "benign" otherwise.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.support.data import CORPUS  # noqa: E402
from tests.support.samples import is_malicious, scan

MANIFEST = CORPUS / "manifest.json"
RECORDS = json.loads(MANIFEST.read_text())  # in the repository: missing is a failure, not a skip


@pytest.mark.parametrize("record", RECORDS, ids=[r["path"] for r in RECORDS])
def test_corpus_verdict(record: dict) -> None:
    path = CORPUS / record["path"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"], "corpus file changed"
    findings = scan(path)
    verdict = "malicious" if is_malicious(findings) else "benign"
    assert verdict == record["expected"], (record["why"], [(f.rule, f.severity.value, f.message) for f in findings])


def test_corpus_has_no_internal_errors() -> None:
    from gapsync.scanner.base import scan_path

    report = scan_path(CORPUS)
    docs = [p for p in CORPUS.rglob("*") if p.name in ("README.md", "manifest.json", "LICENSE", "NOTICE.txt")]
    assert len(docs) == 6  # README.md, manifest.json, the upstream licences (picklescan: LICENSE, NOTICE.txt)
    assert report.files == len(RECORDS) + len(docs)  # every sample scanned, and nothing else there
    assert not [f for f in report.findings if f.rule.startswith("scan.")]
