"""The HTML report: escaped, self-contained, and readable in a real browser (headless Chromium)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from gapsync.reports.html import render_html
from tests.support.sbom_example import example_bundle_info

SIGNERS = ["ed25519:3f2a9c0d1b7e4a55 (dmz-release-1)"]
SCRIPT = "<script>alert('x')</script>"
ATTR = '"><img src=x onerror=alert(1)>'


def hostile_bundle_info() -> dict:
    """The example bundle with markup in every kind of string that comes from outside."""
    info = example_bundle_info()
    info["name"] = f"demo{SCRIPT}"
    info["findings"][0]["message"] = f"requests 2.19.0: {SCRIPT} leaks the Authorization header"
    info["findings"][4]["location"] = f"archive/{ATTR}.pkl"
    info["findings"][4]["evidence"] = {"global": f"os.system{SCRIPT}"}
    info["decisions"][2]["waivers"][0]["reason"] = f"accepted {SCRIPT}"
    info["artifacts"][4]["files"][0]["filename"] = f"foo{ATTR}.whl"
    return info


def test_everything_is_escaped() -> None:
    page = render_html(hostile_bundle_info(), signers=[f"key{SCRIPT}"])
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    # title, heading, footer, signer, finding message, finding evidence, waiver reason
    assert page.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;") == 7
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page


def test_self_contained() -> None:
    page = render_html(example_bundle_info(), SIGNERS)
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", page, re.IGNORECASE)
    assert not re.search(r"(src|href)\s*=", page, re.IGNORECASE)
    assert "url(" not in page and "@import" not in page
    assert "default-src 'none'" in page  # and the page tells the browser so


def test_content() -> None:
    page = render_html(example_bundle_info(), SIGNERS)
    decisions = page[page.index('id="decisions"'):page.index('id="findings"')]
    # blocked first, with its reason
    assert decisions.index("python:requests@2.19.0") < decisions.index("python:paramiko@2.0.0")
    assert "high vulnerability PYSEC-2018-28" in decisions
    assert "1 artifact blocked by policy and left out of this bundle" in page
    findings = page[page.index('id="findings"'):page.index('id="waivers"')]
    assert findings.index("critical") < findings.index("high") < findings.index("medium")
    assert "archive/data.pkl" in findings and ">123<" in findings  # location and offset
    waivers = page[page.index('id="waivers"'):page.index('id="crossed"')]
    assert "vendor fix pending" in waivers and "alice" in waivers and "2026-12-31" in waivers
    assert "38 days left at creation" in waivers
    crossed = page[page.index('id="crossed"'):]
    assert "7 of 8 artifacts" in crossed and "not in bundle" in crossed
    assert "sha256:" + example_bundle_info()["artifacts"][5]["digest"].removeprefix("sha256:") in crossed
    assert "Apache-2.0<div class=\"muted\">as declared: apache-2.0</div>" in crossed
    for text in ("demo", "prod", "2026-11-23T01:35:00+00:00", "gapsync 0.1.0", "dmz-1", SIGNERS[0].split()[0],
                 "github.com/pypa/advisory-database@3ccb6125", "2661 advisories"):
        assert text in page


def test_expired_waiver_and_no_signers() -> None:
    info = example_bundle_info()
    info["decisions"][2]["waivers"][0]["until"] = "2026-01-01"
    page = render_html(info, signers=[])
    assert "expired before this bundle" in page and "no signer" in page
    assert "not given" in render_html(info)


def test_minimal_and_malformed_input() -> None:
    for info in ({}, {"artifacts": None, "findings": "x", "decisions": [1, None]},
                 {"artifacts": [{"kind": "python"}], "findings": [{"severity": "catastrophic"}],
                  "decisions": [{"artifact": "python:x@1", "action": "explode", "waivers": [{"until": "soon"}]}]}):
        page = render_html(info)
        assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


# --- in a real browser ------------------------------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("Debian's chromium is not installed and this user cannot apt-get install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.skip(f"chromium could not be installed ({' '.join(cmd)}: {done.stderr.strip()[-300:]})")
    found = shutil.which("chromium")
    if not found:
        pytest.skip("apt-get install chromium succeeded but no chromium binary is on PATH")
    return found


def _run_chromium(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_renders_in_headless_chromium(tmp_path: Path) -> None:
    chromium = _chromium()
    page = tmp_path / "report.html"
    page.write_text(render_html(hostile_bundle_info(), SIGNERS), encoding="utf-8")

    dom = _run_chromium(chromium, tmp_path / "profile-dom", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    assert "1 artifact blocked by policy and left out of this bundle" in text
    decisions = text[text.index('id="decisions"'):text.index('id="findings"')]
    body = decisions.index("<tbody>")
    first_row = decisions[body:decisions.index("</tr>", body)]
    assert "python:requests@2.19.0" in first_row and "blocked" in first_row
    assert "vulnerabilities.block_at" in first_row and "high vulnerability PYSEC-2018-28" in first_row
    # the hostile strings stayed text: no element was made of them
    assert "<script" not in text.lower() and "<img" not in text.lower()
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in text

    shot = tmp_path / "out.png"
    done = _run_chromium(chromium, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,2000",
                         "--hide-scrollbars", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 2000)
    assert len(data) > 50_000  # a page of text and tables, not a blank screen


def test_a_reason_repeated_on_many_artifacts_is_one_line():
    """203 packages without an advisory database: one line with the count and the artifacts,
    and the two real findings are not buried."""
    from gapsync.reports.html import group_reasons

    why = "not checked for vulnerabilities: no advisory database (gapsync advisories import / update)"
    decisions = [{"artifact": f"python:pkg{i}@1.0", "action": "warn",
                  "reasons": [{"rule": "vulnerabilities.no_database", "action": "warn", "message": why}], "waivers": []}
                 for i in range(203)]
    decisions[7]["action"] = "block"
    decisions[7]["reasons"].append({"rule": "models.block_at", "action": "block", "message": "critical: os.system"})
    info = {"name": "big", "artifacts": [], "findings": [], "decisions": decisions, "advisories": None}
    [g] = group_reasons(decisions)
    assert (g["rule"], g["count"], g["messages"]) == ("vulnerabilities.no_database", 203, [why])
    page = render_html(info)
    decisions_html = page[page.index('id="decisions"'):page.index('id="findings"')]
    assert decisions_html.count("no advisory database") == 1 and "<b>×203</b>" in decisions_html
    assert "… and 183 more" in decisions_html  # 20 named, the rest counted
    # the one artifact with a reason of its own keeps its row, with only that reason
    assert decisions_html.count("python:pkg7@1.0") == 2 and "critical: os.system" in decisions_html
    assert "python:pkg8@1.0" in decisions_html.split("Other reasons")[0]
    assert "python:pkg8@1.0" not in decisions_html.split("Other reasons")[1]
    # below the threshold nothing is grouped
    assert group_reasons(decisions[:2]) == []


def test_a_stale_database_is_marked_in_the_header():
    info = example_bundle_info()
    info["advisories"] = {**info["advisories"], "age_days": 787, "max_age_days": 30, "stale": True}
    assert "stale: 787 days old, the policy allows 30" in render_html(info)
    info["advisories"]["stale"] = False
    assert "stale:" not in render_html(info)


def test_repeated_lesser_findings_fold_and_the_serious_ones_never_do():
    findings = [{"artifact": f"python:pkg{i}@1.0", "scanner": "license", "rule": "license.unknown",
                 "severity": "medium", "message": "license unknown: no License field", "file": f"pkg{i}.whl"}
                for i in range(50)]
    findings += [{"artifact": f"model:org/m{i}@main", "scanner": "model", "rule": "pickle.global.denied",
                  "severity": "critical", "message": f"os.system called in m{i}", "file": "model.pkl"} for i in range(4)]
    info = {"name": "big", "artifacts": [], "findings": findings, "decisions": [], "advisories": None}
    page = render_html(info)
    section = page[page.index('id="findings"'):page.index('id="waivers"')]
    assert section.count("license unknown: no License field") == 1 and "<b>×50</b>" in section
    assert "50 artifacts" in section and "50 files" in section
    assert all(f"os.system called in m{i}" in section for i in range(4))  # critical: one row each
    assert "pickle.global.denied</span> <b>" not in section
