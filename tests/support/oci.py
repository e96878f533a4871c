"""OCI test support: build image layouts without an engine, run real registries, drive skopeo.

Why each piece exists:

* ``build_layout`` writes an OCI image layout byte-for-byte deterministically (tar and gzip with
  mtime 0), so every run produces the same digests and a test can compare what gapsync stored or
  pushed with what was built, digest by digest. It writes both OCI and Docker v2 schema 2 media
  types, because registries in the wild serve both and gapsync must keep either one untouched.
  Manifests are written with an unusual indentation on purpose: code that re-serialises a
  manifest instead of keeping its exact bytes changes its digest and fails the tests.
* ``Registry`` runs Debian's ``docker-registry`` (CNCF distribution 2.8.2) on 127.0.0.1 with its
  own config, anonymous, with htpasswd basic auth, or with Bearer tokens from
  ``tests/support/servers/token_server.py``: the same server a user runs, not a mock of it.
* ``push_with_skopeo`` / ``skopeo_inspect``: skopeo is the independent client on both ends; what
  gapsync pushes or serves, skopeo must read.
* ``HostileRegistry`` runs ``tests/support/servers/hostile_registry.py``, a registry that lies in one
  chosen way (see that module for the modes).
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import io
import json
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.support.servers import SERVERS, Server, free_port

# Media types. Docker v2 schema 2 and OCI are both kept as they are: a digest covers the bytes.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# What a client must send in Accept: distribution 2.8 answers 404 for OCI manifests otherwise.
ACCEPT_ALL = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])

REF_NAME = "org.opencontainers.image.ref.name"
# Where the layout records the repository and tag an image is pushed to by default, so the
# hostile registry (which serves the layout itself) answers under the same names as the real one.
REPO_ANNOTATION = "dev.gapsync.test.repository"
TAG_ANNOTATION = "dev.gapsync.test.tag"

DEFAULT_USER = "gapsync"
DEFAULT_PASSWORD = "s3cret-Pa55"


# --------------------------------------------------------------------------------------------
# Image specs and the layout builder
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Layer:
    """One filesystem layer: path -> file bytes (directories are added for every parent)."""

    files: dict[str, bytes]


@dataclass(frozen=True)
class PlatformSpec:
    """One platform of an image ("linux/arm/v7") and its layers, bottom first."""

    platform: str
    layers: tuple[Layer, ...]

    @property
    def parts(self) -> tuple[str, str, str | None]:
        os_, arch, *variant = self.platform.split("/")
        return os_, arch, (variant[0] if variant else None)


@dataclass(frozen=True)
class ImageSpec:
    """An image to write into a layout.

    ``name`` is the layout reference (``org.opencontainers.image.ref.name``, what ``oci:DIR:name``
    selects); ``repository``/``tag`` say where the fixtures push it. ``docker=True`` writes Docker
    v2 schema 2 media types. An image with more than one platform (or ``index=True``) gets an
    image index (a manifest list with ``docker=True``).
    """

    name: str
    platforms: tuple[PlatformSpec, ...]
    repository: str = ""
    tag: str = "latest"
    docker: bool = False
    index: bool | None = None
    cmd: tuple[str, ...] = ("/bin/true",)

    @property
    def ref(self) -> str:
        """``repository:tag`` (the default push target)."""
        return f"{self.repository or self.name}:{self.tag}"


def sha256(data: bytes) -> str:
    """``sha256:<hex>`` of the bytes: the digest form used everywhere in OCI."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar(layer: Layer) -> bytes:
    """A deterministic uncompressed tar: sorted entries, mtime 0, root-owned, fixed modes."""
    buf = io.BytesIO()
    dirs: set[str] = set()
    for path in layer.files:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    entries = sorted([(d + "/", None) for d in dirs] + [(p.strip("/"), b) for p, b in layer.files.items()])
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in entries:
            ti = tarfile.TarInfo(name.rstrip("/"))
            ti.mtime = 0
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            if data is None:
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tf.addfile(ti)
            else:
                ti.mode = 0o644
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _json(obj: object) -> bytes:
    """Manifest/config bytes: indent 3 and a newline, a form no re-serialiser reproduces by chance."""
    return (json.dumps(obj, indent=3) + "\n").encode()


class _Blobs:
    """Writes blobs under ``blobs/sha256`` once each and hands back OCI descriptors."""

    def __init__(self, root: Path):
        self.dir = root / "blobs" / "sha256"
        self.dir.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, media_type: str) -> dict:
        digest = sha256(data)
        path = self.dir / digest.split(":", 1)[1]
        if not path.exists():
            path.write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}


def build_layout(root: Path, images: Iterable[ImageSpec]) -> dict[str, dict]:
    """Write (or add to) an OCI image layout at ``root``; return what was built, per image name.

    Returns ``{name: info}`` with::

        info = {
            "name": "app-a", "repository": "library/app-a", "tag": "1.0", "ref": "library/app-a:1.0",
            "digest": "sha256:…",        # the top object: index/list, or the manifest itself
            "media_type": OCI_INDEX, "size": 1234,
            "is_index": True,
            "platforms": {               # one entry per platform, in spec order
                "linux/amd64": {
                    "digest": "sha256:…", "media_type": OCI_MANIFEST, "size": 567,
                    "config": {"digest": "sha256:…", "media_type": OCI_CONFIG, "size": 345},
                    "layers": [{"digest": "sha256:…", "media_type": OCI_LAYER, "size": 123,
                                "diff_id": "sha256:…"}, …],
                },
            },
        }

    For a single-platform image without an index, ``platforms[p]["digest"] == info["digest"]``.
    Layers are gzip with mtime 0, so identical layer content gives identical digests across
    images, media types and runs (that is how images share a base layer).
    """
    root.mkdir(parents=True, exist_ok=True)
    blobs = _Blobs(root)
    index_path = root / "index.json"
    top = json.loads(index_path.read_text()) if index_path.exists() else {
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    layer_cache: dict[int, tuple[bytes, bytes]] = {}
    out: dict[str, dict] = {}
    for spec in images:
        t_manifest, t_config, t_layer, t_index = (
            (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LIST) if spec.docker
            else (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER, OCI_INDEX))
        platforms: dict[str, dict] = {}
        children: list[dict] = []
        for ps in spec.platforms:
            os_, arch, variant = ps.parts
            layer_descs, diff_ids = [], []
            for layer in ps.layers:
                if id(layer) not in layer_cache:
                    raw = _tar(layer)
                    layer_cache[id(layer)] = (raw, gzip.compress(raw, compresslevel=6, mtime=0))
                raw, gz = layer_cache[id(layer)]
                d = blobs.put(gz, t_layer)
                layer_descs.append(d)
                diff_ids.append(sha256(raw))
            config = {
                "created": "1970-01-01T00:00:00Z",
                "architecture": arch,
                "os": os_,
                **({"variant": variant} if variant else {}),
                "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": list(spec.cmd),
                           "Labels": {"dev.gapsync.test.image": spec.name}},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [{"created": "1970-01-01T00:00:00Z", "created_by": f"gapsync test layer {i}"}
                            for i in range(len(diff_ids))],
            }
            cdesc = blobs.put(_json(config), t_config)
            manifest = {"schemaVersion": 2, "mediaType": t_manifest, "config": cdesc, "layers": layer_descs}
            mdesc = blobs.put(_json(manifest), t_manifest)
            pdesc = {"os": os_, "architecture": arch, **({"variant": variant} if variant else {})}
            children.append({**mdesc, "platform": pdesc})
            platforms[ps.platform] = {
                "digest": mdesc["digest"], "media_type": t_manifest, "size": mdesc["size"],
                "config": {"digest": cdesc["digest"], "media_type": t_config, "size": cdesc["size"]},
                "layers": [{"digest": d["digest"], "media_type": t_layer, "size": d["size"], "diff_id": did}
                           for d, did in zip(layer_descs, diff_ids, strict=True)],
            }
        use_index = spec.index if spec.index is not None else len(spec.platforms) > 1
        if use_index:
            tdesc = blobs.put(_json({"schemaVersion": 2, "mediaType": t_index, "manifests": children}), t_index)
        else:
            tdesc = {k: v for k, v in children[0].items() if k != "platform"}
        annotations = {REF_NAME: spec.name, REPO_ANNOTATION: spec.repository or spec.name, TAG_ANNOTATION: spec.tag}
        top["manifests"] = [m for m in top["manifests"] if m.get("annotations", {}).get(REF_NAME) != spec.name]
        top["manifests"].append({**tdesc, "annotations": annotations})
        out[spec.name] = {
            "name": spec.name, "repository": spec.repository or spec.name, "tag": spec.tag, "ref": spec.ref,
            "digest": tdesc["digest"], "media_type": tdesc["mediaType"], "size": tdesc["size"],
            "is_index": use_index, "platforms": platforms,
        }
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index_path.write_text(json.dumps(top, indent=2) + "\n")
    return out


def unique_blobs(built: dict[str, dict]) -> dict[str, int]:
    """Every config and layer blob of the built images, once each: ``{digest: size}``.

    The sum of the sizes is what a deduplicating mirror must store for those blobs at most.
    """
    out: dict[str, int] = {}
    for info in built.values():
        for p in info["platforms"].values():
            out[p["config"]["digest"]] = p["config"]["size"]
            for layer in p["layers"]:
                out[layer["digest"]] = layer["size"]
    return out


# The base layer is one Layer object shared by every image: same bytes, same digest everywhere.
BASE_LAYER = Layer({"etc/os-release": b"NAME=gapsync-test-base\nID=gapsync\n",
                    "usr/share/base/README": b"the base layer shared by app-a and app-b\n"})
BIG_LAYER_SIZE = 8 * 1024 * 1024


def default_images() -> list[ImageSpec]:
    """The standard test set.

    * ``app-a`` -> ``library/app-a:1.0``: OCI image index, linux/amd64, linux/arm64, linux/arm/v7;
      each platform = the shared base layer + one small layer of its own.
    * ``app-b`` -> ``team/app-b:2.0``: one linux/amd64 manifest in Docker v2 schema 2 media types,
      base layer (same bytes and digest as app-a's) + one small layer.
    * ``app-big`` -> ``library/app-big:1.0``: one linux/amd64 OCI manifest with a single ~8 MiB
      incompressible layer (seeded random bytes, so still deterministic) for chunked uploads.
    """
    def own(text: str) -> Layer:
        return Layer({"app/identity.txt": text.encode()})

    a_platforms = tuple(PlatformSpec(p, (BASE_LAYER, own(f"app-a for {p}\n")))
                        for p in ("linux/amd64", "linux/arm64", "linux/arm/v7"))
    big = Layer({"data/random.bin": random.Random(20240607).randbytes(BIG_LAYER_SIZE)})
    return [
        ImageSpec("app-a", a_platforms, repository="library/app-a", tag="1.0", cmd=("/app/a",)),
        ImageSpec("app-b", (PlatformSpec("linux/amd64", (BASE_LAYER, own("app-b\n"))),),
                  repository="team/app-b", tag="2.0", docker=True, cmd=("/app/b",)),
        ImageSpec("app-big", (PlatformSpec("linux/amd64", (big,)),), repository="library/app-big", tag="1.0"),
    ]


# --------------------------------------------------------------------------------------------
# skopeo
# --------------------------------------------------------------------------------------------


def skopeo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run skopeo; raise with its stderr when it fails (a failing fixture must say why)."""
    r = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"skopeo {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def _docker_ref(ref: str) -> str:
    """Add ``docker://`` unless the reference already names a skopeo transport."""
    if "://" in ref or ref.startswith(("oci:", "dir:", "oci-archive:", "docker-archive:")):
        return ref
    return f"docker://{ref}"


def _descriptor(layout_dir: Path, ref_name: str) -> dict:
    """The ``index.json`` descriptor whose ``org.opencontainers.image.ref.name`` is ``ref_name``."""
    for desc in json.loads((layout_dir / "index.json").read_text())["manifests"]:
        if desc.get("annotations", {}).get(REF_NAME) == ref_name:
            return desc
    raise KeyError(f"{layout_dir}: no image named {ref_name!r}")


def export_dir(layout_dir: Path, ref_name: str, out: Path) -> Path:
    """Write one image of the layout as a skopeo ``dir:`` directory (same bytes, same digests).

    Why: skopeo 1.9.3's ``oci:`` transport only looks at ``index.json`` descriptors with OCI
    media types; a Docker v2 schema 2 manifest (or manifest list) listed there is "not found".
    The ``dir:`` transport guesses the type from the manifest bytes, so Docker images go that
    way: ``manifest.json`` (the top manifest), ``<hex>.manifest.json`` per child of a list,
    ``<hex>`` per blob.
    """
    blobs = layout_dir / "blobs" / "sha256"
    out.mkdir(parents=True, exist_ok=True)
    (out / "version").write_text("Directory Transport Version: 1.1\n")
    top = _descriptor(layout_dir, ref_name)["digest"].split(":", 1)[1]
    (out / "manifest.json").write_bytes((blobs / top).read_bytes())

    def copy_manifest_blobs(hex_digest: str) -> None:
        doc = json.loads((blobs / hex_digest).read_bytes())
        for child in doc.get("manifests", []):
            h = child["digest"].split(":", 1)[1]
            (out / f"{h}.manifest.json").write_bytes((blobs / h).read_bytes())
            copy_manifest_blobs(h)
        for d in [doc["config"]] + doc["layers"] if "config" in doc else []:
            h = d["digest"].split(":", 1)[1]
            if not (out / h).exists():
                shutil.copyfile(blobs / h, out / h)

    copy_manifest_blobs(top)
    return out


def push_with_skopeo(layout_dir: Path, ref_name: str, dest: str, creds: str | None = None) -> None:
    """``skopeo copy --all`` one image of a layout into a registry (``HOST:PORT/name:tag``).

    ``--all`` matters: without it skopeo copies only the host platform and the index digest is lost.
    ``--preserve-digests`` makes skopeo fail rather than silently rewrite a manifest. Images with
    Docker media types go through a temporary ``dir:`` export (see ``export_dir``).
    """
    args = ["copy", "--all", "--preserve-digests", "--dest-tls-verify=false"]
    if creds:
        args += ["--dest-creds", creds]
    if _descriptor(layout_dir, ref_name)["mediaType"] in (OCI_MANIFEST, OCI_INDEX):
        skopeo(*args, f"oci:{layout_dir}:{ref_name}", _docker_ref(dest))
        return
    with tempfile.TemporaryDirectory(prefix="skopeo-dir-") as tmp:
        skopeo(*args, f"dir:{export_dir(layout_dir, ref_name, Path(tmp) / 'image')}", _docker_ref(dest))


def skopeo_inspect(ref: str, *, raw: bool = False, tls_verify: bool = False, creds: str | None = None) -> dict:
    """``skopeo inspect`` as JSON. ``ref`` is ``HOST:PORT/name:tag`` (docker:// added) or any
    skopeo transport reference (``oci:DIR:name``). ``raw=True`` gives the manifest/index itself."""
    args = ["inspect", f"--tls-verify={'true' if tls_verify else 'false'}"]
    if raw:
        args.append("--raw")
    if creds:
        args += ["--creds", creds]
    return json.loads(skopeo(*args, _docker_ref(ref)).stdout)


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------


class _Service(Server):
    """``tests.support.servers.Server`` with three differences this infrastructure needs.

    Ready on *any* HTTP answer (an auth registry's ``/v2/`` answers 401, which
    ``gapsync.demo.wait_http`` treats as "not up yet"); output kept in a log file (a registry
    that refuses its config says why there); stopped on *any* start-up failure (``Server`` only
    catches ``RuntimeError``, but ``wait_http`` raises ``FetchError`` and would leak the process).
    Stopping is ``Server.stop``: by PID, via the process group.
    """

    def __init__(self, argv: list[str], url: str, log: Path, ready: str | None = None, seconds: float = 120):
        self.url = url
        self.log = log
        with open(log, "ab") as f:
            self.proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        try:
            self._wait(ready or url, seconds)
        except BaseException:
            self.stop()
            raise

    def _wait(self, url: str, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.args[:2]} exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                requests.get(url, timeout=2)
                return
            except requests.RequestException:  # refused, reset or slow: a cold start, try again
                time.sleep(0.05)
        raise RuntimeError(f"{url}: server did not start in {seconds} s\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def _self_signed(key_path: Path, cert_path: Path, common_name: str) -> None:
    """An RSA key and a self-signed certificate: the token signer and the registry's rootcertbundle."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class Registry:
    """A real ``docker-registry`` (distribution 2.8.2) on 127.0.0.1, own config, stopped by PID.

    ``auth``: ``None`` (anonymous), ``"htpasswd"`` (basic auth, bcrypt entry from ``htpasswd -Bbn``)
    or ``"token"`` (Bearer tokens from ``tests/support/servers/token_server.py``, RS256 JWTs whose x5c
    certificate is the registry's rootcertbundle). ``anonymous_pull`` (token only): the token
    server hands out pull-only tokens without credentials, as Docker Hub does for public images.

    Attributes: ``url`` (``http://127.0.0.1:PORT``), ``host`` (``127.0.0.1:PORT``), ``root``,
    ``config``, ``storage``, ``log``, ``username``/``password``/``creds`` (``"user:pass"``, None if
    anonymous), for token auth ``realm``/``service``/``issuer``/``cert``/``token_log``, and
    ``pushed`` (``{image name: "repo:tag"}`` filled by ``push_images``).
    """

    root: Path
    auth: str | None = None
    anonymous_pull: bool = False
    username: str = DEFAULT_USER
    password: str = DEFAULT_PASSWORD
    pushed: dict[str, str] = field(default_factory=dict)

    SERVICE = "gapsync-test-registry"
    ISSUER = "gapsync-test-token-issuer"

    def __post_init__(self) -> None:
        if self.auth not in (None, "htpasswd", "token"):
            raise ValueError(f"auth must be None, 'htpasswd' or 'token', not {self.auth!r}")
        self.root.mkdir(parents=True, exist_ok=True)
        self.storage = self.root / "storage"
        self.config = self.root / "config.yml"
        self.log = self.root / "registry.log"
        self.creds = f"{self.username}:{self.password}" if self.auth else None
        self.realm = self.service = self.issuer = None
        self.cert = self.token_log = None
        self._token_server: _Service | None = None
        self._servers: list[_Service] = []
        port, debug_port = free_port(), free_port()
        self.host = f"127.0.0.1:{port}"
        self.url = f"http://{self.host}"
        cfg: dict = {
            "version": "0.1",
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            # debug.addr answers 200 on /debug/health whatever the auth: a readiness probe.
            "http": {"addr": self.host, "secret": "x", "debug": {"addr": f"127.0.0.1:{debug_port}"}},
        }
        try:
            if self.auth == "htpasswd":
                htpasswd = self.root / "htpasswd"
                entry = subprocess.run(["htpasswd", "-Bbn", self.username, self.password], check=True,
                                       capture_output=True, text=True).stdout.strip()
                htpasswd.write_text(entry + "\n")
                cfg["auth"] = {"htpasswd": {"realm": "gapsync-test", "path": str(htpasswd)}}
            elif self.auth == "token":
                cfg["auth"] = {"token": self._start_token_server()}
            # JSON is YAML: no YAML writer needed.
            self.config.write_text(json.dumps(cfg, indent=2) + "\n")
            self._servers.append(_Service(["docker-registry", "serve", str(self.config)], self.url + "/v2/",
                                          self.log, ready=f"{self.url}/v2/"))
        except BaseException:
            self.stop()
            raise

    def _start_token_server(self) -> dict:
        tdir = self.root / "token"
        tdir.mkdir(exist_ok=True)
        key, self.cert = tdir / "key.pem", tdir / "cert.pem"
        _self_signed(key, self.cert, self.ISSUER)
        self.token_log = tdir / "requests.jsonl"
        tport = free_port()
        self.realm = f"http://127.0.0.1:{tport}/token"
        self.service, self.issuer = self.SERVICE, self.ISSUER
        argv = [sys.executable, str(SERVERS / "token_server.py"), str(tport), "--key", str(key),
                "--cert", str(self.cert), "--issuer", self.issuer, "--service", self.service,
                "--user", self.creds, "--log", str(self.token_log)]
        if self.anonymous_pull:
            argv.append("--anonymous-pull")
        self._token_server = _Service(argv, f"http://127.0.0.1:{tport}/", tdir / "server.log",
                                      ready=f"http://127.0.0.1:{tport}/health")
        self._servers.append(self._token_server)
        return {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                "rootcertbundle": str(self.cert)}

    def ref(self, repository: str, tag: str) -> str:
        """``127.0.0.1:PORT/repository:tag``, the form skopeo and gapsync specs take."""
        return f"{self.host}/{repository}:{tag}"

    def token_requests(self) -> list[dict]:
        """What the token server logged, one dict per request: method, path, user (None when
        anonymous), service, scopes (requested), granted (access claim), status."""
        if not self.token_log or not self.token_log.exists():
            return []
        return [json.loads(line) for line in self.token_log.read_text().splitlines() if line.strip()]

    def push_images(self, layout: Path, built: dict[str, dict]) -> None:
        """Push every built image with ``skopeo copy --all`` to its ``repository:tag``."""
        for name, info in built.items():
            push_with_skopeo(layout, name, self.ref(info["repository"], info["tag"]), creds=self.creds)
            self.pushed[name] = info["ref"]

    def stop(self) -> None:
        """Stop the registry and its token server, by PID."""
        for s in reversed(self._servers):
            s.stop()
        self._servers.clear()


class HostileRegistry:
    """``tests/support/servers/hostile_registry.py`` serving a layout in one mode, stopped by PID.

    Attributes: ``url``, ``host``, ``mode``, ``other_port`` (where redirects point, on host name
    ``localhost``), ``log`` (JSON lines: method, path, host, authorization present, status).
    """

    MODES = ("honest", "wrong-digest", "missing-blob", "oversize", "oversize-nolength", "redirect-other-host")

    def __init__(self, layout: Path, mode: str, log: Path, other_port: int | None = None):
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}")
        port = free_port()
        self.mode, self.log = mode, log
        self.host = f"127.0.0.1:{port}"
        self.url = f"http://{self.host}"
        self.other_port = other_port or port
        argv = [sys.executable, str(SERVERS / "hostile_registry.py"), str(layout), str(port), "--mode", mode,
                "--other-port", str(self.other_port), "--log", str(log)]
        self._server = _Service(argv, self.url + "/v2/", log.with_suffix(".out"), ready=f"{self.url}/v2/")

    def ref(self, repository: str, tag: str) -> str:
        return f"{self.host}/{repository}:{tag}"

    def request_log(self) -> list[dict]:
        """The requests it answered, in order (see the ``--log`` format in hostile_registry.py)."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        self._server.stop()


def targeted_layers(built: dict[str, dict]) -> set[str]:
    """The layers the hostile registry tampers with: the *last* layer of every image manifest.

    The base layer (first) stays honest, so a client downloads a good blob before meeting a bad
    one: a test can check the good one is kept and the bad one is not cached under its name.
    """
    return {p["layers"][-1]["digest"] for info in built.values() for p in info["platforms"].values()}


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization`` header value for Basic credentials."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- what the OCI fixtures (tests/oci/conftest.py, tests/faults/conftest.py) are made of --------------
@dataclass
class BuiltImages:
    """The default images in one OCI layout.

    ``layout``: the layout directory (``oci:{layout}:app-a`` for skopeo; app-b has Docker media
    types, which skopeo's ``oci:`` transport does not list: use ``export_dir`` for it).
    ``images``: ``build_layout``'s result, ``{name: info}``; ``oci_images["app-a"]`` is a shortcut.
    ``base_layer``: digest of the gzip base layer shared by app-a (every platform) and app-b.
    """

    layout: Path
    images: dict[str, dict]
    base_layer: str

    def __getitem__(self, name: str) -> dict:
        return self.images[name]


def build_default_images(layout: Path) -> BuiltImages:
    """``default_images()`` built into a new layout at ``layout``."""
    images = build_layout(layout, default_images())
    base = images["app-b"]["platforms"]["linux/amd64"]["layers"][0]["digest"]
    assert base == images["app-a"]["platforms"]["linux/amd64"]["layers"][0]["digest"]
    return BuiltImages(layout, images, base)


def registry_with_images(root: Path, built: BuiltImages, auth: str | None) -> Iterator[Registry]:
    """A registry under ``root`` holding the built images (a fixture's body: yields it, then stops it)."""
    reg = Registry(root, auth=auth)
    try:
        reg.push_images(built.layout, built.images)
        yield reg
    finally:
        reg.stop()


def registry_factory(tmp_path: Path) -> Iterator[Callable[..., Registry]]:
    """Fresh registries for push tests, ``make(auth=None, **kw) -> Registry`` (a fixture's body:
    yields the factory, then stops every registry it made)."""
    made: list[Registry] = []

    def make(auth: str | None = None, **kw: object) -> Registry:
        reg = Registry(tmp_path / f"registry-{len(made)}", auth=auth, **kw)
        made.append(reg)
        return reg

    try:
        yield make
    finally:
        for reg in made:
            reg.stop()
