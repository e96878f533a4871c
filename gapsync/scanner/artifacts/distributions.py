"""``gapsync scan`` of Python distributions and requirements files, as inside a bundle.

Why a module of its own: a wheel or an sdist handed to ``scan`` must get the very checks it gets
when ``bundle create`` carries it (advisories, license, the model scanner on what it holds, the
policy), so this module only reads the files (which distribution, which requirement lines);
:func:`gapsync.assess.scan_distributions` and :func:`gapsync.assess.scan_requirements` turn them
into :class:`~gapsync.scanner.subject.ScanSubject`\\ s for :func:`gapsync.assess.scan_subjects`,
the one place both sides scan (a scanner imports no runner).

Name and version come from the distribution's own metadata, never from its file name alone: a
wheel's ``*.dist-info/METADATA`` (read the way ``bundle create`` reads it), an sdist's top-level
``PKG-INFO`` (a file in the archive; nothing is built and no ``setup.py`` is run). Only an sdist
whose ``PKG-INFO`` cannot be read falls back to its file name. When the file name names another
release than the metadata, both are checked (a renamed file must not hide a vulnerable release).

A requirements file is read as ``pip-audit -r`` reads it, but offline: ``name==version`` pins
(extras, markers, ``--hash`` options, comments, line continuations and ``-r`` includes handled;
names and versions parsed with ``packaging``) are matched against the advisory database; any
other line that names a package (a range, a URL, an editable) is reported "not pinned, not
checked" and decided by the policy's ``vulnerabilities.not_checked``, never skipped.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from gapsync.errors import InputError

# Only what deciding "is this a distribution?" needs is imported with the module: ``gapsync scan``
# of model files imports it too, and packaging, the policy and the scanners cost ~0.1 s to load.

SDIST_SUFFIXES = (".tar.gz", ".zip")  # the sdist formats PEP 625 and pip accept
PKG_INFO_LIMIT = 1 << 20  # core metadata larger than this is not metadata
MAX_SDIST_MEMBERS = 100_000  # PKG-INFO is searched among this many members at most
MAX_SDIST_BYTES = 512 << 20  # ... and in this many uncompressed bytes (a gzip bomb is not read to its end)
MAX_INCLUDE_DEPTH = 16


def is_distribution(path: Path) -> bool:
    """A wheel, or an archive named as an sdist is (``NAME-VERSION.tar.gz`` / ``.zip``, by
    ``packaging``): a candidate; :func:`read_distribution` decides from its content."""
    name = path.name.lower()
    if name.endswith(".whl"):
        return True
    return name.endswith(SDIST_SUFFIXES) and _name_from_file_name(path.name) is not None


@dataclass
class Distribution:
    """One distribution file: who it says it is, and how that was learnt."""

    path: Path
    name: str  # PEP 503
    version: str
    source: str  # "metadata" or "file name"
    metadata: bytes | None  # the core metadata (for the license), None when it could not be read
    file_name: tuple[str, str] | None = None  # (name, version) from the file name, when it parses
    note: str | None = None  # why the file name was used, or how it disagrees

    @property
    def disagrees(self) -> bool:
        return self.file_name is not None and self.file_name != (self.name, self.version)


def read_distribution(path: Path) -> Distribution | None:
    """Name and version of a wheel or sdist. None for an archive named like an sdist that holds
    neither a ``PKG-INFO`` nor a Python source tree (``setup.py``, ``pyproject.toml``,
    ``setup.cfg`` at its top): it is not a distribution, and the model scanner reads it. A wheel
    whose metadata cannot be read is an InputError naming the file."""
    import tarfile
    import zipfile

    from packaging.utils import canonicalize_name

    from gapsync.scanner.artifacts.dist_info import parse_metadata

    if not path.is_file() or path.is_symlink():
        raise InputError(f"{path}: not a regular file")
    file_name = _name_from_file_name(path.name)
    is_wheel = path.name.lower().endswith(".whl")
    source_tree = False
    data: bytes | None
    try:
        if is_wheel:
            data = _wheel_metadata(path)
        else:
            data, source_tree = _sdist_pkg_info(path)
        problem = None if data is not None else "no top-level PKG-INFO"
    except (InputError, OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, ValueError) as e:
        data, problem, source_tree = None, str(e).removeprefix(f"{path.name}: "), True  # named as an sdist: say so
    if data is not None:
        name, version = parse_metadata(data)
        if name and version:
            dist = Distribution(path, canonicalize_name(name), version, "metadata", data, file_name)
            if dist.disagrees:
                dist.note = (f"the file name says {file_name[0]} {file_name[1]} but the metadata "  # type: ignore[index]
                             f"{dist.name} {dist.version}: both are checked")
            return dist
        problem, source_tree = "the PKG-INFO has no Name or no Version", True
    if is_wheel:  # pip installs a wheel by its METADATA: without one it is not a wheel
        raise InputError(f"{path}: cannot read the wheel's metadata ({problem})")
    if file_name is None or not source_tree:
        return None
    return Distribution(path, file_name[0], file_name[1], "file name", None, file_name,
                        f"PKG-INFO not read ({problem}): name and version from the file name")


def _name_from_file_name(filename: str) -> tuple[str, str] | None:
    from packaging.utils import (
        InvalidSdistFilename,
        InvalidWheelFilename,
        canonicalize_name,
        parse_sdist_filename,
        parse_wheel_filename,
    )

    try:
        if filename.lower().endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return str(canonicalize_name(name)), str(version)


def _wheel_metadata(path: Path) -> bytes:
    from gapsync.scanner.artifacts.wheel_metadata import read_core_metadata  # what bundle create reads

    return read_core_metadata(path, path.name)


_TOP_PKG_INFO = re.compile(r"^(?:\./)?[^/]+/PKG-INFO$")
_TOP_SOURCE = re.compile(r"^(?:\./)?[^/]+/(?:setup\.py|pyproject\.toml|setup\.cfg)$")


def _sdist_pkg_info(path: Path) -> tuple[bytes | None, bool]:
    """The sdist's ``<top>/PKG-INFO`` (one directory deep, a regular member; read as a stream,
    nothing extracted), and whether a Python source tree was seen at the top."""
    import tarfile
    import zipfile

    source_tree = False
    if path.name.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                source_tree = source_tree or bool(_TOP_SOURCE.match(info.filename))
                if _TOP_PKG_INFO.match(info.filename):
                    if info.file_size > PKG_INFO_LIMIT:
                        raise ValueError(f"PKG-INFO is {info.file_size} bytes")
                    with zf.open(info) as f:
                        return f.read(PKG_INFO_LIMIT), True
        return None, source_tree
    with tarfile.open(path, mode="r|*") as tf:
        for n, member in enumerate(tf):
            if n >= MAX_SDIST_MEMBERS:
                raise ValueError(f"no PKG-INFO in the first {MAX_SDIST_MEMBERS} members")
            if not member.isreg():
                continue
            source_tree = source_tree or bool(_TOP_SOURCE.match(member.name))
            if _TOP_PKG_INFO.match(member.name):
                if member.size > PKG_INFO_LIMIT:
                    raise ValueError(f"PKG-INFO is {member.size} bytes")
                member_file = tf.extractfile(member)
                return (member_file.read(PKG_INFO_LIMIT) if member_file else None), True
            if member.offset_data + member.size > MAX_SDIST_BYTES:  # going on would decompress past the budget
                raise ValueError(f"no PKG-INFO in the first {MAX_SDIST_BYTES >> 20} MiB")
    return None, source_tree


def find_distributions(root: Path) -> tuple[list[Path], list[Path], list[str]]:
    """Under ``root``, sorted: the wheels and sdists, the other regular files (the model
    scanner's), and what is not read: symbolic links (never followed), FIFOs, devices."""
    found: list[Path] = []
    others: list[Path] = []
    links: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for name in sorted(dirnames + filenames):
            p = here / name
            if p.is_symlink():
                links.append(str(p))
            elif name in filenames:
                if p.is_file():
                    (found if is_distribution(p) else others).append(p)
                else:
                    links.append(str(p))
    return sorted(found), sorted(others), sorted(links)


# --- requirements files --------------------------------------------------------------------


@dataclass(frozen=True)
class RequirementLine:
    """One requirement of a requirements file: where it is, and what it asks for."""

    where: str  # FILE:LINE
    text: str  # the requirement as written (options such as --hash removed)
    name: str | None  # PEP 503, None when the line names no package (a bare URL)
    version: str | None  # the pinned version, None when the line is not a name==version pin
    why: str | None = None  # why it is not checked (not pinned, a URL, editable, ...)
    marker: str | None = None


_OPTION_WITH_VALUE = re.compile(r"^(-[ricef]|--(?:requirement|constraint|index-url|extra-index-url|find-links|"
                                r"editable|trusted-host|global-option|config-settings|hash|no-binary|only-binary|"
                                r"platform|python-version|implementation|abi|pre|prefer-binary|require-hashes|"
                                r"no-index|use-feature))\b")


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) with ``\\`` continuations joined and comments removed (pip: a
    ``#`` at the start or after whitespace)."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            out.append((start, buf.strip()))
        buf = ""
    if buf.strip():
        out.append((start, buf.strip()))
    return out


def read_requirements(path: Path, _seen: tuple[Path, ...] = ()) -> list[RequirementLine]:
    """Every requirement of ``path`` and of the files it includes with ``-r`` (relative to the
    including file). A missing, unreadable or circular include is an InputError naming it."""
    if len(_seen) > MAX_INCLUDE_DEPTH:
        raise InputError(f"{path}: -r includes nested more than {MAX_INCLUDE_DEPTH} deep")
    real = Path(os.path.realpath(path))
    if real in _seen:
        raise InputError(f"{path}: included again by itself (-r cycle)")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read ({e})") from e
    out: list[RequirementLine] = []
    for n, line in _logical_lines(text):
        where = f"{path}:{n}"
        include = re.match(r"^(?:-r|--requirement)(?:\s*=\s*|\s+|(?=\S))(\S+)$", line)
        if include:
            target = include.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*://", target, re.I):
                out.append(RequirementLine(where, line, None, None, f"-r {target}: a URL, not read (offline)"))
                continue
            out += read_requirements((path.parent / target), (*_seen, real))
            continue
        editable = re.match(r"^(?:-e|--editable)(?:\s*=\s*|\s+)(\S+)", line)
        if editable:
            out.append(RequirementLine(where, line, _egg_name(editable.group(1)), None,
                                       "editable: not a name==version pin, not checked"))
            continue
        if line.startswith("-"):
            continue  # index and install options (--index-url, -c constraints, --pre, ...): not requirements
        out.append(_requirement(where, line))
    return out


def _egg_name(target: str) -> str | None:
    from packaging.utils import canonicalize_name

    m = re.search(r"[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)", target)
    return str(canonicalize_name(m.group(1))) if m else None


def _requirement(where: str, line: str) -> RequirementLine:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    text = re.split(r"\s+--?[a-z]", " " + line, maxsplit=1)[0].strip()  # drop per-requirement options (--hash=...)
    try:
        req = Requirement(text)
    except InvalidRequirement as e:
        if re.match(r"^(?:[a-z][a-z0-9+.-]*://|\.{0,2}/)", text, re.I) or text.endswith((".whl", ".tar.gz", ".zip")):
            return RequirementLine(where, text, _egg_name(text), None, "a URL or path, not a name==version pin: not checked")
        raise InputError(f"{where}: not a requirement ({str(e).splitlines()[0]})") from e
    name = str(canonicalize_name(req.name))
    marker = str(req.marker) if req.marker else None
    if req.url:
        return RequirementLine(where, text, name, None, f"{req.name} @ URL: not a name==version pin, not checked", marker)
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and not specs[0].version.endswith(".*"):
        return RequirementLine(where, text, name, specs[0].version, None, marker)
    what = str(req.specifier) or "any version"
    return RequirementLine(where, text, name, None, f"not pinned ({what}), not checked", marker)
