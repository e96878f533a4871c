"""``gapsync demo``: the three zones on one machine, run through the real command line.

External zone: real wheels from PyPI (cached after the first run) served as a plain PEP 503
index on 127.0.0.1, a real registry (Debian's docker-registry) holding two small images
that share a base layer, built here without an engine, and a Hugging Face Hub stand-in
holding a small model and a small dataset. DMZ: keys, channel, resolve, bundle
create; the bundle goes to a "usb" folder. Air-gapped side: pin the root, verify, import, serve;
pip installs from the mirror alone (isolated: no config, no other index, no cache) and skopeo
pulls an image from it; huggingface_hub loads the model and the dataset offline from the imported
cache (and ``datasets.load_dataset`` reads the dataset's rows, when it is installed). Without
docker-registry and skopeo the demo carries no images.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

from gapsync import fsutil
from gapsync.bundler.platforms import host_target
from gapsync.errors import FetchError, GapsyncError

REQUIREMENTS = ["requests==2.32.*", "pyyaml"]
# The PyPA advisory database snapshot kept in the repository (data/README.md): CC BY 4.0, so its
# attribution travels with it, recorded as the database's source (report header, SBOM).
ADVISORY_SNAPSHOT = Path(__file__).parent / "data" / "pypa-advisory-db.osv.jsonl.gz"
ADVISORY_ATTRIBUTION = ("Advisory data from the Python Packaging Advisory Database "
                        "(https://github.com/pypa/advisory-database, commit 3ccb612), licensed under CC BY 4.0 "
                        "(https://creativecommons.org/licenses/by/4.0/). Converted from YAML to JSON Lines, "
                        "content unchanged.")
LOAD_MODEL = """
import json, os, struct
from huggingface_hub import snapshot_download
path = snapshot_download("demo/tiny-classifier", revision="main")
with open(os.path.join(path, "model.safetensors"), "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    tensors = json.loads(f.read(n))
print("loaded offline from", path, "->", sorted(os.listdir(path)), "tensors:", sorted(tensors))
"""
LOAD_DATASET = """
import os
from huggingface_hub import snapshot_download
path = snapshot_download("demo/tiny-reviews", repo_type="dataset", revision="main")
try:
    import datasets
except ImportError:
    print("dataset snapshot offline at", path, "->", sorted(os.listdir(path)), "(pip install datasets to load rows)")
else:
    d = datasets.load_dataset(path)
    print("dataset loaded offline from", path, "->", {s: d[s].num_rows for s in d}, "first row:", d["train"][0])
"""
DATASET = "demo/tiny-reviews"
PYTHONS = ["3.11", "3.12"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (demo, tests and benchmarks run their servers there only)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float = 120, proc: subprocess.Popen | None = None,
              log: Path | None = None) -> None:
    """Poll ``url`` until it answers, for as long as a cold start can take (MLflow needs ~20 s on an
    idle machine and more on a busy one). A ``proc`` that exits stops the wait at once; the error
    carries the tail of its ``log`` so a server that refused to start says why."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise FetchError(f"{url}: server exited with {proc.returncode} before answering{_tail(log)}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise FetchError(f"{url}: server did not answer within {seconds:.0f} s{_tail(log)}")


def _tail(log: Path | None, n: int = 4000) -> str:
    if log is None:
        return ""
    try:
        text = log.read_bytes()[-n:].decode("utf-8", "replace")
    except OSError:
        return ""
    return f"\n--- {log} (last {n} bytes) ---\n{text}"


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


class Demo:
    def __init__(self, workdir: Path, out=print):
        self.w = workdir.resolve()
        self.out = out
        self.gapsync = str(Path(sys.executable).with_name("gapsync"))
        self.procs: list[subprocess.Popen] = []
        self.registry: str | None = None
        self.images: list[str] = []
        self.hub: str | None = None

    def banner(self, text: str) -> None:
        self.out(f"\n=== {text} " + "=" * max(0, 70 - len(text)))

    def run(self, *argv: str, cwd: Path | None = None, show: bool = True) -> subprocess.CompletedProcess:
        shown = " ".join(a.replace(str(self.w) + "/", "") for a in argv)
        if show:
            self.out(f"$ {shown}")
        r = subprocess.run(list(argv), cwd=cwd or self.w, capture_output=True, text=True, env=_clean_env())
        text = (r.stdout + r.stderr).strip()
        if show and text:
            self.out("\n".join("  " + ln for ln in text.splitlines()[-12:]))
        if r.returncode != 0:
            raise GapsyncError(f"demo step failed (exit {r.returncode}): {shown}")
        return r

    def g(self, *argv: str, show: bool = True) -> subprocess.CompletedProcess:
        return self.run(self.gapsync, *argv, show=show)

    def start(self, argv: list[str], url: str, cwd: Path) -> None:
        log = cwd / f"server-{len(self.procs)}.log"  # a server that fails to start says why here
        with fsutil.open_append(log) as out:
            p = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=_clean_env())
        self.procs.append(p)
        wait_http(url, proc=p, log=log)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()

    # -- zones ----------------------------------------------------------------------------
    def external(self) -> str:
        self.banner("EXTERNAL ZONE: a Python index with real wheels from PyPI")
        seed = Path(os.environ.get("GAPSYNC_DEMO_SEED", Path.home() / ".cache" / "gapsync" / "demo-seed"))
        target = host_target()
        for py in PYTHONS:
            d = seed / f"cp{py.replace('.', '')}-{target.platform}"
            d.mkdir(parents=True, exist_ok=True)
            r = subprocess.run([sys.executable, "-m", "pip", "download", "--isolated", "--no-cache-dir", "-q",
                                "--only-binary=:all:", "--platform", target.platform, "--python-version", py,
                                "--implementation", "cp", "-d", str(d), *REQUIREMENTS],
                               capture_output=True, text=True, env=_clean_env())
            if r.returncode != 0 and not any(d.glob("*.whl")):
                raise FetchError(f"cannot download the demo's wheels from PyPI: {r.stderr.strip()[-300:]}")
        ext = self.w / "external"
        files = ext / "files"
        files.mkdir(parents=True)
        projects: dict[str, list[str]] = {}
        for whl in sorted(seed.glob("*/*.whl")):
            if not (files / whl.name).exists():
                fsutil.copy_file(whl, files / whl.name)
                projects.setdefault(canonicalize_name(parse_wheel_filename(whl.name)[0]), []).append(whl.name)
        for name, fns in projects.items():
            page = ext / "simple" / name / "index.html"
            page.parent.mkdir(parents=True)
            fsutil.write_atomic(page, "".join(
                f'<a href="../../files/{f}#sha256={hashlib.sha256((files / f).read_bytes()).hexdigest()}">{f}</a><br/>\n'
                for f in fns).encode())
        port = free_port()
        self.start([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                   f"http://127.0.0.1:{port}/simple/", ext)
        self.out(f"{sum(len(v) for v in projects.values())} wheels of {len(projects)} projects on http://127.0.0.1:{port}/simple/")
        self.external_images()
        self.external_model()
        return f"http://127.0.0.1:{port}/simple/"

    def external_model(self) -> None:
        import struct

        from gapsync.demo.hub_standin import write_repo

        weights = struct.pack("<16f", *[i / 16 for i in range(16)])
        header = json.dumps({"classifier.weight": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}).encode()
        header += b" " * (-len(header) % 8)
        files = {"config.json": json.dumps({"architectures": ["TinyClassifier"], "num_labels": 4}).encode(),
                 "model.safetensors": struct.pack("<Q", len(header)) + header + weights,
                 "README.md": b"---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n# A tiny demo model\n"}
        root = self.w / "external" / "hub"
        write_repo(root, "demo/tiny-classifier", {"main": files}, card={"license": "apache-2.0", "library_name": "transformers"})
        reviews = [("the bundle verified and imported", 1), ("pip found nothing on the mirror", 0),
                   ("the model loaded offline", 1), ("a pickle was blocked", 1), ("the drive was not mounted", 0)]
        csv = lambda rows: ("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows)).encode()  # noqa: E731
        write_repo(root / "datasets", DATASET, {"main": {
            "README.md": b"---\nlicense: cc-by-4.0\n---\n# A tiny demo dataset\n", "train.csv": csv(reviews[:4]),
            "test.csv": csv(reviews[4:])}}, card={"license": "cc-by-4.0"})
        port = free_port()
        self.start([sys.executable, "-m", "gapsync.demo.hub_standin", str(root), str(port)],
                   f"http://127.0.0.1:{port}/_control/health", root)
        self.hub = f"http://127.0.0.1:{port}"
        self.out(f"a Hugging Face Hub stand-in with the model demo/tiny-classifier and the dataset {DATASET} on {self.hub}")

    def external_images(self) -> None:
        if not (shutil.which("docker-registry") and shutil.which("skopeo")):
            self.out("(docker-registry or skopeo not installed: the demo carries packages only; apt-get install docker-registry skopeo)")
            return
        import platform as _platform

        from gapsync.demo.images import build_demo_layout

        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(_platform.machine(), _platform.machine())
        reg = self.w / "external" / "registry"
        reg.mkdir(parents=True)
        port = free_port()
        fsutil.write_atomic(reg / "config.yml", (
            f"version: 0.1\nstorage: {{filesystem: {{rootdirectory: {reg / 'data'}}}}}\n"
            f"http: {{addr: 127.0.0.1:{port}, secret: demo}}\nlog: {{level: error}}\n").encode())
        self.start(["docker-registry", "serve", str(reg / "config.yml")], f"http://127.0.0.1:{port}/v2/", reg)
        names = build_demo_layout(reg / "layout", arch)
        self.registry = f"127.0.0.1:{port}"
        for n in names:
            self.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{reg / 'layout'}:{n}",
                     f"docker://{self.registry}/demo/{n}:1.0", show=False)
            self.images.append(f"{self.registry}/demo/{n}:1.0")
        self.out(f"2 images sharing a base layer on a local registry: {', '.join(self.images)}")

    def dmz(self, index_url: str) -> Path:
        self.banner("DMZ: resolve, download, sign a bundle")
        d = self.w / "dmz"
        d.mkdir()
        target = host_target()
        fsutil.write_atomic(d / "gapsync.yaml", (
            "name: demo\nchannel: prod\npython:\n"
            f"  index_url: {index_url}\n"
            f"  requirements: {json.dumps(REQUIREMENTS)}\n"
            "  targets:\n" + "".join(f'    - {{python: "{py}", platform: {target.platform}}}\n' for py in PYTHONS)
            + (f"images:\n  platforms: [linux/{'arm64' if 'aarch64' in target.platform else 'amd64'}]\n"
               f"  insecure: [\"{self.registry}\"]\n  refs: {json.dumps(self.images)}\n" if self.images else "")
            + (f"models:\n  - hf: demo/tiny-classifier\n    revision: main\n    endpoint: {self.hub}\n" if self.hub else "")
            + (f"datasets:\n  - hf: {DATASET}\n    endpoint: {self.hub}\n" if self.hub else "")).encode())
        self.out(f"spec dmz/gapsync.yaml: {REQUIREMENTS} for Python {', '.join(PYTHONS)} on {target.platform}"
                 + (f", images {', '.join(self.images)}" if self.images else "")
                 + (f", the model demo/tiny-classifier and the dataset {DATASET}" if self.hub else ""))
        self.g("keys", "generate", "--out", str(d / "keys"), "--name", "dmz")
        self.g("channel", "init", "prod", "--state", str(d / "state"), "--key", str(d / "keys/dmz.key"))
        # the DMZ has no internet in the demo: the snapshot shipped with gapsync stands in for
        # 'gapsync advisories update' (it is from 2024-10, so the scans say it is stale)
        self.g("advisories", "import", str(ADVISORY_SNAPSHOT), "--store", str(d / "advisories"),
               "--source", ADVISORY_ATTRIBUTION)
        self.g("resolve", "-f", str(d / "gapsync.yaml"), "-o", str(d / "gapsync.lock"), "--cache", str(d / "cache"))
        self.g("bundle", "create", "-f", str(d / "gapsync.yaml"), "--lock", str(d / "gapsync.lock"), "--state", str(d / "state"),
               "--advisories", str(d / "advisories"),
               "--key", str(d / "keys/dmz.key"), "-o", str(d / "out"), "--cache", str(d / "cache"))
        bundle = next((d / "out").glob("*.gapsync"))
        usb = self.w / "usb"
        usb.mkdir()
        for f in (bundle, bundle.with_name(bundle.name + ".minisig"), d / "keys/dmz.pub", d / "state/prod/1.root.json"):
            fsutil.copy_file(f, usb / f.name)
        self.banner("TRANSFER: usb/ holds the bundle, its .minisig, the public key and root v1")
        for f in sorted(usb.iterdir()):
            self.out(f"  {f.name}  ({f.stat().st_size:,} bytes)")
        if shutil.which("minisign"):
            self.run("minisign", "-Vm", str(usb / bundle.name), "-p", str(usb / "dmz.pub"))
        return usb / bundle.name

    def air(self, bundle: Path) -> dict:
        self.banner("AIR-GAPPED SIDE: pin, verify, import, serve, pip install")
        a = self.w / "air"
        a.mkdir()
        mirror = a / "mirror"
        self.g("trust", "pin", str(bundle.parent / "1.root.json"), "--mirror", str(mirror))
        self.g("bundle", "verify", str(bundle), "--mirror", str(mirror))
        self.g("import", str(bundle), "--mirror", str(mirror))
        port = free_port()
        self.start([self.gapsync, "serve", "--mirror", str(mirror), "--listen", f"127.0.0.1:{port}"],
                   f"http://127.0.0.1:{port}/simple/", a)
        self.run(sys.executable, "-m", "venv", str(a / "venv"), show=False)
        names = [r.split("=")[0].split("<")[0].split(">")[0] for r in REQUIREMENTS]
        self.run(str(a / "venv/bin/pip"), "install", "--isolated", "--no-cache-dir", "--disable-pip-version-check",
                 "--index-url", f"http://127.0.0.1:{port}/simple/", *REQUIREMENTS)
        r = self.run(str(a / "venv/bin/python"), "-c",
                     "import requests, yaml; print('requests', requests.__version__, '| pyyaml', yaml.__version__)")
        if self.images:
            name = self.images[0].split("/", 1)[1]
            self.run("skopeo", "copy", "--src-tls-verify=false", f"docker://127.0.0.1:{port}/{name}", f"dir:{a / 'pulled'}")
            self.run("skopeo", "inspect", "--tls-verify=false", "--format", "{{.Name}} {{.Digest}} {{.Architecture}}",
                     f"docker://127.0.0.1:{port}/{name}")
        if self.hub:
            self.out("$ HF_HUB_OFFLINE=1 HF_HUB_CACHE=air/mirror/models/hf python -c 'snapshot_download(\"demo/tiny-classifier\")…'")
            loaded = subprocess.run([sys.executable, "-c", LOAD_MODEL], capture_output=True, text=True,
                                    env={**_clean_env(), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(mirror / "models/hf"),
                                         "HF_HUB_DISABLE_TELEMETRY": "1"})
            if loaded.returncode != 0:
                raise GapsyncError(f"demo step failed: loading the model offline: {loaded.stderr.strip()[-300:]}")
            self.out("  " + loaded.stdout.strip())
            self.out(f"$ HF_HUB_OFFLINE=1 HF_HUB_CACHE=air/mirror/models/hf python -c 'load_dataset(snapshot_download(\"{DATASET}\", "
                     "repo_type=\"dataset\"))…'")
            loaded = subprocess.run([sys.executable, "-c", LOAD_DATASET], capture_output=True, text=True,
                                    env={**_clean_env(), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(mirror / "models/hf"),
                                         "HF_HOME": str(a / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1",
                                         "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"})
            if loaded.returncode != 0:
                raise GapsyncError(f"demo step failed: loading the dataset offline: {loaded.stderr.strip()[-300:]}")
            self.out("  " + loaded.stdout.strip().splitlines()[-1])
        self.g("audit", "verify", "--mirror", str(mirror))
        info = json.loads(self.g("bundle", "inspect", str(bundle), "--json", show=False).stdout)
        info["installed"] = r.stdout.strip()
        info["names"] = names
        return info

    def summary(self, info: dict) -> None:
        self.banner("SUMMARY: what crossed the air gap")
        total = 0
        for a in info["artifacts"]:
            for f in a["files"] if a["kind"] == "python" else []:
                total += f["size"]
                self.out(f"  {f['filename'][:70]:<70} {f['size']:>10,} B  sha256:{f['sha256'][:16]}…")
            if a["kind"] in ("model", "dataset"):
                total += a["size"]
                self.out(f"  {a['kind'] + ' ' + a['name'] + '@' + a['version'] + ' (' + a['commit'][:12] + ')':<70} {a['size']:>10,} B  "
                         f"{len(a['files'])} files, license {a.get('license')}")
            if a["kind"] == "oci":
                total += a["size"]
                self.out(f"  {'image ' + a['name'] + ':' + a['version']:<70} {a['size']:>10,} B  {a['digest'][:23]}…")
        if info.get("image_dedupe", {}).get("images"):
            self.out(f"  (images share their base layer: {info['image_dedupe']['saved']:,} bytes carried once instead of twice)")
        self.out(f"bundle {Path(info['file']).name}: channel {info['channel']} version {info['version']}, "
                 f"{info['size']:,} bytes, {info['targets']} signed targets, {total:,} bytes of artifacts")
        self.out(f"installed on the air-gapped side from the mirror alone: {info['installed']}")

    def main(self) -> None:
        if self.w.exists():
            shutil.rmtree(self.w)
        self.w.mkdir(parents=True)
        try:
            index = self.external()
            bundle = self.dmz(index)
            info = self.air(bundle)
            self.summary(info)
        finally:
            self.stop()
