"""Resource bombs: bundles that claim terabytes, a tar of a million tiny members, JSON nested
100,000 deep, a signed bundle.json or model manifest of tens of megabytes. Each is imported by
the real command line in a subprocess whose peak RSS is read from the kernel (``wait4``), and
each must be refused (exit 3, one line naming the bundle, the mirror unchanged) in seconds,
with memory flat: the peak of a refusal stays within a fixed distance of the peak of a normal
import of a small bundle.

The figures (seconds and peak RSS of each refusal) are stored in pytest's cache under
``gapsync/figures/bombs`` (docs/reliability.md quotes them).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.cli import GAPSYNC, cli, isolated_env
from tests.support.hostile_bundles import Member, read_members, write_members
from tests.support.trees import snapshot

SECONDS = 10.0  # generous for two cores: each refusal below takes well under a second
PEAK_MB = 300  # absolute ceiling of the importer's peak RSS
FLAT_MB = 64  # and at most this much above a normal import's peak
TB = 10**12
BLOCK = 512


# The peak RSS is read by a small launcher, not by pytest: on Linux a child's ru_maxrss starts
# from the RSS of the process that forked it (the kernel records the old memory map's high-water
# mark at exec), so measuring from pytest, which holds the bombs it built, would report pytest.
LAUNCHER = """
import json, os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"maxrss_kb": usage.ru_maxrss}, f)
sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)
"""


def measured(*args) -> tuple[int, str, float, float]:
    """Run ``gapsync ARGS``: (exit code, stderr, seconds, peak RSS of the gapsync process in MB)."""
    with tempfile.TemporaryDirectory() as d:
        usage = Path(d) / "usage.json"
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-c", LAUNCHER, str(usage), GAPSYNC, *map(str, args)],
                           capture_output=True, text=True, env=isolated_env(), timeout=120)
        seconds = time.monotonic() - t0
        return r.returncode, r.stderr, seconds, json.loads(usage.read_text())["maxrss_kb"] / 1024


# -- building the bombs ---------------------------------------------------------------------

def _header(name: str, size: int, fmt=tarfile.USTAR_FORMAT) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = size, 0o644, 0
    return ti.tobuf(fmt, "utf-8", "strict")


def _pad(n: int) -> bytes:
    return b"\0" * (-n % BLOCK)


def _end(size: int) -> bytes:
    return b"\0" * (2 * BLOCK) + b"\0" * (-(size + 2 * BLOCK) % tarfile.RECORDSIZE)


def _members_bytes(members: list[Member]) -> bytes:
    """Members as raw ustar blocks, without the end-of-archive blocks."""
    out = io.BytesIO()
    for m in members:
        out.write(_header(m.name, len(m.data)) + m.data + _pad(len(m.data)))
    return out.getvalue()


def _resign(world, members: list[Member], edit) -> list[Member]:
    """Members with targets.json edited by ``edit(Metadata[Targets])`` and signed again with the
    channel's key: a bomb the signer made (or a stolen key did), which TUF accepts."""
    from tuf.api.metadata import Metadata, Targets

    from gapsync.bundle.keys import load_signing_key
    from gapsync.bundle.tuf import to_bytes

    t = next(m for m in members if m.name == "metadata/targets.json")
    md = Metadata[Targets].from_bytes(t.data)
    edit(md)
    md.signatures.clear()
    md.sign(load_signing_key(world.keys[0]).tuf_signer())
    t.data = to_bytes(md)
    return members


def _replace_target(world, members: list[Member], kind: str, data: bytes, *, custom=None, path=None) -> list[Member]:
    """Carry ``data`` as the blob of the target of this kind (or a new target at ``path``), signed."""
    import hashlib

    from tuf.api.metadata import TargetFile

    digest = hashlib.sha256(data).hexdigest()

    def edit(md):
        if path is None:
            p, tf = next((p, tf) for p, tf in md.signed.targets.items() if tf.unrecognized_fields.get("custom", {}).get("kind") == kind)
            old = tf.hashes["sha256"]
            tf.length, tf.hashes = len(data), {"sha256": digest}
            for m in members:
                if m.name == f"blobs/sha256/{old}":
                    m.name, m.data = f"blobs/sha256/{digest}", data
        else:
            md.signed.targets[path] = TargetFile(len(data), {"sha256": digest}, path, {"custom": custom})
            members.append(Member(f"blobs/sha256/{digest}", data))

    return _resign(world, members, edit)


class Bombs:
    """Writes each bomb once per session into a directory."""

    def __init__(self, world, root: Path):
        self.world, self.root = world, root
        self.members = lambda: read_members(world.b2)

    def path(self, name: str) -> Path:
        return self.root / f"{name}.gapsync"

    def blob_header_claims_a_terabyte(self) -> Path:
        raw = bytearray(self.world.b2.read_bytes())
        with tarfile.open(self.world.b2) as tf:
            blob = next(ti for ti in tf if ti.name.startswith("blobs/"))
        raw[blob.offset:blob.offset + BLOCK] = _header(blob.name, 4 * TB, tarfile.GNU_FORMAT)  # base-256 size field
        return self._write("header-4TB", bytes(raw))

    def metadata_header_claims_ten_terabytes(self) -> Path:
        raw = bytearray(self.world.b2.read_bytes())
        with tarfile.open(self.world.b2) as tf:
            t = next(ti for ti in tf if ti.name == "metadata/targets.json")
        raw[t.offset:t.offset + BLOCK] = _header(t.name, 10 * TB, tarfile.GNU_FORMAT)
        return self._write("targets-header-10TB", bytes(raw))

    def pax_size_claims_a_terabyte(self) -> Path:
        ms = self.members()
        i = next(i for i, m in enumerate(ms) if m.name.startswith("blobs/"))
        head = _members_bytes(ms[:i])
        pax = tarfile.TarInfo._create_pax_generic_header({"size": str(TB)}, tarfile.XHDTYPE, "utf-8")
        body = head + pax + _members_bytes(ms[i:])
        return self._write("pax-size-1TB", body + _end(len(body)))

    def pax_header_claims_ten_gigabytes(self) -> Path:
        ms = self.members()
        i = next(i for i, m in enumerate(ms) if m.name.startswith("blobs/"))
        ti = tarfile.TarInfo("././@PaxHeader")
        ti.type, ti.size, ti.mtime, ti.mode = tarfile.XHDTYPE, 10**10, 0, 0o644
        body = _members_bytes(ms[:i]) + ti.tobuf(tarfile.GNU_FORMAT) + b"40 path=" + b"x" * 31 + b"\n" + _members_bytes(ms[i:])
        return self._write("pax-header-10GB", body + _end(len(body)))

    def pax_record_claims_a_huge_length(self) -> Path:
        ms = self.members()
        i = next(i for i, m in enumerate(ms) if m.name.startswith("blobs/"))
        rec = b"99999999999999999999 size=5\n"
        ti = tarfile.TarInfo("././@PaxHeader")
        ti.type, ti.size, ti.mtime, ti.mode = tarfile.XHDTYPE, len(rec), 0, 0o644
        body = _members_bytes(ms[:i]) + ti.tobuf(tarfile.USTAR_FORMAT) + rec + _pad(len(rec)) + _members_bytes(ms[i:])
        return self._write("pax-record-huge-length", body + _end(len(body)))

    def signed_target_of_ten_terabytes(self, carried: bool) -> Path:
        """targets.json (signed) says the newpy wheel is 10 TB; the bundle carries its real bytes, or not."""
        ms = self.members()

        def edit(md):
            tf = md.signed.targets["python/newpy/newpy-1.0-py3-none-any.whl"]
            tf.length = 10 * TB
            if not carried:
                ms[:] = [m for m in ms if m.name != f"blobs/sha256/{tf.hashes['sha256']}"]

        _resign(self.world, ms, edit)
        return write_members(ms, self.path(f"signed-10TB-target-{'carried' if carried else 'absent'}"))

    def million_tiny_members(self) -> Path:
        """The metadata of b2, then 1,000,000 empty blob members with distinct valid names (512 MB)."""
        p = self.path("million-members")
        ms = self.members()
        head = _members_bytes([m for m in ms if m.name.startswith("metadata/")])
        # names whose bytes always add up to the same sum, so every header has one checksum:
        # bit k of i picks "01" or "10" for hex digits 2k and 2k+1
        pairs = [b"01", b"10"]
        lo = [b"".join(pairs[(j >> k) & 1] for k in range(10)) for j in range(1024)]
        template = _header("blobs/sha256/" + "01" * 10 + "01" * 10 + "0" * 24, 0)
        before, after = template[:13], template[13 + 40:]
        with p.open("wb") as f:
            f.write(head)
            n = 1_000_000
            for start in range(0, n, 8192):
                f.write(b"".join(before + lo[i & 1023] + lo[i >> 10] + after for i in range(start, min(n, start + 8192))))
            size = len(head) + n * BLOCK
            f.write(_end(size))
        return p

    def million_root_members(self) -> Path:
        """1,000,000 empty metadata/N.root.json members (each name valid, each under its limit)."""
        p = self.path("million-roots")
        template = bytearray(_header("metadata/100000000.root.json", 0))
        base_sum = sum(template[:148]) + 8 * 32 + sum(template[156:]) - sum(b"00000000")
        with p.open("wb") as f:
            n = 1_000_000
            chunk = []
            for i in range(n):
                digits = b"%08d" % i
                h = template[:]
                h[10:18] = digits
                h[148:156] = b"%06o\0 " % (base_sum + sum(digits))
                chunk.append(bytes(h))
                if len(chunk) == 8192:
                    f.write(b"".join(chunk))
                    chunk.clear()
            f.write(b"".join(chunk))
            f.write(_end(n * BLOCK))
        return p

    def nested(self, member: str, depth: int, with_blobs: bool = True) -> Path:
        ms = self.members()
        next(m for m in ms if m.name == member).data = b"[" * depth + b"]" * depth
        if not with_blobs:
            ms = [m for m in ms if m.name.startswith("metadata/")]
        return write_members(ms, self.path(f"nested-{member.split('/')[-1]}-{depth}{'' if with_blobs else '-no-blobs'}"))

    def root_chain_of_large_roots(self) -> Path:
        """40 root members of 500 kB each (each under the 512 kB root limit; 20 MB together)."""
        ms = self.members()
        big = [Member(f"metadata/{v}.root.json", b" " * 500_000) for v in range(2, 42)]
        return write_members(ms[:1] + big + ms[1:], self.path("root-chain-20MB"))

    def signed_huge_bundle_json(self) -> Path:
        """A signed bundle.json of 80 MB: a JSON list of 40 million zeros (parsed, 320 MB of pointers)."""
        data = b"[" + b"0," * 40_000_000 + b"0]"
        ms = _replace_target(self.world, self.members(), "bundle-info", data)
        return write_members(ms, self.path("signed-bundle-json-80MB"))

    def signed_huge_model_manifest(self) -> Path:
        """A signed model manifest of 20 MB (a JSON list of zeros again)."""
        data = b"[" + b"0," * 10_000_000 + b"0]"
        custom = {"kind": "model", "source": "hf", "name": "org/bomb", "revision": "main", "commit": "c" * 40}
        ms = _replace_target(self.world, self.members(), "model", data, custom=custom, path="model/hf/org/bomb@main")
        return write_members(ms, self.path("signed-model-manifest-20MB"))

    def signed_malformed_model_manifest(self, data: bytes, name: str) -> Path:
        """A small signed model manifest that is not what later steps index without checks."""
        custom = {"kind": "model", "source": "hf", "name": "org/odd", "revision": "main", "commit": "d" * 40}
        ms = _replace_target(self.world, self.members(), "model", data, custom=custom, path="model/hf/org/odd@main")
        return write_members(ms, self.path(name))

    def signed_ill_typed_bundle_json(self) -> Path:
        """A signed bundle.json whose fields have the wrong types (int() and .get() would crash on
        them), in a bundle that lacks a blob the mirror does not have: refused for what it lacks."""
        data = json.dumps({"kind": "delta", "base": {"version": "two"}, "volumes": [1]}).encode()
        ms = _replace_target(self.world, self.members(), "bundle-info", data)
        targets = json.loads(next(m for m in ms if m.name == "metadata/targets.json").data)["signed"]["targets"]
        newpy = targets["python/newpy/newpy-1.0-py3-none-any.whl"]["hashes"]["sha256"]
        return write_members([m for m in ms if m.name != f"blobs/sha256/{newpy}"], self.path("bundle-json-ill-typed"))

    def _write(self, name: str, data: bytes) -> Path:
        p = self.path(name)
        p.write_bytes(data)
        return p


@pytest.fixture(scope="module")
def bombs(world, tmp_path_factory):
    return Bombs(world, tmp_path_factory.mktemp("bombs"))


@pytest.fixture(scope="module")
def v1_mirror(world, tmp_path_factory):
    m = tmp_path_factory.mktemp("bomb-mirror") / "m"
    assert cli("trust", "pin", world.root, "--mirror", m).code == 0
    assert cli("import", world.b1, "--mirror", m).code == 0
    return m


@pytest.fixture(scope="module")
def normal_peak(world, v1_mirror, tmp_path_factory, figures):
    """Peak RSS of importing the small, valid world.b2: the yardstick of "flat"."""
    m = tmp_path_factory.mktemp("normal") / "m"
    shutil.copytree(v1_mirror, m, symlinks=True)
    code, err, seconds, peak = measured("import", world.b2, "--mirror", m)
    assert code == 0, err
    figures["normal import of world.b2"] = {"seconds": round(seconds, 2), "peak_mb": round(peak)}
    return peak


@pytest.fixture(scope="module")
def figures(request):
    out: dict = {}
    yield out
    request.config.cache.set("gapsync/figures/bombs", out)


CASES = {
    "blob header claims 4 TB": ("blob_header_claims_a_terabyte", (), "truncated"),
    "targets.json header claims 10 TB": ("metadata_header_claims_ten_terabytes", (), "targets.json"),
    "pax header sets size to 1 TB": ("pax_size_claims_a_terabyte", (), "truncated"),
    "pax header of 10 GB": ("pax_header_claims_ten_gigabytes", (), "extended header"),
    "pax record claims a 10^20-byte length": ("pax_record_claims_a_huge_length", (), ""),
    "signed target of 10 TB, real bytes carried": ("signed_target_of_ten_terabytes", (True,), "signed length"),
    "signed target of 10 TB, not carried": ("signed_target_of_ten_terabytes", (False,), "lacks"),
    "1,000,000 empty blob members (512 MB)": ("million_tiny_members", (), "more blob members"),
    "1,000,000 empty root members (512 MB)": ("million_root_members", (), "root versions"),
    "targets.json nested 100,000 deep": ("nested", ("metadata/targets.json", 100_000), "targets"),
    "targets.json nested 100,000 deep, no blobs": ("nested", ("metadata/targets.json", 100_000, False), "nested too deeply"),
    "timestamp.json nested 8,000 deep": ("nested", ("metadata/timestamp.json", 8_000), "metadata"),
    "root chain of 40 x 500 kB": ("root_chain_of_large_roots", (), "root versions"),
    "signed bundle.json of 80 MB": ("signed_huge_bundle_json", (), "bundle.json"),
    "signed model manifest of 20 MB": ("signed_huge_model_manifest", (), "model"),
    "signed bundle.json with ill-typed fields": ("signed_ill_typed_bundle_json", (), "lacks"),
    "signed model manifest that is a list": ("signed_malformed_model_manifest", (b"[1, 2, 3]", "manifest-list"),
                                              "is not a manifest"),
    "signed model manifest, files without paths": ("signed_malformed_model_manifest",
                                                    (b'{"files": [{"path": 7, "sha256": null}]}', "manifest-nopath"),
                                                    "lists files without"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bomb_is_refused_fast_with_flat_memory(bombs, v1_mirror, normal_peak, figures, tmp_path, case):
    method, args, word = CASES[case]
    bundle = getattr(bombs, method)(*args)
    try:
        _refused_fast_and_flat(bundle, v1_mirror, normal_peak, figures, tmp_path, case, word)
    finally:
        bundle.unlink()  # the large ones: do not keep half a gigabyte in the temporary directory


def _refused_fast_and_flat(bundle: Path, v1_mirror: Path, normal_peak: float, figures: dict, tmp_path: Path,
                           case: str, word: str) -> None:
    m = tmp_path / "m"
    shutil.copytree(v1_mirror, m, symlinks=True)
    before = snapshot(m)
    code, err, seconds, peak = measured("import", bundle, "--mirror", m)
    figures[case] = {"file_mb": round(bundle.stat().st_size / 1e6, 1), "exit": code, "seconds": round(seconds, 2),
                     "peak_mb": round(peak), "reason": err.strip().split(": ", 3)[-1][:160]}
    assert "internal error" not in err and "Traceback" not in err, err
    assert code == 3, (code, err)
    err = err.strip()
    assert "\n" not in err and str(bundle) in err and word in err, err
    assert seconds < SECONDS, (case, seconds)
    assert peak < PEAK_MB and peak < normal_peak + FLAT_MB, (case, peak, normal_peak)
    assert snapshot(m) == before
    assert not any((m / ".gapsync/staging").iterdir())
