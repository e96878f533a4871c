"""What crosses the gap, as records both sides share: the paths of the bundle-level targets.

The connected side writes these targets (``bundler/create.py``), the air side and ``inspect`` read
them; one owner for the names so that the two sides can never disagree.
"""

from __future__ import annotations

BUNDLE_INFO_PATH = "gapsync/bundle.json"
SBOM_PATH = "gapsync/sbom.cdx.json"
POLICY_PATH = "gapsync/policy.yaml"
ADVISORIES_PATH = "gapsync/advisories.osv.jsonl.gz"
BUNDLE_LEVEL = {"gapsync/bundle.json", "gapsync/sbom.cdx.json"}  # new in every bundle: not a change by themselves
