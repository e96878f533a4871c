"""Conda fixtures: the tests' upstream channel, built once per session and served on 127.0.0.1.

The packages are real (made by py-rattler-build, see ``tests/support/scripts/conda_build_channel.py``)
and the channel is indexed by ``rattler.index`` (``tests/support/conda.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from tests.support.conda import build_channel
from tests.support.servers import serve_dir


@pytest.fixture(scope="session")
def conda_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """``dir``: the channel directory; ``url``: it served over HTTP (``http://127.0.0.1:PORT/upstream``)."""
    root = tmp_path_factory.mktemp("conda-upstream")
    chan = build_channel(root)
    server = serve_dir(root, "upstream/noarch/repodata.json")
    try:
        yield SimpleNamespace(dir=chan, url=server.url.removesuffix("/noarch/repodata.json"), root=root)
    finally:
        server.stop()
