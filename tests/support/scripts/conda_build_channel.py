"""Build the tests' upstream conda channel: small real packages made by py-rattler-build.

Run as a script (``python conda_build_channel.py OUT``), never imported by the tests' process:
rattler_build and rattler each carry their own Rust runtime and one process must not load both
(it crashes). The channel is then indexed by ``rattler.index`` in another process (conftest).

Packages (licenses as declared in each package's metadata):
- ``gs-lib`` 1.0 and 2.0 (linux-64, osx-arm64; .conda): a data file;
- ``gs-tool`` 0.1 (linux-64, osx-arm64; .tar.bz2): ``bin/gs-hello``, a shell script that reads
  gs-lib's file; depends on ``gs-lib >=1,<2`` (so the solver must pick 1.0, not the newest);
- ``python`` 3.11.0 (linux-64, osx-arm64): a stand-in, so that noarch: python packages link;
- ``gs-py`` 1.0 (noarch: python): a module in site-packages; depends on python and gs-lib;
- ``gs-newglibc`` 1.0 (linux-64): depends on ``__glibc >=2.34`` (a virtual package);
- ``gs-pickle`` 1.0 (noarch: generic): a pickle that calls os.system (made with pickle.dumps,
  never loaded), for the "scan pickles in packages" policy.
"""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from rattler_build import ArchiveType, assemble_package

TS = datetime(2024, 1, 1, tzinfo=UTC)
PLATFORMS = ("linux-64", "osx-arm64")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _stage(files: dict[str, tuple[bytes, int]]) -> Path:
    d = Path(tempfile.mkdtemp(prefix="gs-conda-pkg-"))
    for rel, (data, mode) in files.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.chmod(p, mode)
    return d


def build(out: Path) -> None:
    for plat in PLATFORMS:
        d = out / plat
        d.mkdir(parents=True, exist_ok=True)
        for v in ("1.0", "2.0"):
            assemble_package("gs-lib", v, plat, "h0_0", d, files_dir=_stage({"share/gs-lib/VERSION": (f"{v}\n".encode(), 0o644)}),
                             license="MIT", summary="gapsync test library", timestamp=TS)
        script = b'#!/bin/sh\necho "hello from gs-tool with gs-lib $(cat "$(dirname "$0")/../share/gs-lib/VERSION")"\n'
        assemble_package("gs-tool", "0.1", plat, "h0_0", d, files_dir=_stage({"bin/gs-hello": (script, 0o755)}),
                         license="Apache-2.0", depends=["gs-lib >=1,<2"], timestamp=TS, archive_type=ArchiveType.TarBz2)
        if plat == "linux-64":  # needs a newer glibc than gapsync assumes by default (2.28)
            assemble_package("gs-newglibc", "1.0", plat, "h0_0", d, files_dir=_stage({"share/gs-newglibc/x": (b"x", 0o644)}),
                             license="MIT", depends=["__glibc >=2.34"], timestamp=TS)
        assemble_package("python", "3.11.0", plat, "h0_0_cpython", d,
                         files_dir=_stage({"bin/python3.11": (b"#!/bin/sh\necho stand-in\n", 0o755)}),
                         license="PSF-2.0", timestamp=TS)
    d = out / "noarch"
    d.mkdir(parents=True, exist_ok=True)
    assemble_package("gs-py", "1.0", "noarch", "pyh0_0", d,
                     files_dir=_stage({"site-packages/gs_py/__init__.py": (b"VALUE = 42\n", 0o644)}),
                     license="BSD-3-Clause", noarch="python", depends=["python >=3.8", "gs-lib"], timestamp=TS)
    assemble_package("gs-pickle", "1.0", "noarch", "h0_0", d,
                     files_dir=_stage({"share/gs-pickle/model.pkl": (pickle.dumps(_Evil(), protocol=2), 0o644)}),
                     license="MIT", noarch="generic", timestamp=TS)


if __name__ == "__main__":
    build(Path(sys.argv[1]))
