"""Issue 13 §5: credentials never travel and never leak.

Registry credentials go only to the registry's own origin: a Bearer realm on another host, port
or scheme gets no ``Authorization`` unless the credential configuration names that host (then
it gets that host's own credentials); realms must be https (loopback aside). User info and
tokens in any URL are used for their origin and recorded nowhere: not in the lock, the signed
metadata, the mirror, the audit logs, reports or messages.

Real servers on 127.0.0.1 (tests/support/servers/hostile_upstream.py logs every request's
Authorization header); the real command line for the end-to-end runs.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from gapsync.cli.exit_codes import ExitCode
from gapsync.errors import UpstreamError
from gapsync.oci_auth import Credentials
from gapsync.oci_client import RegistryClient
from tests.support.channels import new_channel
from tests.support.cli import cli
from tests.support.wheels import make_wheel

SECRET = "s3cretPW"
TOKEN = "t0kS3cret"


def basic(user: str, pw: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def token_requests(server) -> list[dict]:
    return [r for r in server.requests() if r["path"].split("?")[0] == "/token"]


def client(server, **kw) -> RegistryClient:
    host = server.base.removeprefix("http://")
    return RegistryClient(host, scheme="http", credentials=Credentials("alice", SECRET), **kw)


# -- where registry credentials go ----------------------------------------------------------------
def test_realm_on_the_registry_origin_gets_the_registry_credentials(upstream):  # noqa: F811
    """The control: without it the tests below could pass by never sending anything."""
    reg = upstream("realm")
    client(reg, use_docker_config=False).get_manifest("x", "1")
    assert [r["authorization"] for r in token_requests(reg)] == [basic("alice", SECRET)]


def test_realm_on_another_host_name_gets_no_credentials(upstream):  # noqa: F811
    # the realm names this very server under another host name (localhost, not 127.0.0.1)
    reg = upstream("realm", "--realm", "http://localhost:{port}/token")
    m = client(reg, use_docker_config=False).get_manifest("x", "1")  # an anonymous token still works
    assert m.digest.startswith("sha256:")
    sent = token_requests(reg)
    assert sent and all(r["authorization"] is None for r in sent), sent
    assert all(r["host"].startswith("localhost:") for r in sent)


def test_realm_on_another_port_gets_no_credentials_unless_configured_for_that_host(upstream, tmp_path, monkeypatch):  # noqa: F811
    realm = upstream("realm")  # only its /token is used
    reg = upstream("realm", "--realm", f"{realm.base}/token")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    # nothing configured for the realm's host: the registry's password must not go there
    client(reg).get_manifest("x", "1")
    assert token_requests(realm) and all(r["authorization"] is None for r in token_requests(realm))
    assert not token_requests(reg)
    # the credential configuration names the realm's host: it gets that host's own credentials
    (tmp_path / "docker").mkdir()
    realm_host = realm.base.removeprefix("http://")
    (tmp_path / "docker" / "config.json").write_text(json.dumps(
        {"auths": {realm_host: {"auth": base64.b64encode(b"bob:realm-pw").decode()}}}))
    client(reg).get_manifest("x", "1")
    assert token_requests(realm)[-1]["authorization"] == basic("bob", "realm-pw")
    assert not any(SECRET in (r["authorization"] or "") or r["authorization"] == basic("alice", SECRET)
                   for r in realm.requests())


@pytest.mark.parametrize("realm, reason", [
    ("file:///etc/passwd", "is not an http(s) URL"),
    ("ftp://127.0.0.1/token", "is not an http(s) URL"),
    ("http://registry.example.invalid/token", "realms must be https"),
])
def test_realm_that_is_not_https_is_refused_in_one_line(upstream, realm, reason):  # noqa: F811
    reg = upstream("realm", "--realm", realm)
    with pytest.raises(UpstreamError) as ei:
        client(reg, use_docker_config=False).get_manifest("x", "1")
    msg = str(ei.value)
    assert msg.startswith(reg.base.removeprefix("http://")) and reason in msg and "\n" not in msg


@pytest.mark.parametrize("mode, reason", [
    ("token-list", "token answer has no token string ('token' is list)"),
    ("token-huge", "cap"),
    ("manifest-list", "manifest is a JSON list, not an object"),
])
def test_malformed_registry_answers_are_one_line(upstream, mode, reason):  # noqa: F811
    reg = upstream(mode)
    with pytest.raises(UpstreamError) as ei:
        client(reg, use_docker_config=False).get_manifest("x", "1")
    assert reason in str(ei.value) and "\n" not in str(ei.value)


def test_registry_answers_through_the_cli_are_one_line_with_exit_1(upstream, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    for mode in ("manifest-list", "token-list"):
        reg = upstream(mode)
        host = reg.base.removeprefix("http://")
        spec = tmp_path / f"{mode}.yaml"
        spec.write_text(f"name: t\nchannel: prod\nimages:\n  insecure: ['{host}']\n  refs: ['{host}/x:1']\n")
        r = cli("resolve", "-f", spec, "-o", tmp_path / "lock", "--cache", tmp_path / "cache")
        assert r.code == ExitCode.ERROR, (mode, r.code, r.err)
        line = r.err.strip()
        assert len(line.splitlines()) == 1 and "internal error" not in line and host in line, line


# -- nothing recorded carries a credential ------------------------------------------------------
def _tree_text(root: Path) -> str:
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out.append(p.read_bytes().decode("latin-1"))
    return "\n".join(out)


def test_credentials_in_urls_reach_their_origin_and_are_recorded_nowhere(upstream, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("GAPSYNC_LOG_FORMAT", "json")
    files = tmp_path / "files"
    make_wheel(files, "pkg", "1.0")
    (files / "config.json").write_text('{"model_type": "demo"}')
    idx = upstream("listed", "--files", str(files))
    host = idx.base.removeprefix("http://")
    import hashlib

    cfg_sha = hashlib.sha256((files / "config.json").read_bytes()).hexdigest()
    spec = tmp_path / "gapsync.yaml"
    spec.write_text(f"name: t\nchannel: prod\npython:\n  index_url: http://alice:{SECRET}@{host}/simple/\n"
                    "  requirements: ['pkg']\n  targets:\n    - {python: '3.11', platform: manylinux_2_17_x86_64}\n"
                    f"models:\n  - {{url: 'http://{host}/files/config.json?token={TOKEN}', sha256: '{cfg_sha}'}}\n")
    ch = new_channel(tmp_path / "dmz", "prod")
    lock = tmp_path / "gapsync.lock"
    r = cli("resolve", "-f", spec, "-o", lock, "--cache", tmp_path / "cache")
    assert r.code == 0, r.err
    out = tmp_path / "out"
    r2 = cli("bundle", "create", "-f", spec, "--lock", lock, "--state", ch.state, "--key", ch.keys[0], "-o", out,
             "--cache", tmp_path / "cache2", "--report", tmp_path / "report.json")
    assert r2.code == 0, r2.err
    mirror = tmp_path / "mirror"
    assert cli("trust", "pin", ch.root, "--mirror", mirror).code == 0
    r3 = cli("import", next(out.glob("*.gapsync")), "--mirror", mirror)
    assert r3.code == 0, r3.err
    # used: the index and the file got Basic at their origin, the model URL its token
    reqs = idx.requests()
    assert any(q["path"].startswith("/files/pkg-1.0") and q["authorization"] == basic("alice", SECRET) for q in reqs), reqs
    assert any(q["path"] == f"/files/config.json?token={TOKEN}" for q in reqs), reqs
    # recorded nowhere
    recorded = {"lock": lock.read_text(), "bundle": _tree_text(out), "state": _tree_text(ch.state),
                "mirror": _tree_text(mirror), "report": (tmp_path / "report.json").read_text(),
                "messages": r.out + r.err + r2.out + r2.err + r3.out + r3.err}
    for what, text in recorded.items():
        assert SECRET not in text and TOKEN not in text and "alice" not in text, what
    assert json.loads(lock.read_text())["python"]["index_url"] == f"http://{host}/simple/"
    assert f"http://{host}/files/config.json?token=***" in lock.read_text()


def test_error_messages_and_audit_entries_carry_no_credentials(tmp_path):
    spec = tmp_path / "gapsync.yaml"
    spec.write_text(f"name: t\nchannel: prod\npython:\n  index_url: http://alice:{SECRET}@127.0.0.1:9/simple/\n"
                    "  requirements: ['pkg']\n  targets:\n    - {python: '3.11', platform: manylinux_2_17_x86_64}\n")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "lock", "--cache", tmp_path / "cache")
    assert r.code != 0 and "127.0.0.1:9" in r.err and SECRET not in r.err and "alice" not in r.err, r.err
    ch = new_channel(tmp_path / "dmz", "prod")
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o",
            "--cache", tmp_path / "cache")
    assert r.code != 0 and SECRET not in r.err
    audit = (ch.state / "audit.log").read_text()
    assert "bundle.create" in audit and SECRET not in audit and "alice" not in audit


def test_redaction_rules():
    from gapsync.redact import redact_text, redact_url

    assert redact_url("https://alice:pw@h:8443/simple/") == "https://h:8443/simple/"
    assert redact_url("https://h/f.whl?X-Amz-Signature=abc&v=1") == "https://h/f.whl?X-Amz-Signature=***&v=1"
    assert redact_url("https://h/simple/") == "https://h/simple/"
    assert redact_text("GET http://u:p@h/x?access_token=zz failed") == "GET http://h/x?access_token=*** failed"


def test_conda_channel_token_in_the_path_is_used_and_recorded_nowhere(tmp_path):
    """anaconda.org's private channels put the token in the path: ``…/t/<token>/<channel>``."""
    pytest.importorskip("rattler")
    import shutil
    import sys

    from tests.support.conda import build_channel
    from tests.support.servers import SERVERS, Server, free_port

    chan = build_channel(tmp_path / "build")
    served = tmp_path / "served"
    (served / "t" / TOKEN).mkdir(parents=True)
    shutil.move(str(chan), str(served / "t" / TOKEN / "upstream"))
    port, log = free_port(), tmp_path / "static.log"
    server = Server([sys.executable, str(SERVERS / "static_http.py"), str(served), str(port),
                     "--log", str(log)], f"http://127.0.0.1:{port}/t/{TOKEN}/upstream/noarch/repodata.json")
    try:
        spec = tmp_path / "g.yaml"
        spec.write_text(f"name: envs\nchannel: prod\nconda:\n  channels: ['http://127.0.0.1:{port}/t/{TOKEN}/upstream']\n"
                        "  specs: ['gs-tool']\n  platforms: ['linux-64']\n")
        ch = new_channel(tmp_path / "dmz", "prod")
        lock = tmp_path / "g.lock"
        r = cli("resolve", "-f", spec, "-o", lock, "--cache", tmp_path / "cache")
        assert r.code == 0, r.err
        r2 = cli("bundle", "create", "-f", spec, "--lock", lock, "--state", ch.state, "--key", ch.keys[0],
                 "-o", tmp_path / "out", "--cache", tmp_path / "cache2")
        assert r2.code == 0, r2.err
    finally:
        server.stop()
    mirror = tmp_path / "mirror"
    assert cli("trust", "pin", ch.root, "--mirror", mirror).code == 0
    r3 = cli("import", next((tmp_path / "out").glob("*.gapsync")), "--mirror", mirror)
    assert r3.code == 0, r3.err
    assert f"/t/{TOKEN}/upstream/" in log.read_text()  # used, at its origin
    for what, text in {"lock": lock.read_text(), "bundle": _tree_text(tmp_path / "out"), "state": _tree_text(ch.state),
                       "mirror": _tree_text(mirror), "messages": r.err + r2.err + r3.err}.items():
        assert TOKEN not in text, what
    assert "/t/***/upstream" in lock.read_text()


def test_registry_token_goes_to_no_other_origin(upstream):  # noqa: F811
    """An upload Location or any URL on another origin gets no Authorization (a Basic password
    or a token), whatever the registry answered."""
    reg, other = upstream("realm"), upstream("realm")
    c = client(reg, use_docker_config=False)
    c.get_manifest("x", "1")  # the token is fetched and cached for repository:x:pull
    c.request("GET", f"{other.base}/v2/x/manifests/1", scope="repository:x:pull").close()
    c.request("GET", f"{reg.base}/v2/x/manifests/1", scope="repository:x:pull").close()
    assert [r["authorization"] for r in other.requests() if r["path"].startswith("/v2/x/")] == [None]
    assert [r["authorization"] for r in reg.requests() if r["path"].startswith("/v2/x/")][-1] == "Bearer t0k3n"


def test_private_index_with_absolute_file_urls_resolves_and_bundles(upstream, tmp_path):  # noqa: F811
    """A private index (every page and file needs the password) that links its files by absolute
    URL on its own origin, as Artifactory and Nexus do: resolve (uv through gapsync's proxy) and
    create reach every file with the credentials, and record none."""
    files = tmp_path / "files"
    make_wheel(files, "pkg", "1.0")
    idx = upstream("listed-absolute", "--files", str(files), "--require-auth", f"alice:{SECRET}")
    host = idx.base.removeprefix("http://")
    spec = tmp_path / "gapsync.yaml"
    spec.write_text(f"name: t\nchannel: prod\npython:\n  index_url: http://alice:{SECRET}@{host}/simple/\n"
                    "  requirements: ['pkg']\n  targets:\n    - {python: '3.11', platform: manylinux_2_17_x86_64}\n")
    lock = tmp_path / "gapsync.lock"
    r = cli("resolve", "-f", spec, "-o", lock, "--cache", tmp_path / "cache")
    assert r.code == 0, r.err
    ch = new_channel(tmp_path / "dmz", "prod")
    r2 = cli("bundle", "create", "-f", spec, "--lock", lock, "--state", ch.state, "--key", ch.keys[0],
             "-o", tmp_path / "out", "--cache", tmp_path / "cache2")
    assert r2.code == 0, r2.err
    assert not [q for q in idx.requests() if q["status"] == 401 and q["path"].startswith("/files/")]
    assert SECRET not in lock.read_text() + _tree_text(tmp_path / "out") + r.err + r2.err
