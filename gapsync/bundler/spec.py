"""The spec (``gapsync.yaml``): what the air-gapped side needs.

Errors name the file, the line and the key, because the person who fixes a spec is looking at it
in an editor. Unknown keys are errors too: a typo (``requirement:``) must not silently select
nothing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapsync.bundler.platforms import PythonTarget
from gapsync.canonical import sorted_json
from gapsync.oci import ImageRef, Platform
from gapsync.oci_client import LOOPBACK
from gapsync.redact import redact_url
from gapsync.yamlfile import Located as _Located
from gapsync.yamlfile import check_keys as _check_keys
from gapsync.yamlfile import expect as _expect
from gapsync.yamlfile import http_url, load_located, read_text

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class PythonSpec:
    index_url: str
    requirements: tuple[str, ...]
    requirements_files: tuple[Path, ...]
    targets: tuple[PythonTarget, ...]
    sdists: bool = False
    same_versions: bool = False  # one version per project across targets where one exists (per_target.py)

    def canonical(self) -> dict[str, Any]:
        return {**({"same_versions": True} if self.same_versions else {}),
            "index_url": redact_url(self.index_url),  # the digest is recorded: never a hash over a password
            "requirements": list(self.requirements),
            "requirements_files": {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in self.requirements_files},
            "targets": [f"{t.id}@{t.python}" if t.has_patch else t.id for t in self.targets],
            "sdists": self.sdists,
        }


@dataclass(frozen=True)
class ImageSource:
    """Where an image comes from when it is not a registry: ``oci_layout`` (a directory and the
    reference inside it) or ``docker`` (a local engine's image name)."""

    kind: str  # "oci_layout" | "docker"
    location: str  # layout directory (absolute) or engine image name
    ref: str | None = None  # ref.name or digest inside the layout


@dataclass(frozen=True)
class ImagesSpec:
    refs: tuple[ImageRef, ...]  # the names the images get (for registry images: where they come from)
    platforms: tuple[Platform, ...]
    rewrite_index: bool = False
    insecure: tuple[str, ...] = ()  # registries reached over plain HTTP (loopback only)
    sources: tuple[ImageSource | None, ...] = ()  # parallel to refs; None: the registry named by the ref

    def source_of(self, i: int) -> ImageSource | None:
        return self.sources[i] if i < len(self.sources) else None

    def canonical(self) -> dict[str, Any]:
        return {"refs": [str(r) for r in self.refs], "platforms": [str(p) for p in self.platforms],
                "rewrite_index": self.rewrite_index, "insecure": list(self.insecure),
                "sources": [s.__dict__ if s else None for s in self.sources]}


@dataclass(frozen=True)
class ModelSpec:
    """One model: ``source`` is hf | mlflow | url | path; the other fields as that source needs."""

    source: str
    name: str  # hub repo id, registered model name, or the name given
    revision: str | None = None  # hf revision (branch, tag, sha); mlflow version
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    location: str | None = None  # endpoint / tracking URI / URL / absolute path
    sha256: str | None = None  # url
    repo_type: str = "model"  # "dataset": an entry of the spec's datasets: list (a Hub dataset repo)

    def canonical(self) -> dict[str, Any]:
        # repo_type is left out for models, so the digests of specs written before datasets stay the same
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()
                if k != "repo_type" or v != "model"}


@dataclass(frozen=True)
class Spec:
    path: Path
    name: str
    channel: str
    python: PythonSpec | None
    images: ImagesSpec | None = None
    models: tuple[ModelSpec, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    datasets: tuple[ModelSpec, ...] = ()  # Hub dataset repos (ModelSpec with repo_type "dataset")
    conda: Any = None  # bundler.sources.conda.CondaSpec (loaded only when the spec has a conda: section)
    charts: Any = None  # bundler.sources.charts.ChartsSpec (loaded only when the spec has a charts: section)

    def digest(self) -> str:
        """What a lock was made from; a lock whose digest differs is stale."""
        body: dict[str, Any] = {"python": self.python.canonical() if self.python else None}
        if self.images:
            body["images"] = self.images.canonical()
        if self.models:
            body["models"] = [m.canonical() for m in self.models]
        if self.datasets:
            body["datasets"] = [d.canonical() for d in self.datasets]
        if self.conda:
            body["conda"] = self.conda.canonical()
        if self.charts:
            body["charts"] = self.charts.canonical()
        return hashlib.sha256(sorted_json(body)).hexdigest()  # this form: digests in existing locks


def load_spec(path: Path) -> Spec:
    text = read_text(path, "spec")
    data, loc = load_located(path, text)
    if not isinstance(data, dict):
        raise loc.error((), "expected a mapping with name, channel and python")
    _check_keys(loc, (), data, {"name", "channel", "python", "images", "models", "datasets", "conda", "charts",
                                 "policy"})
    for later in ("policy",):
        if later in data:
            raise loc.error((later,), "not supported by this version of gapsync yet")
    name = _expect(loc, ("name",), data.get("name"), str, "a bundle name")
    channel = _expect(loc, ("channel",), data.get("channel"), str, "a channel name")
    for key, value in (("name", name), ("channel", channel)):
        if not NAME_RE.match(value):
            raise loc.error((key,), f"{value!r}: use letters, digits, '.', '_' or '-'")
    py = data.get("python")
    python = _load_python(loc, py, path.parent) if py is not None else None
    images = _load_images(loc, data["images"], path.parent) if data.get("images") is not None else None
    models = _load_models(loc, data["models"], path.parent) if data.get("models") is not None else ()
    datasets = _load_datasets(loc, data["datasets"]) if data.get("datasets") is not None else ()
    conda = None
    if data.get("conda") is not None:
        from gapsync.bundler.sources.conda import load_section

        conda = load_section(loc, data["conda"])
    charts = None
    if data.get("charts") is not None:
        from gapsync.bundler.sources import charts as charts_source

        charts = charts_source.load_section(loc, data["charts"])
    if python is None and images is None and not models and not datasets and conda is None and charts is None:
        raise loc.error((), "nothing to carry: add a python, images, models, datasets, conda or charts section")
    return Spec(path=path, name=name, channel=channel, python=python, images=images, models=models, conda=conda,
                datasets=datasets, charts=charts)


MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")


def _load_models(loc: _Located, raw: Any, base: Path) -> tuple[ModelSpec, ...]:
    k = ("models",)
    _expect(loc, k, raw, list, "a list of models (hf:, mlflow:, url: or path: entries)")
    out = [_load_model(loc, (*k, i), m, base) for i, m in enumerate(raw)]
    names = [(m.source, m.name, m.revision) for m in out]
    if len(set(names)) != len(names):
        raise loc.error(k, "the same model is listed twice")
    return tuple(out)


def _load_datasets(loc: _Located, raw: Any) -> tuple[ModelSpec, ...]:
    """Hub dataset repos: the keys of a Hub model (hf, revision, include, exclude, endpoint)."""
    k = ("datasets",)
    _expect(loc, k, raw, list, "a list of datasets ({hf: org/name, revision: ...} entries)")
    out = []
    for i, d in enumerate(raw):
        _expect(loc, (*k, i), d, dict, "a mapping with hf: org/name")
        if "hf" not in d:
            raise loc.error((*k, i), "a dataset needs hf: org/name (datasets come from the Hub or a server speaking its API)")
        m = _load_model(loc, (*k, i), d, Path("."))
        out.append(ModelSpec("hf", m.name, m.revision, m.include, m.exclude, m.location, repo_type="dataset"))
    names = [(m.name, m.revision) for m in out]
    if len(set(names)) != len(names):
        raise loc.error(k, "the same dataset is listed twice")
    return tuple(out)


def _load_images(loc: _Located, im: Any, base: Path) -> ImagesSpec:
    k = ("images",)
    _expect(loc, k, im, dict, "a mapping with refs and platforms")
    _check_keys(loc, k, im, {"refs", "platforms", "rewrite_index", "insecure"})
    raw = im.get("refs")
    _expect(loc, (*k, "refs"), raw, list, "a list of image references")
    refs, sources = [], []
    for i, r in enumerate(raw):
        rk = (*k, "refs", i)
        source = None
        if isinstance(r, dict):
            _check_keys(loc, rk, r, {"oci_layout", "ref", "docker", "as"})
            if ("oci_layout" in r) == ("docker" in r):
                raise loc.error(rk, "give exactly one of oci_layout: DIR (with ref:) or docker: IMAGE, and as: NAME:TAG")
            name = _expect(loc, (*rk, "as"), r.get("as"), str, "the name the image gets, e.g. team/app:1.0")
            if "oci_layout" in r:
                d = (base / _expect(loc, (*rk, "oci_layout"), r["oci_layout"], str, "a directory")).resolve()
                if not (d / "index.json").is_file():
                    raise loc.error((*rk, "oci_layout"), f"{d}: not an OCI image layout (no index.json)")
                source = ImageSource("oci_layout", str(d), _expect(loc, (*rk, "ref"), r.get("ref"), str, "a ref.name in the layout"))
            else:
                source = ImageSource("docker", _expect(loc, (*rk, "docker"), r["docker"], str, "an image name in the engine"))
            r = name
        _expect(loc, rk, r, str, "an image reference like docker.io/library/python:3.12-slim")
        try:
            ref = ImageRef.parse(r)
        except ValueError as e:
            raise loc.error(rk, str(e)) from e
        if source and ref.digest:
            raise loc.error((*rk, "as"), "name a local image with a tag, not a digest")
        refs.append(ref)
        sources.append(source)
    if len({str(r) for r in refs}) != len(refs):
        raise loc.error((*k, "refs"), "duplicate image reference")
    plats = im.get("platforms", ["linux/amd64"])
    _expect(loc, (*k, "platforms"), plats, list, "a list like [linux/amd64, linux/arm64]")
    platforms = []
    for i, p in enumerate(plats):
        _expect(loc, (*k, "platforms", i), p, str, "os/arch[/variant]")
        try:
            platforms.append(Platform.parse(p))
        except ValueError as e:
            raise loc.error((*k, "platforms", i), str(e)) from e
    if not platforms:
        raise loc.error((*k, "platforms"), "name at least one platform")
    rewrite = im.get("rewrite_index", False)
    _expect(loc, (*k, "rewrite_index"), rewrite, bool, "true or false")
    insecure = im.get("insecure", [])
    _expect(loc, (*k, "insecure"), insecure, list, "a list of loopback registries (host:port) reached over HTTP")
    for i, h in enumerate(insecure):
        _expect(loc, (*k, "insecure", i), h, str, "host:port")
        if not LOOPBACK.match(h):
            raise loc.error((*k, "insecure", i), f"{h!r}: plain HTTP is only allowed to a loopback registry (127.0.0.1, localhost)")
    return ImagesSpec(tuple(refs), tuple(platforms), rewrite, tuple(insecure), tuple(sources))


def _load_python(loc: _Located, py: Any, base: Path) -> PythonSpec:
    k = ("python",)
    _expect(loc, k, py, dict, "a mapping")
    _check_keys(loc, k, py, {"index_url", "requirements", "requirements_files", "targets", "sdists", "same_versions"})
    index_url = py.get("index_url", "https://pypi.org/simple/")
    _expect(loc, (*k, "index_url"), index_url, str, "a URL")
    http_url(loc, (*k, "index_url"), index_url, " of a PEP 503 index")
    if not index_url.endswith("/"):
        index_url += "/"
    from gapsync.bundler.http import remember_credentials

    # user info taken out where the URL enters gapsync: kept for its origin (sent there as Basic,
    # also to uv through resolve's index proxy), never in the spec object, the lock or a message
    index_url = remember_credentials(index_url)
    reqs = py.get("requirements", [])
    _expect(loc, (*k, "requirements"), reqs, list, "a list of requirement strings")
    from packaging.requirements import InvalidRequirement, Requirement

    for i, r in enumerate(reqs):
        _expect(loc, (*k, "requirements", i), r, str, "a requirement string")
        try:
            Requirement(r)
        except InvalidRequirement as e:
            raise loc.error((*k, "requirements", i), f"{r!r}: {str(e).splitlines()[0]}") from e
    files = py.get("requirements_files", [])
    _expect(loc, (*k, "requirements_files"), files, list, "a list of file paths")
    req_files = []
    for i, f in enumerate(files):
        _expect(loc, (*k, "requirements_files", i), f, str, "a file path")
        p = (base / f).resolve()
        if not p.is_file():
            raise loc.error((*k, "requirements_files", i), f"{p}: no such file")
        req_files.append(p)
    if not reqs and not req_files:
        raise loc.error(k, "no requirements and no requirements_files")
    raw_targets = py.get("targets")
    if raw_targets is None:
        raise loc.error(k, "missing targets: list the air-gapped side's interpreters, e.g. {python: '3.11', platform: manylinux_2_17_x86_64}")
    _expect(loc, (*k, "targets"), raw_targets, list, "a list of {python, platform}")
    targets = []
    for i, t in enumerate(raw_targets):
        tk = (*k, "targets", i)
        _expect(loc, tk, t, dict, "a mapping {python, platform}")
        _check_keys(loc, tk, t, {"python", "platform"})
        pyv = t.get("python")
        if isinstance(pyv, float):  # YAML reads 3.10 as 3.1: make the user quote it
            raise loc.error((*tk, "python"), f"{pyv!r}: quote the version, e.g. \"3.10\"")
        _expect(loc, (*tk, "python"), pyv, str, "a Python version like \"3.11\"")
        plat = t.get("platform")
        _expect(loc, (*tk, "platform"), plat, str, "a platform tag like manylinux_2_17_x86_64")
        try:
            targets.append(PythonTarget.parse(pyv, plat))
        except ValueError as e:
            raise loc.error(tk, str(e)) from e
    if len({t.id for t in targets}) != len(targets):
        raise loc.error((*k, "targets"), "duplicate target")
    sdists = py.get("sdists", False)
    _expect(loc, (*k, "sdists"), sdists, bool, "true or false")
    same = py.get("same_versions", False)
    _expect(loc, (*k, "same_versions"), same, bool, "true or false")
    return PythonSpec(index_url, tuple(reqs), tuple(req_files), tuple(targets), sdists, same)


def _load_model(loc: _Located, mk: tuple, m: Any, base: Path) -> ModelSpec:
    _expect(loc, mk, m, dict, "a mapping with one of hf, mlflow, url, path")
    kinds = [s for s in ("hf", "mlflow", "url", "path") if s in m]
    if len(kinds) != 1:
        raise loc.error(mk, "give exactly one of hf:, mlflow:, url: or path:")
    src = kinds[0]
    allowed = {"hf": {"hf", "revision", "include", "exclude", "endpoint"},
               "mlflow": {"mlflow", "tracking_uri", "name"},
               "url": {"url", "sha256", "name"},
               "path": {"path", "name"}}[src]
    _check_keys(loc, mk, m, allowed)
    value = _expect(loc, (*mk, src), m[src], str, f"a {src} reference")

    def strings(key: str) -> tuple[str, ...]:
        v = m.get(key, [])
        v = [v] if isinstance(v, str) else v
        _expect(loc, (*mk, key), v, list, "a list of glob patterns")
        for j, p in enumerate(v):
            _expect(loc, (*mk, key, j), p, str, "a glob pattern")
        return tuple(v)

    def name_of(default: str | None) -> str:
        name = m.get("name", default)
        if name is None:
            raise loc.error(mk, f"a {src}: model needs name: (e.g. team/my-model)")
        _expect(loc, (*mk, "name"), name, str, "a model name like team/my-model")
        if not MODEL_NAME_RE.match(name) or ".." in name:
            raise loc.error((*mk, "name"), f"{name!r}: use org/name with letters, digits, '.', '_', '-'")
        return name

    if src == "hf":
        if not MODEL_NAME_RE.match(value) or ".." in value:
            raise loc.error((*mk, "hf"), f"{value!r}: not a Hub repository id (org/name)")
        rev = m.get("revision", "main")
        _expect(loc, (*mk, "revision"), rev, str, "a branch, tag or commit sha")
        endpoint = m.get("endpoint")
        if endpoint is not None:
            _expect(loc, (*mk, "endpoint"), endpoint, str, "a Hub URL")
        return ModelSpec("hf", value, rev, strings("include"), strings("exclude"), endpoint)
    elif src == "mlflow":
        mm = re.fullmatch(r"models:/([^/]+)/(\d+)", value)
        if not mm:
            raise loc.error((*mk, "mlflow"), f"{value!r}: expected models:/NAME/VERSION")
        uri = m.get("tracking_uri")
        _expect(loc, (*mk, "tracking_uri"), uri, str, "the tracking server URI, e.g. http://mlflow.dmz:5000")
        return ModelSpec("mlflow", name_of(mm.group(1)), mm.group(2), location=uri)
    elif src == "url":
        http_url(loc, (*mk, "url"), value, "")
        sha = m.get("sha256")
        if isinstance(sha, int):  # YAML reads an all-digit hash as a number
            raise loc.error((*mk, "sha256"), "quote the sha256 (YAML read it as a number)")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise loc.error((*mk, "sha256"), "a URL model needs its sha256 (64 lower-case hex)")
        stem = re.sub(r"[^A-Za-z0-9._-]", "-", value.rstrip("/").rsplit("/", 1)[-1].split("?")[0]) or "model"
        return ModelSpec("url", name_of(f"url/{stem}"), None, location=value, sha256=sha)
    else:
        p = (base / value).resolve()
        if not p.exists():
            raise loc.error((*mk, "path"), f"{p}: no such file or directory")
        return ModelSpec("path", name_of(None), None, location=str(p))
