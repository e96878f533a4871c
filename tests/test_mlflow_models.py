"""MLflow as a model source and as the air side's registry: two real tracking servers."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.channels import new_channel
from tests.support.cli import cli
from tests.support.servers import Server, free_port

pytestmark = pytest.mark.slow
mlflow = pytest.importorskip("mlflow")


def mlflow_server(base: Path) -> Server:
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    exe = str(Path(sys.executable).with_name("mlflow"))
    return Server([exe, "server", "--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}", "--artifacts-destination",
                   str(base / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                  f"http://127.0.0.1:{port}/health", env=env)


def register_version(uri: str, name: str, payload: bytes, description: str, tmp: Path) -> str:
    """A scikit-learn-style model written as files (never loaded) and registered as a new version."""
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = c.get_experiment_by_name("train") or None
    exp_id = exp.experiment_id if exp else c.create_experiment("train")
    d = tmp / f"m-{hashlib.sha256(payload).hexdigest()[:8]}"
    d.mkdir()
    (d / "model.pkl").write_bytes(pickle.dumps({"coef": list(payload)}))  # written, never loaded
    (d / "MLmodel").write_text("flavors:\n  sklearn:\n    pickled_model: model.pkl\n    serialization_format: cloudpickle\n")
    run = c.create_run(exp_id)
    c.log_artifacts(run.info.run_id, str(d), artifact_path="model")
    c.set_terminated(run.info.run_id)
    try:
        c.create_registered_model(name, description=description, tags={"team": "risk"})
    except mlflow.exceptions.MlflowException:
        pass
    mv = c.create_model_version(name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id,
                                tags={"license": "proprietary", "stage": "validated"}, description=description)
    return str(mv.version)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    base = tmp_path_factory.mktemp("mlflow")
    src, dst = mlflow_server(base / "src"), mlflow_server(base / "dst")
    yield SimpleNamespace(src=src.url.removesuffix("/health"), dst=dst.url.removesuffix("/health"), base=base)
    src.stop()
    dst.stop()


def test_mlflow_model_crosses_with_lineage_and_second_bundle_adds_a_version(servers, tmp_path):
    from mlflow import MlflowClient

    v1 = register_version(servers.src, "fraud-detector", b"v1-weights", "first model", tmp_path)
    ch = new_channel(tmp_path, "prod")
    spec = tmp_path / "g.yaml"
    spec.write_text(f"name: ml\nchannel: prod\nmodels:\n  - mlflow: models:/fraud-detector/{v1}\n    tracking_uri: {servers.src}\n")
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o1", "--cache", tmp_path / "c")
    assert r.code == 0, r.err
    b1 = next((tmp_path / "o1").glob("*.gapsync"))
    m = tmp_path / "mirror"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    r = cli("import", b1, "--mirror", m, "--mlflow", servers.dst, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["mlflow"][0]["registered"] == ["fraud-detector/1"]
    dst = MlflowClient(tracking_uri=servers.dst, registry_uri=servers.dst)
    mv = dst.get_model_version("fraud-detector", "1")
    assert mv.description == "first model"
    assert mv.tags["gapsync.source_version"] == v1 and mv.tags["gapsync.bundle"] == b1.name
    assert mv.tags["license"] == "proprietary" and mv.tags["gapsync.channel"] == "prod"
    src = MlflowClient(tracking_uri=servers.src, registry_uri=servers.src)
    got = Path(mlflow.artifacts.download_artifacts(artifact_uri=dst.get_model_version_download_uri("fraud-detector", "1"),
                                                   dst_path=str(tmp_path / "dl"), tracking_uri=servers.dst))
    src_pkl = Path(mlflow.artifacts.download_artifacts(artifact_uri=src.get_model_version_download_uri("fraud-detector", v1),
                                                       dst_path=str(tmp_path / "dl0"), tracking_uri=servers.src)) / "model.pkl"
    assert (got / "model.pkl").read_bytes() == src_pkl.read_bytes()
    # the same bundle again registers nothing twice
    r = cli("import", b1, "--mirror", m, "--mlflow", servers.dst)
    assert r.code == 5, r.err
    assert len(dst.search_model_versions("name = 'fraud-detector'")) == 1
    # a second bundle with a new source version adds a version beside the first
    v2 = register_version(servers.src, "fraud-detector", b"v2-weights", "second model", tmp_path)
    spec.write_text(f"name: ml\nchannel: prod\nmodels:\n  - mlflow: models:/fraud-detector/{v2}\n    tracking_uri: {servers.src}\n")
    assert cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o2",
               "--cache", tmp_path / "c").code == 0
    r = cli("import", next((tmp_path / "o2").glob("*.gapsync")), "--mirror", m, "--mlflow", servers.dst)
    assert r.code == 0, r.err
    versions = {v.version: v for v in dst.search_model_versions("name = 'fraud-detector'")}
    assert set(versions) == {"1", "2"} and versions["1"].description == "first model"
    # and both revisions are in the Hugging Face cache layout, side by side
    refs = m / "models/hf/models--fraud-detector/refs"
    assert sorted(p.name for p in refs.iterdir()) == sorted({v1, v2})
