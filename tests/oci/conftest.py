"""OCI fixtures: one built layout and three real registries per session, fresh ones per test.

Session-scoped because a registry with the default images pushed costs about half a second and
the OCI tests only read from them; tests that write get a fresh registry from ``empty_registry``
(or ``hostile_registry``). Everything listens on 127.0.0.1, on free ports, and is stopped by PID.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.oci import (
    BuiltImages,
    HostileRegistry,
    Registry,
    build_default_images,
    registry_factory,
    registry_with_images,
)

NEEDED = ("docker-registry", "skopeo", "htpasswd")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the OCI tests with a clear reason when the Debian tools are absent (not an error storm)."""
    missing = [t for t in NEEDED if shutil.which(t) is None]
    if missing:
        here = Path(__file__).parent
        mark = pytest.mark.skip(reason=f"missing {', '.join(missing)}: apt-get install docker-registry "
                                       "skopeo umoci apache2-utils")
        for item in items:
            if here in Path(str(item.fspath)).parents:
                item.add_marker(mark)


@pytest.fixture(scope="session")
def oci_images(tmp_path_factory: pytest.TempPathFactory) -> BuiltImages:
    return build_default_images(tmp_path_factory.mktemp("oci-images") / "layout")


@pytest.fixture(scope="session")
def source_registry(tmp_path_factory: pytest.TempPathFactory, oci_images: BuiltImages) -> Iterator[Registry]:
    """Anonymous registry holding library/app-a:1.0, team/app-b:2.0, library/app-big:1.0."""
    yield from registry_with_images(tmp_path_factory.mktemp("registry-source"), oci_images, None)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory, oci_images: BuiltImages) -> Iterator[Registry]:
    """htpasswd (basic auth) registry with the same images; credentials in ``.creds``."""
    yield from registry_with_images(tmp_path_factory.mktemp("registry-htpasswd"), oci_images, "htpasswd")


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory, oci_images: BuiltImages) -> Iterator[Registry]:
    """Bearer-token registry with the same images; ``.token_requests()`` lists the token server's log."""
    yield from registry_with_images(tmp_path_factory.mktemp("registry-token"), oci_images, "token")


@pytest.fixture
def empty_registry(tmp_path: Path) -> Iterator[Callable[..., Registry]]:
    """Factory of fresh registries for push tests: ``empty_registry(auth=None, **kw) -> Registry``.

    Each call starts one more (anonymous by default); all are stopped when the test ends.
    """
    yield from registry_factory(tmp_path)


@pytest.fixture
def hostile_registry(tmp_path: Path, oci_images: BuiltImages) -> Iterator[Callable[..., HostileRegistry]]:
    """Factory: ``hostile_registry(mode, other_port=None, layout=None) -> HostileRegistry`` serving
    the default layout (or ``layout``) under the same names as the real registries."""
    made: list[HostileRegistry] = []

    def make(mode: str, other_port: int | None = None, layout: Path | None = None) -> HostileRegistry:
        reg = HostileRegistry(layout or oci_images.layout, mode, tmp_path / f"hostile-{len(made)}.jsonl",
                              other_port=other_port)
        made.append(reg)
        return reg

    try:
        yield make
    finally:
        for reg in made:
            reg.stop()
