"""The download cache is a cache: emptying it between two creates (in one process too, as the
demo, the tests and any Python caller run several) re-fetches what is needed and never names a
blob that is gone."""

from __future__ import annotations

import os
import shutil

from tests.support.channels import new_channel, write_spec
from tests.support.cli import cli
from tests.support.servers import static_server
from tests.support.wheels import make_wheel, write_index


def test_a_create_after_the_cache_was_emptied_refetches_and_writes_the_bundle(tmp_path):
    root = tmp_path / "up"
    make_wheel(root / "files", "big", "1.0", payload=os.urandom(1 << 20))
    write_index(root)
    server = static_server(root)
    try:
        ch = new_channel(tmp_path)
        spec = write_spec(tmp_path / "g.yaml", server.url, ["big"], pythons=("3.11",))
        args = ["bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "--cache", tmp_path / "cache"]
        assert cli(*args, "-o", tmp_path / "o0").code == 0
        shutil.rmtree(tmp_path / "cache")
        r = cli(*args, "-o", tmp_path / "o1")
        assert r.code == 0, r.err
        m = tmp_path / "mirror"
        assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
        for out in ("o0", "o1"):
            r = cli("import", next((tmp_path / out).glob("*.gapsync")), "--mirror", m)
            assert r.code == 0, r.err
        assert list((m / "pypi").rglob("big-1.0-*.whl.metadata"))
    finally:
        server.stop()
