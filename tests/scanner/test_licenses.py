"""Licenses from wheel metadata, model cards and image annotations, normalized to SPDX."""

from __future__ import annotations

import importlib.metadata
import zipfile
from pathlib import Path

import pytest

from gapsync.model import Severity
from gapsync.scanner.artifacts.licenses import (
    CLASSIFIERS,
    HF_LICENSES,
    annotation_license,
    model_license,
    normalize,
    scan_subject,
    wheel_license,
    wheel_license_texts,
)
from gapsync.scanner.subject import ScanSubject, SubjectFile

BSD3_TEXT = """Copyright (c) 2001-2002 Enthought, Inc. 2003, SciPy Developers.
All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions
are met:

1. Redistributions of source code must retain the above copyright
   notice, this list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above
   copyright notice, this list of conditions and the following
   disclaimer in the documentation and/or other materials provided
   with the distribution.

3. Neither the name of the copyright holder nor the names of its
   contributors may be used to endorse or promote products derived
   from this software without specific prior written permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS
"AS IS" AND ANY EXPRESS OR IMPLIED WARRANTIES ARE DISCLAIMED.
"""
BSD2_TEXT = BSD3_TEXT.split("3. Neither")[0] + "THIS SOFTWARE IS PROVIDED \"AS IS\".\n"
BSD4_TEXT = BSD3_TEXT.replace(
    "3. Neither", "3. All advertising materials mentioning features or use of this software must display "
                  "the following acknowledgement.\n4. Neither")
MIT_TEXT = """MIT License

Copyright (c) 2018 The Authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction.
"""


def metadata(*headers: str, body: str = "") -> bytes:
    """Core metadata as setuptools writes it: folded headers indented by 8 spaces."""
    lines = ["Metadata-Version: 2.1", "Name: example", "Version: 1.0"]
    for h in headers:
        name, _, value = h.partition(": ")
        lines.append(f"{name}: " + value.replace("\n", "\n        "))
    return ("\n".join(lines) + "\n\n" + body).encode()


# --- wheels -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "spdx", "source"), [
    # PEP 639 first, normalized
    (["License-Expression: apache-2.0 or bsd-3-clause", "License: MIT"], "Apache-2.0 OR BSD-3-Clause",
     "License-Expression"),
    (["License-Expression: BSD-3-Clause AND 0BSD AND MIT AND Zlib AND CC0-1.0"],
     "BSD-3-Clause AND 0BSD AND MIT AND Zlib AND CC0-1.0", "License-Expression"),
    (["License-Expression: LicenseRef-Proprietary"], "LicenseRef-Proprietary", "License-Expression"),
    (["License-Expression: GPL-2.0+"], "GPL-2.0-or-later", "License-Expression"),
    # requests 2.19.0
    (["License: Apache 2.0", "Classifier: License :: OSI Approved :: Apache Software License"], "Apache-2.0",
     "License"),
    # the usual free-text names
    (["License: MIT"], "MIT", "License"),
    (["License: MIT License"], "MIT", "License"),
    (["License: MIT license"], "MIT", "License"),
    (["License: The MIT License (MIT)"], "MIT", "License"),
    (["License: Apache License, Version 2.0"], "Apache-2.0", "License"),
    (["License: Apache Software License 2.0"], "Apache-2.0", "License"),
    (["License: Apache License v2.0"], "Apache-2.0", "License"),
    (["License: 3-Clause BSD License"], "BSD-3-Clause", "License"),
    (["License: BSD 3-Clause License"], "BSD-3-Clause", "License"),
    (["License: new BSD"], "BSD-3-Clause", "License"),
    (["License: Simplified BSD"], "BSD-2-Clause", "License"),
    (["License: LGPLv3+"], "LGPL-3.0-or-later", "License"),
    (["License: GPLv2"], "GPL-2.0-only", "License"),
    (["License: GNU GPLv3"], "GPL-3.0-only", "License"),
    (["License: PSFL"], "PSF-2.0", "License"),
    (["License: MPL-2.0 AND MIT"], "MPL-2.0 AND MIT", "License"),
    (["License: MPL 2.0"], "MPL-2.0", "License"),
    (["License: ISC License (ISCL)"], "ISC", "License"),
    (["License: MIT/Apache-2.0"], "MIT OR Apache-2.0", "License"),
    (["License: MIT or Apache 2.0"], "MIT OR Apache-2.0", "License"),
    (["License: Apache 2.0 and MIT"], "Apache-2.0 AND MIT", "License"),
    # classifiers, when the License field says nothing useful
    (["License: UNKNOWN", "Classifier: License :: OSI Approved :: MIT License"], "MIT", "classifier"),
    (["Classifier: License :: OSI Approved :: GNU Lesser General Public License v2 or later (LGPLv2+)"],
     "LGPL-2.0-or-later", "classifier"),
    (["Classifier: License :: OSI Approved :: MIT License",
      "Classifier: License :: OSI Approved :: zlib/libpng License"], "MIT AND Zlib", "classifier"),
    (["Classifier: License :: CC0 1.0 Universal (CC0 1.0) Public Domain Dedication"], "CC0-1.0", "classifier"),
    # an invalid License-Expression falls through to what else the metadata says
    (["License-Expression: MIT OR", "Classifier: License :: OSI Approved :: MIT License"], "MIT", "classifier"),
    # whole license texts: the title line, or the text tells the classifier's family apart
    ([f"License: {MIT_TEXT}"], "MIT", "License"),
    (["License: Apache License\n                           Version 2.0, January 2004\nhttp://www.apache.org/licenses/\n"
      "TERMS AND CONDITIONS"], "Apache-2.0", "License"),
    ([f"License: {BSD3_TEXT}", "Classifier: License :: OSI Approved :: BSD License"], "BSD-3-Clause",
     "classifier+text"),  # scipy
    (["License: =========================\n The Kiwi licensing terms\n=========================\n" + BSD3_TEXT,
      "Classifier: License :: OSI Approved :: BSD License"], "BSD-3-Clause", "classifier+text"),  # kiwisolver
    (["License: License agreement for matplotlib versions 1.3.0 and later\n=======\n1. This LICENSE AGREEMENT is "
      "between the Matplotlib Development Team", "Classifier: License :: OSI Approved :: Python Software "
      "Foundation License"], "PSF-2.0", "classifier"),  # matplotlib
])
def test_wheel_license(headers: list[str], spdx: str, source: str) -> None:
    result = wheel_license(metadata(*headers))
    assert (result.spdx, result.source) == (spdx, source), result.reason


@pytest.mark.parametrize(("headers", "why", "candidates"), [
    ([], "no License-Expression, License or license classifier", ()),
    (["License: UNKNOWN"], "names no license", ()),
    (["License: Dual License"], "names no license", ()),
    (["License: Copyright 2018 Databricks, Inc.  All rights reserved.\n\nProprietary and confidential."],
     "not a license name", ()),
    (["License: Frobnicator Public License"], "not a license name", ()),
    (["License: BSD", "Classifier: License :: OSI Approved :: BSD License"], "ambiguous",
     ("BSD-2-Clause", "BSD-3-Clause", "BSD-4-Clause")),  # sympy, mpmath: never guessed
    (["Classifier: License :: OSI Approved :: Apache Software License"], "ambiguous",
     ("Apache-1.0", "Apache-1.1", "Apache-2.0")),
    (["Classifier: License :: OSI Approved :: MIT License",
      "Classifier: License :: OSI Approved :: GNU General Public License (GPL)"], "ambiguous",
     ("GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later")),
    (["Classifier: License :: OSI Approved"], "names no license", ()),  # skops
    (["License-Expression: MIT OR"], "not a valid SPDX expression", ()),
    (["License-Expression: Apache 2.0"], "not a valid SPDX expression", ()),
])
def test_wheel_license_unknown(headers: list[str], why: str, candidates: tuple[str, ...]) -> None:
    result = wheel_license(metadata(*headers))
    assert result.spdx is None
    assert why in (result.reason or "")
    assert result.candidates == candidates


@pytest.mark.parametrize(("text", "spdx"), [(BSD2_TEXT, "BSD-2-Clause"), (BSD3_TEXT, "BSD-3-Clause"),
                                            (BSD4_TEXT, "BSD-4-Clause")])
def test_license_files_tell_a_family_apart(text: str, spdx: str) -> None:
    meta = metadata("License: BSD", "Classifier: License :: OSI Approved :: BSD License")
    result = wheel_license(meta, [text])
    assert (result.spdx, result.source) == (spdx, "License+text")


def test_license_files_that_disagree_stay_ambiguous() -> None:
    meta = metadata("Classifier: License :: OSI Approved :: BSD License")
    assert wheel_license(meta, [BSD2_TEXT + "\n\nbundled:\n" + BSD3_TEXT]).spdx is None
    apache = "Licensed under the Apache License, Version 2.0 (the \"License\")"
    both = metadata("Classifier: License :: OSI Approved :: BSD License",
                    "Classifier: License :: OSI Approved :: Apache Software License")
    assert wheel_license(both, [apache, BSD3_TEXT]).spdx == "BSD-3-Clause AND Apache-2.0"  # python-dateutil


def test_garbage_metadata_does_not_crash() -> None:
    for data in (b"", b"\xff\xfe\x00garbage", b"License: \xff\xfe\n", b"License:\n", b"Classifier: License ::\n",
                 b"License: " + b"x" * 100_000 + b"\n"):
        assert wheel_license(data).spdx is None
    # the expression parser raises more than its own error type on some malformed input
    for text in ("( )", "( ) Apache-2.0", "( or ( AND GPL-2.0 and BSD", "MIT WITH", "WITH MIT", "MIT AND", "x" * 5000):
        assert normalize(text) is None
        assert wheel_license(f"License-Expression: {text}\nLicense: {text}\n".encode()).spdx is None


def test_classifier_table_is_valid_spdx() -> None:
    for classifier, spdx in CLASSIFIERS.items():
        if spdx is not None:
            assert normalize(spdx) == spdx, classifier
    for hub, spdx in HF_LICENSES.items():
        if spdx is not None:
            assert normalize(spdx) == spdx, hub


def test_real_installed_metadata() -> None:
    """Every distribution in this environment: a normalized expression or a reason, never a crash;
    and the license expressions that PEP 639 packages declare come back as declared."""
    seen = known = 0
    for dist in importlib.metadata.distributions():
        text = dist.read_text("METADATA")
        if not text:
            continue
        seen += 1
        result = wheel_license(text.encode())
        if result.spdx:
            known += 1
            assert normalize(result.spdx) == result.spdx
        else:
            assert result.reason
        declared = dist.metadata.get("License-Expression")
        if declared and normalize(declared):
            assert result.spdx == normalize(declared)
    assert seen > 20 and known / seen > 0.7


# --- models and images ------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "spdx"), [
    ("apache-2.0", "Apache-2.0"), ("mit", "MIT"), ("cc-by-4.0", "CC-BY-4.0"), ("cc-by-nc-sa-4.0", "CC-BY-NC-SA-4.0"),
    ("gpl-3.0", "GPL-3.0-only"), ("bsd-3-clause", "BSD-3-Clause"), ("odbl", "ODbL-1.0"),
    ("llama2", "LicenseRef-scancode-llama-2-license-2023"),
    ("bigscience-openrail-m", "LicenseRef-scancode-bigscience-open-rail-m"),
    ("openrail", "LicenseRef-hf-openrail"), ("openrail++", "LicenseRef-hf-openrail-plusplus"),
    ("Apache-2.0", "Apache-2.0"), (["apache-2.0", "cc-by-4.0"], "Apache-2.0 AND CC-BY-4.0"),
])
def test_model_license(raw, spdx: str) -> None:
    result = model_license(raw)
    assert (result.spdx, result.source) == (spdx, "model-card")


@pytest.mark.parametrize("raw", ["other", "unknown", "cc", "bsd", None, "", [], ["mit", "other"], "no idea", 42])
def test_model_license_unknown(raw) -> None:
    result = model_license(raw)
    assert result.spdx is None and result.reason


def test_image_annotation() -> None:
    assert annotation_license(None) is None
    assert annotation_license({"org.opencontainers.image.title": "x"}) is None
    assert annotation_license({"org.opencontainers.image.licenses": "MIT AND gpl-2.0"}).spdx == "MIT AND GPL-2.0-only"
    bad = annotation_license({"org.opencontainers.image.licenses": "see the docs"})
    assert bad.spdx is None and bad.source == "annotation"


# --- scan_subject -----------------------------------------------------------------------------


def _wheel(tmp: Path, name: str, license_text: str | None) -> Path:
    path = tmp / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "")
        zf.writestr(f"{name}-1.0.dist-info/METADATA", "Metadata-Version: 2.1\n")
        if license_text is not None:
            zf.writestr(f"{name}-1.0.dist-info/licenses/LICENSE.txt", license_text)
    return path


def _python_subject(tmp: Path, name: str, meta: bytes | None, license_text: str | None = None) -> ScanSubject:
    wheel = _wheel(tmp, name, license_text)
    mpath = None
    if meta is not None:
        mpath = tmp / f"{name}.metadata"
        mpath.write_bytes(meta)
    return ScanSubject("python", name, "1.0", [SubjectFile(wheel.name, "0" * 64, wheel.stat().st_size, wheel)],
                       {"metadata": mpath})


def test_scan_python(tmp_path: Path) -> None:
    ok = _python_subject(tmp_path, "six", metadata("License: MIT"))
    assert scan_subject(ok) == ("MIT", [])
    # "BSD" alone is ambiguous; the wheel's license file settles it (jinja2, sqlparse, lz4...)
    bsd = _python_subject(tmp_path, "jinja2", metadata("Classifier: License :: OSI Approved :: BSD License"),
                          BSD3_TEXT)
    assert scan_subject(bsd) == ("BSD-3-Clause", [])
    assert wheel_license_texts(bsd.files[0].path) == [BSD3_TEXT]


def test_scan_python_unknown_is_a_finding(tmp_path: Path) -> None:
    subject = _python_subject(tmp_path, "sympy", metadata("License: BSD"))
    spdx, findings = scan_subject(subject)
    assert spdx is None
    [f] = findings
    assert (f.scanner, f.rule, f.severity) == ("license", "license.unknown", Severity.MEDIUM)
    assert f.evidence["raw"] == "BSD"
    assert f.evidence["candidates"] == ["BSD-2-Clause", "BSD-3-Clause", "BSD-4-Clause"]
    assert "ambiguous" in f.message
    # no metadata at all (an sdist-only package), and metadata that cannot be read
    spdx, [f] = scan_subject(_python_subject(tmp_path, "sdistonly", None))
    assert spdx is None and "no core metadata" in f.message and f.evidence["raw"] is None
    gone = _python_subject(tmp_path, "gone", b"")
    gone.meta["metadata"] = tmp_path / "missing.metadata"
    assert "cannot read" in scan_subject(gone)[1][0].message


def test_scan_whole_license_text_evidence_is_bounded(tmp_path: Path) -> None:
    long_text = "Copyright (c) 2020 Someone\n\n" + ("All rights reserved. " * 500)
    _, [f] = scan_subject(_python_subject(tmp_path, "closed", metadata(f"License: {long_text}")))
    assert len(f.evidence["raw"]) <= 301 and f.evidence["raw"].startswith("Copyright (c) 2020 Someone")


def test_scan_model() -> None:
    assert scan_subject(ScanSubject("model", "org/name", "main", meta={"license": "apache-2.0"})) == ("Apache-2.0", [])
    spdx, [f] = scan_subject(ScanSubject("model", "org/name", "main", meta={"license": "other"}))
    assert spdx is None and f.rule == "license.unknown" and f.evidence["raw"] == "other"
    spdx, [f] = scan_subject(ScanSubject("model", "org/name", "main", meta={}))
    assert spdx is None and f.evidence["raw"] is None


def test_scan_image_without_a_license_is_not_a_finding() -> None:
    assert scan_subject(ScanSubject("oci", "docker.io/library/python", "3.12-slim")) == (None, [])
    assert scan_subject(ScanSubject("oci", "r/x", "1", meta={"annotations": {}})) == (None, [])
    declared = ScanSubject("oci", "r/x", "1", meta={"annotations": {"org.opencontainers.image.licenses": "Apache-2.0"}})
    assert scan_subject(declared) == ("Apache-2.0", [])
    labelled = ScanSubject("oci", "r/x", "1", meta={"labels": {"org.opencontainers.image.licenses": "mit"}})
    assert scan_subject(labelled) == ("MIT", [])
    bad = ScanSubject("oci", "r/x", "1", meta={"annotations": {"org.opencontainers.image.licenses": "ask legal"}})
    spdx, [f] = scan_subject(bad)
    assert spdx is None and f.evidence == {"raw": "ask legal", "source": "annotation"}


def test_the_tables_are_a_data_file_that_ships() -> None:
    """licenses.json: no JSON object with a key twice and no free-text name under two licenses
    (either would silently drop an entry), the family keys resolve, and the wheel carries it
    (pyproject's package-data)."""
    import fnmatch
    import json
    import tomllib

    from gapsync.scanner.artifacts import licenses

    here = Path(licenses.__file__).resolve().parent

    def no_duplicates(pairs: list) -> dict:
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
        return dict(pairs)

    doc = json.loads((here / licenses.TABLES_FILE).read_text(), object_pairs_hook=no_duplicates)
    names = [k for keys in doc["names"].values() for k in keys]
    assert len(names) == len(set(names)) == len(licenses.NAMES)
    assert set(licenses.CLASSIFIER_FAMILIES.values()) <= set(licenses.AMBIGUOUS)
    assert set(licenses._HF_AMBIGUOUS.values()) <= set(licenses.AMBIGUOUS)
    assert licenses._NOT_A_LICENSE.match("unknown") and not licenses._NOT_A_LICENSE.match("mit")
    root = here.parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["gapsync"]
    rel = (here / licenses.TABLES_FILE).relative_to(root / "gapsync").as_posix()
    assert any(fnmatch.fnmatch(rel, g) for g in globs), (rel, globs)
