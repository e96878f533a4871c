"""The sources behind one interface (gapsync/bundler/sources/base.py): the registry picks the
source of every spec form and every locked record, refuses an unknown one with one line, and
every kind resolves and fetches through it against real servers on 127.0.0.1: the test index
of tiny wheels, a docker-registry and an OCI layout, a classic chart repository, the Hub
stand-in (a model and a dataset), a conda channel, a plain HTTP file, a local directory, and
(slow) an MLflow tracking server.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from gapsync.bundler.cache import BlobCache
from gapsync.bundler.fetch import fetch_all
from gapsync.bundler.lock import Lock, LockedFile, LockedImage, LockedModel, read_lock
from gapsync.bundler.resolve import plan_fetch, resolve_spec
from gapsync.bundler.sources import charts, conda, huggingface, model_local, model_url, oci, pypi
from gapsync.bundler.sources.base import (
    SOURCES,
    FetchContext,
    ResolveContext,
    build_source,
    lock_records,
    source_name,
    spec_entries,
)
from gapsync.bundler.sources.charts import ChartRef, ChartsSpec
from gapsync.bundler.sources.conda import CondaChannel, CondaSpec
from gapsync.bundler.spec import ImageSource, ImagesSpec, ModelSpec, PythonSpec, load_spec
from gapsync.errors import InputError
from gapsync.oci import ImageRef, Platform
from tests.support.channels import new_channel
from tests.support.cli import ARCH, cli
from tests.support.conda import build_channel
from tests.support.datasets import CSV, Hub, write_datasets
from tests.support.models import TINY, build_default_repos
from tests.support.oci import Registry, build_default_images
from tests.support.oci_artifacts import chart_archive
from tests.support.servers import Server, free_port, serve_dir

NEEDED = ("docker-registry", "skopeo")


def _model(source: str, **kw) -> ModelSpec:
    return ModelSpec(source, kw.pop("name", "team/m"), kw.pop("revision", None), **kw)


def _locked(source: str, repo_type: str = "model") -> LockedModel:
    return LockedModel(source, "team/m", "main", "0" * 40, [], repo_type=repo_type)


def _image(source: dict | None) -> LockedImage:
    return LockedImage("r", "127.0.0.1:5000/team/app", "1.0", "sha256:" + "0" * 64, "m", 1, [], [], [], source=source)


FORMS = [  # (spec entry or locked record, the source's registered name, its class)
    (PythonSpec("https://pypi.org/simple/", ("alpha",), (), ()), "pypi", "PypiSource"),
    (LockedFile("alpha", "1.0", "alpha-1.0-py3-none-any.whl", "https://x/a.whl", "0" * 64, 1, None, None, []),
     "pypi", "PypiSource"),
    (ImagesSpec((ImageRef.parse("127.0.0.1:5000/team/app:1.0"),), (Platform("linux", "amd64"),)), "oci", "OciSource"),
    (_image(None), "oci", "OciSource"),
    (_image({"kind": "oci_layout", "location": "/l", "ref": "app"}), "oci", "OciSource"),
    (_image({"kind": "docker", "location": "app:1.0"}), "oci", "OciSource"),
    (_image({"kind": "chart_repo", "location": "http://x/api-1.2.0.tgz", "ref": "0" * 64}), "chart", "ChartSource"),
    (ChartsSpec((ChartRef("http", "http://x/", "api", "1.2.0"),)), "chart", "ChartSource"),
    (CondaSpec((CondaChannel("http://x/upstream", "upstream"),), ("gs-tool",), ("linux-64",)), "conda", "CondaSource"),
    ({"channels": [], "packages": []}, "conda", "CondaSource"),  # the lock's conda section
    (_model("hf", revision="main"), "hf", "HubModelSource"),
    (_locked("hf"), "hf", "HubModelSource"),
    (_model("hf", revision="main", repo_type="dataset"), "hf-dataset", "HubDatasetSource"),
    (_locked("hf", "dataset"), "hf-dataset", "HubDatasetSource"),
    (_model("mlflow", revision="1", location="http://127.0.0.1:5000"), "mlflow", "MlflowSource"),
    (_locked("mlflow"), "mlflow", "MlflowSource"),
    (_model("url", location="http://x/w.bin", sha256="0" * 64), "url", "UrlSource"),
    (_locked("url"), "url", "UrlSource"),
    (_model("path", location="/models/m"), "path", "PathSource"),
    (_locked("path"), "path", "PathSource"),
]


@pytest.mark.parametrize(("entry", "name", "cls"), FORMS, ids=[f"{type(f[0]).__name__}-{f[1]}-{i}" for i, f in enumerate(FORMS)])
def test_the_registry_picks_the_source_of_each_spec_form_and_record(entry, name, cls):
    assert source_name(entry) == name
    source = build_source(entry)
    assert type(source).__name__ == cls and source.name == name
    assert SOURCES[name].endswith(f":{cls}")


def test_every_registered_source_has_the_interface():
    for name in SOURCES:
        module, cls = SOURCES[name].split(":")
        source_cls = getattr(__import__(f"gapsync.bundler.sources.{module}", fromlist=[cls]), cls)
        assert source_cls.name == name
        assert callable(source_cls.resolve) and callable(source_cls.fetch)


def test_an_image_is_read_from_the_origin_its_source_names(tmp_path):
    from gapsync.bundler.sources.oci_local import DockerOrigin, LayoutOrigin

    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    ref, cache, clients = ImageRef.parse("127.0.0.1:5000/team/app:1.0"), BlobCache(tmp_path / "c"), oci.Clients()
    assert type(oci.origin_for(clients, ref, None, cache)) is oci.RegistryOrigin
    assert type(oci.origin_for(clients, ref, ImageSource("oci_layout", str(layout), "app"), cache)) is LayoutOrigin
    assert type(oci.origin_for(clients, ref, {"kind": "docker", "location": "app:1.0"}, cache)) is DockerOrigin
    cached = oci.origin_for(clients, ref, {"kind": "chart_repo", "location": "http://x/api.tgz", "ref": "0" * 64}, cache)
    assert type(cached) is oci.Origin
    # an HTTP chart's bytes are in the cache or nowhere: a missing one says to resolve again
    with pytest.raises(Exception, match="gone from the cache; run resolve again"):
        cached.manifest("sha256:" + "1" * 64)


@pytest.mark.parametrize("entry", [_model("s3", location="s3://bucket/m"), _locked("s3"), object(), ["a list"]],
                         ids=["spec-model", "lock-model", "object", "list"])
def test_an_unknown_form_is_one_input_error(entry):
    with pytest.raises(InputError) as e:
        build_source(entry)
    msg = str(e.value)
    assert "\n" not in msg
    if isinstance(entry, (ModelSpec, LockedModel)):
        assert "'team/m'" in msg and "'s3'" in msg and "hf, mlflow, url, path" in msg
        assert msg.startswith("spec:" if isinstance(entry, ModelSpec) else "lock:")
    else:
        assert "no source reads" in msg


def test_a_lock_naming_an_unknown_model_source_is_refused_in_one_line(tmp_path):
    """A lock is a file people edit: a model whose source this gapsync does not know stops
    ``bundle create --lock`` with exit 2 and one line, before anything is fetched or written."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * 1000)
    spec = tmp_path / "g.yaml"
    spec.write_text(f"name: m\nchannel: prod\nmodels:\n  - path: {model}\n    name: team/m\n")
    assert cli("resolve", "-f", spec, "-o", tmp_path / "g.lock", "--cache", tmp_path / "cache").code == 0
    doc = json.loads((tmp_path / "g.lock").read_text())
    doc["models"][0]["source"] = "s3"
    (tmp_path / "g.lock").write_text(json.dumps(doc))
    ch = new_channel(tmp_path)
    r = cli("bundle", "create", "-f", spec, "--lock", tmp_path / "g.lock", "--state", ch.state, "--key", ch.keys[0],
            "-o", tmp_path / "out", "--cache", tmp_path / "cache")
    assert r.code == 2, r.err
    lines = [ln for ln in r.err.strip().splitlines() if not ln.startswith("{")]
    assert len(lines) == 1 and "'team/m'" in lines[0] and "'s3'" in lines[0], r.err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# -- every kind against real servers ---------------------------------------------------------

@pytest.fixture(scope="module")
def upstreams(ext_index, tmp_path_factory):
    missing = [t for t in NEEDED if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: apt-get install docker-registry skopeo")
    base = tmp_path_factory.mktemp("sources")
    started: list = []
    try:
        hub_root = base / "hub" / "root"
        write_datasets(hub_root)
        build_default_repos(hub_root)
        hub = Hub(hub_root)
        started.append(hub)
        built = build_default_images(base / "layout")
        reg = Registry(base / "registry")
        started.append(reg)
        reg.push_images(built.layout, {k: v for k, v in built.images.items() if k == "app-a"})
        files = base / "files"  # a classic chart repository, and a model file behind a plain URL
        files.mkdir()
        api = chart_archive("api", "1.2.0", values=f"image: {reg.host}/library/app-a:1.0\n")
        (files / "api-1.2.0.tgz").write_bytes(api)
        (files / "index.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "entries": {"api": [
            {"apiVersion": "v2", "name": "api", "version": "1.2.0", "urls": ["api-1.2.0.tgz"],
             "digest": hashlib.sha256(api).hexdigest()}]}}))
        weights = b"url model weights\n" * 512
        (files / "weights.bin").write_bytes(weights)
        web = serve_dir(files, "index.yaml")
        started.append(web)
        files_url = web.url.removesuffix("index.yaml")
        conda_root = base / "conda"
        build_channel(conda_root)
        channel = serve_dir(conda_root, "upstream/noarch/repodata.json")
        started.append(channel)
        local = base / "local-model"
        (local / "sub").mkdir(parents=True)
        (local / "config.json").write_text('{"a": 1}\n')
        (local / "sub" / "weights.bin").write_bytes(b"local weights" * 100)
        spec = base / "g.yaml"
        spec.write_text(f"""name: all
channel: prod
python:
  index_url: {ext_index.url}
  requirements: [alpha]
  targets:
    - {{python: "3.11", platform: manylinux_2_17_{ARCH}}}
images:
  insecure: [{reg.host}]
  platforms: [linux/amd64]
  refs:
    - {reg.host}/library/app-a:1.0
    - {{oci_layout: {built.layout}, ref: app-a, as: local/app-a:1.0}}
charts:
  refs:
    - {{repo: {files_url}, name: api, version: "1.2.0"}}
models:
  - hf: {TINY}
    endpoint: {hub.url}
    exclude: ['onnx/*']
  - url: {files_url}weights.bin
    sha256: "{hashlib.sha256(weights).hexdigest()}"
    name: team/url-model
  - path: {local}
    name: team/local-model
datasets:
  - hf: {CSV}
    endpoint: {hub.url}
conda:
  channels: [{channel.url.removesuffix('/noarch/repodata.json')}]
  specs: [gs-tool]
  platforms: [linux-64]
""")
        yield SimpleNamespace(base=base, spec=load_spec(spec), spec_path=spec, registry=reg, hub=hub)
    finally:
        for s in reversed(started):
            s.stop()


def _old_dispatch(spec, cache: BlobCache, jobs: int = 4) -> Lock:
    """The lock the if/elif dispatch that the interface replaced built, kind by kind (what
    bundler/resolve.py did before), from the same source functions: the reference."""
    from gapsync.bundler.sources import mlflow_models

    lock = pypi.resolve(spec, cache, jobs) if spec.python else Lock(spec_digest=spec.digest())
    if spec.images:
        lock.images = oci.resolve(spec.images, oci.raw_refs(spec.images), cache, jobs)
    if spec.charts:
        have = {(i.name, i.digest) for i in lock.images}
        lock.images += [i for i in charts.resolve(spec, cache, jobs) if (i.name, i.digest) not in have]
    by_source = {"hf": lambda m: huggingface.resolve(m, cache, jobs), "url": model_url.resolve_url,
                 "path": model_local.resolve_path, "mlflow": lambda m: mlflow_models.resolve(m, cache)}
    lock.models = [by_source[m.source](m) for m in spec.models]
    lock.datasets = [huggingface.resolve(d, cache, jobs) for d in spec.datasets]
    if spec.conda:
        lock.conda = conda.resolve(spec.conda, cache.root / "partial")
    return lock


def test_each_kind_resolves_through_its_source_into_its_own_section(upstreams, tmp_path):
    spec = upstreams.spec
    cache = BlobCache(tmp_path / "cache")
    ctx = ResolveContext(spec, cache, 4, Lock(spec_digest=spec.digest()))
    sections = {"pypi": "files", "oci": "images", "chart": "images", "conda": "conda", "hf": "models",
                "hf-dataset": "datasets", "url": "models", "path": "models"}
    seen = []
    for entry in spec_entries(spec):
        source = build_source(entry)
        part = source.resolve(entry, ctx)
        filled = {k for k in ("files", "images", "models", "datasets", "conda") if getattr(part, k)}
        assert filled == {sections[source.name]}, (source.name, filled)
        ctx.lock.merge(part)
        seen.append(source.name)
    assert seen == ["pypi", "oci", "chart", "hf", "url", "path", "hf-dataset", "conda"]  # the spec's order
    lock = ctx.lock
    assert lock.index_url and lock.pins and {f.name for f in lock.files} >= {"alpha", "beta"}
    refs = [i.ref for i in lock.images if not i.chart]
    assert f"{upstreams.registry.host}/library/app-a:1.0" in refs
    assert any(r.startswith("oci_layout:") and r.endswith(" as docker.io/local/app-a:1.0") for r in refs), refs
    assert [i.chart["name"] for i in lock.images if i.chart] == ["api"]
    assert [m.source for m in lock.models] == ["hf", "url", "path"]
    assert [(d.name, d.kind) for d in lock.datasets] == [(CSV, "dataset")]
    assert {p["name"] for p in lock.conda["packages"]} >= {"gs-tool"}
    # the whole walk gives the same lock, byte for byte, as the dispatch it replaced
    whole = resolve_spec(spec, cache, 4)
    assert whole.dumps() == lock.dumps() == _old_dispatch(spec, cache).dumps()


def test_a_lock_fetches_through_the_sources_into_a_fresh_cache(upstreams, tmp_path):
    """From the lock alone (as ``bundle create --lock`` on another day): every record goes to
    its source, every byte any record names ends in the cache under its sha256."""
    spec = upstreams.spec
    resolve_spec(spec, BlobCache(tmp_path / "resolve-cache"), 4).write(tmp_path / "g.lock")
    lock = read_lock(tmp_path / "g.lock")
    cache = BlobCache(tmp_path / "cache")
    items, plans = plan_fetch(spec, lock, cache)
    assert len(plans) == len(lock.images) and [p.image.ref for p in plans] == [i.ref for i in lock.images]
    fetch_all(cache, items, 4)
    wanted = {f.sha256 for f in lock.files} | {p["sha256"] for p in lock.conda["packages"]}
    wanted |= {f["sha256"] for m in lock.models + lock.datasets if m.source != "path" for f in m.files}
    wanted |= {d.split(":", 1)[1] for p in plans for d in p.blobs}
    missing = [d for d in wanted if not cache.has(d)]
    assert not missing, missing
    for d in wanted:
        assert hashlib.sha256(cache.path(d).read_bytes()).hexdigest() == d
    # a local path model is not copied: the cache points at the operator's files
    path_model = next(m for m in lock.models if m.source == "path")
    assert all(cache.has(f["sha256"]) for f in path_model.files)
    assert len(lock_records(lock)) == len(lock.files) + len(lock.images) + len(lock.models) + len(lock.datasets) + 1


# -- MLflow (a tracking server takes a while to start: slow) ---------------------------------

@pytest.mark.slow
def test_an_mlflow_model_resolves_through_its_source(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    server = Server([str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri",
                     f"sqlite:///{tmp_path / 'mlflow.db'}", "--artifacts-destination", str(tmp_path / "artifacts"),
                     "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                    f"http://127.0.0.1:{port}/health", env=env)
    try:
        uri = f"http://127.0.0.1:{port}"
        c = MlflowClient(tracking_uri=uri, registry_uri=uri)
        d = tmp_path / "model"
        d.mkdir()
        (d / "weights.bin").write_bytes(b"mlflow weights" * 50)
        (d / "MLmodel").write_text("flavors:\n  sklearn:\n    serialization_format: none\n")
        run = c.create_run(c.create_experiment("train"))
        c.log_artifacts(run.info.run_id, str(d), artifact_path="model")
        c.set_terminated(run.info.run_id)
        c.create_registered_model("risk")
        mv = c.create_model_version("risk", source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        spec_path = tmp_path / "g.yaml"
        spec_path.write_text(f"name: m\nchannel: prod\nmodels:\n  - mlflow: models:/risk/{mv.version}\n"
                             f"    tracking_uri: {uri}\n")
        spec = load_spec(spec_path)
        cache = BlobCache(tmp_path / "cache")
        (entry,) = spec_entries(spec)
        source = build_source(entry)
        assert source.name == "mlflow"
        part = source.resolve(entry, ResolveContext(spec, cache, 2, Lock(spec_digest=spec.digest())))
        (model,) = part.models
        assert model.source == "mlflow" and model.meta["run_id"] == run.info.run_id
        assert {f["path"] for f in model.files} == {"MLmodel", "weights.bin"}
        # MLflow gives no digests: resolve pinned every file into the cache, fetch has nothing left
        assert build_source(model).fetch(model, FetchContext(spec, cache)) == []
        assert all(cache.has(f["sha256"]) for f in model.files)
    finally:
        server.stop()
