"""Where the suite's own data lives: everything is in the repository, so a fresh clone runs whole.

- ``CORPUS``: model files with known verdicts (tests/data/corpus/models, see its README for
  sources and licences); never loaded, only scanned.
- ``ADVISORIES``: the PyPA advisory database snapshot (CC BY 4.0, attribution in its README),
  shipped with the demo (gapsync/demo/data) so the demo and the tests check the same data.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "data" / "corpus" / "models"
ADVISORIES_DIR = ROOT / "gapsync" / "demo" / "data"
ADVISORIES = ADVISORIES_DIR / "pypa-advisory-db.osv.jsonl.gz"
