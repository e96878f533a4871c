"""`gapsync serve` against hostile clients, with raw HTTP over sockets: header injection, Range
abuse, methods, traversal, oversize and slow request heads, manifests asked for by a layer's
digest (memory checked), links and FIFOs planted in the mirror. Every refusal is a 4xx, the server
stays up and answers the next request, and each refused request leaves one log line."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from gapsync.oci import OCI_INDEX, OCI_MANIFEST, REF_NAME
from tests.support.cli import GAPSYNC, cli
from tests.support.raw_http import get, raw, read_reply
from tests.support.servers import Server, free_port

LAYER_SIZE = 512 << 20  # a sparse layer: reading it (as the old server did) would cost 512 MB


def _blob(oci: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (oci / "blobs/sha256" / digest).write_bytes(data)
    return "sha256:" + digest


def _sparse_layer(oci: Path) -> tuple[str, int]:
    """A layer of LAYER_SIZE zero bytes named by its real sha256, written sparse."""
    h = hashlib.sha256()
    zeros = bytes(8 << 20)
    for _ in range(LAYER_SIZE // len(zeros)):
        h.update(zeros)
    p = oci / "blobs/sha256" / h.hexdigest()
    with open(p, "wb") as f:
        f.truncate(LAYER_SIZE)
    return "sha256:" + h.hexdigest(), LAYER_SIZE


@pytest.fixture(scope="module")
def mirror(world, tmp_path_factory):
    """world.b1 imported (the Python index), plus an OCI layout written as the importer writes
    it (an image index -> one manifest -> config + a 512 MB layer), a conda channel file, and
    planted links and FIFOs where files are expected. No models: the Hub API must still answer."""
    base = tmp_path_factory.mktemp("hostile")
    m = base / "mirror"
    assert cli("trust", "pin", world.root, "--mirror", m).code == 0
    assert cli("import", world.b1, "--mirror", m).code == 0
    oci = m / "oci"
    (oci / "blobs/sha256").mkdir(parents=True)
    (oci / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    layer, layer_size = _sparse_layer(oci)
    config = _blob(oci, json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    manifest_bytes = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                 "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 80},
                                 "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer,
                                             "size": layer_size}]}).encode()
    manifest = _blob(oci, manifest_bytes)
    index_bytes = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": manifest, "size": len(manifest_bytes),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    index = _blob(oci, index_bytes)
    # a blob that parses as a manifest but that no record names: never answered as one
    stray_bytes = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}).encode()
    stray = _blob(oci, stray_bytes)
    (oci / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_INDEX, "digest": index, "size": len(index_bytes),
         "annotations": {REF_NAME: "docker.io/library/app:1.0"}}]}))
    # planted: a link to a file outside, a FIFO, a link where a blob is expected, a linked directory
    secret = base / "secret.txt"
    secret.write_text("top secret\n")
    files = m / "pypi/files"
    (files / "evil-1.0-py3-none-any.whl").symlink_to(secret)
    os.mkfifo(files / "fifo-1.0-py3-none-any.whl")
    (files / "dir-1.0-py3-none-any.whl").mkdir()
    (m / "pypi/simple/linked").symlink_to(base)
    os.symlink(secret, oci / "blobs/sha256" / ("e" * 64))
    os.mkfifo(oci / "blobs/sha256" / ("f" * 64))
    conda = m / "conda/main/noarch"
    conda.mkdir(parents=True)
    (conda / "repodata.json").write_text('{"packages": {}}')
    (conda.parent / "channeldata.json").write_text('{"channeldata_version": 1}')
    (conda / "current_repodata.json").symlink_to(secret)
    os.mkfifo(conda / "pipe.conda")
    outside = base / "outside-channel"  # a channel-shaped tree outside the mirror, linked in
    (outside / "noarch").mkdir(parents=True)
    (outside / "noarch/repodata.json").write_text("top secret")
    (outside / "channeldata.json").write_text("top secret")
    (base / "index.html").write_text("top secret")  # what /simple/linked/ would serve through the link
    (m / "conda/evil").symlink_to(outside)
    # one Hub dataset (no models): its commit document and files in the verified blob store, as
    # the importer records them; one file's blob replaced by a link to the secret
    data = {"data/train.csv": b"a,b\n1,2\n", "data/test.csv": b"a,b\n3,4\n"}
    blobs = m / ".gapsync/blobs/sha256"
    for content in data.values():
        d = hashlib.sha256(content).hexdigest()
        (blobs / d[:2]).mkdir(parents=True, exist_ok=True)
        (blobs / d[:2] / d).write_bytes(content)
    files = [{"path": p, "size": len(c), "sha256": hashlib.sha256(c).hexdigest(),
              "etag": hashlib.sha1(b"blob %d\x00" % len(c) + c).hexdigest()} for p, c in data.items()]
    doc = json.dumps({"files": files}).encode()
    dd = hashlib.sha256(doc).hexdigest()
    (blobs / dd[:2]).mkdir(parents=True, exist_ok=True)
    (blobs / dd[:2] / dd).write_bytes(doc)
    test_blob = blobs / files[1]["sha256"][:2] / files[1]["sha256"]
    test_blob.unlink()
    test_blob.symlink_to(secret)
    (m / ".gapsync/models").mkdir(parents=True, exist_ok=True)
    commit = "c" * 40
    (m / ".gapsync/models/index.json").write_text(json.dumps({"models": {}, "datasets": {
        "acme/d": {"refs": {"main": commit}, "commits": {commit: dd}}}}))
    return {"mirror": m, "layer": layer, "config": config, "manifest": manifest, "manifest_bytes": manifest_bytes,
            "index": index, "stray": stray, "secret": secret}


@pytest.fixture(scope="module")
def served(mirror):
    port = free_port()
    s = Server([GAPSYNC, "serve", "--mirror", str(mirror["mirror"]), "--listen", f"127.0.0.1:{port}",
                "--header-timeout", "2", "--threads", "4"], f"http://127.0.0.1:{port}/simple/")
    yield port, s
    s.stop()


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def log_text(s: Server) -> str:
    time.sleep(0.2)
    return s.log.read_text(errors="replace")


INJECT = "%0d%0aX-Injected:%20yes"


@pytest.mark.parametrize("target", [
    f"/simple/Six{INJECT}/", "/simple/Six%0d%0aSet-Cookie:%20session=x/", f"/simple/Six{INJECT}", f"/simple/{INJECT}/",
    "/simple/six%0aX-Injected:%20yes/", "/simple/six%0dX-Injected:%20yes/", "/simple/%E2%80%A8X-Injected/",
    f"/files/a{INJECT}.whl", f"/v2/library/app{INJECT}/tags/list", f"/v2/library/app/manifests/1.0{INJECT}",
    f"/v2/library/app/blobs/sha256:{INJECT}", f"/api/models/acme/m{INJECT}", f"/api/models/acme/m/revision/main{INJECT}",
    f"/acme/m/resolve/main/config.json{INJECT}", f"/acme{INJECT}/m/resolve/main/x", f"/conda/main/noarch/x{INJECT}",
    f"/{INJECT}", f"/simple{INJECT}", f"/api/datasets/acme/d/tree/main/x{INJECT}", f"/api/datasets/acme/d/tree/main{INJECT}",
    f"/datasets/acme/d/resolve/main/data/train.csv{INJECT}", f"/api/datasets/acme{INJECT}/d", f"/charts/x-1.0.tgz{INJECT}",
])
def test_request_bytes_never_make_a_header(served, target):
    port, _ = served
    for method in ("GET", "HEAD"):
        r = get(port, target, method)
        assert 400 <= r.status < 500, (target, r.status)
        names = r.header_names()
        assert "x-injected" not in names and "set-cookie" not in names, r.head
        assert b"X-Injected" not in r.head and b"session=x" not in r.head
        assert b"\r\n" not in r.headers.get("location", "").encode()


def test_valid_but_unnormalized_names_still_redirect(served):
    port, _ = served
    r = get(port, "/simple/Alpha/")
    assert r.status == 301 and r.headers["location"] == "/simple/alpha/"
    r = get(port, "/simple/alpha")
    assert r.status == 301 and r.headers["location"] == "/simple/alpha/"
    assert get(port, "/simple/alpha/").status == 200


HUGE = "9" * 5000


@pytest.mark.parametrize("value,status", [
    (f"bytes={HUGE}-", 416), (f"bytes={HUGE}-{HUGE}", 416), (f"bytes=0-{HUGE}", 200), (f"bytes=-{HUGE}", 200),
    ("bytes=5-1", 416), ("bytes=0-1,3-4", 416), ("bytes=0-1, 5-", 416), ("bytes=-0", 416), ("bytes=99999999999-", 416),
    ("bytes=a-b", 400), ("bytes=", 400), ("bytes=-", 400), ("items=0-1", 400), ("bytes=1-2-3", 400), ("bytes=0x10-", 400),
    ("bytes=\u0661-", 400), ("bytes=0-0", 206), ("bytes=-5", 206), ("bytes = 2 - 3", 206), (f"bytes=0{'0' * 5000}-", 206),
])
def test_range_is_answered_cleanly(served, value, status):
    port, _ = served
    target = "/files/alpha-1.0-py3-none-any.whl"
    full = get(port, target)
    size = len(full.body)
    r = raw(port, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nRange: {value}\r\n\r\n".encode())
    if status == 200:  # a range that covers the whole file
        assert r.status in (200, 206) and r.body == full.body
        return
    assert r.status == status, (value, r.status, r.body[:200])
    assert b"Traceback" not in r.body
    if status == 416:
        assert r.headers["content-range"] == f"bytes */{size}"
    if status == 206:
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", r.headers["content-range"])
        a, b = int(m.group(1)), int(m.group(2))
        assert int(m.group(3)) == size and r.body == full.body[a:b + 1]
    assert get(port, target).status == 200  # and the server is still there


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "FOO"])
def test_other_methods_are_refused(served, method):
    port, _ = served
    r = raw(port, f"{method} /simple/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
    assert r.status == 405 and r.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("target", [
    "/files/../.gapsync/audit.log", "/files/%2e%2e/.gapsync/audit.log", "/files/..%2f.gapsync%2faudit.log",
    "/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/files/..%5c.gapsync%5caudit.log", "/files/%c0%ae%c0%ae/x",
    "/simple/%2e%2e/%2e%2e/.gapsync/audit.log", "/simple/..%2f..%2f.gapsync/", "/v2/../.gapsync/audit.log",
    "/conda/../.gapsync/audit.log", "/conda/main/noarch/..%2f..%2f..%2f.gapsync%2faudit.log",
    "/conda/main/../../.gapsync/audit.log", "/conda/evil/noarch/repodata.json", "/conda/evil/channeldata.json",
    "/conda/main/noarch/.hidden",
    "/simple/linked/", "/simple/linked/secret.txt", "//etc/passwd", "/files//etc/passwd", "/files/%00",
    "http://127.0.0.1/files/../../.gapsync/audit.log", "/pypi/files/", "/.gapsync/audit.log",
    "/acme/m/resolve/main/..%2f..%2f.gapsync%2faudit.log", "/api/models/..%2f..%2f.gapsync/tree/main",
])
def test_traversal_is_refused(served, mirror, target):
    port, _ = served
    r = get(port, target)
    assert r.status in (400, 404), (target, r.status)
    assert b"seq" not in r.body and b"top secret" not in r.body


def test_links_and_fifos_in_the_mirror_are_not_served(served, mirror):
    port, _ = served
    t0 = time.monotonic()
    for target in ("/files/evil-1.0-py3-none-any.whl", "/files/fifo-1.0-py3-none-any.whl", "/files/dir-1.0-py3-none-any.whl",
                   f"/v2/library/app/blobs/sha256:{'e' * 64}", f"/v2/library/app/blobs/sha256:{'f' * 64}",
                   "/conda/main/noarch/current_repodata.json", "/conda/main/noarch/pipe.conda"):
        for method in ("GET", "HEAD"):
            r = get(port, target, method)
            assert r.status == 404 and b"top secret" not in r.body, (target, r.status)
    assert time.monotonic() - t0 < 10  # a FIFO never blocks a request
    r = get(port, "/conda/main/noarch/repodata.json")
    assert r.status == 200 and json.loads(r.body) == {"packages": {}} and r.headers["content-type"] == "application/json"
    assert json.loads(get(port, "/conda/main/channeldata.json").body) == {"channeldata_version": 1}
    for target in ("/conda/main/other.json", "/conda/evil/channeldata.json", "/conda/.x/channeldata.json", "/conda/main"):
        assert get(port, target).status == 404


def test_manifests_come_only_from_the_layout_records(served, mirror):
    port, _ = served
    r = get(port, "/v2/library/app/manifests/1.0")
    assert r.status == 200 and r.headers["content-type"] == OCI_INDEX
    assert r.headers["docker-content-digest"] == mirror["index"]
    r = get(port, f"/v2/docker.io/library/app/manifests/{mirror['manifest']}")
    assert r.status == 200 and r.body == mirror["manifest_bytes"] and r.headers["content-type"] == OCI_MANIFEST
    r = get(port, f"/v2/library/app/manifests/{mirror['manifest']}", "HEAD")
    assert r.status == 200 and int(r.headers["content-length"]) == len(mirror["manifest_bytes"]) and r.body == b""
    for digest in (mirror["layer"], mirror["config"], mirror["stray"], "sha256:" + "0" * 64):
        for method in ("GET", "HEAD"):
            r = get(port, f"/v2/library/app/manifests/{digest}", method)
            assert r.status == 404, (digest, method)
            if method == "GET":
                assert json.loads(r.body)["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    tags = json.loads(get(port, "/v2/library/app/tags/list").body)
    assert tags == {"name": "library/app", "tags": ["1.0"]}


def test_manifest_by_layer_digest_costs_no_memory(served, mirror, request):
    """12 clients at once ask for the 512 MB layer as a manifest, 5 times each: the old server read
    and parsed the layer for each request (GBs of RSS); now each is a 404 from the records."""
    port, s = served
    errors: list[str] = []

    def client():
        for _ in range(5):
            for method in ("GET", "HEAD"):
                r = get(port, f"/v2/library/app/manifests/{mirror['layer']}", method)
                if r.status != 404:
                    errors.append(f"{method} {r.status}")

    threads = [threading.Thread(target=client) for _ in range(12)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    took, rss = time.monotonic() - t0, peak_rss_mb(s.proc.pid)
    request.config.cache.set("gapsync/figures/serve-manifest-by-layer", {"requests": 120, "seconds": round(took, 2),
                                                                         "peak_rss_mb": round(rss, 1)})
    assert took < 30
    assert rss < 150


def test_blob_range_and_keep_alive(served, mirror):
    """HTTP/1.1: several requests on one connection; a blob by Range."""
    port, _ = served
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        for _ in range(3):
            c.sendall(f"GET /v2/library/app/blobs/{mirror['layer']} HTTP/1.1\r\nHost: x\r\nRange: bytes=1000-1999\r\n\r\n".encode())
            r = read_reply(c)
            assert r.status == 206 and r.body == bytes(1000) and r.head.startswith(b"HTTP/1.1 ")
            c.sendall(b"HEAD /simple/ HTTP/1.1\r\nHost: x\r\n\r\n")
            r = read_reply(c, head_only=True)
            assert r.status == 200 and int(r.headers["content-length"]) > 0
        r_last = f"GET /v2/library/app/blobs/{mirror['layer']} HTTP/1.1\r\nHost: x\r\nRange: bytes=-10\r\n\r\n"
        c.sendall(r_last.encode())
        r = read_reply(c)
        assert r.status == 206 and r.headers["content-range"] == f"bytes {LAYER_SIZE - 10}-{LAYER_SIZE - 1}/{LAYER_SIZE}"


def test_hub_dataset_routes_answer_from_the_records_only(served):
    port, _ = served
    r = get(port, "/datasets/acme/d/resolve/main/data/train.csv")
    assert r.status == 200 and r.body == b"a,b\n1,2\n" and r.headers["x-repo-commit"] == "c" * 40
    r = get(port, "/datasets/acme/d/resolve/main/data/test.csv")  # its blob is a planted link
    assert r.status == 404 and b"top secret" not in r.body
    r = get(port, "/api/datasets/acme/d/tree/main/n%C3%A9ant")  # a directory that is not there, non-ASCII
    assert r.status == 404 and r.headers["x-error-code"] == "EntryNotFound"
    assert all(32 <= b < 127 for b in r.head.replace(b"\r\n", b""))
    assert json.loads(get(port, "/api/datasets/acme/d").body)["sha"] == "c" * 40
    for target in ("/api/datasets/acme/zz", "/datasets/acme/d/resolve/main/..%2f..%2fsecret.txt",
                   "/datasets/acme/d/resolve/main/nope.csv", "/api/datasets/..%2f..%2fx/revision/main"):
        assert get(port, target).status == 404, target


def test_hub_api_of_a_mirror_without_models_answers_json_404(served):
    port, _ = served
    for target in ("/api/models/acme/tiny", "/api/models/acme/tiny/revision/main", "/api/models/acme/tiny/tree/main",
                   "/acme/tiny/resolve/main/config.json", "/api/models/", "/api/models/a/b/c/d"):
        r = get(port, target)
        assert r.status == 404 and r.headers["content-type"] == "application/json", (target, r.status)
        assert "error" in json.loads(r.body) and r.headers["x-error-code"] in ("RepoNotFound", "EntryNotFound")
        h = get(port, target, "HEAD")
        assert h.status == 404 and h.headers["x-error-code"] == r.headers["x-error-code"]


def test_oversize_and_malformed_request_heads(served):
    port, _ = served
    r = raw(port, b"GET /simple/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (200 << 10) + b"\r\n\r\n")
    assert r.status == 431
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(10000))  # over 64 KiB in all
    assert raw(port, b"GET /simple/ HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n").status == 431
    assert raw(port, b"GET /" + b"a" * (100 << 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n").status == 431
    assert raw(port, b"GARBAGE\r\n\r\n").status == 400
    assert raw(port, b"GET /simple/ HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n").status == 400
    body = b"x" * (1 << 20)
    r = raw(port, b"GET /simple/ HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert r.status == 413
    assert get(port, "/simple/").status == 200


def test_slow_request_heads_hold_nothing(served, request):
    """40 clients that send their request head a byte at a time: a normal client is answered at
    once meanwhile, and the slow ones are closed after --header-timeout (2 s here)."""
    port, _ = served
    slow = []
    for _ in range(40):
        c = socket.create_connection(("127.0.0.1", port), timeout=30)
        c.sendall(b"GET /simple/ HTTP/1.1\r\nHo")
        slow.append(c)
    t0 = time.monotonic()
    assert get(port, "/simple/alpha/").status == 200
    answered = time.monotonic() - t0
    assert answered < 2
    deadline = time.monotonic() + 20
    closed = 0
    for c in slow:
        try:
            while time.monotonic() < deadline:
                c.sendall(b"s")  # still trickling
                c.settimeout(0.5)
                try:
                    if c.recv(100) == b"":
                        closed += 1
                        break
                except TimeoutError:
                    continue
        except (BrokenPipeError, ConnectionResetError):
            closed += 1
        finally:
            c.close()
    assert closed == len(slow)
    request.config.cache.set("gapsync/figures/serve-slow-heads", {"slow_clients": len(slow), "normal_answer_s": round(answered, 3),
                                                                  "all_closed_after_s": round(time.monotonic() - t0, 1)})
    assert time.monotonic() - t0 < 20


def test_each_refused_request_leaves_one_log_line(served):
    port, s = served
    marks = {"m4o4a": "/simple/zz-m4o4a-%0d%0a/", "m4o5b": "/files/m4o5b.whl", "m4o6c": "/v2/m4o6c/tags/list"}
    for target in marks.values():
        assert get(port, target).status in (400, 404)
    assert raw(port, b"DELETE /simple/m4o7d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status == 405
    r = raw(port, b"GET /files/alpha-1.0-py3-none-any.whl?m4o8e HTTP/1.1\r\nHost: x\r\nConnection: close\r\nRange: bytes=x\r\n\r\n")
    assert r.status == 400
    before = log_text(s).count("Request Header Fields Too Large")
    assert raw(port, b"GET /simple/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (100 << 10) + b"\r\n\r\n").status == 431
    text = log_text(s)
    assert text.count("Request Header Fields Too Large") == before + 1  # waitress's own refusals too
    for mark in [*marks, "m4o7d"]:
        lines = [ln for ln in text.splitlines() if mark in ln]
        assert len(lines) == 1, (mark, lines)
        assert "\r" not in lines[0]
    assert "Range" in text and "Traceback" not in text


@pytest.mark.parametrize("te", ["chunked", "Chunked", " chunked", "gzip, chunked"])
def test_length_and_chunked_together_are_refused_and_the_connection_closed(served, te):
    """Content-Length and Transfer-Encoding in one request (request smuggling: a proxy in front
    that reads the length sees another next request than the server that reads the chunks):
    400, the connection closed, and the request pipelined behind it never answered."""
    port, _ = served
    smuggled = b"GET /simple/ HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b"0\r\n\r\n"
    req = (b"POST /api/models/acme/m/paths-info/main HTTP/1.1\r\nHost: x\r\n"
           b"Content-Length: " + str(len(body) + len(smuggled)).encode() + b"\r\n"
           b"Transfer-Encoding: " + te.encode() + b"\r\n\r\n" + body + smuggled)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(req)
        r = read_reply(c)
        assert r.status == 400, r.head
        rest = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            rest += chunk
        assert b"HTTP/1.1 200" not in rest, rest[:200]
