"""``gapsync serve`` keeps answering consistently while an import publishes into the mirror it
serves. The import (world.b2 over a mirror holding world.b1) is slowed down at each of its named
points (gapsync/faults.py) so that it takes seconds, and a reader polls the whole index all the
while, as pip would: the project list, every project page in HTML and in JSON, and every file
they link, checked against the sha256 in the link.

What must hold: no 5xx and no 404 for anything a page names; every page is whole (HTML that
ends, JSON that parses); every file's bytes match the page's sha256; HTML and JSON of a project
name the same files. The reader must have seen the mirror both before and after the new
project (newpy) appeared, so it really read during the publish.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter

import pytest
import requests

from gapsync import faults
from tests.support.cli import GAPSYNC, cli
from tests.support.servers import Server, free_port

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
LINK = re.compile(r'href="\.\./\.\./files/([^"#]+)#sha256=([0-9a-f]{64})"')
DELAY = 0.05  # seconds at each point of the import


class Reader(threading.Thread):
    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.stop = url, threading.Event()
        self.s = requests.Session()
        self.seen = Counter()
        self.problems: list[str] = []
        self.rounds: list[tuple[float, bool]] = []  # (time, newpy listed)
        self.file_sha: dict[str, str] = {}

    def get(self, path: str, **headers) -> requests.Response | None:
        r = self.s.get(self.url + path, headers=headers, timeout=10)
        self.seen["requests"] += 1
        if r.status_code != 200:
            self.problems.append(f"GET {path}: HTTP {r.status_code}")
            return None
        return r

    def one_round(self) -> None:
        root = self.get("/simple/")
        if root is None:
            return
        if not root.text.rstrip().endswith("</html>"):
            self.problems.append("/simple/: page cut short")
        projects = re.findall(r'<a href="([a-z0-9-]+)/">', root.text)
        for p in projects:
            html = self.get(f"/simple/{p}/")
            js = self.get(f"/simple/{p}/", Accept=JSON_TYPE)
            if html is None or js is None:
                continue
            self.seen["pages"] += 2
            if not html.text.rstrip().endswith("</html>"):
                self.problems.append(f"/simple/{p}/: HTML cut short")
            try:
                doc = json.loads(js.text)
            except ValueError:
                self.problems.append(f"/simple/{p}/: JSON does not parse")
                continue
            links = dict(LINK.findall(html.text))
            if links != {f["filename"]: f["hashes"]["sha256"] for f in doc["files"]}:
                self.problems.append(f"/simple/{p}/: HTML and JSON name different files")
            for fn, sha in links.items():
                if self.file_sha.get(fn) == sha:
                    r = self.s.head(f"{self.url}/files/{fn}", timeout=10)  # fetched before: still there?
                    self.seen["requests"] += 1
                    if r.status_code != 200:
                        self.problems.append(f"HEAD /files/{fn}: HTTP {r.status_code}")
                    continue
                f = self.get(f"/files/{fn}")
                if f is None:
                    continue
                self.seen["files"] += 1
                if hashlib.sha256(f.content).hexdigest() != sha:
                    self.problems.append(f"/files/{fn}: bytes do not match the page's sha256")
                else:
                    self.file_sha[fn] = sha
        self.rounds.append((time.monotonic(), "newpy" in projects))

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.one_round()
            except requests.RequestException as e:
                self.problems.append(f"request failed: {e}")


@pytest.fixture
def served(world, tmp_path):
    m = tmp_path / "m"
    assert cli("trust", "pin", world.root, "--mirror", m).code == 0
    assert cli("import", world.b1, "--mirror", m).code == 0
    port = free_port()
    server = Server([GAPSYNC, "serve", "--mirror", str(m), "--listen", f"127.0.0.1:{port}"], f"http://127.0.0.1:{port}/simple/")
    yield m, f"http://127.0.0.1:{port}"
    server.stop()


def test_serve_answers_consistently_during_an_import(world, served, monkeypatch, request):
    m, url = served
    real, points = faults.point, Counter()

    def slow(name: str) -> None:
        points[name] += 1
        time.sleep(DELAY)
        real(name)

    reader = Reader(url)
    reader.start()
    while len(reader.rounds) < 3:  # the reader is reading before the import starts
        time.sleep(0.01)
    monkeypatch.setattr(faults, "point", slow)
    t0 = time.monotonic()
    r = cli("import", world.b2, "--mirror", m)
    t1 = time.monotonic()
    monkeypatch.undo()
    while not any(t > t1 for t, _ in reader.rounds[-1:]):
        time.sleep(0.01)
    reader.stop.set()
    reader.join(30)
    assert r.code == 0, r.err
    assert not reader.problems, reader.problems[:10]
    during = [new for t, new in reader.rounds if t0 <= t <= t1]
    assert len(during) >= 5, "the reader hardly read while the import ran"
    assert reader.rounds[0][1] is False and reader.rounds[-1][1] is True  # before and after newpy
    request.config.cache.set("gapsync/figures/serve-during-import", {
        "import_seconds": round(t1 - t0, 2), "points_slowed": sum(points.values()), "rounds": len(reader.rounds),
        "rounds_during_import": len(during), "requests": reader.seen["requests"], "pages": reader.seen["pages"],
        "files_fetched_and_hashed": reader.seen["files"], "problems": len(reader.problems)})
