"""Helm charts end to end with real parts: a chart pushed with the oras SDK into Debian's
docker-registry, a classic chart repository (index.yaml + archive) on a static server, the images
the charts name carried with them, and on the air side the chart repository and /v2/ of
``gapsync serve``, a registry filled by ``push`` (oras and skopeo pull from it), and podman."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import yaml

from gapsync.bundler.sources.charts import ChartError, images_named, read_chart
from tests.support.channels import new_channel
from tests.support.cli import GAPSYNC, cli
from tests.support.oci import Registry, skopeo, skopeo_inspect
from tests.support.oci_artifacts import (
    HELM_CONFIG,
    HELM_CONTENT,
    chart_archive,
    cosign_sign,
    key_pair,
    push_chart,
    targz,
)
from tests.support.servers import Server, free_port, static_server


def _errors(err: str) -> list[str]:
    """The error lines of a run (structured log lines, JSON objects, left out)."""
    return [line for line in err.strip().splitlines() if not line.startswith("{")]


def _index_yaml(name: str, version: str, archive: bytes, url: str | None = None, digest: str | None = None) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "entries": {name: [
        {"apiVersion": "v2", "name": name, "version": version, "urls": [url or f"{name}-{version}.tgz"],
         "digest": digest or hashlib.sha256(archive).hexdigest()}]}})


@pytest.fixture(scope="module")
def charts_world(tmp_path_factory, oci_images):
    base = tmp_path_factory.mktemp("charts-world")
    reg = Registry(base / "registry")
    srv = None
    try:
        reg.push_images(oci_images.layout, {k: v for k, v in oci_images.images.items() if k in ("app-a", "app-b")})
        host = reg.host
        # an OCI chart whose values name app-a (registry + repository + tag) and whose template
        # names app-b literally; a templated image line is not rendered, so not listed
        web = chart_archive("web", "1.0.0",
                            values=f"image:\n  registry: {host}\n  repository: library/app-a\n  tag: '1.0'\nreplicas: 2\n",
                            templates={"deploy.yaml": f"spec:\n  containers:\n    - name: side\n      image: {host}/team/app-b:2.0\n"
                                                      "    - name: main\n      image: \"{{ .Values.image.repository }}\"\n"})
        push_chart(host, "charts/web", "web", "1.0.0", web, base / "push")
        # the chart is signed with cosign (its signature must travel with it)
        raw = requests.get(f"{reg.url}/v2/charts/web/manifests/1.0.0",
                           headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=10).content
        web_digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        cosign_sign(host, "charts/web", web_digest, key_pair(base / "keys")[0], base / "sign")
        # a classic chart repository: index.yaml pinned to the archive's sha256
        repo = base / "repo"
        (repo / "simple").mkdir(parents=True)
        api = chart_archive("api", "1.2.0", values=f"image: {host}/library/app-a:1.0\n")
        (repo / "api-1.2.0.tgz").write_bytes(api)
        (repo / "index.yaml").write_text(_index_yaml("api", "1.2.0", api))
        srv = static_server(repo)
        repo_url = srv.url.removesuffix("simple/")
        ch = new_channel(base, "prod")
        spec = base / "g.yaml"
        spec.write_text(yaml.safe_dump({"name": "charts", "channel": "prod", "charts": {
            "images_from_charts": True, "insecure": [host], "platforms": ["linux/amd64"],
            "refs": [f"oci://{host}/charts/web:1.0.0", {"repo": repo_url, "name": "api", "version": "1.2.0"}]}}))
        r = cli("resolve", "-f", spec, "-o", base / "g.lock", "--cache", base / "cache")
        assert r.code == 0, r.err
        r = cli("bundle", "create", "-f", spec, "--lock", base / "g.lock", "--state", ch.state, "--key", ch.keys[0],
                "-o", base / "out", "--cache", base / "cache", "--json", "--report", base / "report.html")
        assert r.code == 0, r.err
        bundle = next((base / "out").glob("*.gapsync"))
        mirror = base / "mirror"
        assert cli("trust", "pin", ch.root, "--mirror", mirror).code == 0
        r = cli("import", bundle, "--mirror", mirror)
        assert r.code == 0, r.err
        yield SimpleNamespace(base=base, registry=reg, host=host, web=web, web_digest=web_digest, api=api,
                              repo_url=repo_url, mirror=mirror,
                              lock=json.loads((base / "g.lock").read_text()), bundle=bundle, spec=spec, ch=ch)
    finally:
        if srv:
            srv.stop()
        reg.stop()


def test_charts_and_their_images_are_locked_and_reported(charts_world, oci_images):
    w = charts_world
    by_ref = {i["ref"]: i for i in w.lock["images"]}
    web = by_ref[f"oci://{w.host}/charts/web:1.0.0"]
    assert web["artifact_type"] == HELM_CONFIG and web["platforms"] == []
    assert web["chart"]["archive"] == hashlib.sha256(w.web).hexdigest()
    assert web["chart"]["images"] == [f"{w.host}/library/app-a:1.0", f"{w.host}/team/app-b:2.0"]
    sig = by_ref[f"{w.host}/charts/web:sha256-{w.web_digest.split(':')[1]}.sig"]
    assert sig["subject"] == web["digest"] == w.web_digest
    api = next(i for i in w.lock["images"] if (i.get("chart") or {}).get("name") == "api")
    assert api["source"]["kind"] == "chart_repo" and api["chart"]["archive"] == hashlib.sha256(w.api).hexdigest()
    assert api["chart"]["images"] == [f"{w.host}/library/app-a:1.0"]
    # the images the charts asked for are carried, once, as images (platform-filtered)
    assert by_ref[f"{w.host}/library/app-a:1.0"]["digest"] == oci_images["app-a"]["digest"]
    assert by_ref[f"{w.host}/team/app-b:2.0"]["platforms"] == ["linux/amd64"]
    # the report says which chart asked for which image
    report = (w.base / "report.html").read_text()
    assert "web" in report and f"{w.host}/team/app-b:2.0" in report


def test_the_air_side_chart_repository_is_byte_for_byte(charts_world):
    w = charts_world
    charts = w.mirror / "charts"
    assert (charts / "web-1.0.0.tgz").read_bytes() == w.web
    assert (charts / "api-1.2.0.tgz").read_bytes() == w.api
    index = yaml.safe_load((charts / "index.yaml").read_text())
    assert index["entries"]["api"][0]["digest"] == hashlib.sha256(w.api).hexdigest()
    assert index["entries"]["web"][0]["urls"] == ["web-1.0.0.tgz"]
    # and the OCI layout holds both charts as artifacts, next to the images
    entries = {m["annotations"]["org.opencontainers.image.ref.name"]: m
               for m in json.loads((w.mirror / "oci" / "index.json").read_text())["manifests"]}
    assert entries[f"{w.host}/charts/web:1.0.0"]["artifactType"] == HELM_CONFIG
    assert any(k.endswith("/api:1.2.0") and v.get("artifactType") == HELM_CONFIG for k, v in entries.items())


def test_charts_pull_from_serve_and_from_a_registry_filled_by_push(charts_world, tmp_path):
    import oras.client

    w = charts_world
    port = free_port()
    srv = Server([GAPSYNC, "serve", "--mirror", str(w.mirror), "--listen", f"127.0.0.1:{port}"], f"http://127.0.0.1:{port}/v2/")
    target = Registry(tmp_path / "air-registry")
    try:
        # the static chart repository, as helm repo add would read it
        index = requests.get(f"http://127.0.0.1:{port}/charts/index.yaml", timeout=10)
        assert index.status_code == 200 and index.content == (w.mirror / "charts" / "index.yaml").read_bytes()
        tgz = requests.get(f"http://127.0.0.1:{port}/charts/api-1.2.0.tgz", timeout=10)
        assert tgz.content == w.api and hashlib.sha256(tgz.content).hexdigest() == yaml.safe_load(index.content)["entries"]["api"][0]["digest"]
        assert requests.get(f"http://127.0.0.1:{port}/charts/../oci/index.json", timeout=10).status_code == 404
        # the OCI chart from serve's /v2/, with oras (a client that is not gapsync)
        out = tmp_path / "from-serve"
        oras.client.OrasClient(hostname=f"127.0.0.1:{port}", insecure=True).pull(
            target=f"127.0.0.1:{port}/{w.host}/charts/web:1.0.0", outdir=str(out))
        assert (out / "web-1.0.0.tgz").read_bytes() == w.web
        # push the mirror into a registry; charts and images pull from there
        r = cli("push", "--mirror", w.mirror, "--to", f"{target.url}/air")
        assert r.code == 0, r.err
        out = tmp_path / "from-push"
        oras.client.OrasClient(hostname=target.host, insecure=True).pull(target=f"{target.host}/air/charts/web:1.0.0",
                                                                         outdir=str(out))
        assert (out / "web-1.0.0.tgz").read_bytes() == w.web
        manifest = skopeo_inspect(f"docker://{target.host}/air/charts/web:1.0.0", raw=True)
        assert manifest["config"]["mediaType"] == HELM_CONFIG and manifest["layers"][0]["mediaType"] == HELM_CONTENT
        api_repo = next(i["name"] for i in w.lock["images"] if (i.get("chart") or {}).get("name") == "api").split("/", 1)[1]
        # helm push names no layer (oras pull would skip it): the manifest and the blob by the API
        manifest = skopeo_inspect(f"docker://{target.host}/air/{api_repo}:1.2.0", raw=True)
        layer = manifest["layers"][0]
        assert layer["mediaType"] == HELM_CONTENT and layer["digest"] == f"sha256:{hashlib.sha256(w.api).hexdigest()}"
        blob = requests.get(f"{target.url}/v2/air/{api_repo}/blobs/{layer['digest']}", timeout=10)
        assert blob.content == w.api
        for image in ("library/app-a:1.0", "team/app-b:2.0"):
            skopeo("copy", "--src-tls-verify=false", f"docker://{target.host}/air/library/app-a:1.0" if "app-a" in image
                   else f"docker://{target.host}/air/team/app-b:2.0", f"dir:{tmp_path / image.replace('/', '_')}")
        if shutil.which("podman"):
            _podman_pull(f"{target.host}/air/team/app-b:2.0", tmp_path)
    finally:
        target.stop()
        srv.stop()


def _podman_pull(ref: str, tmp_path: Path) -> None:
    """podman pulls the image a chart named from the registry filled by push, into its own store
    (rootful, vfs driver, under tmp_path: nothing of the host's container storage is touched)."""
    import tempfile

    storage = Path(tempfile.mkdtemp(prefix="gs-podman-"))  # podman wants a runroot of at most 50 characters
    try:
        _podman_pull_into(ref, tmp_path, storage)
    finally:
        subprocess.run(["podman", "--storage-driver", "vfs", "--root", str(storage / "root"), "--runroot",
                        str(storage / "run"), "system", "reset", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(storage, ignore_errors=True)


def _podman_pull_into(ref: str, tmp_path: Path, storage: Path) -> None:
    conf = tmp_path / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{storage}/root"\nrunroot = "{storage}/run"\n')
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CONTAINERS_STORAGE_CONF": str(conf), "HOME": str(tmp_path)}
    r = subprocess.run(["podman", "--storage-driver", "vfs", "--root", str(storage / "root"), "--runroot",
                        str(storage / "run"), "pull", "--tls-verify=false", ref], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(["podman", "--storage-driver", "vfs", "--root", str(storage / "root"), "--runroot",
                        str(storage / "run"), "image", "inspect", ref], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)[0]["Architecture"] == "amd64"


def test_a_lock_made_elsewhere_fetches_the_http_chart_again(charts_world, tmp_path):
    """bundle create --lock in a fresh cache: the HTTP chart comes again by its pinned sha256 and
    its OCI manifest is rebuilt with the lock's digest (both sides compute the same bytes)."""
    w = charts_world
    ch = new_channel(tmp_path, "prod")
    r = cli("bundle", "create", "-f", w.spec, "--lock", w.base / "g.lock", "--state", ch.state, "--key", ch.keys[0],
            "-o", tmp_path / "out", "--cache", tmp_path / "fresh-cache")
    assert r.code == 0, r.err


# -- reading charts: never rendered, hostile archives refused in one line ---------------------------
def test_images_are_read_from_values_and_literal_template_lines():
    archive = chart_archive("x", "0.1.0", app_version="9.9", values=(
        "image:\n  repository: org/app\n  tag: ''\n"                      # tag from appVersion
        "sidecar:\n  image: quay.io/org/side:1.2\n"
        "db:\n  image:\n    registry: ghcr.io\n    repository: org/db\n    digest: sha256:" + "a" * 64 + "\n"
        "bad:\n  image: 'NOT A REF'\n"),
        templates={"a.yaml": "image: docker.io/library/busybox:1.36 # literal\n"
                             "image: {{ .Values.image.repository }}:{{ .Values.image.tag }}\n",
                   "_helpers.tpl": "{{- define \"x\" -}}image: {{ . }}{{- end -}}\n"})
    facts = read_chart(archive, "x.tgz")
    good, skipped = images_named(facts)
    assert good == ["docker.io/org/app:9.9", "quay.io/org/side:1.2", f"ghcr.io/org/db@sha256:{'a' * 64}",
                    "docker.io/library/busybox:1.36"]
    assert skipped == ["NOT A REF"]


def _member(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = kind, target
    return ti


@pytest.mark.parametrize("make, reason", [
    (lambda: targz({"x/Chart.yaml": "name: x\nversion: 1\n", "../evil/values.yaml": "a: 1"}), "escapes the chart"),
    (lambda: targz({"/abs/Chart.yaml": "name: x\nversion: 1\n"}), "escapes the chart"),
    (lambda: targz({"x/Chart.yaml": "name: x\nversion: 1\n"}, [_member("x/values.yaml", tarfile.SYMTYPE, "/etc/passwd")]),
     "link or a special file"),
    (lambda: targz({"x/Chart.yaml": "name: x\nversion: 1\n"}, [_member("x/templates/h.yaml", tarfile.LNKTYPE, "x/Chart.yaml")]),
     "link or a special file"),
    (lambda: targz({"x/Chart.yaml": "name: x\nversion: 1\n"}, [_member("x/fifo", tarfile.FIFOTYPE)]), "link or a special file"),
    (lambda: targz({"x/Chart.yaml": "name: x\nversion: 1\n", "y/values.yaml": "a: 1"}), "two top directories"),
    (lambda: targz({"x/Chart.yaml": "name: x\nversion: 1\n", "x/values.yaml": "\0" * (200 << 20)}), "limit 4194304"),
    (lambda: targz({"x/Chart.yaml": "name: x\nversion: 1\n", "x/files/zeros.bin": "\0" * (200 << 20)}), "decompressed"),
    (lambda: targz({f"x/f{i}": "" for i in range(5001)}), "entries"),
    (lambda: targz({"x/Chart.yaml": "!!python/object/apply:os.system ['true']\n"}), "not YAML"),
    (lambda: targz({"x/Chart.yaml": "name: x\nversion: 1\n", "x/values.yaml": "a: &a [*a, *a]\n" + "b: [" * 10000}),
     "not YAML"),
    (lambda: targz({"x/values.yaml": "a: 1\n"}), "no Chart.yaml"),
    (lambda: targz({"x/Chart.yaml": "name: ../../etc\nversion: 1\n"}), "not one a chart repository can publish"),
    (lambda: targz({"x/Chart.yaml": "name: x\nversion: 1.0/../../a\n"}), "not one a chart repository can publish"),
    (lambda: b"\x1f\x8b\x08\x00garbage", "not a readable chart archive"),
])
def test_hostile_chart_archives_are_refused_in_one_line(make, reason):
    with pytest.raises(ChartError) as e:
        read_chart(make(), "evil.tgz")
    assert reason in str(e.value) and "evil.tgz" in str(e.value) and "\n" not in str(e.value)


def test_a_values_alias_bomb_is_refused_not_walked():
    """Ten aliases of ten aliases, seven deep: 10^7 nodes from a few hundred bytes."""
    levels = ["l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    levels += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 8)]
    facts = read_chart(targz({"x/Chart.yaml": "name: x\nversion: 1\n", "x/values.yaml": "\n".join(levels) + "\n"}), "bomb.tgz")
    with pytest.raises(ChartError, match="bomb: values.yaml: more than 200000 nodes"):
        images_named(facts, "bomb")


def _repo_spec(tmp_path: Path, url: str, name: str = "api", version: str = "1.2.0") -> Path:
    spec = tmp_path / "g.yaml"
    spec.write_text(yaml.safe_dump({"name": "c", "channel": "prod",
                                    "charts": {"refs": [{"repo": url, "name": name, "version": version}]}}))
    return spec


@pytest.mark.parametrize("index, archive, reason", [
    ("- a list\n", None, "not a mapping"),
    ("entries: 3\n", None, "no entries mapping"),
    (None, b"tampered", "does not match the index's sha256"),
    ("entries:\n  api:\n  - {name: api, version: 1.2.0, urls: [api-1.2.0.tgz]}\n", None, "no sha256 digest"),
    ("entries:\n  api:\n  - {name: api, version: 1.2.0, digest: '" + "0" * 64 + "', urls: ['file:///etc/passwd']}\n", None,
     "not http(s)"),
    ("entries:\n  api:\n  - {name: api, version: 1.0.0, digest: '" + "0" * 64 + "', urls: [a.tgz]}\n", None, "no version 1.2.0"),
    ("!!python/name:os.system\n", None, "not YAML"),
])
def test_hostile_chart_repositories_are_refused_in_one_line(tmp_path, index, archive, reason):
    good = chart_archive("api", "1.2.0")
    repo = tmp_path / "repo"
    (repo / "simple").mkdir(parents=True)
    (repo / "api-1.2.0.tgz").write_bytes(archive or good)
    (repo / "index.yaml").write_text(index if index is not None else _index_yaml("api", "1.2.0", good))
    srv = static_server(repo)
    try:
        r = cli("resolve", "-f", _repo_spec(tmp_path, srv.url.removesuffix("simple/")), "-o", tmp_path / "l",
                "--cache", tmp_path / "c")
    finally:
        srv.stop()
    assert r.code != 0 and reason in r.err and len(_errors(r.err)) == 1, r.err
    assert "Traceback" not in r.err and "internal error" not in r.err.lower()


def test_repository_credentials_stay_out_of_the_lock(tmp_path):
    api = chart_archive("api", "1.2.0")
    repo = tmp_path / "repo"
    (repo / "simple").mkdir(parents=True)
    (repo / "api-1.2.0.tgz").write_bytes(api)
    (repo / "index.yaml").write_text(_index_yaml("api", "1.2.0", api))
    srv = static_server(repo)
    try:
        url = srv.url.removesuffix("simple/").replace("http://", "http://robot:s3cret-pass@")
        r = cli("resolve", "-f", _repo_spec(tmp_path, url), "-o", tmp_path / "l", "--cache", tmp_path / "c")
    finally:
        srv.stop()
    assert r.code == 0, r.err
    lock = (tmp_path / "l").read_text()
    assert "s3cret-pass" not in lock and "robot" not in lock and "api-1.2.0.tgz" in lock


def test_a_chart_repository_serving_a_hostile_archive_is_refused(tmp_path):
    evil = targz({"api/Chart.yaml": "name: api\nversion: 1.2.0\n"}, [_member("api/values.yaml", tarfile.SYMTYPE, "/etc/shadow")])
    repo = tmp_path / "repo"
    (repo / "simple").mkdir(parents=True)
    (repo / "api-1.2.0.tgz").write_bytes(evil)
    (repo / "index.yaml").write_text(_index_yaml("api", "1.2.0", evil))
    srv = static_server(repo)
    try:
        r = cli("resolve", "-f", _repo_spec(tmp_path, srv.url.removesuffix("simple/")), "-o", tmp_path / "l",
                "--cache", tmp_path / "c")
    finally:
        srv.stop()
    assert r.code != 0 and "link or a special file" in r.err and len(_errors(r.err)) == 1, r.err


def test_an_oci_reference_that_is_not_a_chart_is_refused(source_registry, tmp_path):
    spec = tmp_path / "g.yaml"
    spec.write_text(yaml.safe_dump({"name": "c", "channel": "prod", "charts": {
        "insecure": [source_registry.host], "refs": [f"oci://{source_registry.host}/team/app-b:2.0"]}}))
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l", "--cache", tmp_path / "c")
    assert r.code == 2 and "not a Helm chart" in r.err, r.err


def test_spec_errors_name_the_line(tmp_path):
    spec = tmp_path / "g.yaml"
    spec.write_text("name: c\nchannel: prod\ncharts:\n  refs:\n    - https://example.org/chart:1.0\n")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "l")
    assert r.code == 2 and f"{spec}:5" in r.err and "oci://" in r.err


def test_a_real_helm_client_pulls_from_serve_and_from_push(charts_world, tmp_path):
    """Helm's own Go SDK (helm-python-sdk: libhelm_c over ctypes, offline) pulls both charts from
    ``serve`` (the chart repository and /v2/) and from a registry filled by push. The charts are
    loaded and their metadata and values read; they are not rendered: nothing that crossed is
    executed or templated, in tests either (the project's rule)."""
    helm = pytest.importorskip("helm_python")
    w = charts_world
    port = free_port()
    srv = Server([GAPSYNC, "serve", "--mirror", str(w.mirror), "--listen", f"127.0.0.1:{port}"], f"http://127.0.0.1:{port}/v2/")
    target = Registry(tmp_path / "air-registry")
    try:
        d1, d2, d3 = tmp_path / "repo", tmp_path / "serve-oci", tmp_path / "pushed"
        for d in (d1, d2, d3):
            d.mkdir()
        helm.pull("api", repo_url=f"http://127.0.0.1:{port}/charts", version="1.2.0", destination=d1)
        assert (d1 / "api-1.2.0.tgz").read_bytes() == w.api
        helm.pull(f"oci://127.0.0.1:{port}/charts/web", version="1.0.0", destination=d2, plain_http=True)
        assert (d2 / "web-1.0.0.tgz").read_bytes() == w.web
        assert cli("push", "--mirror", w.mirror, "--to", f"{target.url}/air").code == 0
        helm.pull(f"oci://{target.host}/air/charts/web", version="1.0.0", destination=d3, plain_http=True)
        chart = helm.Chart.load_archive((d3 / "web-1.0.0.tgz").read_bytes())
        assert chart.name == "web" and chart.version == "1.0.0"
        assert chart.values["image"]["repository"] == "library/app-a"
    finally:
        target.stop()
        srv.stop()
