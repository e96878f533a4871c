"""Exactly the lock, per target (issue 17): target views, hashed exports, patch-version targets.

The external index is built so that the union index would give a client on this machine
(CPython 3.11.7, glibc 2.36) NEWER files than its target's lock names:
- ``argon`` 2.0 exists only as a manylinux_2_28 wheel, carried for the cp312/manylinux_2_28
  target; the cp311/manylinux_2_17 target locks argon 1.0;
- ``soup`` 2.0 needs Python >= 3.11.5, carried for cp312; target "3.11" (resolved as 3.11.0)
  locks soup 1.0, and pip on 3.11.7 would take 2.0 from the union.
Real pip and uv install from the target's view and from its export and must get the lock's
versions; ``pip download --platform`` from the other target's view must get exactly its files.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.channels import new_channel
from tests.support.cli import ARCH, cli, isolated_env
from tests.support.servers import static_server
from tests.support.wheels import make_wheel, write_index

T311 = f"cp311-manylinux_2_17_{ARCH}"
T312 = f"cp312-manylinux_2_28_{ARCH}"


def _spec(path: Path, url: str, targets: list[tuple[str, str]], extra: str = "") -> Path:
    ts = "".join(f'    - {{python: "{p}", platform: {plat}}}\n' for p, plat in targets)
    path.write_text(f"name: t\nchannel: prod\npython:\n  index_url: {url}\n  requirements: [app, soup]\n"
                    f"  targets:\n{ts}{extra}")
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ext17")
    files = root / "files"
    make_wheel(files, "app", "1.0", requires=("argon>=1",))
    make_wheel(files, "argon", "1.0")
    make_wheel(files, "argon", "2.0", tag=f"py3-none-manylinux_2_28_{ARCH}")
    make_wheel(files, "soup", "1.0")
    make_wheel(files, "soup", "2.0", requires_python=">=3.11.5")
    write_index(root)
    server = static_server(root)
    base = tmp_path_factory.mktemp("w17")
    ch = new_channel(base)
    spec = _spec(base / "gapsync.yaml", server.url,
                 [("3.11", f"manylinux_2_17_{ARCH}"), ("3.12", f"manylinux_2_28_{ARCH}")])
    lock = base / "gapsync.lock"
    r = cli("resolve", "-f", spec, "-o", lock, "--cache", base / "cache")
    assert r.code == 0, r.err
    r = cli("bundle", "create", "-f", spec, "--lock", lock, "--state", ch.state, "-o", base / "out",
            "--cache", base / "cache", "--key", ch.keys[0])
    assert r.code == 0, r.err
    mirror = base / "mirror"
    assert cli("trust", "pin", ch.root, "--mirror", mirror).code == 0
    r = cli("import", next((base / "out").glob("*.gapsync")), "--mirror", mirror)
    assert r.code == 0, r.err
    yield SimpleNamespace(**vars(ch), url=server.url, spec=spec, lock=json.loads(lock.read_text()), mirror=mirror)
    server.stop()


def _locked(lock: dict, target: str) -> dict[str, str]:
    return dict(p.split("==") for p in lock["python"]["pins"][target])


def _venv(tmp: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp)], check=True)
    return tmp


def _pip(*args: str, venv: Path | None = None) -> subprocess.CompletedProcess:
    where = ["--python", str(venv / "bin/python")] if venv else []
    return subprocess.run([sys.executable, "-m", "pip", *where, *args], capture_output=True, text=True, env=isolated_env())


def _installed(venv: Path) -> dict[str, str]:
    out = _pip("list", "--isolated", "--format", "json", "--path", str(next(venv.glob("lib/python*/site-packages")))).stdout
    return {d["name"]: d["version"] for d in json.loads(out) if d["name"] in ("app", "argon", "soup")}


def test_the_lock_differs_per_target_and_the_union_would_give_newer(world):
    assert _locked(world.lock, T311) == {"app": "1.0", "argon": "1.0", "soup": "1.0"}
    assert _locked(world.lock, T312) == {"app": "1.0", "argon": "2.0", "soup": "2.0"}
    union = (world.mirror / "pypi/simple/argon/index.html").read_text()
    assert "argon-2.0" in union and "argon-1.0" in union


def test_target_view_holds_exactly_the_targets_files(world):
    view = world.mirror / "pypi/targets/prod" / T311 / "simple"
    assert sorted(p.name for p in view.iterdir() if p.is_dir()) == ["app", "argon", "soup"]
    page = (view / "argon/index.html").read_text()
    assert "argon-1.0-py3-none-any.whl" in page and "argon-2.0" not in page
    doc = json.loads((view / "soup/index.json").read_text())
    assert doc["versions"] == ["1.0"] and [f["filename"] for f in doc["files"]] == ["soup-1.0-py3-none-any.whl"]
    f = doc["files"][0]
    assert f["hashes"]["sha256"] and f["core-metadata"]["sha256"]
    # relative links to the one copy of each file: no second copy under targets/
    target = (view / "soup" / f["url"]).resolve()
    assert target == (world.mirror / "pypi/files/soup-1.0-py3-none-any.whl").resolve() and target.is_file()
    assert not [p for p in (world.mirror / "pypi/targets").rglob("*.whl")]
    v312 = json.loads((world.mirror / "pypi/targets/prod" / T312 / "simple/argon/index.json").read_text())
    assert v312["versions"] == ["2.0"]


def test_pip_from_the_view_gets_the_lock_and_from_the_union_gets_newer(world, tmp_path):
    for where, expect in ((f"targets/prod/{T311}/simple", {"app": "1.0", "argon": "1.0", "soup": "1.0"}),
                          ("simple", {"app": "1.0", "argon": "2.0", "soup": "2.0"})):
        venv = _venv(tmp_path / where.replace("/", "_"))
        url = (world.mirror / "pypi" / where).as_uri() + "/"
        r = _pip("install", "--isolated", "--no-cache-dir", "--index-url", url, "app", "soup", venv=venv)
        assert r.returncode == 0, r.stdout + r.stderr
        assert _installed(venv) == expect, where


def test_export_requirements_installs_with_hashes_checked(world, tmp_path):
    req = tmp_path / "req.txt"
    view = (world.mirror / "pypi/targets/prod" / T311 / "simple").as_uri() + "/"
    r = cli("export", "--mirror", world.mirror, "--target", T311, "-o", req, "--index-url", view)
    assert r.code == 0, r.err
    text = req.read_text()
    assert "argon==1.0" in text and "--hash=sha256:" in text and "argon==2.0" not in text
    venv = _venv(tmp_path / "v")
    r = _pip("install", "--isolated", "--no-cache-dir", "--require-hashes", "-r", str(req), venv=venv)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _installed(venv) == _locked(world.lock, T311)
    # a wrong hash in the export is refused by pip: the hashes are really checked
    bad = tmp_path / "bad.txt"
    bad.write_text(text.replace(text.split("--hash=sha256:")[1][:64], "0" * 64, 1))
    r = _pip("install", "--isolated", "--no-cache-dir", "--require-hashes", "-r", str(bad), venv=_venv(tmp_path / "v2"))
    assert r.returncode != 0 and "HASH" in (r.stdout + r.stderr).upper()


def test_export_pylock_syncs_with_uv(world, tmp_path):
    lockfile = tmp_path / "pylock.toml"
    r = cli("export", "--mirror", world.mirror, "--target", T311, "--format", "pylock", "-o", lockfile)
    assert r.code == 0, r.err
    import tomllib

    doc = tomllib.loads(lockfile.read_text())
    assert doc["lock-version"] == "1.0" and {p["name"]: p["version"] for p in doc["packages"]} == _locked(world.lock, T311)
    uv = str(Path(sys.executable).with_name("uv"))
    env = isolated_env(UV_CACHE_DIR=str(tmp_path / "uvcache"))
    subprocess.run([uv, "venv", "--no-config", "--python", sys.executable, str(tmp_path / "v")], check=True, env=env,
                   capture_output=True)
    r = subprocess.run([uv, "pip", "sync", "--no-config", "--python", str(tmp_path / "v/bin/python"), str(lockfile)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert _installed(tmp_path / "v") == _locked(world.lock, T311)
    # pip (26: pylock.toml support, experimental) installs the same files from it
    venv = _venv(tmp_path / "pipv")
    r = _pip("install", "--isolated", "--no-cache-dir", "-r", str(lockfile), venv=venv)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _installed(venv) == _locked(world.lock, T311)


def test_pip_download_for_another_target_gets_exactly_its_files(world, tmp_path):
    url = (world.mirror / "pypi/targets/prod" / T312 / "simple").as_uri() + "/"
    r = _pip("download", "--isolated", "--no-cache-dir", "--only-binary=:all:", "--platform", f"manylinux_2_28_{ARCH}",
             "--python-version", "3.12", "--implementation", "cp", "--index-url", url, "-d", str(tmp_path / "d"),
             "app", "soup")
    assert r.returncode == 0, r.stdout + r.stderr
    want = sorted(f["filename"] for f in world.lock["python"]["files"] if T312 in f["targets"])
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == want


def test_export_refuses_an_edited_targets_metadata(world, tmp_path):
    import shutil

    m = tmp_path / "m"
    shutil.copytree(world.mirror, m, symlinks=True)
    tj = m / ".gapsync/trust/prod/current/targets.json"
    doc = json.loads(tj.read_text())
    for path, tf in doc["signed"]["targets"].items():
        if path.startswith("python/argon/argon-2.0") and tf["custom"]["kind"] == "python":
            tf["custom"]["tags"].append(T311)  # smuggle the newer file into the cp311 export
    tj.unlink()
    tj.write_text(json.dumps(doc))
    r = cli("export", "--mirror", m, "--target", T311)
    assert r.code == 3 and "does not verify" in r.err, r.err
    r = cli("export", "--mirror", world.mirror, "--target", "cp311-../../etc")
    assert r.code == 2


def test_a_patch_version_target_resolves_as_that_interpreter(world, tmp_path):
    spec = _spec(tmp_path / "gapsync.yaml", world.url, [("3.11.7", f"manylinux_2_17_{ARCH}")])
    r = cli("resolve", "-f", spec, "-o", tmp_path / "gapsync.lock", "--cache", tmp_path / "cache")
    assert r.code == 0, r.err
    lock = json.loads((tmp_path / "gapsync.lock").read_text())
    assert _locked(lock, T311)["soup"] == "2.0"  # 3.11.7 may have it; "3.11" (3.11.0) may not
    bad = _spec(tmp_path / "bad.yaml", world.url, [("3.11.x", f"manylinux_2_17_{ARCH}")])
    r = cli("resolve", "-f", bad, "-o", tmp_path / "x.lock", "--cache", tmp_path / "cache")
    assert r.code == 2 and "3.11.7" in r.err


def test_different_versions_are_reported_and_same_versions_aligns_them(world, tmp_path):
    targets = [("3.11", f"manylinux_2_17_{ARCH}"), ("3.12", f"manylinux_2_28_{ARCH}")]
    spec = _spec(tmp_path / "gapsync.yaml", world.url, targets)
    r = cli("resolve", "-f", spec, "-o", tmp_path / "a.lock", "--cache", tmp_path / "cache")
    assert r.code == 0, r.err
    assert "different versions of 2 project(s)" in r.err and "argon: 1.0 (cp311" in r.err, r.err
    spec = _spec(tmp_path / "same.yaml", world.url, targets, extra="  same_versions: true\n")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "b.lock", "--cache", tmp_path / "cache")
    assert r.code == 0, r.err
    assert "different versions" not in r.err, r.err
    lock = json.loads((tmp_path / "b.lock").read_text())
    assert _locked(lock, T311) == _locked(lock, T312) == {"app": "1.0", "argon": "1.0", "soup": "1.0"}
    # a project whose lowest version has no file for one target keeps its own version there, reported
    bad = _spec(tmp_path / "bad.yaml", world.url, targets, extra="  same_versions: yes please\n")
    assert cli("resolve", "-f", bad, "-o", tmp_path / "c.lock").code == 2


def test_bundle_json_names_the_differences(world):
    bundle = next((world.base / "out").glob("*.gapsync"))
    r = cli("bundle", "inspect", bundle, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    diffs = doc["bundle"]["python_version_differences"]
    assert diffs == {"argon": {T311: "1.0", T312: "2.0"}, "soup": {T311: "1.0", T312: "2.0"}}
    r = cli("bundle", "inspect", bundle)
    assert "full bundle (carries every blob)" in r.out and "argon: 1.0 (cp311" in r.out, r.out



def test_a_release_without_a_target_removes_its_view_and_a_failed_publish_undoes_it(world, tmp_path, monkeypatch):
    import shutil

    from gapsync.errors import PublishError
    from gapsync.mirror.importer import import_bundle
    from gapsync.mirror.targets.oci_layout import OciLayout
    from tests.support.trees import snapshot

    m = tmp_path / "m"
    shutil.copytree(world.mirror, m, symlinks=True)
    spec = _spec(tmp_path / "one.yaml", world.url, [("3.11", f"manylinux_2_17_{ARCH}")])
    r = cli("bundle", "create", "-f", spec, "--state", world.state, "-o", tmp_path / "out", "--cache",
            world.base / "cache", "--key", world.keys[0])
    assert r.code == 0, r.err
    bundle = next((tmp_path / "out").glob("*.gapsync"))
    before = snapshot(m)

    def refuse(self, targets, blob_path, fs):
        raise PublishError("oci: refused for the test")

    monkeypatch.setattr(OciLayout, "publish", refuse)
    with pytest.raises(PublishError):
        import_bundle(bundle, m)
    assert snapshot(m) == before  # the views (and the removed one) are as they were
    monkeypatch.undo()
    r = cli("import", bundle, "--mirror", m)
    assert r.code == 0, r.err
    assert not (m / "pypi/targets/prod" / T312).exists()
    assert (m / "pypi/targets/prod" / T311 / "simple/argon/index.html").is_file()
    assert (m / "pypi/simple/argon/index.html").read_text().count(".whl<") == 2  # the union keeps what came before
    r = cli("export", "--mirror", m, "--target", T312)
    assert r.code == 2 and "not a target of any imported channel" in r.err


@pytest.mark.parametrize("bad", ["../../../../etc", "cp311-manylinux_2_17_x86_64/../../x", "cp311-" + "a" * 200, ""])
def test_a_signed_target_id_that_is_not_one_is_refused(world, tmp_path, bad):
    """A signer's mistake or a stolen key: the tags become directory names on the air side."""
    import shutil

    from tests.support.trees import snapshot

    lock = json.loads((world.base / "gapsync.lock").read_text())
    lock["python"]["files"][0]["targets"].append(bad)
    (tmp_path / "bad.lock").write_text(json.dumps(lock))
    state = tmp_path / "state"
    shutil.copytree(world.state, state)
    r = cli("bundle", "create", "-f", world.spec, "--lock", tmp_path / "bad.lock", "--state", state, "-o",
            tmp_path / "out", "--cache", world.base / "cache", "--key", world.keys[0])
    assert r.code == 0, r.err
    m = tmp_path / "m"
    shutil.copytree(world.mirror, m, symlinks=True)
    before = snapshot(m)
    r = cli("import", next((tmp_path / "out").glob("*.gapsync")), "--mirror", m)
    assert r.code == 3 and "bad target ids" in r.err, r.err
    assert {k: v for k, v in snapshot(m).items() if not k.startswith(".gapsync/")} == \
        {k: v for k, v in before.items() if not k.startswith(".gapsync/")}
    assert not list(m.rglob("etc"))


def test_a_namespaced_channel_has_its_views_and_export_in_its_namespace(world, tmp_path):
    m = tmp_path / "m"
    assert cli("trust", "pin", world.root, "--mirror", m, "--namespace", "team").code == 0
    r = cli("import", next((world.base / "out").glob("*.gapsync")), "--mirror", m)
    assert r.code == 0, r.err
    view = m / "ns/team/pypi/targets/prod" / T311 / "simple"
    assert "argon-2.0" not in (view / "argon/index.html").read_text()
    r = cli("export", "--mirror", m, "--target", T311)
    assert r.code == 0 and "argon==1.0" in r.out, r.err


def test_same_versions_keeps_a_targets_own_version_where_the_common_one_does_not_fit(tmp_path):
    root = tmp_path / "ext"
    make_wheel(root / "files", "zeta", "1.0", requires_python="<3.12")  # what cp311 gets; not installable on 3.12
    make_wheel(root / "files", "zeta", "2.0", requires_python=">=3.12")
    make_wheel(root / "files", "soup", "1.0")
    make_wheel(root / "files", "soup", "2.0", requires_python=">=3.12")
    write_index(root)
    server = static_server(root)
    try:
        spec = tmp_path / "gapsync.yaml"
        spec.write_text(f"name: t\nchannel: prod\npython:\n  index_url: {server.url}\n  requirements: [zeta, soup]\n"
                        f"  same_versions: true\n  targets:\n"
                        f'    - {{python: "3.11", platform: manylinux_2_17_{ARCH}}}\n'
                        f'    - {{python: "3.12", platform: manylinux_2_17_{ARCH}}}\n')
        r = cli("resolve", "-f", spec, "-o", tmp_path / "gapsync.lock", "--cache", tmp_path / "cache")
        assert r.code == 0, r.err
        lock = json.loads((tmp_path / "gapsync.lock").read_text())
        t312 = f"cp312-manylinux_2_17_{ARCH}"
        assert _locked(lock, T311)["zeta"] == "1.0" and _locked(lock, t312)["zeta"] == "2.0"
        assert "zeta: 1.0 (cp311" in r.err  # still reported
    finally:
        server.stop()


def test_the_report_has_a_line_for_the_version_differences():
    from gapsync.reports.html import render_html

    page = render_html({"name": "t", "python_version_differences": {"pandas": {T311: "2.3.2", T312: "<b>3.1.1"}}})
    assert "Versions differ between targets" in page and f"pandas: 2.3.2 ({T311})" in page
    assert "<b>3.1.1" not in page and "&lt;b&gt;3.1.1" in page  # escaped like every field
    assert "Versions differ" not in render_html({"name": "t"})


def test_serve_answers_the_target_views(world, tmp_path):
    """gapsync serve: /targets/<channel>/<target-id>/simple/ negotiates PEP 691/503 like /simple/,
    its relative links reach /files/, and pip installs exactly the lock from it."""
    import urllib.error
    import urllib.parse
    import urllib.request

    from tests.support.cli import GAPSYNC
    from tests.support.servers import Server, free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = Server([GAPSYNC, "serve", "--mirror", str(world.mirror), "--listen", f"127.0.0.1:{port}"], f"{base}/simple/")
    try:
        view = f"{base}/targets/prod/{T311}/simple/"
        req = urllib.request.Request(f"{view}argon/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        with urllib.request.urlopen(req) as resp:
            assert resp.headers["Content-Type"].startswith("application/vnd.pypi.simple.v1+json")
            doc = json.load(resp)
        assert doc["versions"] == ["1.0"]
        with urllib.request.urlopen(urllib.parse.urljoin(f"{view}argon/", doc["files"][0]["url"])) as resp:
            assert hashlib.sha256(resp.read()).hexdigest() == doc["files"][0]["hashes"]["sha256"]
        with urllib.request.urlopen(f"{base}/targets/prod/{T311}/simple/Argon") as resp:  # normalized, redirected
            assert resp.url.endswith(f"/targets/prod/{T311}/simple/argon/") and b"argon-1.0" in resp.read()
        for bad in (f"/targets/prod/{T311}/files/x", "/targets/prod/cp311-../simple/", "/targets/../pypi/simple/",
                    f"/targets/nochannel/{T311}/simple/argon/", "/targets/prod/cp311-x/simple/argon/"):
            try:
                urllib.request.urlopen(base + bad)
                raise AssertionError(bad)
            except urllib.error.HTTPError as e:
                assert e.code == 404, bad
        venv = _venv(tmp_path / "v")
        r = _pip("install", "--isolated", "--no-cache-dir", "--index-url", view, "app", "soup", venv=venv)
        assert r.returncode == 0, r.stdout + r.stderr
        assert _installed(venv) == _locked(world.lock, T311)
        uv = str(Path(sys.executable).with_name("uv"))
        env = isolated_env(UV_CACHE_DIR=str(tmp_path / "uvcache"))
        subprocess.run([uv, "venv", "--no-config", "--python", sys.executable, str(tmp_path / "u")], check=True, env=env,
                       capture_output=True)
        r = subprocess.run([uv, "pip", "install", "--no-config", "--python", str(tmp_path / "u/bin/python"),
                            "--index-url", view, "app", "soup"], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        assert _installed(tmp_path / "u") == _locked(world.lock, T311)
    finally:
        server.stop()
