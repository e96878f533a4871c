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
"""

from __future__ import annotations

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


# --- tables (data; keep them small and obvious) -----------------------------------------------

# Trove classifiers (the part after "License :: OSI Approved :: " or "License :: ") -> SPDX id.
# None marks a classifier that names a family, not a license (PEP 639 calls these ambiguous);
# AMBIGUOUS gives the candidates shown in the finding.
CLASSIFIERS: dict[str, str | None] = {
    "Academic Free License (AFL)": None,
    "Apache Software License": None,
    "Apple Public Source License": None,
    "Artistic License": None,
    "Attribution Assurance License": "AAL",
    "BSD License": None,
    "Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "CEA CNRS Inria Logiciel Libre License, version 2.1 (CeCILL-2.1)": "CECILL-2.1",
    "CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
    "Common Development and Distribution License 1.0 (CDDL-1.0)": "CDDL-1.0",
    "Common Public License": "CPL-1.0",
    "Eclipse Public License 1.0 (EPL-1.0)": "EPL-1.0",
    "Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    "Educational Community License, Version 2.0 (ECL-2.0)": "ECL-2.0",
    "Eiffel Forum License": None,
    "European Union Public Licence 1.0 (EUPL 1.0)": "EUPL-1.0",
    "European Union Public Licence 1.1 (EUPL 1.1)": "EUPL-1.1",
    "European Union Public Licence 1.2 (EUPL 1.2)": "EUPL-1.2",
    "GNU Affero General Public License v3": "AGPL-3.0-only",
    "GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
    "GNU Free Documentation License (FDL)": None,
    "GNU General Public License (GPL)": None,
    "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "GNU Lesser General Public License v2 (LGPLv2)": "LGPL-2.0-only",
    "GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.0-or-later",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "GNU Library or Lesser General Public License (LGPL)": None,
    "Historical Permission Notice and Disclaimer (HPND)": "HPND",
    "IBM Public License": "IPL-1.0",
    "ISC License (ISCL)": "ISC",
    "Intel Open Source License": "Intel",
    "MIT License": "MIT",
    "MIT No Attribution License (MIT-0)": "MIT-0",
    "MirOS License (MirOS)": "MirOS",
    "Motosoto License": "Motosoto",
    "Mozilla Public License 1.0 (MPL)": "MPL-1.0",
    "Mozilla Public License 1.1 (MPL 1.1)": "MPL-1.1",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Mulan Permissive Software License v2 (MulanPSL-2.0)": "MulanPSL-2.0",
    "Nethack General Public License": "NGPL",
    "Nokia Open Source License": "Nokia",
    "Open Group Test Suite License": "OGTSL",
    "Open Software License 3.0 (OSL-3.0)": "OSL-3.0",
    "PostgreSQL License": "PostgreSQL",
    "Python License (CNRI Python License)": "CNRI-Python",
    "Python Software Foundation License": "PSF-2.0",
    "Qt Public License (QPL)": "QPL-1.0",
    "Ricoh Source Code Public License": "RSCPL",
    "SIL Open Font License 1.1 (OFL-1.1)": "OFL-1.1",
    "Sleepycat License": "Sleepycat",
    "Sun Industry Standards Source License (SISSL)": "SISSL",
    "Sun Public License": "SPL-1.0",
    "The Unlicense (Unlicense)": "Unlicense",
    "Universal Permissive License (UPL)": "UPL-1.0",
    "University of Illinois/NCSA Open Source License": "NCSA",
    "Vovida Software License 1.0": "VSL-1.0",
    "W3C License": "W3C",
    "X.Net License": "Xnet",
    "Zope Public License": None,
    "zlib/libpng License": "Zlib",
}

# The classifiers above that name a family: the key into AMBIGUOUS.
CLASSIFIER_FAMILIES: dict[str, str] = {
    "Academic Free License (AFL)": "afl", "Apache Software License": "apache", "Apple Public Source License": "apsl",
    "Artistic License": "artistic", "BSD License": "bsd", "Eiffel Forum License": "efl",
    "GNU Free Documentation License (FDL)": "fdl", "GNU General Public License (GPL)": "gpl",
    "GNU Library or Lesser General Public License (LGPL)": "lgpl", "Zope Public License": "zope",
}

# Names that stand for several licenses with different terms: never guessed (see disambiguate).
AMBIGUOUS: dict[str, tuple[str, ...]] = {
    "bsd": ("BSD-2-Clause", "BSD-3-Clause", "BSD-4-Clause"),
    "apache": ("Apache-1.0", "Apache-1.1", "Apache-2.0"),
    "gpl": ("GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later"),
    "lgpl": ("LGPL-2.0-only", "LGPL-2.1-only", "LGPL-3.0-only", "LGPL-2.1-or-later", "LGPL-3.0-or-later"),
    "agpl": ("AGPL-3.0-only", "AGPL-3.0-or-later"),
    "fdl": ("GFDL-1.1", "GFDL-1.2", "GFDL-1.3"),
    "afl": ("AFL-1.1", "AFL-1.2", "AFL-2.0", "AFL-2.1", "AFL-3.0"),
    "artistic": ("Artistic-1.0", "Artistic-2.0"),
    "zope": ("ZPL-1.1", "ZPL-2.0", "ZPL-2.1"),
    "apsl": ("APSL-1.0", "APSL-1.1", "APSL-1.2", "APSL-2.0"),
    "efl": ("EFL-1.0", "EFL-2.0"),
    "cc": ("CC-BY-*", "CC-BY-SA-*", "CC-BY-NC-*", "CC-BY-ND-*", "CC0-1.0"),
}

# Free-text ``License`` values, by normalized key (see _key) -> SPDX id, or an AMBIGUOUS key.
NAMES: dict[str, str] = {
    **{k: "MIT" for k in ("mit", "expat", "mit expat", "mit x11", "x11 mit")},
    **{k: "MIT-0" for k in ("mit 0", "mit no attribution")},
    **{k: "Apache-2.0" for k in ("apache 2.0", "apache 2", "apache2", "apache2.0", "apache software 2.0",
                                 "apache software 2", "asl 2.0", "asl 2", "al 2.0", "apache 2.0 apache 2.0")},
    "apache 1.1": "Apache-1.1",
    **{k: "BSD-3-Clause" for k in ("bsd 3 clause", "3 clause bsd", "bsd 3", "bsd3", "new bsd", "modified bsd",
                                   "revised bsd", "bsd new", "bsd revised", "bsd modified", "bsd 3clause",
                                   "3clause bsd", "bsd three clause", "three clause bsd")},
    **{k: "BSD-2-Clause" for k in ("bsd 2 clause", "2 clause bsd", "bsd 2", "bsd2", "simplified bsd", "freebsd",
                                   "bsd simplified", "two clause bsd", "bsd two clause")},
    **{k: "BSD-4-Clause" for k in ("bsd 4 clause", "4 clause bsd", "original bsd")},
    **{k: "0BSD" for k in ("0bsd", "zero clause bsd", "bsd 0 clause")},
    **{k: "ISC" for k in ("isc", "iscl")},
    **{k: "PSF-2.0" for k in ("psf", "psfl", "psf 2.0", "psf 2", "python software foundation")},
    **{k: "MPL-2.0" for k in ("mpl 2.0", "mpl 2", "mpl2", "mozilla public 2.0", "mozilla public 2")},
    **{k: "MPL-1.1" for k in ("mpl 1.1", "mozilla public 1.1")},
    **{k: "GPL-2.0-only" for k in ("gplv2", "gpl 2", "gpl 2.0", "gnu gpl 2", "gnu gplv2", "gnu general public 2",
                                   "gnu general public 2.0")},
    **{k: "GPL-2.0-or-later" for k in ("gplv2+", "gpl 2+", "gpl 2.0+", "gpl 2 or later", "gplv2 or later",
                                       "gpl 2.0 or later", "gnu gpl 2 or later", "gnu general public 2 or later")},
    **{k: "GPL-3.0-only" for k in ("gplv3", "gpl 3", "gpl 3.0", "gnu gpl 3", "gnu gplv3", "gnu general public 3",
                                   "gnu general public 3.0")},
    **{k: "GPL-3.0-or-later" for k in ("gplv3+", "gpl 3+", "gpl 3.0+", "gpl 3 or later", "gplv3 or later",
                                       "gpl 3.0 or later", "gnu gpl 3 or later", "gnu general public 3 or later")},
    **{k: "LGPL-2.1-only" for k in ("lgplv2.1", "lgpl 2.1", "gnu lgpl 2.1", "gnu lesser general public 2.1")},
    **{k: "LGPL-2.1-or-later" for k in ("lgplv2.1+", "lgpl 2.1+", "lgpl 2.1 or later", "lgplv2+", "lgpl 2+")},
    **{k: "LGPL-3.0-only" for k in ("lgplv3", "lgpl 3", "lgpl 3.0", "gnu lgpl 3", "gnu lesser general public 3")},
    **{k: "LGPL-3.0-or-later" for k in ("lgplv3+", "lgpl 3+", "lgpl 3.0+", "lgpl 3 or later", "lgplv3 or later")},
    **{k: "AGPL-3.0-only" for k in ("agplv3", "agpl 3", "agpl 3.0", "gnu agpl 3", "gnu affero general public 3")},
    **{k: "AGPL-3.0-or-later" for k in ("agplv3+", "agpl 3+", "agpl 3.0+", "agpl 3 or later")},
    **{k: "Unlicense" for k in ("unlicense", "unlicensed")},
    **{k: "CC0-1.0" for k in ("cc0", "cc0 1.0", "cc0 1.0 universal", "cc0 1.0 universal public domain dedication")},
    **{k: "Zlib" for k in ("zlib", "zlib/libpng", "zlib libpng")},
    **{k: "BSL-1.0" for k in ("boost", "boost software", "boost software 1.0", "bsl 1.0")},
    **{k: "EPL-2.0" for k in ("epl 2.0", "eclipse public 2.0")},
    **{k: "EPL-1.0" for k in ("epl 1.0", "eclipse public 1.0")},
    **{k: "EUPL-1.2" for k in ("eupl 1.2",)},
    **{k: "UPL-1.0" for k in ("upl", "upl 1.0", "universal permissive")},
    **{k: "HPND" for k in ("hpnd", "historical permission notice and disclaimer")},
    "wtfpl": "WTFPL",
    "postgresql": "PostgreSQL",
    "artistic 2.0": "Artistic-2.0",
    # families: ambiguous
    **{k: "bsd" for k in ("bsd", "bsd style", "bsd like", "bsd-style", "bsd-like")},
    **{k: "apache" for k in ("apache", "apache software", "asl", "apache software foundation")},
    **{k: "gpl" for k in ("gpl", "gnu gpl", "gnu general public")},
    **{k: "lgpl" for k in ("lgpl", "gnu lgpl", "gnu lesser general public", "gnu library or lesser general public")},
    **{k: "agpl" for k in ("agpl", "gnu agpl", "gnu affero general public")},
    **{k: "artistic" for k in ("artistic", "perl artistic")},
}

# Values that say nothing about the license (setuptools' "UNKNOWN", pointers to a file, ...).
_NOT_A_LICENSE = re.compile(
    r"^(unknown|none|null|n/?a|other|others|tbd|todo|proprietary|commercial|custom|dual|dual license|"
    r"multiple|public domain|see .*|license|license file|file|license\.txt|license\.md|\.txt|\.md|"
    r"copying|all rights reserved|freeware|free)$")

# Hugging Face Hub license ids that are not SPDX ids in lower case (those are parsed directly).
# None: a family or a placeholder ("other"), never guessed. Ids ScanCode knows get its
# LicenseRef-scancode-* key (what Dependency-Track and ScanCode report); the Hub's own licenses
# that no list names get LicenseRef-hf-<id>, so that a policy can allow or deny them by name.
HF_LICENSES: dict[str, str | None] = {
    "llama2": "LicenseRef-scancode-llama-2-license-2023",
    "llama3.1": "LicenseRef-scancode-llama-3.1-license-2024",
    "llama3.2": "LicenseRef-scancode-llama-3.2-license-2024",
    "llama3.3": "LicenseRef-scancode-llama-3.3-license-2024",
    "llama4": "LicenseRef-scancode-llama-4-license-2025",
    "bigscience-openrail-m": "LicenseRef-scancode-bigscience-open-rail-m",
    "bigcode-openrail-m": "LicenseRef-scancode-bigcode-open-rail-m-v1",
    "bigscience-bloom-rail-1.0": "LicenseRef-scancode-bigscience-rail-1.0",
    "openmdw-1.0": "LicenseRef-scancode-openmdw-1.0",
    "pddl": "PDDL-1.0",
    "odbl": "ODbL-1.0",
    "odc-by": "ODC-By-1.0",
    "c-uda": "C-UDA-1.0",
    "openrail++": "LicenseRef-hf-openrail-plusplus",  # "+" is not allowed in an SPDX idstring
    "bsd-2-clause": "BSD-2-Clause",
    **{hub: f"LicenseRef-hf-{hub}" for hub in (
        "openrail", "creativeml-openrail-m", "llama3", "gemma", "apple-ascl", "apple-amlr",
        "deepfloyd-if-license", "fair-noncommercial-research-license", "intel-research", "h-research", "lgpl-lr")},
    **{family: None for family in ("other", "unknown", "cc", "bsd", "gpl", "lgpl", "gfdl", "agpl")},
}
_HF_AMBIGUOUS = {"cc": "cc", "bsd": "bsd", "gpl": "gpl", "lgpl": "lgpl", "agpl": "agpl", "gfdl": "fdl"}


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
        result = None
        for where in ("annotations", "labels"):
            result = annotation_license(subject.meta.get(where))
            if result is not None:
                break
        if result is None:
            return None, []
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
