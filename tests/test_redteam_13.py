"""Red-team cases of issue 13 not listed in the issue, against the real CLI: each is refused with
one line naming the file and the reason, with the documented exit code, and writes nothing."""

from __future__ import annotations

import pytest

from tests.conftest import cli, write_spec
from tests.helpers import free_port


@pytest.mark.parametrize("url", [
    "http://alice:s3cretpw@127.0.0.1:99999/simple/",  # port out of range: urlsplit().port raises ValueError
    "http://127.0.0.1:99999/simple/",
    "http://127.0.0.1:12x/simple/",
    "http://[::1/simple/",  # unbalanced IPv6 bracket
    "http:///simple/",  # no host
])
def test_an_index_url_that_does_not_parse_is_one_line_naming_the_spec(tmp_path, url):
    spec = write_spec(tmp_path / "gapsync.yaml", url, ["alpha"])
    lock = tmp_path / "lock.json"
    r = cli("resolve", "-f", spec, "-o", lock, "--cache", tmp_path / "cache")
    assert r.code == 2, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "internal error" not in r.err, r.err
    assert str(spec) in r.err and "index_url" in r.err
    assert "s3cret" not in r.err
    assert not lock.exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/m.bin", "https://[::1/m.bin", "https:///m.bin"])
def test_a_model_url_that_does_not_parse_is_one_line_naming_the_spec(tmp_path, url):
    spec = tmp_path / "gapsync.yaml"
    spec.write_text(f"name: t\nchannel: prod\nmodels:\n  - url: {url}\n    sha256: '{'a' * 64}'\n")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "lock.json", "--cache", tmp_path / "cache")
    assert r.code == 2, r.err
    assert len(r.err.strip().splitlines()) == 1 and "internal error" not in r.err, r.err
    assert str(spec) in r.err and "url" in r.err
    assert free_port()  # the machine is fine; nothing was listened on


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/charts/", "https://[::1/charts/", "http:///charts/"])
def test_a_chart_repo_url_that_does_not_parse_is_one_line_naming_the_spec(tmp_path, url):
    spec = tmp_path / "gapsync.yaml"
    spec.write_text(f"name: t\nchannel: prod\ncharts:\n  refs:\n    - {{repo: '{url}', name: c, version: 1.0.0}}\n")
    r = cli("resolve", "-f", spec, "-o", tmp_path / "lock.json", "--cache", tmp_path / "cache")
    assert r.code == 2, r.err
    assert len(r.err.strip().splitlines()) == 1 and "internal error" not in r.err, r.err
    assert str(spec) in r.err and "repo" in r.err
