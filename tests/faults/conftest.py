"""Fault-test fixtures: the OCI images and registries the registry-fault tests push through a
fault proxy (the same ones tests/oci/conftest.py makes, from ``tests.support.oci``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.oci import (
    BuiltImages,
    Registry,
    build_default_images,
    registry_factory,
    registry_with_images,
)


@pytest.fixture(scope="session")
def oci_images(tmp_path_factory: pytest.TempPathFactory) -> BuiltImages:
    return build_default_images(tmp_path_factory.mktemp("oci-images") / "layout")


@pytest.fixture(scope="session")
def source_registry(tmp_path_factory: pytest.TempPathFactory, oci_images: BuiltImages) -> Iterator[Registry]:
    """Anonymous registry holding library/app-a:1.0, team/app-b:2.0, library/app-big:1.0."""
    yield from registry_with_images(tmp_path_factory.mktemp("registry-source"), oci_images, None)


@pytest.fixture
def empty_registry(tmp_path: Path) -> Iterator[Callable[..., Registry]]:
    """Factory of fresh registries: ``empty_registry(auth=None, **kw) -> Registry``."""
    yield from registry_factory(tmp_path)
