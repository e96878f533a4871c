"""Licenses: what a wheel, a model card or an image says, normalized to an SPDX expression.

Every answer is a normalized SPDX expression (``Apache-2.0 OR MIT``) or ``None``. ``None`` means
"not known": the scanner reports it as a ``license.unknown`` finding (medium) and the policy
decides; an unknown license is never a silent pass.

Where the license comes from, in order:

- **wheels** (core metadata): ``License-Expression`` (PEP 639), then the ``License`` field (free
  text: SPDX ids, the usual names such as "Apache 2.0", "MIT License", "3-Clause BSD", "GPLv3+",
  "MIT/Apache-2.0"; a whole license text pasted into the field is recognised only by its title
  line, such as "MIT License" or "Apache License / Version 2.0", and is otherwise skipped), then
  the ``License ::`` trove classifiers, mapped with :data:`CLASSIFIERS`. The first source that
  gives a known expression wins. Several mappable classifiers are joined with ``AND``: the
  classifiers do not say whether the licenses are alternatives, and ``AND`` is the reading that
  cannot let a denied license through.
- **models**: the model card's ``license`` (the Hub's ids: SPDX ids in lower case, plus the Hub's
  own ids mapped with :data:`HF_LICENSES`, such as ``llama2`` or ``bigscience-openrail-m``); a list
  is joined with ``AND`` for the same reason as classifiers.
- **images**: the ``org.opencontainers.image.licenses`` annotation (or image label), which the
  OCI spec defines as an SPDX expression. An image without it is *not* a finding: images carry a
  whole operating system, and an image-level license is rarely declared.

Ambiguous names ("BSD", "GPL", "Apache Software License" — several licenses with different
terms answer to them) are not guessed. For the BSD and Apache families the wheel's own license
files (``.dist-info/licenses/*``, ``LICENSE*``) or a license text in the ``License`` field tell
the member apart by the clauses every copy carries (:func:`disambiguate`); otherwise the result is
``None`` and the finding lists the candidates, so that a policy that denies, say, BSD-4-Clause
cannot be passed by a guess. Identifiers are
checked with the ``license-expression`` library's SPDX licensing (the SPDX list plus ScanCode's
``LicenseRef-scancode-*`` ids); any other ``LicenseRef-*`` / ``DocumentRef-*`` is valid SPDX and
is kept as written, for the policy to allow or deny by name.

The tables (:data:`CLASSIFIERS`, :data:`NAMES`, :data:`AMBIGUOUS`, :data:`HF_LICENSES`, ...) are
data in ``licenses.json`` beside this module (shipped as package data), read once at import.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from functools import lru_cache
from pathlib import Path
from typing import Any

from gapsync.model import Finding, Severity
from gapsync.scanner.subject import ScanSubject

SCANNER = "license"
RULE_UNKNOWN = "license.unknown"
MAX_METADATA = 16 * 1024 * 1024  # same limit as the wheel metadata reader
OCI_LICENSES = "org.opencontainers.image.licenses"
_RAW_LIMIT = 300  # how much of a raw value a finding carries (whole license texts are long)


@dataclass(frozen=True)
class LicenseResult:
    """A license as read: ``spdx`` (normalized expression or None), ``raw`` (the value it came
    from, or the first value seen when none was usable) and ``source`` (``License-Expression``,
    ``License``, ``classifier``, ``License+text`` / ``classifier+text`` when the license files
    told an ambiguous name apart, ``model-card``, ``annotation``; ``unrecognized`` when values
    were there but none was usable, ``none`` when there was nothing). ``reason`` says why
    ``spdx`` is None; ``candidates`` lists the licenses an ambiguous name could mean."""

    spdx: str | None
    raw: str | None
    source: str
    reason: str | None = field(default=None, compare=False)
    candidates: tuple[str, ...] = field(default=(), compare=False)


# --- tables: data, in licenses.json beside this module (read once, at import) --------------------
# Why a data file: the tables grow with what wheels, model cards and images write, and a reviewer
# should be able to read and extend them without reading the code. The file describes each table
# in its "about"; these names are what the rest of the module (and its callers) use.

TABLES_FILE = "licenses.json"


def _load_tables() -> dict[str, Any]:
    doc = json.loads((Path(__file__).resolve().parent / TABLES_FILE).read_bytes())
    if doc.get("format_version") != 1:
        raise ValueError(f"{TABLES_FILE}: format_version {doc.get('format_version')!r} is not 1")
    return doc


_TABLES = _load_tables()

# Trove classifiers -> SPDX id; None marks a classifier that names a family (AMBIGUOUS: candidates).
CLASSIFIERS: dict[str, str | None] = dict(_TABLES["classifiers"])
# The classifiers above that name a family: the key into AMBIGUOUS.
CLASSIFIER_FAMILIES: dict[str, str] = dict(_TABLES["classifier_families"])
# Names that stand for several licenses with different terms: never guessed (see disambiguate).
AMBIGUOUS: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _TABLES["ambiguous"].items()}
# Free-text ``License`` values, by normalized key (see _key) -> SPDX id, or an AMBIGUOUS key.
NAMES: dict[str, str] = {key: spdx for spdx, keys in _TABLES["names"].items() for key in keys}
# Values that say nothing about the license (setuptools' "UNKNOWN", pointers to a file, ...).
_NOT_A_LICENSE = re.compile("^(" + "|".join(_TABLES["not_a_license"]) + ")$")
# Hugging Face Hub license ids that are not SPDX ids in lower case (those are parsed directly);
# None: a family or a placeholder ("other"), never guessed.
HF_LICENSES: dict[str, str | None] = dict(_TABLES["hf_licenses"])
_HF_AMBIGUOUS: dict[str, str] = dict(_TABLES["hf_ambiguous"])
del _TABLES


# --- normalization ----------------------------------------------------------------------------

_REF_RE = re.compile(r"^(?:DocumentRef-[A-Za-z0-9.\-]+:)?LicenseRef-[A-Za-z0-9.\-]+$")


@lru_cache(maxsize=1)
def _licensing() -> Any:
    from license_expression import get_spdx_licensing

    return get_spdx_licensing()


def normalize(expression: str | None) -> str | None:
    """``expression`` as a normalized SPDX expression (canonical ids, ``-only``/``-or-later``
    for the deprecated GPL family ids, upper-case operators), or None when it is not one: a
    syntax error, or an id that is neither on the SPDX list (nor ScanCode's) nor a ``LicenseRef-``."""
    if not expression or not isinstance(expression, str) or len(expression) > 2000:
        return None
    licensing = _licensing()
    try:
        parsed = licensing.parse(expression.strip(), validate=False)
    except Exception:  # ExpressionError, and IndexError/AssertionError on some malformed input ("( )")
        return None
    if parsed is None:
        return None
    for key in licensing.unknown_license_keys(parsed):
        if not _REF_RE.match(str(key)):
            return None
    rendered = str(parsed)
    # license-expression keeps a symbol with spaces ("Apache 2.0") as one unknown key; a LicenseRef
    # never has spaces, so anything with spaces left in an id is not SPDX.
    return rendered if rendered and "\n" not in rendered else None


def _key(text: str) -> str:
    s = text.strip().lower().replace("licence", "license")
    s = re.sub(r"[\"'`,;:_]", " ", s)
    s = re.sub(r"(?<=[a-z])-(?=[a-z0-9])|(?<=[0-9])-(?=[a-z])", " ", s)  # "bsd-3-clause" -> "bsd 3 clause"
    s = re.sub(r"\bthe\b|\blicense[sd]?\b|\bversion\b|\bagreement\b", " ", s)
    s = re.sub(r"\bv\.?\s*(?=\d)", "", s)  # "v2.0" -> "2.0" (but "gplv3" stays one word)
    s = re.sub(r"\s+", " ", s).strip(" .-")
    return s


def _lookup(text: str) -> tuple[str | None, str | None]:
    """A free-text license name -> (SPDX expression, None), or (None, family) when it names a
    family of licenses (an :data:`AMBIGUOUS` key), or (None, None) when it is not known."""
    spdx = normalize(text) if len(text) <= 200 else None
    if spdx:
        return spdx, None
    family: str | None = None
    full = text.strip()
    paren = re.fullmatch(r"(.*?)\s*\(([^()]*)\)\s*", full)
    tries = [full] + ([paren.group(2), paren.group(1)] if paren else [])
    for t in tries:
        k = _key(t)
        if not k:
            continue
        name = NAMES.get(k) or _CLASSIFIER_KEYS.get(k)
        if name in AMBIGUOUS:
            family = family or name
            continue
        if name:
            return name, None
        spdx = normalize(t) if t is not full and len(t) <= 200 else None
        if spdx:
            return spdx, None
    return None, family


def _classifier_key(name: str) -> str:
    return _key(re.sub(r"\s*\([^()]*\)\s*$", "", name))


# classifier names used as free text ("MIT License", "GNU General Public License v3 (GPLv3)")
_CLASSIFIER_KEYS: dict[str, str] = {}
for _name, _spdx in CLASSIFIERS.items():
    for _k in (_key(_name), _classifier_key(_name)):
        _CLASSIFIER_KEYS.setdefault(_k, _spdx or CLASSIFIER_FAMILIES[_name])


# --- telling the members of a family apart by their text ---------------------------------------

_BSD_START = "redistribution and use in source and binary forms"


def _squash(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9.,]+", " ", text.lower()).split())


def disambiguate(family: str, texts: list[str]) -> str | None:
    """The one member of ``family`` that the license texts show, or None.

    Only the families whose members differ by a sentence every copy of the text carries:
    ``bsd`` (BSD-4-Clause has the advertising clause, BSD-3-Clause the "neither the name ... to
    endorse or promote" clause, BSD-2-Clause neither) and ``apache`` ("Apache License, Version
    2.0"). Every BSD text found must agree; texts that bundle several variants stay ambiguous.
    """
    found: set[str] = set()
    for text in texts:
        t = _squash(text)
        if family == "bsd":
            parts = t.split(_BSD_START)[1:]
            for part in parts:
                part = part[:2500]
                if "all advertising materials mentioning features" in part:
                    found.add("BSD-4-Clause")
                elif "endorse or promote" in part:
                    found.add("BSD-3-Clause")
                else:
                    found.add("BSD-2-Clause")
        elif family == "apache":
            if re.search(r"apache license,? version 2\.0", t):
                found.add("Apache-2.0")
            if re.search(r"apache (software )?license,? version 1\.[01]", t):
                found.add("Apache-1.x")
    return found.pop() if len(found) == 1 and "Apache-1.x" not in found else None


def _free_text(value: str, texts: list[str]) -> tuple[str | None, str | None, str | None]:
    """The ``License`` field -> (SPDX, family when ambiguous, reason when None)."""
    text = value.strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return None, None, "empty"
    if len(lines) > 2 or len(text) > 200:
        return _license_text(lines)
    one = " ".join(lines)
    if _NOT_A_LICENSE.match(_key(one) or one.lower()) or _NOT_A_LICENSE.match(one.lower().strip(" .")):
        return None, None, f"{_short(one)!r} names no license"
    spdx, family = _lookup(one)
    if spdx:
        return spdx, None, None
    if family:
        spdx = disambiguate(family, texts)
        if spdx:
            return spdx, None, None
        return None, family, f"{_short(one)!r} is ambiguous ({', '.join(AMBIGUOUS[family])})"
    compound = _compound(one)
    if compound:
        return compound, None, None
    return None, None, f"{_short(one)!r} is not a license name or SPDX expression gapsync knows"


def _compound(text: str) -> str | None:
    """"MIT or Apache 2.0", "MIT/Apache-2.0", "Apache 2.0 and MIT": each part by name."""
    parts = re.split(r"\s+(or|and)\s+|\s*/\s*", text, flags=re.IGNORECASE)
    names = parts[0::2]
    ops = {(op or "or").upper() for op in parts[1::2]}
    if len(names) < 2 or len(ops) != 1:
        return None
    ids = []
    for n in names:
        spdx, _ = _lookup(n or "")
        if not spdx:
            return None
        ids.append(f"({spdx})" if " " in spdx else spdx)
    return normalize(f" {ops.pop()} ".join(ids))


def _license_text(lines: list[str]) -> tuple[str | None, str | None, str | None]:
    """A whole license text: recognised by its title line only ("MIT License", "Apache License"
    followed by "Version 2.0", "BSD 3-Clause License"), otherwise skipped (it still serves
    :func:`disambiguate`)."""
    title = lines[0].strip("=-*# ")
    head = " ".join(lines[:3]).lower()
    if _key(title) == "apache" and re.search(r"version 2\.0", head):
        return "Apache-2.0", None, None
    if title and len(title) <= 60 and re.search(r"licen[sc]e", title, re.IGNORECASE):
        k = _key(title)
        name = NAMES.get(k) or _CLASSIFIER_KEYS.get(k)
        if name and name not in AMBIGUOUS:
            return name, None, None
    return None, None, f"a license text starting {_short(lines[0], 60)!r}, not a license name"


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def classifier_license(classifiers: list[str], texts: list[str] | None = None
                       ) -> tuple[str | None, tuple[str, ...], str | None]:
    """``License ::`` classifiers -> (SPDX joined with AND, candidates, reason when None).
    A family classifier ("BSD License") is resolved by :func:`disambiguate` with ``texts``."""
    ids: list[str] = []
    candidates: list[str] = []
    unmapped: list[str] = []
    for c in classifiers:
        parts = [p.strip() for p in c.split("::")]
        if not parts or parts[0] != "License":
            continue
        rest = [p for p in parts[1:] if p != "OSI Approved"]
        if not rest:
            continue  # bare "License :: OSI Approved" says nothing
        name = rest[-1]
        spdx = CLASSIFIERS.get(name)
        family = CLASSIFIER_FAMILIES.get(name)
        if spdx is None and family:
            spdx = disambiguate(family, texts or [])
            if spdx is None:
                candidates += [x for x in AMBIGUOUS[family] if x not in candidates]
        if spdx:
            if spdx not in ids:
                ids.append(spdx)
        else:
            unmapped.append(name)
    if unmapped:
        what = "; ".join(unmapped)
        if candidates:
            return None, tuple(candidates), f"classifier {what!r} is ambiguous ({', '.join(candidates)})"
        return None, (), f"classifier {what!r} names no specific license"
    if not ids:
        named = [c for c in classifiers if c.strip().startswith("License")]
        return None, (), (f"classifier {'; '.join(named)!r} names no license" if named else None)
    return normalize(" AND ".join(ids)), (), None


# --- the three kinds of artifact --------------------------------------------------------------


def metadata_fields(metadata: bytes) -> dict[str, Any]:
    """The license fields of core metadata: ``license_expression``, ``license``, ``classifiers``."""
    msg = BytesHeaderParser().parsebytes(metadata)
    expr = msg.get("License-Expression")
    lic = msg.get("License")
    return {"license_expression": str(expr).strip() if expr is not None else None,
            "license": _unfold(str(lic)) if lic is not None else None,
            "classifiers": [str(c).strip() for c in msg.get_all("Classifier") or []
                            if str(c).strip().startswith("License")]}


def _unfold(value: str) -> str:
    """Folded header lines keep their indentation (and setuptools' "|" continuation marks)."""
    lines = value.splitlines()
    out = [lines[0].strip()] if lines else []
    for ln in lines[1:]:
        out.append(re.sub(r"^\s{1,8}\|?", "", ln).rstrip())
    return "\n".join(out).strip()


def wheel_license(metadata: bytes, texts: list[str] | None = None) -> LicenseResult:
    """The license of a wheel from its core metadata (``*.dist-info/METADATA`` bytes).

    ``texts`` are the wheel's license files (see :func:`wheel_license_texts`); with a whole
    license text in the ``License`` field they only tell the members of an ambiguous family apart
    ("BSD" -> BSD-3-Clause when the text has the third clause). ``source`` is then
    ``License+text`` or ``classifier+text``.
    """
    f = metadata_fields(metadata)
    texts = list(texts or [])
    if f["license"] and ("\n" in f["license"] or len(f["license"]) > 200):
        texts.append(f["license"])
    reasons: list[str] = []
    candidates: tuple[str, ...] = ()
    first_raw: str | None = None
    if f["license_expression"]:
        first_raw = f["license_expression"]
        spdx = normalize(f["license_expression"])
        if spdx:
            return LicenseResult(spdx, f["license_expression"], "License-Expression")
        reasons.append(f"License-Expression {_short(f['license_expression'])!r} is not a valid SPDX expression")
    if f["license"]:
        first_raw = first_raw or f["license"]
        spdx, family, why = _free_text(f["license"], texts)
        if spdx:
            return LicenseResult(spdx, f["license"], "License+text" if family or _needs_text(f["license"]) else "License")
        candidates = AMBIGUOUS.get(family or "", ())
        reasons.append(f"License: {why}")
    if f["classifiers"]:
        first_raw = first_raw or "; ".join(f["classifiers"])
        spdx, cands, why = classifier_license(f["classifiers"], texts)
        if spdx:
            used_text = any(CLASSIFIER_FAMILIES.get(c.split("::")[-1].strip()) for c in f["classifiers"])
            return LicenseResult(spdx, "; ".join(f["classifiers"]), "classifier+text" if used_text else "classifier")
        candidates = candidates or cands
        if why:
            reasons.append(why)
    if not reasons:
        reasons.append("no License-Expression, License or license classifier in the metadata")
    return LicenseResult(None, first_raw, "none" if first_raw is None else "unrecognized",
                         "; ".join(reasons), candidates)


def _needs_text(value: str) -> bool:
    """Whether a short ``License`` value resolved only through the license text."""
    spdx, family = _lookup(value.strip()) if "\n" not in value and len(value) <= 200 else (None, None)
    return spdx is None and family is not None


_LICENSE_FILE_RE = re.compile(r"^[^/]+\.dist-info/(?:licenses/.+|(?:LICEN[CS]E|COPYING|NOTICE)[^/]*)$",
                              re.IGNORECASE)
MAX_LICENSE_FILE = 1024 * 1024
MAX_LICENSE_FILES = 32


def wheel_license_texts(wheel: Path | str) -> list[str]:
    """The license files a wheel carries in its ``.dist-info`` (PEP 639 ``licenses/`` or the older
    top-level ``LICENSE*``/``COPYING*``/``NOTICE*``), read from the zip without extracting, each
    at most 1 MiB; a wheel that cannot be read gives none."""
    import zipfile

    texts: list[str] = []
    try:
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                if len(texts) >= MAX_LICENSE_FILES:
                    break
                if info.is_dir() or not _LICENSE_FILE_RE.match(info.filename):
                    continue
                with zf.open(info) as fh:
                    texts.append(fh.read(MAX_LICENSE_FILE).decode("utf-8", "replace"))
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError, NotImplementedError):
        return texts
    return texts


def model_license(raw: str | list | None) -> LicenseResult:
    """The license of a model from its card's ``license`` value (a Hub id, an SPDX expression,
    or a list of them, joined with AND)."""
    if raw is None or raw == "" or raw == []:
        return LicenseResult(None, None, "none", "the model card declares no license")
    values = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list | tuple) else [raw]
    text = ", ".join(str(v) for v in values)
    ids: list[str] = []
    for v in values:
        if not isinstance(v, str) or not v.strip():
            return LicenseResult(None, text, "model-card", f"license value {v!r} is not a string")
        hub = v.strip().lower()
        if hub in HF_LICENSES:
            spdx = HF_LICENSES[hub]
            if spdx is None:
                family = _HF_AMBIGUOUS.get(hub)
                cands = AMBIGUOUS.get(family, ()) if family else ()
                why = (f"{v!r} is ambiguous ({', '.join(cands)})" if cands
                       else f"the model card's license is {v!r} (see the card's license_name/license_link)")
                return LicenseResult(None, text, "model-card", why, cands)
        else:
            spdx, family = _lookup(v)
            if spdx is None:
                cands = AMBIGUOUS.get(family or "", ())
                why = (f"{_short(v)!r} is ambiguous ({', '.join(cands)})" if cands
                       else f"{_short(v)!r} is not a license id gapsync knows")
                return LicenseResult(None, text, "model-card", why, cands)
        ids.append(f"({spdx})" if " " in spdx else spdx)
    joined = normalize(" AND ".join(ids))
    return LicenseResult(joined, text, "model-card", None if joined else "cannot combine the licenses")


def conda_license(raw: str | None) -> LicenseResult:
    """A conda package's ``license`` (conda-forge writes SPDX; older channels free text)."""
    if not isinstance(raw, str) or not raw.strip():
        return LicenseResult(None, None, "none", "the package declares no license")
    spdx, family = _lookup(raw)
    if spdx is None:
        return LicenseResult(None, raw[:_RAW_LIMIT], "conda-metadata", f"{_short(raw)!r} is not a license id gapsync knows",
                             AMBIGUOUS.get(family or "", ()))
    return LicenseResult(spdx, raw, "conda-metadata")


def annotation_license(annotations: Mapping[str, Any] | None) -> LicenseResult | None:
    """An image's ``org.opencontainers.image.licenses`` (an SPDX expression by the OCI spec), or
    None when the image does not declare one."""
    value = (annotations or {}).get(OCI_LICENSES)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        return LicenseResult(None, repr(value)[:_RAW_LIMIT], "annotation", "the annotation is not a string")
    spdx, family = _lookup(value)
    if spdx is None:
        return LicenseResult(None, value, "annotation", f"{OCI_LICENSES} {_short(value)!r} is not an SPDX expression",
                             AMBIGUOUS.get(family or "", ()))
    return LicenseResult(spdx, value, "annotation")


def scan_subject(subject: ScanSubject) -> tuple[str | None, list[Finding]]:
    """The license of one artifact, and a ``license.unknown`` finding (medium) when it is not known.

    - python: reads ``subject.meta["metadata"]`` (the wheel's core METADATA or an sdist's PKG-INFO;
      None for an sdist-only package, which is then unknown; a subject with no file and no
      metadata, a requirements-file pin, has no license finding at all); when the metadata names only a family ("BSD License"),
      the license files inside the package's first wheel tell its members apart;
    - model: ``subject.meta["license"]`` (the card's raw value);
    - oci: ``subject.meta["annotations"]`` (or ``["labels"]``) ``org.opencontainers.image.licenses``.
      An image that declares no license is **not** a finding (None, []); a declared value that is
      not an SPDX expression is.
    """
    if subject.kind == "python" and not subject.files and subject.meta.get("metadata") is None:
        return None, []  # a pin of a requirements file (gapsync scan -r): no file to read a license from
    if subject.kind == "python":
        wheels = [f.path for f in subject.files if f.name.endswith(".whl")]
        result = _python_result(subject.meta.get("metadata"), wheels[0] if wheels else None)
    elif subject.kind in ("model", "dataset"):  # a dataset card's license: the same Hub ids
        result = model_license(subject.meta.get("license"))
    elif subject.kind == "conda":  # the raw value from the package's info/index.json (scanner/artifacts/conda_pkg.py)
        result = conda_license(subject.meta.get("license"))
    elif subject.kind == "oci":
        declared = (annotation_license(subject.meta.get(where)) for where in ("annotations", "labels"))
        found = next((r for r in declared if r is not None), None)
        if found is None:
            return None, []
        result = found
    else:
        return None, []
    if result.spdx:
        return result.spdx, []
    return None, [unknown_finding(subject, result)]


def _python_result(path: Path | str | None, wheel: Path | None) -> LicenseResult:
    if path is None:
        return LicenseResult(None, None, "none", "no core metadata (no wheel) to read a license from")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_METADATA + 1)
    except OSError as e:
        return LicenseResult(None, None, "none", f"cannot read the core metadata ({e.strerror or e})")
    if len(data) > MAX_METADATA:
        return LicenseResult(None, None, "none", f"core metadata larger than {MAX_METADATA} bytes")
    first = wheel_license(data)
    if first.spdx is None and first.candidates and wheel is not None:
        return wheel_license(data, wheel_license_texts(wheel))  # the license files tell the family apart
    return first


def unknown_finding(subject: ScanSubject, result: LicenseResult) -> Finding:
    raw = result.raw
    evidence: dict[str, Any] = {"raw": raw if raw is None or len(raw) <= _RAW_LIMIT else raw[:_RAW_LIMIT] + "…",
                                "source": result.source}
    if result.candidates:
        evidence["candidates"] = list(result.candidates)
    why = result.reason or "not a known license"
    return Finding(scanner=SCANNER, rule=RULE_UNKNOWN, severity=Severity.MEDIUM,
                   message=f"license unknown: {why}", evidence=evidence)
