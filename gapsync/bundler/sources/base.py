"""Every place a spec entry can come from, behind one small interface.

A spec names things of several kinds (a python: section, images, charts, conda, each model and
each dataset), and a lock records what each resolved to. Resolving a spec and fetching a lock
are the same walk over those entries whatever their kind; only the upstream differs. So each
kind of upstream is one :class:`Source` in one file of this folder, and ``bundler/resolve.py``
asks :func:`build_source` for the source of each entry instead of branching on its kind: pip's
``LinkSource`` and ``build_source()`` (``src/pip/_internal/index/sources.py``), in small.

A source does two things, and writes nothing outside the cache:

- ``resolve(entry, ctx)``: one spec entry -> a partial :class:`~gapsync.bundler.lock.Lock`
  holding only that entry's records (``resolve.py`` merges them, in the spec's order, so the
  lock is the same bytes as before the interface existed);
- ``fetch(record, ctx)``: one locked record -> the downloads it needs (``FetchItem``s for the
  parallel downloader); a source whose bytes are local copies them into the cache itself, or
  points the cache at them, and returns no item.

Some entries are whole sections because their upstream resolves them together: uv resolves all
requirements of ``python:`` per target, rattler solves all of ``conda:`` per platform, and the
images of ``images:`` are resolved in parallel, where an image in an OCI layout or a local Docker
engine is an *origin* of the OCI source (``oci.py``'s ``origin_for``), not a source of its own.

**A new source** goes in one file here: a class with ``name``, ``resolve`` and ``fetch`` (the
docstring says why that upstream is read the way it is). Register it in ``SOURCES`` below
(name -> ``module:Class``, imported only when an entry needs it, so ``gapsync --help`` loads no
client library), give its spec form a loader in ``spec.py`` and its records a place in
``lock.py``, and say in :func:`source_name` which entry and which record it takes (a model
source: add its name to ``MODEL_SOURCES``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from gapsync.bundler.cache import BlobCache
from gapsync.bundler.fetch import FetchItem
from gapsync.bundler.lock import Lock, LockedFile, LockedImage, LockedModel
from gapsync.bundler.spec import ImagesSpec, ModelSpec, PythonSpec, Spec
from gapsync.errors import InputError

if TYPE_CHECKING:
    from gapsync.bundler.sources.oci import Clients, ImagePlan

EntryT = TypeVar("EntryT", contravariant=True)
RecordT = TypeVar("RecordT", contravariant=True)

# name -> "module:Class" under gapsync.bundler.sources; the names are what source_name() returns
SOURCES: dict[str, str] = {
    "pypi": "pypi:PypiSource",
    "oci": "oci:OciSource",
    "chart": "charts:ChartSource",
    "conda": "conda:CondaSource",
    "hf": "huggingface:HubModelSource",
    "hf-dataset": "datasets:HubDatasetSource",
    "mlflow": "mlflow_models:MlflowSource",
    "url": "model_url:UrlSource",
    "path": "model_local:PathSource",
}
MODEL_SOURCES = ("hf", "mlflow", "url", "path")  # what a model's ``source`` may say, in the spec and the lock


@dataclass
class ResolveContext:
    """What resolving one entry may read besides the entry: the whole spec (a chart's images
    take the images section's platforms), the cache (sources that must download to learn a
    digest put the bytes there), the parallelism, and what earlier entries locked."""

    spec: Spec
    cache: BlobCache
    jobs: int
    lock: Lock  # what the entries before this one resolved to (charts leave out images already there)


@dataclass
class FetchContext:
    """What fetching one record may use: the spec (the registries reached over plain HTTP), the
    cache, and what image fetches learned on the way, kept for the bundle's targets."""

    spec: Spec
    cache: BlobCache
    plans: list[ImagePlan] = field(default_factory=list)  # one per locked image, in the lock's order
    _clients: Clients | None = field(default=None, init=False, repr=False)

    def oci_clients(self) -> Clients:
        """One registry client per registry for the whole run (tokens are per registry and scope)."""
        if self._clients is None:
            from gapsync.bundler.sources.oci import Clients

            charts = self.spec.charts
            self._clients = Clients((*(self.spec.images.insecure if self.spec.images else ()),
                                     *(charts.insecure if charts else ())))
        return self._clients


class Source(Protocol[EntryT, RecordT]):
    """One kind of upstream. ``EntryT``: the spec entry it resolves; ``RecordT``: the locked
    record it fetches."""

    name: ClassVar[str]

    def resolve(self, entry: EntryT, ctx: ResolveContext) -> Lock:
        """The locked records of ``entry`` (only them: the other sections stay empty)."""
        ...

    def fetch(self, record: RecordT, ctx: FetchContext) -> list[FetchItem]:
        """The downloads ``record`` needs; local bytes go into the cache here and give no item."""
        ...


def source_name(entry: object) -> str:
    """The registered name of the source of a spec entry or a locked record. A record names
    its source in the lock (``LockedModel.source``, an image's ``source.kind``), so a lock
    fetches without its spec's help; a name this gapsync does not know is an InputError."""
    from gapsync.bundler.sources.charts import ChartsSpec
    from gapsync.bundler.sources.conda import CondaSpec

    if isinstance(entry, (ModelSpec, LockedModel)):
        if entry.repo_type == "dataset":
            return "hf-dataset"
        if entry.source not in MODEL_SOURCES:
            what = "spec" if isinstance(entry, ModelSpec) else "lock"
            raise InputError(f"{what}: model {entry.name!r} comes from {entry.source!r}, which this gapsync does "
                             f"not know ({', '.join(MODEL_SOURCES)})")
        return entry.source
    if isinstance(entry, (PythonSpec, LockedFile)):
        return "pypi"
    if isinstance(entry, ImagesSpec):
        return "oci"
    if isinstance(entry, LockedImage):  # an HTTP chart's manifest is made by gapsync, not pulled
        return "chart" if (entry.source or {}).get("kind") == "chart_repo" else "oci"
    if isinstance(entry, ChartsSpec):
        return "chart"
    if isinstance(entry, (CondaSpec, dict)):  # the lock's conda section is one record
        return "conda"
    raise InputError(f"no source reads a {type(entry).__name__} entry (gapsync knows {', '.join(sorted(SOURCES))})")


def build_source(entry: object) -> Source[Any, Any]:
    """The source that resolves this spec entry or fetches this locked record."""
    module, cls = SOURCES[source_name(entry)].split(":")
    source: Source[Any, Any] = getattr(importlib.import_module(f"gapsync.bundler.sources.{module}"), cls)()
    return source


def spec_entries(spec: Spec) -> list[object]:
    """The spec's entries in the order they resolve (the order the lock was always built in)."""
    return [*([spec.python] if spec.python else []), *([spec.images] if spec.images else []),
            *([spec.charts] if spec.charts else []), *spec.models, *spec.datasets, *([spec.conda] if spec.conda else [])]


def lock_records(lock: Lock) -> list[object]:
    """The lock's records in the order they fetch: files, images, models and datasets, conda."""
    return [*lock.files, *lock.images, *lock.models, *lock.datasets, *([lock.conda] if lock.conda else [])]
