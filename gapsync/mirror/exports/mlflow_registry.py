"""Register the mirror's models in an MLflow model registry (``import --mlflow URI``).

Each model revision becomes a registered model version: its files are logged as the artifacts
of a run in the ``gapsync-imports`` experiment, then ``create_model_version`` points at that run.
The version carries the lineage as tags (``gapsync.commit``, ``gapsync.bundle``, ``gapsync.channel``,
``gapsync.manifest_sha256``, the source's version and run), the description and the source's
tags. A version whose ``gapsync.commit`` is already registered is left alone, so a re-import
registers nothing twice and a later bundle only adds versions. MLflow assigns version numbers
itself; the source's number is in ``gapsync.source_version``. Names with '/' (Hub ids) are
registered with '/' turned into '--', as MLflow model URIs cannot hold a '/'.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gapsync.errors import PublishError
from gapsync.mirror.layout import MirrorLayout
from gapsync.mirror.targets.hf_cache import HfCache, repo_folder

EXPERIMENT = "gapsync-imports"


def registered_name(name: str) -> str:
    return name.replace("/", "--")


@dataclass
class MlflowReport:
    uri: str
    registered: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def register_models(layout: MirrorLayout, uri: str, models: list[tuple[str, str]], *, bundle: str, channel: str) -> MlflowReport:
    """``models``: (name, revision) pairs that are in the mirror's model index."""
    from gapsync.mlflow_client import quiet_stdout

    with quiet_stdout():
        return _register(layout, uri, models, bundle=bundle, channel=channel)


def _register(layout: MirrorLayout, uri: str, models: list[tuple[str, str]], *, bundle: str, channel: str) -> MlflowReport:
    from mlflow.exceptions import MlflowException

    from gapsync.mlflow_client import client as make_client

    c = make_client(uri)
    hf = HfCache(layout)
    index = hf.read_index()["models"]
    report = MlflowReport(uri)
    try:
        exp = c.get_experiment_by_name(EXPERIMENT)
        exp_id = exp.experiment_id if exp else c.create_experiment(EXPERIMENT)
        for name, rev in models:
            commit = index[name]["refs"][rev]
            doc = hf.manifest(index[name]["commits"][commit])
            meta = doc.get("meta", {})
            rname = registered_name(name)
            existing = c.search_model_versions(f"name = '{rname}'") if _exists(c, rname) else []
            if any((v.tags or {}).get("gapsync.commit") == commit for v in existing):
                report.already.append(f"{rname}@{commit[:12]}")
                continue
            tags = {**{k: str(v) for k, v in (meta.get("version_tags") or {}).items()},
                    "gapsync.commit": commit, "gapsync.revision": rev, "gapsync.bundle": bundle, "gapsync.channel": channel,
                    "gapsync.manifest_sha256": index[name]["commits"][commit], "gapsync.source": doc.get("source", ""),
                    "gapsync.origin": str(meta.get("origin") or "")}
            for key in ("source_version", "run_id", "source_uri", "license"):
                if meta.get(key):
                    tags[f"gapsync.{key}"] = str(meta[key])
            run = c.create_run(exp_id, tags={"gapsync.model": name, "gapsync.commit": commit}, run_name=f"{rname}-{commit[:12]}")
            snapshot = layout.hf_root / repo_folder(name) / "snapshots" / commit
            c.log_artifacts(run.info.run_id, str(snapshot), artifact_path="model")
            c.set_terminated(run.info.run_id)
            if not _exists(c, rname):
                c.create_registered_model(rname, tags={k: str(v) for k, v in (meta.get("model_tags") or {}).items()},
                                          description=meta.get("description") or None)
            mv = c.create_model_version(rname, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id, tags=tags,
                                        description=meta.get("description") or None)
            report.registered.append(f"{rname}/{mv.version}")
    except MlflowException as e:
        raise PublishError(f"{uri}: MLflow refused ({str(e).splitlines()[0]}); run the import again to finish") from e
    return report


def _exists(c, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(name)
        return True
    except MlflowException:
        return False

