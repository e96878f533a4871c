"""Shared helpers of the bench scripts (not a bench itself: run_all.py only runs bench_*.py).

Measuring a command: each measurement runs the command as a fresh child under ``/usr/bin/time``
(wall clock from ``time.perf_counter`` here, peak RSS, user and system CPU from ``time``); when
``/usr/bin/time`` is missing, a small Python wrapper reports ``getrusage(RUSAGE_CHILDREN)``
instead, which is the same number (the largest RSS among the waited-for descendants).

The machine is shared (2 cores, other jobs come and go), so each measurement waits for a quiet
second first, records how much CPU the rest of the machine used meanwhile ("other cpu", from
/proc/stat), and is run again when that was more than noise.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gapsync.demo import free_port, wait_http  # noqa: E402,F401  (one implementation, shared with the demo and the tests)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
VENV_BIN = Path(sys.executable).parent
GAPSYNC = str(VENV_BIN / "gapsync") if (VENV_BIN / "gapsync").exists() else str(ROOT / ".venv" / "bin" / "gapsync")
TIME_BIN = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
MB = 1_000_000
QUIET_TIMEOUT = float(os.environ.get("BENCH_QUIET_TIMEOUT", "180"))


def _compile_bytecode() -> None:
    """Write the bytecode of gapsync's own modules before anything is measured. An installed
    gapsync has it (pip compiles a package when it installs it; an editable install writes it at
    the first import), but this repository's editable install under ``PYTHONDONTWRITEBYTECODE``
    (set on the machines the bench runs on) has none, and every ``gapsync`` child then compiled
    about 80 modules again (0.25-0.35 s each command, seen in a profile of ``bundle create``),
    while ``snapshot_download`` or ``pip`` read theirs from site-packages. ``compileall`` writes
    it whatever the variable says; a module edited since is compiled again."""
    import compileall

    compileall.compile_dir(str(ROOT / "gapsync"), quiet=1)


_compile_bytecode()

RUSAGE_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "open(sys.argv[1], 'w').write(f'0 {ru.ru_maxrss} {ru.ru_utime} {ru.ru_stime}\\n')\n"
    "sys.exit(rc)\n"
)


def clean_env(**extra: str) -> dict[str, str]:
    """This machine's pip has a global config and PIP_* variables (extra indexes, find-links):
    every child runs without them, and without any GAPSYNC_* or UV_* setting but the bench's
    advisory store (``advisory_store``: ``bundle create`` under the default policy blocks when
    there is no advisory database)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "GAPSYNC_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["GAPSYNC_ADVISORIES"] = str(advisory_store())
    env.update(extra)
    return env


_ADVISORY_STORE: Path | None = None


def advisory_store() -> Path:
    """The advisory store every bench child uses (``$GAPSYNC_ADVISORIES``): the PyPA snapshot kept
    in the repository, imported once into ``bench/out/advisories`` with ``gapsync advisories
    import`` (as the demo does; it is from 2024-10, so scans call it stale, which warns)."""
    global _ADVISORY_STORE
    if _ADVISORY_STORE is None:
        from gapsync.demo import ADVISORY_ATTRIBUTION, ADVISORY_SNAPSHOT

        store = OUT / "advisories"
        stamp = store / ".bench-imported"
        if not stamp.exists():
            OUT.mkdir(parents=True, exist_ok=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith("GAPSYNC_")}
            subprocess.run([GAPSYNC, "advisories", "import", str(ADVISORY_SNAPSHOT), "--store", str(store),
                            "--source", ADVISORY_ATTRIBUTION], env=env, check=True, capture_output=True)
            stamp.write_text(str(ADVISORY_SNAPSHOT.stat().st_mtime_ns))
        _ADVISORY_STORE = store
    return _ADVISORY_STORE


class Server:
    """A child HTTP server on 127.0.0.1, stopped by its own PID (never by name)."""

    def __init__(self, argv: list[str], cwd: Path, url: str, log: Path | None = None):
        self.url = url
        self._log = log.open("wb") if log else None
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=self._log or subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=clean_env())
        try:
            wait_http(url, proc=self.proc, log=log)
        except BaseException:
            self.stop()
            raise

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far: its work is ours, not another job's."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log:
            self._log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class Run:
    wall: float
    maxrss_kb: int
    user: float
    sys: float
    other_cpu: float = 0.0  # CPU seconds the rest of the machine used meanwhile (noise warning)


def busy_seconds() -> float:
    """CPU time spent by the whole machine so far (all cores), from /proc/stat."""
    try:
        f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Measure:
    label: str
    kind: str  # "gapsync" or "baseline" (or "info")
    runs: list[Run] = field(default_factory=list)
    bytes: int | None = None  # payload bytes moved, for MB/s
    note: str = ""

    @property
    def wall(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    @property
    def maxrss_mb(self) -> float:
        return max(r.maxrss_kb for r in self.runs) / 1024

    @property
    def cpu(self) -> float:
        return statistics.median(r.user + r.sys for r in self.runs)

    @property
    def other_cpu(self) -> float:
        return max(r.other_cpu for r in self.runs)

    @property
    def mbps(self) -> float | None:
        return self.bytes / MB / self.wall if self.bytes else None

    def to_dict(self) -> dict:
        d = {"label": self.label, "kind": self.kind, "wall_s_median": round(self.wall, 3),
             "wall_s_all": [round(r.wall, 3) for r in self.runs], "cpu_s_median": round(self.cpu, 3),
             "peak_rss_mb": round(self.maxrss_mb, 1), "other_cpu_s_max": self.other_cpu,
             "bytes": self.bytes, "note": self.note,
             "runs": [asdict(r) for r in self.runs]}
        if self.mbps is not None:
            d["mb_per_s"] = round(self.mbps, 1)
        return d


def disturbed(run: Run) -> bool:
    """The rest of the machine used more CPU than noise while ``run`` ran (2 cores: it shows)."""
    return run.other_cpu > 0.3 + 0.15 * run.wall


_patience = {"left": float(os.environ.get("BENCH_QUIET_BUDGET", "900"))}


def wait_quiet(timeout: float = QUIET_TIMEOUT) -> bool:
    """Wait until the machine has been idle for a second (other jobs share these 2 cores);
    give up after ``timeout`` seconds, and stop waiting at all once this process has waited
    BENCH_QUIET_BUDGET seconds (900) in all. Returns whether it was quiet."""
    end = time.monotonic() + min(timeout, _patience["left"])
    said = False
    while True:
        b0, t0 = busy_seconds(), time.monotonic()
        time.sleep(1.0)
        if busy_seconds() - b0 < 0.1:
            return True
        if said:
            _patience["left"] -= time.monotonic() - t0
        if time.monotonic() > end:
            print(f"  (machine still busy; measuring anyway, {max(0, _patience['left']):.0f} s of waiting left)",
                  flush=True)
            return False
        if not said:
            print("  (other processes are using the CPU; waiting for a quiet moment ...)", flush=True)
            said = True


def disk_busy_ms() -> int:
    """Milliseconds the block devices have spent doing I/O since boot (``/proc/diskstats``,
    ``io_ticks``, whole disks only), discards included."""
    disks = {p.name for p in Path("/sys/block").iterdir() if not p.name.startswith(("loop", "ram", "zram"))} \
        if Path("/sys/block").is_dir() else set()
    total = 0
    try:
        for line in Path("/proc/diskstats").read_text().splitlines():
            f = line.split()
            if len(f) > 12 and f[2] in disks:
                total += int(f[12])
    except OSError:
        return 0
    return total


def wait_disk_quiet(timeout: float = 120.0) -> bool:
    """Wait until the disks have been busy less than 5% of a second. Why: the runs before (and
    their ``reset``, which removes gigabytes) leave the disk writing back and, on a file system
    mounted with ``discard`` (this VM's ext4), trimming the freed blocks for seconds after
    ``sync`` returns; a run started then shares the disk with its predecessor's clean-up. The
    CPU-quiet wait (``wait_quiet``) does not see it: that work runs in the kernel's own threads
    and in the device. Returns whether it was quiet."""
    end = time.monotonic() + timeout
    said = False
    while True:
        b0 = disk_busy_ms()
        time.sleep(1.0)
        if disk_busy_ms() - b0 < 50:
            return True
        if time.monotonic() > end:
            print("  (the disk is still busy; measuring anyway)", flush=True)
            return False
        if not said:
            print("  (the disk is still busy with earlier writes or trims; waiting ...)", flush=True)
            said = True


def measure(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
            check: bool = True, ok_codes: tuple[int, ...] = (0,), reset=None, prepare=None,
            attempts: int = 3, ours=None) -> tuple[Run, subprocess.CompletedProcess]:
    """Run ``argv`` as a fresh child and return its wall time, peak RSS and CPU time.

    Before each attempt: ``reset()`` (put the state back, e.g. an empty cache), wait for a quiet
    machine, then ``prepare()``, then for a quiet disk (``wait_disk_quiet``); none of that is timed. An attempt during which other processes
    used the CPU is run again (at most ``attempts`` in all) and the least disturbed one is kept,
    so ``reset`` must make the command repeatable. ``ours()`` returns the CPU seconds used so
    far by helpers of the bench (the index server), which do not count as other processes."""
    best: tuple[Run, subprocess.CompletedProcess] | None = None
    for _ in range(max(1, attempts)):
        if reset:
            reset()
        wait_quiet()
        if prepare:
            prepare()
        wait_disk_quiet()
        got = measure_once(argv, cwd=cwd, env=env, check=check, ok_codes=ok_codes, ours=ours)
        if best is None or got[0].other_cpu < best[0].other_cpu:
            best = got
        if not disturbed(got[0]):
            break
    assert best is not None
    return best


def measure_once(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, check: bool = True,
                 ok_codes: tuple[int, ...] = (0,), ours=None) -> tuple[Run, subprocess.CompletedProcess]:
    """Run ``argv`` once under /usr/bin/time: wall clock, peak RSS (largest process of the tree),
    user and system CPU, and the CPU the rest of the machine used meanwhile."""
    fd, tfile = tempfile.mkstemp(prefix="bench-time-", suffix=".txt")
    os.close(fd)
    try:
        if TIME_BIN:
            cmd = [TIME_BIN, "-f", "%e %M %U %S", "-o", tfile, *argv]
        else:
            cmd = [sys.executable, "-c", RUSAGE_WRAPPER, tfile, *argv]
        o0 = ours() if ours else 0.0
        b0, t0 = busy_seconds(), time.perf_counter()
        r = subprocess.run(cmd, cwd=cwd, env=env or clean_env(), capture_output=True, text=True)
        wall = time.perf_counter() - t0
        busy = busy_seconds() - b0 - ((ours() - o0) if ours else 0.0)
        last = Path(tfile).read_text().strip().splitlines()[-1].split()
    finally:
        os.unlink(tfile)
    if check and r.returncode not in ok_codes:
        raise RuntimeError(f"command failed (exit {r.returncode}): {' '.join(argv)[:300]}\n"
                           f"{(r.stdout + r.stderr).strip()[-2000:]}")
    user, system = float(last[2]), float(last[3])
    return Run(wall=wall, maxrss_kb=int(float(last[1])), user=user, sys=system,
               other_cpu=round(max(0.0, busy - user - system), 2)), r


# Runs a command under cProfile in every thread (plain ``python -m cProfile`` sees only the main
# thread, and gapsync downloads and uploads in thread pools), then merges the stats.
# argv: OUT.prof gapsync ARGS... | OUT.prof -c CODE ARGS...
PROFILER = r"""
import cProfile, pstats, sys, threading
profiles = []
_run = threading.Thread.run
def run(self):
    p = cProfile.Profile()
    profiles.append(p)
    p.enable()
    try:
        _run(self)
    finally:
        p.disable()
threading.Thread.run = run
out, what, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
main_prof = cProfile.Profile()
code = 0
try:
    main_prof.enable()
    if what == "gapsync":
        from gapsync.cli.main import main
        sys.argv = ["gapsync", *rest]
        main()
    else:
        sys.argv = ["-c", *rest[1:]]
        exec(compile(rest[0], "<bench>", "exec"), {"__name__": "__main__"})
except SystemExit as e:
    code = e.code or 0
finally:
    main_prof.disable()
    st = pstats.Stats(main_prof)
    for p in profiles:
        try:
            st.add(p)
        except TypeError:  # a thread that never ran anything
            pass
    st.dump_stats(out)
sys.exit(code)
"""


def profile(argv: list[str], prof: Path, env: dict[str, str] | None = None, focus: str | None = None,
            top: int = 16) -> str:
    """Run ARGV (``gapsync ...`` or ``-c CODE ...``) once under cProfile (all threads); the
    hottest functions by own and by cumulative time, then those matching the regex ``focus``."""
    import io
    import pstats

    OUT.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-c", PROFILER, str(prof), *argv], env=env or clean_env(),
                       capture_output=True, text=True,
                       cwd=OUT)  # not the repository root: ``python -c`` would import gapsync from the cwd
    if r.returncode != 0:
        raise RuntimeError(f"profiled {' '.join(argv)[:200]} failed: {(r.stdout + r.stderr)[-1500:]}")
    buf = io.StringIO()
    st = pstats.Stats(str(prof), stream=buf)
    st.sort_stats("tottime").print_stats(top)
    st.sort_stats("cumulative").print_stats(top)
    if focus:
        st.sort_stats("cumulative").print_stats(focus)
    return buf.getvalue()



def du(path: Path, apparent: bool = False) -> int:
    """``du -sb`` (a hard-linked file counted once) or ``du -sb --apparent-size`` of ``path``."""
    if not path.exists():
        return 0
    argv = ["du", "-sb", *(["--apparent-size"] if apparent else []), str(path)]
    return int(subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()[0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (from /proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)

def prime_page_cache(scratch: Path, mib: int = 1200) -> None:
    """Write and delete ``mib`` MiB so that the next command finds that much memory ready.

    On a VM with free page reporting (virtio-balloon; this Firecracker guest has it), memory
    freed for more than ~2 s goes back to the host, and the next command that fills the page
    cache pays for getting it back: writing 1 GB then took 1.4-2.1 s instead of 0.2 s, so
    whichever step happened to follow a big delete looked 1-2 s faster. Priming before every
    measurement gives each command the same start, close to bare metal."""
    path = scratch / ".prime"
    block = b"\x01" * (1 << 20)
    with path.open("wb") as f:
        for _ in range(mib):
            f.write(block)
    path.unlink()


def sh(script: str) -> list[str]:
    return ["bash", "-o", "pipefail", "-c", script]


# -- wheels and static indexes ---------------------------------------------------------------

def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(dest_dir: Path, name: str, version: str, payload: bytes) -> Path:
    """A valid py3-none-any wheel: the package, one big payload stored uncompressed, and the
    dist-info (METADATA, WHEEL, RECORD)."""
    norm = name.replace("-", "_")
    dist = f"{norm}-{version}.dist-info"
    members = {
        f"{norm}/__init__.py": f'"""Benchmark filler package {name}."""\n'.encode(),
        f"{norm}/payload.bin": payload,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: benchmark filler\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: gapsync-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in members.items()) + f"{dist}/RECORD,,\n"
    path = dest_dir / f"{norm}-{version}-py3-none-any.whl"
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        for p, d in members.items():
            zf.writestr(zipfile.ZipInfo(p, (2024, 1, 1, 0, 0, 0)), d,
                        compress_type=zipfile.ZIP_STORED if p.endswith(".bin") else zipfile.ZIP_DEFLATED)
        zf.writestr(zipfile.ZipInfo(f"{dist}/RECORD", (2024, 1, 1, 0, 0, 0)), record,
                    compress_type=zipfile.ZIP_DEFLATED)
    tmp.replace(path)
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _wheel_metadata(path: Path) -> bytes:
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        return zf.read(name)


def build_index(files_dir: Path, root: Path, *, core_metadata: bool = True) -> dict[str, list[str]]:
    """A static PEP 503 index at ``root/simple`` for the wheels in ``files_dir`` (served from
    ``root``, so ``files_dir`` must be ``root/files``): ``#sha256=`` fragments,
    ``data-requires-python`` and, like PyPI, PEP 658/714 ``.metadata`` files."""
    from email.parser import BytesHeaderParser

    from packaging.utils import canonicalize_name, parse_wheel_filename

    assert files_dir == root / "files"
    simple = root / "simple"
    if simple.exists():
        shutil.rmtree(simple)
    for old in files_dir.glob("*.metadata"):
        old.unlink()
    projects: dict[str, list[str]] = {}
    for whl in sorted(files_dir.glob("*.whl")):
        projects.setdefault(str(canonicalize_name(parse_wheel_filename(whl.name)[0])), []).append(whl.name)
    for name, fns in sorted(projects.items()):
        rows = []
        for fn in fns:
            whl = files_dir / fn
            meta = _wheel_metadata(whl)
            attrs = [f'href="../../files/{fn}#sha256={sha256_file(whl)}"']
            rp = BytesHeaderParser().parsebytes(meta).get("Requires-Python")
            if rp:
                attrs.append(f'data-requires-python="{html.escape(str(rp).strip())}"')
            if core_metadata:
                (files_dir / f"{fn}.metadata").write_bytes(meta)
                mh = hashlib.sha256(meta).hexdigest()
                attrs += [f'data-dist-info-metadata="sha256={mh}"', f'data-core-metadata="sha256={mh}"']
            rows.append(f"<a {' '.join(attrs)}>{html.escape(fn)}</a><br/>\n")
        page = simple / name / "index.html"
        page.parent.mkdir(parents=True)
        page.write_text(f"<!DOCTYPE html>\n<html><body>\n<h1>Links for {name}</h1>\n{''.join(rows)}</body></html>\n")
    (simple / "index.html").write_text(
        "<!DOCTYPE html>\n<html><body>\n" + "".join(f'<a href="{n}/">{n}</a><br/>\n' for n in sorted(projects))
        + "</body></html>\n")
    return projects


# -- gapsync set-up --------------------------------------------------------------------------

def gapsync(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([GAPSYNC, *argv], cwd=cwd, env=clean_env(), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"gapsync {' '.join(argv)} failed (exit {r.returncode}):\n{(r.stdout + r.stderr).strip()[-2000:]}")
    return r


def write_spec(path: Path, index_url: str, requirements: list[str], channel: str = "bench") -> None:
    path.write_text(
        f"name: bench\nchannel: {channel}\npython:\n  index_url: {index_url}\n"
        f"  requirements: {json.dumps(requirements)}\n"
        '  targets:\n    - {python: "3.11", platform: manylinux_2_17_x86_64}\n')


def setup_channel(d: Path, channel: str = "bench") -> tuple[Path, Path]:
    """Key, channel state; returns (key, root v1 to pin)."""
    gapsync("keys", "generate", "--out", str(d / "keys"), "--name", "bench")
    gapsync("channel", "init", channel, "--state", str(d / "state"), "--key", str(d / "keys" / "bench.key"))
    return d / "keys" / "bench.key", d / "state" / channel / "1.root.json"


# -- reporting -------------------------------------------------------------------------------

def machine() -> dict:
    info = {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
            "kernel": platform.release(), "loadavg_at_start": os.getloadavg()[0]}
    try:
        osr = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
        info["os"] = osr.get("PRETTY_NAME", "").strip('"')
    except OSError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
        info["mem_gb"] = round(int(mem.split()[1]) / 1024 / 1024, 1)
    except (OSError, StopIteration):
        pass
    try:
        info["gapsync_commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                                capture_output=True, text=True).stdout.strip()
        info["gapsync_dirty"] = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "gapsync"],
                                                    capture_output=True, text=True).stdout.strip())
    except OSError:
        pass
    return info


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    line = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    out = [line.format(*headers), line.format(*("-" * w for w in widths))]
    out += [line.format(*map(str, r)) for r in rows]
    return "\n".join(out)


def measures_table(ms: list[Measure]) -> str:
    rows = []
    for m in ms:
        rows.append([m.label, f"{m.wall:.2f}", f"{m.cpu:.2f}", f"{m.mbps:.0f}" if m.mbps else "-",
                     f"{m.maxrss_mb:.0f}", str(len(m.runs)), f"{m.other_cpu:.1f}"])
    text = table(rows, ["step", "wall s", "cpu s", "MB/s", "peak RSS MB", "runs", "other cpu s"])
    noisy = [m.label for m in ms if any(disturbed(r) for r in m.runs)]
    if noisy:
        text += ("\nWARNING: other processes used CPU during: " + "; ".join(noisy)
                 + " (2 cores: those figures are disturbed, run again on a quiet machine)")
    return text


def write_result(name: str, data: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = OUT / f"{name}-{stamp}.json"
    text = json.dumps(data, indent=1, sort_keys=True)
    path.write_text(text)
    (OUT / f"{name}.json").write_text(text)
    return path
