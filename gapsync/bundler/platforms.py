"""Target interpreters: a Python version and a platform tag, turned into the wheel tags they
accept (``packaging.tags``) and the platform name the resolver (uv) understands.

Resolution must evaluate environment markers for the air-gapped interpreter, not for the
DMZ host (pip issues #4289, #9262), which is why each target is resolved on its own. A target
may name a patch version (``3.11.7``): "3.11" is resolved as 3.11.0, and a release that needs
3.11.5 would then be missed, or, worse, one the real interpreter cannot use be locked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from packaging import tags

_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_MANYLINUX_RE = re.compile(r"^manylinux_(\d+)_(\d+)_(x86_64|aarch64|i686|ppc64le|s390x|armv7l)$")
_LEGACY_RE = re.compile(r"^(manylinux1|manylinux2010|manylinux2014)_(x86_64|aarch64|i686|ppc64le|s390x|armv7l)$")
_MUSL_RE = re.compile(r"^musllinux_(\d+)_(\d+)_(x86_64|aarch64)$")
_MACOS_RE = re.compile(r"^macosx_(\d+)_(\d+)_(x86_64|arm64|universal2)$")
_WINDOWS = {"win_amd64": "x86_64-pc-windows-msvc", "win_arm64": "aarch64-pc-windows-msvc", "win32": "i686-pc-windows-msvc"}
# glibc versions that uv names as platforms; markers do not depend on the glibc minor version,
# so any other version resolves with the closest lower one and selects wheels with its own tags.
_UV_GLIBC = [17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40]


@dataclass(frozen=True)
class PythonTarget:
    python: str  # "3.12", or with a patch version "3.11.7" (resolved as that exact interpreter)
    platform: str  # a normalized platform tag, e.g. manylinux_2_17_x86_64

    @classmethod
    def parse(cls, python: str, platform: str) -> PythonTarget:
        m = re.match(r"^3\.(\d{1,2})(?:\.(\d{1,3}))?$", python.strip())
        if not m or int(m.group(1)) < 8:
            raise ValueError(f"python {python!r}: expected a CPython 3 version like \"3.11\" or \"3.11.7\" (3.8 or later)")
        plat = platform.strip().lower().replace("-", "_").replace(".", "_")
        legacy = _LEGACY_RE.match(plat)
        if legacy:
            major, minor = _LEGACY_MANYLINUX[legacy.group(1)]
            plat = f"manylinux_{major}_{minor}_{legacy.group(2)}"
        if not (_MANYLINUX_RE.match(plat) or _MUSL_RE.match(plat) or _MACOS_RE.match(plat)
                or plat in _WINDOWS or re.match(r"^linux_(x86_64|aarch64)$", plat)):
            raise ValueError(
                f"platform {platform!r}: expected a wheel platform tag such as manylinux_2_17_x86_64, "
                "musllinux_1_2_x86_64, macosx_11_0_arm64, win_amd64 or linux_x86_64")
        patch = f".{int(m.group(2))}" if m.group(2) is not None else ""
        return cls(f"3.{int(m.group(1))}{patch}", plat)

    @property
    def id(self) -> str:
        """``cp311-manylinux_2_17_x86_64``: the interpreter's wheel tag and the platform tag. A
        patch version does not show (wheels are tagged by minor version); two targets that differ
        only in it are one target."""
        return f"cp{self.minor.replace('.', '')}-{self.platform}"

    @property
    def minor(self) -> str:
        return ".".join(self.python.split(".")[:2])

    @property
    def has_patch(self) -> bool:
        return self.python != self.minor

    @property
    def version_tuple(self) -> tuple[int, int]:
        major, minor = self.minor.split(".")
        return int(major), int(minor)

    def _platforms(self) -> list[str]:
        p = self.platform
        if m := _MANYLINUX_RE.match(p):
            glibc_minor, arch = int(m.group(2)), m.group(3)
            out = [f"manylinux_2_{v}_{arch}" for v in range(glibc_minor, 4, -1)]
            legacy = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
            result = []
            for name in out:
                result.append(name)
                v = int(name.split("_")[2])
                if (2, v) in legacy:
                    result.append(f"{legacy[(2, v)]}_{arch}")
            return [*result, f"linux_{arch}"]
        if m := _MUSL_RE.match(p):
            minor, arch = int(m.group(2)), m.group(3)
            return [*(f"musllinux_1_{v}_{arch}" for v in range(minor, -1, -1)), f"linux_{arch}"]
        if m := _MACOS_RE.match(p):
            return list(tags.mac_platforms((int(m.group(1)), int(m.group(2))), m.group(3)))
        return [p]

    @cached_property
    def tag_priority(self) -> dict[tags.Tag, int]:
        """Wheel tags this interpreter accepts, best first (lower number is better)."""
        plats = self._platforms()
        v = self.version_tuple
        ordered = [*tags.cpython_tags(v, abis=[f"cp{v[0]}{v[1]}"], platforms=plats),
                   *tags.compatible_tags(v, f"cp{v[0]}{v[1]}", plats)]
        prio: dict[tags.Tag, int] = {}
        for i, t in enumerate(ordered):
            prio.setdefault(t, i)
        return prio

    @property
    def uv_platform(self) -> str:
        p = self.platform
        if m := _MANYLINUX_RE.match(p):
            minor, arch = int(m.group(2)), m.group(3)
            if arch not in ("x86_64", "aarch64"):
                return f"{arch}-unknown-linux-gnu"
            best = max((g for g in _UV_GLIBC if g <= minor), default=17)
            return f"{arch}-manylinux_2_{best}"
        if m := _MUSL_RE.match(p):
            return f"{m.group(3)}-unknown-linux-musl"
        if m := _MACOS_RE.match(p):
            return "aarch64-apple-darwin" if m.group(3) == "arm64" else "x86_64-apple-darwin"
        if p in _WINDOWS:
            return _WINDOWS[p]
        return f"{p.split('_', 1)[1]}-unknown-linux-gnu"


def host_target(python: str | None = None) -> PythonTarget:
    """The target that matches this machine (used by the demo so that pip can install here)."""
    import platform as _platform
    import sys

    arch = _platform.machine()
    py = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    return PythonTarget.parse(py, f"manylinux_2_17_{arch}")
