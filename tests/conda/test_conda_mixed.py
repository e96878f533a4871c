"""Issue 19's "done when": a conda environment crosses in ONE bundle with Python packages, an
image and a model; on the air side it installs from the mirror alone for this machine's platform
(linux-64) and solves for the other (osx-arm64) from the mirror alone, while pip, the OCI layout
and the Hugging Face cache get their own share of the same bundle."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from tests.support.channels import new_channel
from tests.support.cli import ARCH, cli, isolated_env
from tests.support.conda import consume
from tests.support.models import config_json, safetensors_bytes
from tests.support.oci import build_layout, default_images


@pytest.mark.skipif(platform.machine() != "x86_64", reason="installs the linux-64 environment on this machine")
def test_conda_env_python_image_and_model_in_one_bundle(conda_upstream, ext_index, tmp_path):
    layout = tmp_path / "layout"
    images = build_layout(layout, default_images())
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(safetensors_bytes())
    (model / "config.json").write_bytes(config_json())
    spec = tmp_path / "gapsync.yaml"
    spec.write_text(
        "name: all\nchannel: prod\n"
        f"python:\n  index_url: {ext_index.url}\n  requirements: [alpha]\n"
        f"  targets:\n    - {{python: '3.11', platform: manylinux_2_17_{ARCH}}}\n"
        "images:\n  platforms: [linux/amd64]\n  refs:\n"
        f"    - {{oci_layout: {layout}, ref: app-a, as: 'team/app-a:3.0'}}\n"
        "models:\n  - path: ./model\n    name: team/tiny\n"
        f"conda:\n  channels: [{conda_upstream.url}]\n  specs: [gs-tool, gs-py]\n  platforms: [linux-64, osx-arm64]\n")
    ch = new_channel(tmp_path / "ch")
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "out",
            "--cache", tmp_path / "cache")
    assert r.code == 0, r.err
    bundles = list((tmp_path / "out").glob("*.gapsync"))
    assert len(bundles) == 1
    r = cli("bundle", "inspect", bundles[0], "--json")
    assert r.code == 0, r.err
    kinds = {a["kind"] for a in json.loads(r.out)["artifacts"]}
    assert kinds == {"python", "oci", "model", "conda"}, kinds

    mirror = tmp_path / "mirror"
    assert cli("trust", "pin", ch.root, "--mirror", mirror).code == 0
    r = cli("import", bundles[0], "--mirror", mirror)
    assert r.code == 0, r.err
    # conda: install for this machine and run the program, from the mirror alone
    prefix = tmp_path / "env"
    channel = (mirror / "conda" / "upstream").as_uri()
    consume(channel, "linux-64", prefix, ["gs-tool", "gs-py"], tmp_path / "rc")
    out = subprocess.run([str(prefix / "bin" / "gs-hello")], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "hello from gs-tool with gs-lib 1.0"
    # ... and solve for the other platform from the mirror alone
    recs = consume(channel, "osx-arm64", None, ["gs-tool", "gs-py"], tmp_path / "rc2")
    assert {r["subdir"] for r in recs} == {"osx-arm64", "noarch"} and len(recs) == 4
    # Python: pip installs from the same mirror's static index alone
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin/pip"), "install", "--isolated", "--no-cache-dir", "--no-index",
                        "--find-links", str(mirror / "pypi" / "files"), "alpha"], capture_output=True, text=True,
                       env=isolated_env())
    assert r.returncode == 0, r.stdout + r.stderr
    # the image and the model are published beside them
    index = json.loads((mirror / "oci" / "index.json").read_text())
    assert any(m.get("digest") == images["app-a"]["digest"] for m in index["manifests"])
    assert list(mirror.rglob("models--team--tiny")), "the model is in the Hugging Face cache layout"
