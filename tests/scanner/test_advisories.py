"""The advisory store: import (zip, JSON lines, gzipped or not), atomic writes, info.json, load
checks, update's errors, and the ``gapsync advisories`` commands."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import socket
import threading
import time
import zipfile
from pathlib import Path

import pytest

from gapsync.advisories import DB_FILE, INFO_FILE, AdvisoryDB, import_db, read_info, update
from gapsync.cli.main import main
from gapsync.errors import FetchError, InputError, VerificationError
from tests.support.data import ADVISORIES as SNAPSHOT  # noqa: E402


def rec(adv_id: str, name: str = "demo", modified: str = "2024-01-01T00:00:00Z", ecosystem: str = "PyPI",
        **extra) -> dict:
    return {"id": adv_id, "modified": modified, "details": "d",
            "affected": [{"package": {"name": name, "ecosystem": ecosystem},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}]}],
            **extra}


def jsonl(records: list) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def records_in(store: Path) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress((store / DB_FILE).read_bytes()).splitlines()]


def test_import_the_snapshot(tmp_path):
    store = tmp_path / "store"
    info = import_db(SNAPSHOT, store)
    assert (info.advisories, info.withdrawn, info.packages) == (2661, 10, 664)
    assert info.modified == "2024-10-10T17:22:00.587279Z" and info.source == str(SNAPSHOT.resolve())
    data = (store / DB_FILE).read_bytes()
    assert info.sha256 == hashlib.sha256(data).hexdigest() and info.size == len(data)
    assert read_info(store) == info
    assert sorted(p.name for p in store.iterdir()) == [INFO_FILE, DB_FILE]  # no temp files left
    # the records are carried unchanged, in the source's order
    source = [json.loads(line) for line in gzip.decompress(SNAPSHOT.read_bytes()).splitlines()]
    assert records_in(store) == source
    # same records, same bytes: the bundle's target hash does not depend on when it was imported
    again = import_db(SNAPSHOT, tmp_path / "again")
    assert again.sha256 == info.sha256 and again.imported_at is not None


def test_load_the_full_snapshot_quickly(tmp_path):
    import_db(SNAPSHOT, tmp_path)
    t0 = time.perf_counter()
    db = AdvisoryDB.load(tmp_path)
    elapsed = time.perf_counter() - t0
    # 664 projects; for 4 of them (pynetbox, flask-caching, arrayfire, hyperledger) every advisory is withdrawn
    assert len(db.packages()) == 660 and db.info()["packages"] == 664
    assert elapsed < 2.0, f"loading took {elapsed:.2f}s"
    info = db.info()
    assert info["sha256"] == read_info(tmp_path).sha256 and info["advisories"] == 2661
    assert info["source"] == str(SNAPSHOT.resolve()) and info["file"] == DB_FILE


def test_import_zip_of_json_files(tmp_path):
    src = tmp_path / "all.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("PYSEC-2020-10.json", json.dumps(rec("PYSEC-2020-10")))
        zf.writestr("PYSEC-2020-9.json", json.dumps(rec("PYSEC-2020-9", name="Other_Pkg")))
        zf.writestr("GHSA-aaaa.json", json.dumps(rec("GHSA-aaaa", name="left-pad", ecosystem="npm")))
        zf.writestr("sub/", "")
        zf.writestr("README.txt", "not an advisory")
        zf.writestr("old/PYSEC-2020-10.json", json.dumps(rec("PYSEC-2020-10", modified="2023-01-01T00:00:00Z",
                                                             withdrawn="2023-01-01T00:00:00Z")))
    info = import_db(src, tmp_path / "store")
    assert (info.advisories, info.withdrawn, info.packages, info.skipped, info.duplicates) == (2, 0, 2, 1, 1)
    assert [r["id"] for r in records_in(tmp_path / "store")] == ["PYSEC-2020-9", "PYSEC-2020-10"]
    db = AdvisoryDB.load(tmp_path / "store")
    assert db.match("other-pkg", "1.0").status == "affected"


@pytest.mark.parametrize("gz", [False, True])
def test_import_json_lines(tmp_path, gz):
    data = jsonl([rec("PYSEC-1"), rec("PYSEC-2", withdrawn="2024-02-01T00:00:00Z", modified="2024-02-01T00:00:00Z")])
    src = tmp_path / ("in.jsonl.gz" if gz else "in.jsonl")
    src.write_bytes(gzip.compress(data) if gz else data + b"\n\n")
    info = import_db(src, tmp_path / "store")
    assert (info.advisories, info.withdrawn, info.packages) == (2, 1, 1)
    assert info.modified == "2024-02-01T00:00:00Z"
    assert [v.id for v in AdvisoryDB.load(tmp_path / "store").match("demo", "1").vulns] == ["PYSEC-1"]


@pytest.mark.parametrize(("line", "why"), [
    (b"{not json", "not valid JSON"),
    (b'["a list"]', "expected a JSON object"),
    (json.dumps({"modified": "x", "affected": []}).encode(), "no 'id'"),
    (json.dumps(rec("PYSEC-9", aliases="CVE-1")).encode(), "'aliases' is not a list"),
    (json.dumps({**rec("PYSEC-9"), "affected": [{"package": {"name": "x", "ecosystem": "PyPI"},
                                                 "ranges": [{"type": "ECOSYSTEM",
                                                             "events": [{"introduced": "0", "fixed": "1"}]}]}]}
                ).encode(), "bad event"),
    (json.dumps({**rec("PYSEC-9"), "affected": [{"package": {"name": "x", "ecosystem": "PyPI"},
                                                 "versions": ["1", 2]}]}).encode(), "'versions' is not a list"),
])
def test_malformed_line_names_the_file_and_line(tmp_path, line, why):
    src = tmp_path / "bad.jsonl"
    src.write_bytes(jsonl([rec("PYSEC-1")]) + b"\n" + line + b"\n")
    store = tmp_path / "store"
    import_db(_ok(tmp_path), store)
    before = (store / DB_FILE).read_bytes()
    with pytest.raises(InputError) as e:
        import_db(src, store)
    assert f"{src} line 3" in str(e.value) and why in str(e.value)
    assert (store / DB_FILE).read_bytes() == before  # the old store is untouched


def _ok(tmp_path: Path) -> Path:
    p = tmp_path / "ok.jsonl"
    p.write_bytes(jsonl([rec("PYSEC-0")]))
    return p


def test_malformed_zip_member_is_named(tmp_path):
    src = tmp_path / "all.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("PYSEC-1.json", json.dumps(rec("PYSEC-1")))
        zf.writestr("vulns/PYSEC-2.json", "{truncated")
    with pytest.raises(InputError, match=r"all\.zip member vulns/PYSEC-2\.json: not valid JSON"):
        import_db(src, tmp_path / "store")
    assert not (tmp_path / "store" / DB_FILE).exists()


def test_broken_inputs(tmp_path):
    gz = tmp_path / "cut.jsonl.gz"
    gz.write_bytes(gzip.compress(jsonl([rec(f"PYSEC-{i}") for i in range(200)]))[:-30])
    with pytest.raises(InputError, match="cut.jsonl.gz after line"):
        import_db(gz, tmp_path / "s")
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="no PyPI advisories"):
        import_db(empty, tmp_path / "s")
    with pytest.raises(InputError, match="cannot read"):
        import_db(tmp_path / "missing.zip", tmp_path / "s")


def test_load_checks_the_stored_file(tmp_path):
    import_db(_ok(tmp_path), tmp_path / "store")
    db_file = tmp_path / "store" / DB_FILE
    with pytest.raises(InputError, match="no advisory database"):
        AdvisoryDB.load(tmp_path / "nowhere")
    # a file that does not match info.json: tampered with or half-replaced
    db_file.write_bytes(gzip.compress(jsonl([rec("PYSEC-0"), rec("PYSEC-5")]), mtime=0))
    with pytest.raises(VerificationError, match="sha256"):
        AdvisoryDB.load(tmp_path / "store")
    # without info.json (a copy carried elsewhere) the file loads; a bad line is named
    (tmp_path / "store" / INFO_FILE).unlink()
    assert AdvisoryDB.load(db_file).info()["advisories"] == 2
    db_file.write_bytes(gzip.compress(jsonl([rec("PYSEC-0")]) + b"{oops\n"))
    with pytest.raises(InputError, match=rf"{DB_FILE} line 2: not valid JSON"):
        AdvisoryDB.load(db_file)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_update_names_the_url_when_it_cannot_be_reached(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/PyPI/all.zip"
    with pytest.raises(FetchError, match=rf"cannot download {url}"):
        update(tmp_path / "store", url=url, timeout=5)
    assert list((tmp_path / "store").iterdir()) == []  # no partial download left behind


@pytest.fixture
def zip_server(tmp_path):
    """osv.dev's export layout on a local HTTP server: /PyPI/all.zip (and a 404 elsewhere)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("PYSEC-1.json", json.dumps(rec("PYSEC-1")))
    body = buf.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path != "/PyPI/all.zip":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_update_downloads_and_imports(tmp_path, zip_server):
    info = update(tmp_path / "store", url=f"{zip_server}/PyPI/all.zip")
    assert info.source == f"{zip_server}/PyPI/all.zip" and info.advisories == 1
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [INFO_FILE, DB_FILE]
    with pytest.raises(FetchError, match="HTTP 404"):
        update(tmp_path / "store", url=f"{zip_server}/nope.zip")


def test_cli(tmp_path, capsys, monkeypatch, zip_server):
    store = tmp_path / "store"
    monkeypatch.setenv("GAPSYNC_ADVISORIES", str(store))
    assert main(["advisories", "info"]) == 2
    assert "no advisory database" in capsys.readouterr().err
    assert main(["advisories", "import", str(_ok(tmp_path))]) == 0
    assert "1 advisories (0 withdrawn) for 1 packages" in capsys.readouterr().err
    assert main(["advisories", "info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["advisories"] == 1 and data["store"] == str(store) and data["sha256"] == read_info(store).sha256
    assert main(["advisories", "info"]) == 0
    assert "advisories:   1" in capsys.readouterr().out
    other = tmp_path / "other"
    assert main(["advisories", "update", "--store", str(other), "--url", f"{zip_server}/PyPI/all.zip"]) == 0
    assert (other / DB_FILE).exists() and "1 advisories" in capsys.readouterr().err
    url = f"http://127.0.0.1:{_closed_port()}/all.zip"
    assert main(["advisories", "update", "--url", url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and url in err and "advisories import FILE" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{\n")
    assert main(["advisories", "import", str(bad), "--store", str(other)]) == 2
    assert f"{bad} line 1" in capsys.readouterr().err


def test_freshness_counts_from_the_newest_advisory():
    from datetime import UTC, datetime, timedelta

    from gapsync.advisories import freshness, notice_text

    now = datetime(2026, 12, 7, tzinfo=UTC)
    info = {"modified": "2024-10-10T17:22:00.587279Z", "imported_at": "2026-12-06T00:00:00Z"}
    f = freshness(info, timedelta(days=30), now)
    assert f["state"] == "stale" and f["age_days"] == 787 and "787 days old" in f["why"] and "30 days" in f["why"]
    text = notice_text(f, "warn", "default")
    assert "gapsync advisories update" in text and "gapsync advisories import FILE" in text and "\n" not in text
    assert freshness(info, timedelta(days=800), now)["state"] == "current"
    assert freshness(info, None, now)["state"] == "current"
    # no usable date: its age cannot be vouched for
    for bad in ({}, {"modified": "yesterday"}, {"modified": 5}):
        assert freshness(bad, timedelta(days=30), now)["state"] == "stale"
    missing = freshness(None, timedelta(days=30), now)
    assert missing["state"] == "missing"
    text = notice_text(missing, "block", "default")
    assert "NOT checked" in text and "blocks" in text and "gapsync advisories update" in text
    assert notice_text(freshness(info, None, now), "warn", "default") is None


def test_import_records_the_attribution(tmp_path):
    from tests.support.cli import cli
    from tests.support.data import ADVISORIES

    text = "Python Packaging Advisory Database (pypa/advisory-database, commit 3ccb612), CC BY 4.0"
    r = cli("advisories", "import", ADVISORIES, "--store", tmp_path, "--source", text)
    assert r.code == 0, r.err
    assert read_info(tmp_path).source == text
    assert AdvisoryDB.load(tmp_path).info()["source"] == text
