"""Filling the index servers a site already runs (issue 17): ``push --pypi`` and
``import --pypi-upload`` into REAL pypiserver and devpi-server instances on 127.0.0.1, then pip
installs from them. Credentials come from a .pypirc or the environment, never the command line;
a re-run uploads nothing; a server copy with other bytes is refused, not overwritten."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import cli, isolated_env
from tests.support.servers import Server, free_port

BIN = Path(sys.executable).parent


@pytest.fixture
def pypiserver(tmp_path):
    from passlib.apache import HtpasswdFile

    pkgs = tmp_path / "packages"
    pkgs.mkdir()
    ht = HtpasswdFile(str(tmp_path / "htpasswd"), new=True)
    ht.set_password("uploader", "s3cret%pw")
    ht.save()
    port = free_port()
    server = Server([str(BIN / "pypi-server"), "run", "-p", str(port), "-i", "127.0.0.1", "-P", str(tmp_path / "htpasswd"),
                     "-a", "update", str(pkgs)], f"http://127.0.0.1:{port}/simple/")
    yield f"http://127.0.0.1:{port}/", pkgs
    server.stop()


@pytest.fixture
def devpi(tmp_path):
    if not (BIN / "devpi-server").exists():
        pytest.skip("devpi-server not installed (pip install -e .[test])")
    d = tmp_path / "devpi"
    subprocess.run([str(BIN / "devpi-init"), "--serverdir", str(d), "--root-passwd", "rootpw"], check=True,
                   capture_output=True)
    port = free_port()
    server = Server([str(BIN / "devpi-server"), "--serverdir", str(d), "--host", "127.0.0.1", "--port", str(port)],
                    f"http://127.0.0.1:{port}/+api")
    url = f"http://127.0.0.1:{port}"
    client = ["--clientdir", str(tmp_path / "devpi-client")]
    for args in (["use", url], ["login", "root", "--password", "rootpw"], ["index", "-c", "dev", "bases=", "volatile=False"]):
        r = subprocess.run([str(BIN / "devpi"), *args, *client], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    yield f"{url}/root/dev/"
    server.stop()


@pytest.fixture
def imported(mirror, world):
    r = cli("import", world.b2, "--mirror", mirror)
    assert r.code == 0, r.err
    return mirror


def _pypirc(tmp_path: Path, url: str, user: str, password: str) -> Path:
    rc = tmp_path / "pypirc"
    rc.write_text(f"[distutils]\nindex-servers = site\n\n[site]\nrepository = {url}\nusername = {user}\n"
                  f"password = {password}\n")
    return rc


def _env(monkeypatch, **kw: str) -> None:
    for k in ("GAPSYNC_PYPI_USERNAME", "GAPSYNC_PYPI_PASSWORD", "TWINE_USERNAME", "TWINE_PASSWORD", "GAPSYNC_PYPIRC"):
        monkeypatch.delenv(k, raising=False)
    for k, v in kw.items():
        monkeypatch.setenv(k, v)


def _pip_install(index: str, tmp_path: Path, *reqs: str) -> str:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "--isolated",
                        "--no-cache-dir", "--index-url", index, *reqs], capture_output=True, text=True, env=isolated_env())
    assert r.returncode == 0, r.stdout + r.stderr
    return subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "freeze", "--isolated"],
                          capture_output=True, text=True, env=isolated_env()).stdout


def _inventory(mirror: Path) -> dict[str, str]:
    out = {}
    for p in (mirror / ".gapsync/pypi").glob("*.json"):
        out.update({fn: rec["sha256"] for fn, rec in json.loads(p.read_text())["files"].items()})
    return out


def test_push_into_pypiserver_with_pypirc_then_pip_installs(imported, pypiserver, tmp_path, monkeypatch):
    url, pkgs = pypiserver
    files = _inventory(imported)
    # no credentials: the server refuses, the error says where credentials go, nothing is half-done
    _env(monkeypatch, GAPSYNC_PYPIRC=str(tmp_path / "none"))
    r = cli("push", "--mirror", imported, "--pypi", url)
    assert r.code == 1 and "credentials" in r.err, r.err
    # a credential in the URL is refused outright (it would land in logs and the audit log)
    r = cli("push", "--mirror", imported, "--pypi", url.replace("http://", "http://uploader:s3cret%25pw@"))
    assert r.code == 2 and "s3cret" not in r.err
    _env(monkeypatch, GAPSYNC_PYPIRC=str(_pypirc(tmp_path, url, "uploader", "s3cret%pw")))
    r = cli("push", "--mirror", imported, "--pypi", url, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)["pypi"]
    assert sorted(doc["uploaded"]) == sorted(files) and doc["skipped"] == []
    import hashlib

    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in pkgs.iterdir()} == files
    # a re-run (resume) uploads nothing
    r = cli("push", "--mirror", imported, "--pypi", url, "--json")
    assert r.code == 0 and json.loads(r.out)["pypi"]["uploaded"] == [], r.err
    frozen = _pip_install(f"{url}simple/", tmp_path, "alpha", "gamma", "native")
    assert "alpha==1.0" in frozen and "beta==2.0" in frozen and "native==1.0" in frozen
    log = (imported / ".gapsync/audit.log").read_text()
    assert "pypi.upload" in log and "s3cret" not in log


def test_a_server_copy_with_other_bytes_is_refused_not_overwritten(imported, pypiserver, tmp_path, monkeypatch):
    url, pkgs = pypiserver
    victim = next(fn for fn in _inventory(imported) if fn.startswith("beta-2.0"))
    (pkgs / victim).write_bytes(b"not the approved wheel")
    _env(monkeypatch, GAPSYNC_PYPI_USERNAME="uploader", GAPSYNC_PYPI_PASSWORD="s3cret%pw")
    r = cli("push", "--mirror", imported, "--pypi", url)
    assert r.code == 1 and victim in r.err and "another sha256" in r.err, r.err
    assert (pkgs / victim).read_bytes() == b"not the approved wheel"


def test_a_damaged_mirror_file_is_not_uploaded(imported, pypiserver, tmp_path, monkeypatch):
    url, pkgs = pypiserver
    victim = next(fn for fn in _inventory(imported) if fn.startswith("alpha-"))
    f = imported / "pypi/files" / victim
    data = f.read_bytes()
    f.unlink()
    f.write_bytes(data[:-10] + b"0123456789")
    _env(monkeypatch, TWINE_USERNAME="uploader", TWINE_PASSWORD="s3cret%pw")
    r = cli("push", "--mirror", imported, "--pypi", url)
    assert r.code == 3 and victim in r.err and "damaged" in r.err, r.err
    assert not (pkgs / victim).exists()


def test_import_uploads_into_devpi_then_pip_installs(mirror, world, devpi, tmp_path, monkeypatch):
    _env(monkeypatch, GAPSYNC_PYPI_USERNAME="root", GAPSYNC_PYPI_PASSWORD="rootpw")
    r = cli("import", world.b1, "--mirror", mirror, "--pypi-upload", devpi, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert len(doc["pypi_upload"]["uploaded"]) >= 4, doc["pypi_upload"]
    # the next bundle: only its new files go up; a repeat of it uploads nothing and says nothing new
    r = cli("import", world.b2, "--mirror", mirror, "--pypi-upload", devpi, "--json")
    assert r.code == 0, r.err
    up = json.loads(r.out)["pypi_upload"]
    assert [f for f in up["uploaded"]] == [f for f in up["uploaded"] if f.startswith("newpy-")] and up["uploaded"]
    r = cli("import", world.b2, "--mirror", mirror, "--pypi-upload", devpi)
    assert r.code == 5, r.out + r.err
    frozen = _pip_install(f"{devpi}+simple/", tmp_path, "alpha", "gamma", "native")
    assert "alpha==1.0" in frozen and "beta==2.0" in frozen and "native==1.0" in frozen


def test_a_namespaced_channel_is_uploaded_from_its_namespace(world, pypiserver, tmp_path, monkeypatch):
    url, pkgs = pypiserver
    m = tmp_path / "m"
    assert cli("trust", "pin", world.root, "--mirror", m, "--namespace", "team").code == 0
    _env(monkeypatch, GAPSYNC_PYPI_USERNAME="uploader", GAPSYNC_PYPI_PASSWORD="s3cret%pw")
    r = cli("import", world.b1, "--mirror", m, "--pypi-upload", url, "--json")
    assert r.code == 0, r.err
    files = {p.name for p in (m / "ns/team/pypi/files").iterdir() if not p.name.endswith(".metadata")}
    assert set(json.loads(r.out)["pypi_upload"]["uploaded"]) == files and {p.name for p in pkgs.iterdir()} == files


# -- hostile index servers -------------------------------------------------------------------------
class _Hostile:
    """An index server on 127.0.0.1 that misbehaves as ``mode`` says; records what it received."""

    def __init__(self, mode: str, elsewhere: str = ""):
        import http.server
        import threading

        self.mode, self.elsewhere, self.seen = mode, elsewhere, []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.seen.append(("GET", self.path, self.headers.get("Authorization")))
                if self.path.rstrip("/") in ("/simple", "/+simple"):
                    return self._send(200, b"<html></html>")
                if outer.mode == "huge":
                    body = b"<a href='x'>x</a>" * (3 << 21)  # 48 MiB: over the cap
                    return self._send(200, body)
                if outer.mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", outer.elsewhere + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if outer.mode == "lies" and any(m == "POST" for m, *_ in outer.seen):
                    name = self.path.rstrip("/").rsplit("/", 1)[-1]
                    fn = outer.uploaded.get(name, "x.whl")
                    return self._send(200, f'<a href="/f/{fn}#sha256={"0" * 64}">{fn}</a>'.encode())
                return self._send(404, b"")

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                outer.seen.append(("POST", self.path, self.headers.get("Authorization")))
                import re as _re

                m = _re.search(rb'name="content"; filename="([^"]+)"', body)
                nm = _re.search(rb'name="name"\r\n\r\n([^\r]+)', body)
                if m and nm:
                    outer.uploaded[nm.group(1).decode().lower()] = m.group(1).decode()
                self._send(200, b"OK")

            def _send(self, code, body):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.uploaded: dict[str, str] = {}
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_hostile_index_servers(imported, tmp_path, monkeypatch):
    _env(monkeypatch, GAPSYNC_PYPI_USERNAME="uploader", GAPSYNC_PYPI_PASSWORD="s3cret")
    # a server that lists an upload with other bytes than were sent: refused, named
    liar = _Hostile("lies")
    try:
        r = cli("push", "--mirror", imported, "--pypi", liar.url)
        assert r.code == 1 and "after uploading" in r.err and "expected" in r.err, r.err
    finally:
        liar.stop()
    # a project page over the size cap: refused before it is parsed
    huge = _Hostile("huge")
    try:
        r = cli("push", "--mirror", imported, "--pypi", huge.url)
        assert r.code == 1 and "larger than" in r.err, r.err
        assert not [s for s in huge.seen if s[0] == "POST"]
    finally:
        huge.stop()
    # a page that redirects to another origin: "not here", and the credentials never go there
    other = _Hostile("lies")
    redirecting = _Hostile("redirect", elsewhere=other.url.rstrip("/"))
    try:
        cli("push", "--mirror", imported, "--pypi", redirecting.url)
        assert other.seen == [] or all(auth is None for _, _, auth in other.seen), other.seen
        assert any(auth for m, _, auth in redirecting.seen if m == "POST")  # the upload itself went to the server named
    finally:
        redirecting.stop()
        other.stop()
