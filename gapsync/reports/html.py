"""The HTML report a security officer reads before approving a bundle.

One self-contained page: inline CSS, no script, no external asset, and a Content-Security-Policy
that forbids both, so the page renders the same on an air-gapped workstation and a hostile
string that slipped through could still not run. Every value comes from outside (package names,
advisory texts, waiver reasons, file names inside archives) and is HTML-escaped where it is
written, through :func:`_e` only.

Sections, in reading order: the bundle (name, channel, version, created, producer, host,
signers, advisory database, policy); the verdict line; a summary (artifacts by kind, findings by
severity, blocked / warned / allowed / waived); the decisions, blocked first, with the rule and
the finding behind each (a rule that fires on many artifacts is one line with the count and
the artifacts); the findings by severity, worst first, with artifact, file, location (the path
inside an archive), offset and message (a medium or lower rule found many times is one row with
the count; critical and high findings are always listed one by one); the waivers with their expiry (counted from
the bundle's creation, so the page is reproducible) and approver; and what crossed: every
artifact with its license, size and digests, blocked ones marked as not in the bundle.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from datetime import date
from typing import Any

from gapsync.model import Severity, artifact_key
from gapsync.scanner.artifacts import licenses

SEVERITIES = [s.value for s in sorted(Severity, key=lambda s: -s.rank)]  # critical .. info, unknown
ACTION_ORDER = {"block": 0, "": 1, "warn": 2, "allow": 3}
ACTION_LABEL = {"block": "blocked", "warn": "warned", "allow": "allowed"}
MAX_FILES_SHOWN = 12  # per artifact in "what crossed"; the rest are counted
GROUP_AT = 3  # a rule that fires on this many artifacts or more is one line, with the count and the artifacts
MAX_GROUP_NAMES = 20  # artifacts named in a grouped line; the rest are counted
FOLD_NEVER = {"critical", "high"}  # findings of these severities are always listed one by one

CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#ffffff;--soft:#f6f8fa;
--block:#b42318;--block-bg:#fef3f2;--warn:#9a5b00;--warn-bg:#fffaeb;--allow:#067647;--allow-bg:#ecfdf3;
--critical:#7a1010;--high:#c4320a;--medium:#b54708;--low:#4e5ba6;--info:#175cd3;--unknown:#59636e}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,"Noto Sans","DejaVu Sans",Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:24px;margin:0 0 4px}
h1 .sub{font-weight:400;color:var(--muted)}
h2{font-size:18px;margin:32px 0 10px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:20px 0 8px}
.mono{font-family:ui-monospace,SFMono-Regular,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px;
overflow-wrap:anywhere}
.muted{color:var(--muted)}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:3px 16px;margin:14px 0 0}
dl.meta dt{color:var(--muted)}
dl.meta dd{margin:0;overflow-wrap:anywhere}
.verdict{margin:20px 0 0;padding:12px 16px;border-radius:8px;font-size:16px;font-weight:600;border:1px solid}
.verdict.block{background:var(--block-bg);color:var(--block);border-color:#fda29b}
.verdict.warn{background:var(--warn-bg);color:var(--warn);border-color:#fedf89}
.verdict.allow{background:var(--allow-bg);color:var(--allow);border-color:#abefc6}
.verdict .detail{display:block;font-weight:400;font-size:14px;color:var(--fg);margin-top:2px}
.cards{display:grid;grid-template-columns:repeat(3,1fr);gap:14px;margin-top:14px}
.card{border:1px solid var(--line);border-radius:8px;padding:12px 14px;background:var(--soft)}
.card h3{margin:0 0 8px;font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
.counts{display:flex;flex-wrap:wrap;gap:8px}
.count{display:inline-flex;align-items:baseline;gap:6px;padding:4px 10px;border-radius:6px;background:#fff;
border:1px solid var(--line)}
.count b{font-size:18px}
.count.zero{opacity:.45}
table{width:100%;border-collapse:collapse;margin:6px 0 0;table-layout:fixed}
th,td{text-align:left;vertical-align:top;padding:6px 8px;border-bottom:1px solid var(--line)}
th{font-size:12px;text-transform:uppercase;letter-spacing:.03em;color:var(--muted);background:var(--soft)}
tr.block td{background:var(--block-bg)}
tr.block td:first-child{box-shadow:inset 4px 0 0 var(--block)}
tr.warn td:first-child{box-shadow:inset 4px 0 0 #f79009}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;
white-space:nowrap}
.badge.block{background:var(--block)}.badge.warn{background:#dc6803}.badge.allow{background:var(--allow)}
.badge.none{background:var(--unknown)}
.badge.critical{background:var(--critical)}.badge.high{background:var(--high)}.badge.medium{background:var(--medium)}
.badge.low{background:var(--low)}.badge.info{background:var(--info)}.badge.unknown{background:var(--unknown)}
.tag{display:inline-block;padding:0 6px;border-radius:4px;font-size:11px;border:1px solid var(--line);
color:var(--muted);white-space:nowrap}
.tag.out{color:var(--block);border-color:#fda29b;background:var(--block-bg)}
.tag.expired{color:#fff;background:var(--block);border-color:var(--block)}
.tag.soon{color:var(--warn);border-color:#fedf89;background:var(--warn-bg)}
ul.reasons{margin:0;padding-left:18px}
ul.files{margin:0;padding:0;list-style:none}
ul.files li{margin:0 0 2px}
.num{text-align:right;white-space:nowrap}
.empty{color:var(--muted);font-style:italic}
footer{margin-top:36px;color:var(--muted);font-size:12px}
@media print{main{max-width:none;padding:0}tr{break-inside:avoid}h2{break-after:avoid}}
"""


def _e(value: Any) -> str:
    """The one escape: every value written into the page goes through here."""
    return html.escape("" if value is None else str(value), quote=True)


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _severity(value: Any) -> str:
    s = str(value or "unknown").lower()
    return s if s in SEVERITIES else "unknown"


def _action(value: Any) -> str:
    a = str(value or "").lower()
    return a if a in ("block", "warn", "allow") else ""


def _key(art: dict) -> str:
    return artifact_key(str(art.get("kind")), str(art.get("name")), str(art.get("version")))


def human_size(n: Any) -> str:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        return "—"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _artifact_size(art: dict) -> int | None:
    if isinstance(art.get("size"), int):
        return art["size"]
    sizes = [f.get("size") for f in _list(art.get("files")) if isinstance(f, dict)]
    return sum(s for s in sizes if isinstance(s, int)) if sizes else None


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _cols(*percent: int) -> str:
    return "<colgroup>" + "".join(f'<col style="width:{p}%">' for p in percent) + "</colgroup>"


def _badge(kind: str, text: str | None = None) -> str:
    return f'<span class="badge {_e(kind or "none")}">{_e(text or kind or "no decision")}</span>'


def render_html(bundle_info: dict, signers: list[str] | None = None) -> str:
    """The report for one bundle (its ``gapsync/bundle.json``); ``signers`` are the keys that
    signed it as the caller verified them (None: not given)."""
    info = _dict(bundle_info)
    artifacts = [a for a in _list(info.get("artifacts")) if isinstance(a, dict)]
    findings = [f for f in _list(info.get("findings")) if isinstance(f, dict)]
    decisions = [d for d in _list(info.get("decisions")) if isinstance(d, dict)]
    by_artifact = {str(d.get("artifact")): d for d in decisions}
    created = _date(info.get("created"))

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>gapsync report: {_e(info.get('name'))} {_e(info.get('channel'))} v{_e(info.get('version'))}</title>",
        f"<style>{CSS}</style></head><body><main>",
        _header(info, signers),
        _verdict(artifacts, decisions, findings),
        _summary(artifacts, findings, decisions),
        _decisions(decisions, artifacts),
        _findings(findings, by_artifact),
        _waivers(decisions, created),
        _crossed(artifacts, by_artifact),
        f"<footer>Generated by gapsync from <span class=\"mono\">gapsync/bundle.json</span> of bundle "
        f"{_e(info.get('name'))}-{_e(info.get('channel'))}-{_e(info.get('version'))}; "
        "this page contains no script and loads nothing.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _header(info: dict, signers: list[str] | None) -> str:
    adv = _dict(info.get("advisories"))
    pol = _dict(info.get("policy"))
    if signers is None:
        signed = '<span class="muted">not given (verify the bundle before approving it)</span>'
    elif not signers:
        signed = '<span class="tag out">no signer</span>'
    else:
        signed = "<br>".join(f'<span class="mono">{_e(s)}</span>' for s in signers)
    if adv:
        stale = (f' <span class="tag soon">stale: {_e(adv.get("age_days"))} days old, the policy allows '
                 f'{_e(adv.get("max_age_days"))}</span>' if adv.get("stale") is True else "")
        advisories = (f"{_e(adv.get('source'))} — {_e(adv.get('advisories'))} advisories, modified "
                      f"{_e(adv.get('modified'))}{stale}<br><span class=\"mono muted\">sha256 {_e(adv.get('sha256'))}</span>")
    else:
        advisories = '<span class="tag out">none: vulnerabilities were not checked</span>'
    policy = (f"{_e(pol.get('name'))} <span class=\"mono muted\">sha256 {_e(pol.get('sha256'))}</span>"
              if pol else '<span class="muted">not recorded</span>')
    rows = [("Created", _e(info.get("created"))), ("Kind", _e(info.get("kind"))),
            ("Producer", f"{_e(info.get('producer'))} on {_e(info.get('host'))}"),
            ("Signed by", signed), ("Advisory database", advisories), ("Policy", policy)]
    diffs = _dict(info.get("python_version_differences"))
    if diffs:  # targets got different versions of one project (the spec's python.same_versions aligns them)
        rows.append(("Versions differ between targets", "<br>".join(
            f"{_e(name)}: " + ", ".join(f"{_e(v)} ({_e(t)})" for t, v in sorted(_dict(per).items()))
            for name, per in sorted(diffs.items(), key=lambda kv: str(kv[0]))[:50])))
    meta = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return (f"<header><h1>Bundle {_e(info.get('name'))} <span class=\"sub\">· channel {_e(info.get('channel'))}"
            f" · version {_e(info.get('version'))}</span></h1>"
            f"<div class=\"muted\">Security report for approval before the bundle crosses the gap</div>"
            f"<dl class=\"meta\">{meta}</dl></header>")


def _verdict(artifacts: list[dict], decisions: list[dict], findings: list[dict]) -> str:
    actions = Counter(_action(d.get("action")) for d in decisions)
    waived = sum(1 for d in decisions if _list(d.get("waivers")))
    decided = {str(d.get("artifact")) for d in decisions}
    undecided = sum(1 for a in artifacts if _key(a) not in decided)
    bits = [f"{len(artifacts)} artifacts", f"{len(findings)} findings",
            f"{actions['warn']} warned", f"{waived} allowed under a waiver"]
    if undecided:
        bits.append(f"{undecided} without a decision")
    if actions["block"]:
        cls, head = "block", (f"{actions['block']} artifact{'s' if actions['block'] != 1 else ''} blocked by policy "
                              "and left out of this bundle")
    elif actions["warn"] or undecided:
        cls, head = "warn", "Nothing blocked; warnings to review"
    else:
        cls, head = "allow", "Everything allowed by policy"
    return f'<div class="verdict {cls}">{_e(head)}<span class="detail">{_e(" · ".join(bits))}</span></div>'


def _counts(items: list[tuple[str, int, str]]) -> str:
    return '<div class="counts">' + "".join(
        f'<span class="count{" zero" if n == 0 else ""}"><b>{n}</b>{label}</span>' for label, n, _ in items) + "</div>"


def _summary(artifacts: list[dict], findings: list[dict], decisions: list[dict]) -> str:
    kinds = Counter(str(a.get("kind")) for a in artifacts)
    kind_items = [(_e(k), n, "") for k, n in sorted(kinds.items())] or [("artifacts", 0, "")]
    sev = Counter(_severity(f.get("severity")) for f in findings)
    sev_items = [(_badge(s), sev[s], s) for s in SEVERITIES]
    actions = Counter(_action(d.get("action")) for d in decisions)
    waived = sum(1 for d in decisions if _list(d.get("waivers")))
    dec_items = [(_badge("block", "blocked"), actions["block"], ""), (_badge("warn", "warned"), actions["warn"], ""),
                 (_badge("allow", "allowed"), actions["allow"], ""), ("waived", waived, "")]
    return ('<section id="summary"><h2>Summary</h2><div class="cards">'
            f'<div class="card"><h3>Artifacts by kind</h3>{_counts(kind_items)}</div>'
            f'<div class="card"><h3>Findings by severity</h3>{_counts(sev_items)}</div>'
            f'<div class="card"><h3>Decisions</h3>{_counts(dec_items)}</div>'
            "</div></section>")


def _reason(r: dict) -> str:
    finding = f' <span class="mono muted">[{_e(r.get("finding"))}]</span>' if r.get("finding") else ""
    return f'<li><span class="mono">{_e(r.get("rule"))}</span>: {_e(r.get("message"))}{finding}</li>'


def group_reasons(decisions: list[dict], at: int = GROUP_AT) -> list[dict]:
    """The reasons one rule gives, with one action, on ``at`` or more artifacts: ``[{rule,
    action, count, artifacts, messages}]`` (most artifacts first). A missing advisory database
    gives every package the same reason: one line with the count says it, 203 rows would bury
    the findings that matter. The text output of ``scan`` uses the same grouping."""
    groups: dict[tuple[str, str], dict] = {}
    for d in decisions:
        for r in _list(d.get("reasons")):
            if not isinstance(r, dict):
                continue
            g = groups.setdefault((str(r.get("rule")), _action(r.get("action"))),
                                  {"rule": str(r.get("rule")), "action": _action(r.get("action")), "artifacts": {},
                                   "messages": {}})
            g["artifacts"][str(d.get("artifact"))] = None  # dicts: ordered sets
            g["messages"][str(r.get("message"))] = None
    out = [{**g, "artifacts": list(g["artifacts"]), "messages": list(g["messages"]), "count": len(g["artifacts"])}
           for g in groups.values() if len(g["artifacts"]) >= at]
    return sorted(out, key=lambda g: (ACTION_ORDER.get(g["action"], 1), -g["count"], g["rule"]))


def _grouped(groups: list[dict]) -> str:
    rows = []
    for g in groups:
        names = ", ".join(g["artifacts"][:MAX_GROUP_NAMES])
        more = len(g["artifacts"]) - MAX_GROUP_NAMES
        message = g["messages"][0] + (f" (and {len(g['messages']) - 1} other messages)" if len(g["messages"]) > 1 else "")
        rows.append(f'<tr class="{g["action"]}"><td>{_badge(g["action"], ACTION_LABEL.get(g["action"]))}</td>'
                    f'<td><span class="mono">{_e(g["rule"])}</span> <b>×{g["count"]}</b></td><td>{_e(message)}</td>'
                    f'<td class="mono">{_e(names)}' + (f' <span class="muted">… and {more} more</span>' if more > 0 else "")
                    + "</td></tr>")
    return ('<h3>Repeated reasons <span class="muted">(one line per rule that fired on '
            f'{GROUP_AT} or more artifacts)</span></h3><table>{_cols(9, 21, 35, 35)}'
            "<thead><tr><th>Action</th><th>Rule</th><th>Message</th><th>Artifacts</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table><h3>Other reasons, by artifact</h3>")


def _decisions(decisions: list[dict], artifacts: list[dict]) -> str:
    decided = {str(d.get("artifact")) for d in decisions}
    groups = group_reasons(decisions)
    grouped = {(g["rule"], g["action"]) for g in groups}
    rows = list(decisions) + [{"artifact": _key(a), "action": "", "reasons": [], "waivers": []}
                              for a in artifacts if _key(a) not in decided]
    rows.sort(key=lambda d: (ACTION_ORDER.get(_action(d.get("action")), 1), str(d.get("artifact"))))
    if not rows:
        return '<section id="decisions"><h2>Decisions</h2><p class="empty">No decisions recorded.</p></section>'
    body = []
    for d in rows:
        action = _action(d.get("action"))
        reasons = [r for r in _list(d.get("reasons")) if isinstance(r, dict)]
        if grouped and reasons:
            own = [r for r in reasons if (str(r.get("rule")), _action(r.get("action"))) not in grouped]
            if not own and not _list(d.get("waivers")):
                continue  # every reason of this artifact is in a grouped line
            reasons = own
        waivers = [w for w in _list(d.get("waivers")) if isinstance(w, dict)]
        why = f'<ul class="reasons">{"".join(_reason(r) for r in reasons)}</ul>' if reasons else (
            '<span class="muted">no rule fired</span>' if action else '<span class="muted">no decision recorded</span>')
        waived = "".join(f'<div><span class="mono">{_e(w.get("id"))}</span> until {_e(w.get("until"))} '
                         f'<span class="muted">({_e(w.get("approved_by"))})</span></div>' for w in waivers)
        out = ' <span class="tag out">not in bundle</span>' if action == "block" else ""
        body.append(f'<tr class="{action}"><td>{_badge(action, ACTION_LABEL.get(action))}</td>'
                    f'<td class="mono">{_e(d.get("artifact"))}{out}</td><td>{why}</td><td>{waived or "—"}</td></tr>')
    head = ('<section id="decisions"><h2>Decisions <span class="muted">(blocked first)</span></h2>'
            + (_grouped(groups) if groups else ""))
    if not body:
        return head + '<p class="empty">No other reason.</p></section>'
    return (head + f"<table>{_cols(9, 25, 46, 20)}"
            "<thead><tr><th>Action</th><th>Artifact</th><th>Reasons</th><th>Waivers</th></tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></section>")


def _evidence(f: dict) -> str:
    ev = _dict(f.get("evidence"))
    if f.get("scanner") == "vulns":
        bits = []
        if ev.get("package"):
            bits.append(f"{ev.get('package')} {ev.get('version') or ''}".strip())
        aliases = [str(a) for a in _list(ev.get("aliases"))]
        if aliases:
            bits.append("aliases " + ", ".join(aliases))
        fixed = [str(x) for x in _list(ev.get("fixed"))]
        bits.append("fixed in " + ", ".join(fixed) if fixed else "no fix known")
        if ev.get("cvss"):
            bits.append(str(ev["cvss"]))
        return _e(" · ".join(bits))
    if not ev:
        return ""
    text = json.dumps(ev, sort_keys=True, ensure_ascii=False, default=str)
    return _e(text if len(text) <= 240 else text[:239] + "…")


def _findings(findings: list[dict], by_artifact: dict[str, dict]) -> str:
    if not findings:
        return '<section id="findings"><h2>Findings</h2><p class="empty">No findings.</p></section>'
    out = ['<section id="findings"><h2>Findings by severity</h2>']
    for sev in SEVERITIES:
        group = [f for f in findings if _severity(f.get("severity")) == sev]
        if not group:
            continue
        group.sort(key=lambda f: (str(f.get("artifact")), str(f.get("rule")), str(f.get("file"))))
        rows: list[str] = []
        if sev not in FOLD_NEVER:
            rows, group = _folded_findings(group, by_artifact)
        for f in group:
            decision = by_artifact.get(str(f.get("artifact")), {})
            action = _action(decision.get("action"))
            waived = any(isinstance(w, dict) and w.get("id") in _finding_ids(f) for w in _list(decision.get("waivers")))
            tags = (' <span class="tag out">blocked</span>' if action == "block" else "") + (
                ' <span class="tag">waived</span>' if waived else "")
            evidence = _evidence(f)
            offset = f.get("offset")
            rows.append(
                f'<tr class="{"block" if action == "block" else ""}">'
                f'<td class="mono">{_e(f.get("artifact"))}{tags}</td>'
                f'<td><span class="mono">{_e(f.get("rule"))}</span><div class="muted">{_e(f.get("scanner"))}</div></td>'
                f'<td class="mono">{_e(f.get("file")) or "—"}</td><td class="mono">{_e(f.get("location")) or "—"}</td>'
                f'<td class="num mono">{_e(offset) if offset is not None else "—"}</td>'
                f'<td>{_e(f.get("message"))}'
                + (f'<div class="muted mono">{evidence}</div>' if evidence else "") + "</td></tr>")
        out.append(f'<h3>{_badge(sev)} {len(group)} finding{"s" if len(group) != 1 else ""}</h3><table>'
                   f"{_cols(21, 15, 15, 11, 6, 32)}"
                   "<thead><tr><th>Artifact</th><th>Rule</th><th>File</th><th>Location</th><th>Offset</th>"
                   f"<th>Message</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    out.append("</section>")
    return "".join(out)


def _folded_findings(group: list[dict], by_artifact: dict[str, dict]) -> tuple[list[str], list[dict]]:
    """Rows for the rules of one severity that fired ``GROUP_AT`` times or more (one row each:
    the count, the artifacts, the distinct messages), and the findings left to list one by one.
    Critical and high findings are never folded (``FOLD_NEVER``): they are the ones to read."""
    by_rule: dict[str, list[dict]] = {}
    for f in group:
        by_rule.setdefault(str(f.get("rule")), []).append(f)
    rows, rest = [], []
    for rule, fs in by_rule.items():
        if len(fs) < GROUP_AT:
            rest += fs
            continue
        arts = list(dict.fromkeys(str(f.get("artifact")) for f in fs))
        messages = list(dict.fromkeys(str(f.get("message")) for f in fs))
        files = {(str(f.get("artifact")), str(f.get("file"))) for f in fs}
        blocked = sum(1 for a in arts if _action(by_artifact.get(a, {}).get("action")) == "block")
        names = ", ".join(arts[:MAX_GROUP_NAMES]) + (f" … and {len(arts) - MAX_GROUP_NAMES} more"
                                                     if len(arts) > MAX_GROUP_NAMES else "")
        shown = "; ".join(messages[:3]) + (f" (and {len(messages) - 3} other messages)" if len(messages) > 3 else "")
        tag = f' <span class="tag out">{blocked} blocked</span>' if blocked else ""
        rows.append(f'<tr class="{"block" if blocked else ""}"><td class="mono">{len(arts)} artifact'
                    f'{"s" if len(arts) != 1 else ""}{tag}<div class="muted">{_e(names)}</div></td>'
                    f'<td><span class="mono">{_e(rule)}</span> <b>×{len(fs)}</b>'
                    f'<div class="muted">{_e(fs[0].get("scanner"))}</div></td>'
                    f'<td class="mono">{len(files)} file{"s" if len(files) != 1 else ""}</td><td class="mono">—</td>'
                    f'<td class="num mono">—</td><td>{_e(shown)}</td></tr>')
    return rows, rest


def _finding_ids(f: dict) -> set[str]:
    ev = _dict(f.get("evidence"))
    return {str(f.get("rule")), str(ev.get("id"))} | {str(a) for a in _list(ev.get("aliases"))}


def _waivers(decisions: list[dict], created: date | None) -> str:
    rows = []
    for d in sorted(decisions, key=lambda d: str(d.get("artifact"))):
        for w in _list(d.get("waivers")):
            if not isinstance(w, dict):
                continue
            until = _date(w.get("until"))
            state = ""
            if until and created:
                days = (until - created).days
                if days < 0:
                    state = ' <span class="tag expired">expired before this bundle</span>'
                elif days <= 30:
                    state = f' <span class="tag soon">{days} days left at creation</span>'
                else:
                    state = f' <span class="tag">{days} days left at creation</span>'
            elif not until:
                state = ' <span class="tag soon">no valid expiry date</span>'
            rows.append(f'<tr><td class="mono">{_e(w.get("id"))}</td><td class="mono">{_e(d.get("artifact"))}</td>'
                        f'<td class="mono">{_e(w.get("package"))}</td><td>{_e(w.get("until"))}{state}</td>'
                        f'<td>{_e(w.get("approved_by"))}</td><td>{_e(w.get("reason"))}</td></tr>')
    if not rows:
        return '<section id="waivers"><h2>Waivers</h2><p class="empty">No waiver was used.</p></section>'
    return ('<section id="waivers"><h2>Waivers used</h2><table>'
            f"{_cols(16, 20, 13, 16, 9, 26)}<thead><tr><th>Waiver</th><th>Artifact</th>"
            "<th>Package</th><th>Until</th><th>Approved by</th><th>Reason</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></section>")


def _digests(art: dict) -> str:
    lines = []
    if art.get("kind") == "oci":
        lines.append(f'<li><span class="muted">manifest</span> {_e(art.get("digest"))}</li>')
        platforms = ", ".join(map(str, _list(art.get("platforms"))))
        missing = ", ".join(map(str, _list(art.get("missing_platforms"))))
        lines.append(f'<li><span class="muted">platforms</span> {_e(platforms or "—")}'
                     + (f' <span class="tag out">missing {_e(missing)}</span>' if missing else "") + "</li>")
        blobs = _dict(art.get("blobs"))
        if blobs:
            lines.append(f'<li><span class="muted">{len(blobs)} blobs</span></li>')
        if art.get("artifact_type"):  # a chart, a signature: carried as it is (bundler/sources/charts.py)
            lines.append(f'<li><span class="muted">artifact type</span> {_e(art.get("artifact_type"))}'
                         + (f' <span class="muted">attached to</span> {_e(art.get("subject"))}' if art.get("subject") else "")
                         + "</li>")
        chart = _dict(art.get("chart"))
        if chart:
            named = ", ".join(map(str, _list(chart.get("images"))))
            lines.append(f'<li><span class="muted">chart</span> {_e(chart.get("name"))} {_e(chart.get("version"))} '
                         f'<span class="muted">from</span> {_e(chart.get("repo"))}<br>'
                         f'<span class="muted">images it names</span> {_e(named or "none")}</li>')
        for sig in _list(art.get("signatures")):
            lines.append(f'<li><span class="muted">signature</span> {_e(sig)}</li>')
    if art.get("kind") in ("model", "dataset") and art.get("commit"):
        lines.append(f'<li><span class="muted">{_e(art.get("source"))} commit</span> {_e(art.get("commit"))}</li>')
    if art.get("kind") == "conda" and art.get("channel"):
        lines.append(f'<li><span class="muted">channel</span> {_e(art.get("channel"))}</li>')
    files = [f for f in _list(art.get("files")) if isinstance(f, dict)]
    for f in files[:MAX_FILES_SHOWN]:
        lines.append(f'<li>{_e(str(f.get("subdir")) + "/") if f.get("subdir") else ""}{_e(f.get("filename") or f.get("path"))} '
                     f'<span class="muted">({_e(human_size(f.get("size")))})'
                     f'</span><br><span class="muted">sha256</span> {_e(f.get("sha256"))}</li>')
    if len(files) > MAX_FILES_SHOWN:
        lines.append(f'<li class="muted">… and {len(files) - MAX_FILES_SHOWN} more files</li>')
    return f'<ul class="files mono">{"".join(lines)}</ul>' if lines else "—"


def _license_cell(art: dict) -> str:
    """The normalized SPDX expression, and the raw value when it differs (a model card's id)."""
    raw = art.get("license")
    if not raw:
        return '<span class="muted">unknown</span>'
    text = ", ".join(map(str, raw)) if isinstance(raw, list) else str(raw)
    if art.get("kind") in ("model", "dataset"):  # a card's license: the Hub's ids
        spdx = licenses.model_license(raw).spdx
    else:
        spdx = licenses.normalize(text)
    if spdx is None:
        return f'{_e(text)} <span class="tag soon">not SPDX</span>'
    if spdx != text:
        return f'{_e(spdx)}<div class="muted">as declared: {_e(text)}</div>'
    return _e(spdx)


def _crossed(artifacts: list[dict], by_artifact: dict[str, dict]) -> str:
    if not artifacts:
        return '<section id="crossed"><h2>What crossed</h2><p class="empty">No artifacts.</p></section>'
    shipped = [a for a in artifacts if _action(by_artifact.get(_key(a), {}).get("action")) != "block"]
    total = sum(_artifact_size(a) or 0 for a in shipped)
    rows = []
    for a in sorted(artifacts, key=lambda a: (str(a.get("kind")), str(a.get("name")), str(a.get("version")))):
        action = _action(by_artifact.get(_key(a), {}).get("action"))
        size = _artifact_size(a)
        size_cell = (f'<span title="{_e(size)} bytes">{_e(human_size(size))}</span>' if size is not None else "—")
        if action == "block":
            size_cell = f'<s>{size_cell}</s><br><span class="tag out">not in bundle</span>'
        lic_cell = _license_cell(a)
        rows.append(f'<tr class="{action}"><td>{_e(a.get("kind"))}</td>'
                    f'<td class="mono">{_e(a.get("name"))}</td><td class="mono">{_e(a.get("version"))}</td>'
                    f'<td>{_badge(action, ACTION_LABEL.get(action))}</td>'
                    f'<td>{lic_cell}</td>'
                    f'<td class="num">{size_cell}</td><td>{_digests(a)}</td></tr>')
    head = (f"What crossed <span class=\"muted\">({len(shipped)} of {len(artifacts)} artifacts, "
            f"{_e(human_size(total))})</span>")
    return (f'<section id="crossed"><h2>{head}</h2><table>{_cols(6, 17, 9, 8, 14, 8, 38)}'
            "<thead><tr><th>Kind</th><th>Name</th><th>Version</th>"
            "<th>Decision</th><th>License</th><th>Size</th><th>Digests and files</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></section>")

