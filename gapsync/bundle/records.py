"""What crosses the gap, as records both sides share: the paths of the bundle-level targets, the
``custom`` fields of every target kind in ``targets.json``, ``gapsync/bundle.json`` and the
artifact key (``kind:name@version``).

The connected side writes these records (``bundler/create.py``), the air side, ``inspect`` and the
reports read them; one owner for the names and types so that the two sides can never disagree.
Like python-tuf's ``TargetFile`` (``tuf/api/_payload.py``), each record is a frozen dataclass with
``from_dict``/``to_dict``: ``from_dict`` takes the fields it knows, checks their types, and keeps
every other field in ``unrecognized_fields``, which ``to_dict`` writes back unchanged, so a reader
older than the producer round-trips the producer's newer fields. A field that may be left out is
remembered as left out (``absent``): ``to_dict(from_dict(x)) == x`` for every object ``from_dict``
accepts. A missing required field or a field of the wrong type is one ``BundleFormatError``
naming the target and the field, never a ``KeyError`` further down.

The fields are documented in ``docs/bundle-format.md`` (one table per kind);
``tests/test_records.py`` checks the doc against ``TARGET_RECORDS`` and ``BundleInfo``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self

from gapsync.errors import BundleFormatError

# the artifact key is a noun of the core (gapsync/model.py), so that the scanners and the reports,
# which sit below this package, spell it the same way; re-exported here with the other records
from gapsync.model import ArtifactKey as ArtifactKey
from gapsync.model import artifact_key as artifact_key

BUNDLE_INFO_PATH = "gapsync/bundle.json"
SBOM_PATH = "gapsync/sbom.cdx.json"
POLICY_PATH = "gapsync/policy.yaml"
ADVISORIES_PATH = "gapsync/advisories.osv.jsonl.gz"
BUNDLE_LEVEL = {"gapsync/bundle.json", "gapsync/sbom.cdx.json"}  # new in every bundle: not a change by themselves


# -- reading one JSON object, field by field ----------------------------------------------------
class _Fields:
    """Pops the known fields of one JSON object, checking each one's type; what is left over is
    the object's unrecognized fields. ``where`` names the object in every error."""

    def __init__(self, d: object, where: str):
        if not isinstance(d, dict):
            raise BundleFormatError(f"{where}: not a JSON object ({type(d).__name__})")
        self.rest: dict[str, Any] = dict(d)
        self.where = where
        self.absent: set[str] = set()
        self.nulls: set[str] = set()

    def _take(self, key: str, required: bool) -> tuple[bool, Any]:
        if key not in self.rest:
            if required:
                raise BundleFormatError(f"{self.where}: lacks the field {key!r}")
            self.absent.add(key)
            return False, None
        if self.rest[key] is None:
            self.nulls.add(key)
        return True, self.rest.pop(key)

    def _bad(self, key: str, what: str, value: Any) -> BundleFormatError:
        return BundleFormatError(f"{self.where}: field {key!r} must be {what}, not {_type_name(value)}")

    def str_(self, key: str, *, required: bool = False, nullable: bool = False) -> Any:
        """A string (``None`` when left out and not required, or null and ``nullable``)."""
        present, v = self._take(key, required)
        if not present:
            return None
        if isinstance(v, str) or (v is None and nullable):
            return v
        raise self._bad(key, "a string" + (" or null" if nullable else ""), v)

    def int_(self, key: str, *, required: bool = False, nullable: bool = False) -> Any:
        present, v = self._take(key, required)
        if not present:
            return None
        if (isinstance(v, int) and not isinstance(v, bool)) or (v is None and nullable):
            return v
        raise self._bad(key, "an integer" + (" or null" if nullable else ""), v)

    def bool_(self, key: str, *, nullable: bool = True) -> Any:
        present, v = self._take(key, False)
        if not present:
            return None
        if isinstance(v, bool) or (v is None and nullable):
            return v
        raise self._bad(key, "true or false", v)

    def strs(self, key: str) -> tuple[str, ...]:
        """A list of strings (empty when left out)."""
        present, v = self._take(key, False)
        if not present:
            return ()
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return tuple(v)
        raise self._bad(key, "a list of strings", v)

    def dict_(self, key: str, *, nullable: bool = False) -> Any:
        """A JSON object, kept as it is (its own reader checks its inside)."""
        present, v = self._take(key, False)
        if not present:
            return None
        if isinstance(v, dict) or (v is None and nullable):
            return v
        raise self._bad(key, "an object" + (" or null" if nullable else ""), v)

    def list_(self, key: str) -> Any:
        present, v = self._take(key, False)
        if not present:
            return None
        if isinstance(v, list):
            return v
        raise self._bad(key, "a list", v)

    def any_(self, key: str) -> Any:
        return self._take(key, False)[1]

    def done(self) -> dict[str, Any]:
        """Keyword arguments common to every record: the leftovers, what was left out, what was null."""
        return {"unrecognized_fields": self.rest, "absent": frozenset(self.absent), "nulls": frozenset(self.nulls)}


def _type_name(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


# -- records ------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Record:
    """Fields every record has: the fields this gapsync does not know (written back unchanged),
    the optional fields the object left out (not written back) and those it gave as null."""

    unrecognized_fields: dict[str, Any] = field(default_factory=dict)
    absent: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    nulls: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    # fields the writer leaves out when they are None (a null read from a bundle is written back)
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset()

    def _pairs(self) -> list[tuple[str, Any]]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: the known fields (but those left out and still unset), then the
        unrecognized ones. A field set by ``dataclasses.replace`` after it was read as left out
        is written."""
        out: dict[str, Any] = {}
        for k, v in self._pairs():
            if (k in self.absent and (v is None or v == ())) or (v is None and k in self.OMIT_NONE and k not in self.nulls):
                continue
            out[k] = list(v) if isinstance(v, tuple) else (v.to_dict() if isinstance(v, Record) else v)
        out.update(self.unrecognized_fields)
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        """The JSON keys this record knows, in the order it writes them (for the doc check)."""
        return [k for k, _ in cls._example()._pairs()]

    @classmethod
    def _example(cls) -> Self:
        raise NotImplementedError


class _HasCustom(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def custom(self) -> dict[str, Any]: ...


@dataclass(frozen=True, kw_only=True)
class TargetRecord(Record):
    """The ``custom`` of one target in ``targets.json``: its ``kind`` and that kind's fields."""

    KINDS: ClassVar[tuple[str, ...]] = ()
    kind: str

    @classmethod
    def from_dict(cls, custom: object, path: str = "?") -> Self:
        raise NotImplementedError

    @classmethod
    def from_target(cls, t: _HasCustom) -> Self:
        """This target's record; a target of another kind is refused (a reader's own mistake)."""
        rec = cls.from_dict(t.custom, t.path)
        if rec.kind not in cls.KINDS:
            raise BundleFormatError(f"target {t.path!r}: a {rec.kind} target, not {' or '.join(cls.KINDS)}")
        return rec

    def key(self) -> ArtifactKey | None:
        """The artifact this target belongs to (None for bundle-level and shared targets)."""
        return None


def _fields(custom: object, path: str, kinds: tuple[str, ...]) -> _Fields:
    f = _Fields(custom, f"target {path!r}")
    kind = f.str_("kind", required=True)
    if kind not in kinds:
        raise BundleFormatError(f"target {path!r}: custom.kind {kind!r} is not {' or '.join(kinds)}")
    f.where = f"target {path!r} ({kind})"
    f.rest["kind"] = kind  # popped again by the record
    return f


# python ---------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PythonFile(TargetRecord):
    """A wheel or sdist at ``python/<normalized-name>/<filename>``."""

    KINDS: ClassVar[tuple[str, ...]] = ("python",)
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"metadata"})
    kind: str = "python"
    name: str
    version: str
    filename: str
    requires_python: str | None = None
    yanked: str | None = None  # null, or the reason it was yanked
    tags: tuple[str, ...] = ()  # the target ids the file was locked for (cp312-manylinux_2_17_x86_64)
    upstream: str | None = None  # the URL it came from (credentials redacted)
    metadata: str | None = None  # the path of its core metadata target (wheels only)

    @classmethod
    def from_dict(cls, custom: object, path: str = "?") -> Self:
        f = _fields(custom, path, cls.KINDS)
        return cls(kind=f.str_("kind"), name=f.str_("name", required=True), version=f.str_("version", required=True),
                   filename=f.str_("filename", required=True), requires_python=f.str_("requires_python", nullable=True),
                   yanked=f.str_("yanked", nullable=True), tags=f.strs("tags"), upstream=f.str_("upstream", nullable=True),
                   metadata=f.str_("metadata", nullable=True), **f.done())

    def _pairs(self) -> list[tuple[str, Any]]:
        return [("kind", self.kind), ("name", self.name), ("version", self.version), ("filename", self.filename),
                ("requires_python", self.requires_python), ("yanked", self.yanked), ("tags", self.tags),
                ("upstream", self.upstream), ("metadata", self.metadata)]

    @classmethod
    def _example(cls) -> Self:
        return cls(name="", version="", filename="")

    def key(self) -> ArtifactKey:
        return ArtifactKey("python", self.name, self.version)


@dataclass(frozen=True, kw_only=True)
class PythonMetadata(TargetRecord):
    """A wheel's core metadata (PEP 658) at ``python/<normalized-name>/<filename>.metadata``."""

    KINDS: ClassVar[tuple[str, ...]] = ("python-metadata",)
    kind: str = "python-metadata"
    name: str
    of: str  # the wheel's file name

    @classmethod
    def from_dict(cls, custom: object, path: str = "?") -> Self:
        f = _fields(custom, path, cls.KINDS)
        return cls(kind=f.str_("kind"), name=f.str_("name", required=True), of=f.str_("of", required=True), **f.done())

    def _pairs(self) -> list[tuple[str, Any]]:
        return [("kind", self.kind), ("name", self.name), ("of", self.of)]

    @classmethod
    def _example(cls) -> Self:
        return cls(name="", of="")


# oci ------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ChartInfo(Record):
    """A Helm chart's facts, in the ``chart`` field of its ``oci-image`` target."""

    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"skipped_images"})
    name: str | None = None
    version: str | None = None
    app_version: str | None = None
    description: str | None = None
    api_version: str | None = None
    repo: str | None = None  # oci://registry/path or the classic repository's URL
    archive: str | None = None  # the sha256 of the chart archive, one of the artifact's blobs
    images: tuple[str, ...] = ()  # the image references its default values and templates name
    skipped_images: tuple[str, ...] | None = None  # references it names that could not be taken

    @classmethod
    def from_dict(cls, d: object, where: str = "chart") -> Self:
        f = _Fields(d, where)
        skipped = f.strs("skipped_images") if "skipped_images" in f.rest else None
        return cls(name=f.str_("name", nullable=True), version=f.str_("version", nullable=True),
                   app_version=f.str_("app_version", nullable=True), description=f.str_("description", nullable=True),
                   api_version=f.str_("api_version", nullable=True), repo=f.str_("repo", nullable=True),
                   archive=f.str_("archive", nullable=True), images=f.strs("images"), skipped_images=skipped,
                   **f.done())

    def _pairs(self) -> list[tuple[str, Any]]:
        return [("name", self.name), ("version", self.version), ("app_version", self.app_version),
                ("description", self.description), ("api_version", self.api_version), ("repo", self.repo),
                ("archive", self.archive), ("images", self.images), ("skipped_images", self.skipped_images)]

    @classmethod
    def _example(cls) -> Self:
        return cls()


@dataclass(frozen=True, kw_only=True)
class OciImage(TargetRecord):
    """An image reference (its top manifest) at ``oci/image/<registry>/<repository>:<tag>`` (or
    ``@sha256:<hex>``); also an OCI artifact: a Helm chart, a signature, an attestation, an SBOM."""

    KINDS: ClassVar[tuple[str, ...]] = ("oci-image",)
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"artifact_type", "subject", "chart"})
    kind: str = "oci-image"
    name: str  # registry/repository
    tag: str | None = None
    digest: str  # of the carried top manifest
    upstream_digest: str | None = None
    media_type: str | None = None
    platforms: tuple[str, ...] = ()
    missing_platforms: tuple[str, ...] = ()
    manifests: tuple[str, ...] = ()  # platform manifest digests
    blobs: tuple[str, ...] = ()  # config and layer digests
    source: str | None = None  # the reference as the spec wrote it
    artifact_type: str | None = None  # an OCI artifact's type
    subject: str | None = None  # a signature or attestation: the digest of the image it is attached to
    chart: ChartInfo | None = None  # a Helm chart

    @classmethod
    def from_dict(cls, custom: object, path: str = "?") -> Self:
        f = _fields(custom, path, cls.KINDS)
        chart = f.dict_("chart")
        return cls(kind=f.str_("kind"), name=f.str_("name", required=True), tag=f.str_("tag", nullable=True),
                   digest=f.str_("digest", required=True), upstream_digest=f.str_("upstream_digest", nullable=True),
                   media_type=f.str_("media_type", nullable=True), platforms=f.strs("platforms"),
                   missing_platforms=f.strs("missing_platforms"), manifests=f.strs("manifests"), blobs=f.strs("blobs"),
                   source=f.str_("source", nullable=True), artifact_type=f.str_("artifact_type"),
                   subject=f.str_("subject"),
                   chart=None if chart is None else ChartInfo.from_dict(chart, f"{f.where}: chart"), **f.done())

    def _pairs(self) -> list[tuple[str, Any]]:
        return [("kind", self.kind), ("name", self.name), ("tag", self.tag), ("digest", self.digest),
                ("upstream_digest", self.upstream_digest), ("media_type", self.media_type),
                ("platforms", self.platforms), ("missing_platforms", self.missing_platforms),
                ("manifests", self.manifests), ("blobs", self.blobs), ("source", self.source),
                ("artifact_type", self.artifact_type), ("subject", self.subject), ("chart", self.chart)]

    @classmethod
    def _example(cls) -> Self:
        return cls(name="", digest="")

    @property
    def ref(self) -> str:
        """``name:tag``, or ``name@digest`` for an image carried by digest."""
        return f"{self.name}:{self.tag}" if self.tag else f"{self.name}@{self.digest}"

    @property
    def image_digest(self) -> str:
        """The digest the image has upstream (what signatures name as their subject)."""
        return self.upstream_digest or self.digest

    def blob_hexes(self) -> list[str]:
        """The sha256 hex of every manifest and blob the image needs."""
        return [d.split(":", 1)[1] for d in (*self.manifests, *self.blobs)]

    def key(self) -> ArtifactKey:
        return ArtifactKey("oci", self.name, self.tag or self.digest)


@dataclass(frozen=True, kw_only=True)
class OciManifest(TargetRecord):
    """A platform manifest under an index, at ``oci/manifest/sha256/<hex>``."""

    KINDS: ClassVar[tuple[str, ...]] = ("oci-manifest",)
    kind: str = "oci-manifest"
    media_type: str | None = None
    platform: str | None = None

    @classmethod
    def from_dict(cls, custom: object, path: str = "?") -> Self:
        f = _fields(custom, path, cls.KINDS)
        return cls(kind=f.str_("kind"), media_type=f.str_("media_type", nullable=True),
                   platform=f.str_("platform", nullable=True), **f.done())

    def _pairs(self) -> list[tuple[str, Any]]:
        return [("kind", self.kind), ("media_type", self.media_type), ("platform", self.platform)]

    @classmethod
    def _example(cls) -> Self:
        return cls()


@dataclass(frozen=True, kw_only=True)
class OciBlob(TargetRecord):
    """A config or layer, at ``oci/blob/sha256/<hex>``; shared by every image that uses it."""

    KINDS: ClassVar[tuple[str, ...]] = ("oci-blob",)
    kind: str = "oci-blob"
    media_type: str | None = None

    @classmethod
    def from_dict(cls, custom: object, path: str = "?") -> Self:
        f = _fields(custom, path, cls.KINDS)
        return cls(kind=f.str_("kind"), media_type=f.str_("media_type", nullable=True), **f.done())

    def _pairs(self) -> list[tuple[str, Any]]:
        return [("kind", self.kind), ("media_type", self.media_type)]

    @classmethod
    def _example(cls) -> Self:
        return cls()


# models and datasets -------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ModelTarget(TargetRecord):
    """A model revision at ``model/<source>/<name>@<revision>``, or a Hub dataset revision at
    ``dataset/hf/<name>@<revision>``; its blob is the manifest, its files ``model-blob`` targets."""

    KINDS: ClassVar[tuple[str, ...]] = ("model", "dataset")
    kind: str = "model"
    source: str | None = None  # hf, mlflow, url, path (always hf for a dataset)
    name: str
    revision: str
    commit: str
    license: Any = None  # as the source says: a string, or a model card's list, or null
    library: Any = None  # as the source says
    formats: tuple[str, ...] = ()
    origin: str | None = None
    files: int | None = None  # how many
    size: int | None = None  # bytes, all files

    @classmethod
    def from_dict(cls, custom: object, path: str = "?") -> Self:
        f = _fields(custom, path, cls.KINDS)
        return cls(kind=f.str_("kind"), source=f.str_("source", nullable=True), name=f.str_("name", required=True),
                   revision=f.str_("revision", required=True), commit=f.str_("commit", required=True),
                   license=f.any_("license"), library=f.any_("library"),
                   formats=f.strs("formats"), origin=f.str_("origin", nullable=True),
                   files=f.int_("files", nullable=True), size=f.int_("size", nullable=True), **f.done())

    def _pairs(self) -> list[tuple[str, Any]]:
        return [("kind", self.kind), ("source", self.source), ("name", self.name), ("revision", self.revision),
                ("commit", self.commit), ("license", self.license), ("library", self.library),
                ("formats", self.formats), ("origin", self.origin), ("files", self.files), ("size", self.size)]

    @classmethod
    def _example(cls) -> Self:
        return cls(name="", revision="", commit="")

    def key(self) -> ArtifactKey:
        return ArtifactKey(self.kind, self.name, self.revision)


@dataclass(frozen=True, kw_only=True)
class ModelBlob(TargetRecord):
    """One file of a model or dataset, at ``model/blob/sha256/<hex>`` (one content store)."""

    KINDS: ClassVar[tuple[str, ...]] = ("model-blob",)
    kind: str = "model-blob"

    @classmethod
    def from_dict(cls, custom: object, path: str = "?") -> Self:
        f = _fields(custom, path, cls.KINDS)
        return cls(kind=f.str_("kind"), **f.done())

    def _pairs(self) -> list[tuple[str, Any]]:
        return [("kind", self.kind)]

    @classmethod
    def _example(cls) -> Self:
        return cls()


# conda ----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class CondaPackage(TargetRecord):
    """A conda package file at ``conda/<channel>/<subdir>/<name>-<version>-<build>.conda`` (or
    ``.tar.bz2``), with the upstream channel's repodata record the air side writes back."""

    KINDS: ClassVar[tuple[str, ...]] = ("conda",)
    kind: str = "conda"
    name: str
    version: str
    build: str | None = None
    subdir: str | None = None
    filename: str
    channel: str | None = None  # the upstream channel's URL
    channel_name: str | None = None  # the channel's directory on the air side
    depends: tuple[str, ...] = ()
    license: str | None = None
    platforms: tuple[str, ...] = ()  # the platforms whose solve included it
    upstream: str | None = None  # the package's URL
    record: dict[str, Any] | None = None  # the repodata record (checked by the conda channel target)

    @classmethod
    def from_dict(cls, custom: object, path: str = "?") -> Self:
        f = _fields(custom, path, cls.KINDS)
        return cls(kind=f.str_("kind"), name=f.str_("name", required=True), version=f.str_("version", required=True),
                   build=f.str_("build", nullable=True), subdir=f.str_("subdir", nullable=True),
                   filename=f.str_("filename", required=True), channel=f.str_("channel", nullable=True),
                   channel_name=f.str_("channel_name", nullable=True), depends=f.strs("depends"),
                   license=f.str_("license", nullable=True), platforms=f.strs("platforms"),
                   upstream=f.str_("upstream", nullable=True), record=f.dict_("record"), **f.done())

    def _pairs(self) -> list[tuple[str, Any]]:
        return [("kind", self.kind), ("name", self.name), ("version", self.version), ("build", self.build),
                ("subdir", self.subdir), ("filename", self.filename), ("channel", self.channel),
                ("channel_name", self.channel_name), ("depends", self.depends), ("license", self.license),
                ("platforms", self.platforms), ("upstream", self.upstream), ("record", self.record)]

    @classmethod
    def _example(cls) -> Self:
        return cls(name="", version="", filename="")

    def key(self) -> ArtifactKey:
        return ArtifactKey("conda", self.name, self.version)


# bundle-level targets -------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class BundleInfoTarget(TargetRecord):
    """``gapsync/bundle.json``; when the bundle is split, the volume count and (format 2) the
    signed parts table (checked by ``bundle/archive.py::parse_parts``)."""

    KINDS: ClassVar[tuple[str, ...]] = ("bundle-info",)
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"volumes", "parts"})
    kind: str = "bundle-info"
    volumes: Any = None  # the count of volumes
    parts: Any = None  # {blob sha256: [[volume, offset, length, sha256], ...]}

    @classmethod
    def from_dict(cls, custom: object, path: str = "?") -> Self:
        f = _fields(custom, path, cls.KINDS)  # volumes and parts: parse_parts checks them, naming the bundle
        return cls(kind=f.str_("kind"), volumes=f.any_("volumes"), parts=f.any_("parts"), **f.done())

    def _pairs(self) -> list[tuple[str, Any]]:
        return [("kind", self.kind), ("volumes", self.volumes), ("parts", self.parts)]

    @classmethod
    def _example(cls) -> Self:
        return cls()


@dataclass(frozen=True, kw_only=True)
class SbomTarget(TargetRecord):
    """``gapsync/sbom.cdx.json``, the bundle's CycloneDX SBOM."""

    KINDS: ClassVar[tuple[str, ...]] = ("sbom",)
    kind: str = "sbom"

    @classmethod
    def from_dict(cls, custom: object, path: str = "?") -> Self:
        f = _fields(custom, path, cls.KINDS)
        return cls(kind=f.str_("kind"), **f.done())

    def _pairs(self) -> list[tuple[str, Any]]:
        return [("kind", self.kind)]

    @classmethod
    def _example(cls) -> Self:
        return cls()


@dataclass(frozen=True, kw_only=True)
class PolicyTarget(TargetRecord):
    """``gapsync/policy.yaml``, the policy the bundle was decided with."""

    KINDS: ClassVar[tuple[str, ...]] = ("policy",)
    kind: str = "policy"
    name: str | None = None

    @classmethod
    def from_dict(cls, custom: object, path: str = "?") -> Self:
        f = _fields(custom, path, cls.KINDS)
        return cls(kind=f.str_("kind"), name=f.str_("name", nullable=True), **f.done())

    def _pairs(self) -> list[tuple[str, Any]]:
        return [("kind", self.kind), ("name", self.name)]

    @classmethod
    def _example(cls) -> Self:
        return cls()


@dataclass(frozen=True, kw_only=True)
class AdvisoriesTarget(TargetRecord):
    """``gapsync/advisories.osv.jsonl.gz``, the advisory database the bundle was scanned with;
    its fields are the database's summary (``AdvisoryDB.info()``) and its age at scan time."""

    KINDS: ClassVar[tuple[str, ...]] = ("advisories",)
    kind: str = "advisories"
    file: str | None = None
    sha256: str | None = None
    size: int | None = None
    source: str | None = None
    imported_at: str | None = None
    modified: str | None = None  # the newest advisory's
    advisories: int | None = None  # how many
    packages: int | None = None  # how many packages they name
    withdrawn: int | None = None
    age_days: int | None = None
    max_age_days: int | None = None
    stale: bool | None = None

    @classmethod
    def from_dict(cls, custom: object, path: str = "?") -> Self:
        f = _fields(custom, path, cls.KINDS)
        return cls(kind=f.str_("kind"), file=f.str_("file", nullable=True), sha256=f.str_("sha256", nullable=True),
                   size=f.int_("size", nullable=True), source=f.str_("source", nullable=True),
                   imported_at=f.str_("imported_at", nullable=True), modified=f.str_("modified", nullable=True),
                   advisories=f.int_("advisories", nullable=True), packages=f.int_("packages", nullable=True),
                   withdrawn=f.int_("withdrawn", nullable=True),
                   age_days=f.int_("age_days", nullable=True), max_age_days=f.int_("max_age_days", nullable=True),
                   stale=f.bool_("stale"), **f.done())

    def _pairs(self) -> list[tuple[str, Any]]:
        return [("kind", self.kind), ("file", self.file), ("sha256", self.sha256), ("size", self.size),
                ("source", self.source), ("imported_at", self.imported_at), ("modified", self.modified),
                ("advisories", self.advisories), ("packages", self.packages), ("withdrawn", self.withdrawn),
                ("age_days", self.age_days),
                ("max_age_days", self.max_age_days), ("stale", self.stale)]

    @classmethod
    def _example(cls) -> Self:
        return cls()


@dataclass(frozen=True, kw_only=True)
class OtherTarget(TargetRecord):
    """A kind this gapsync does not know (a newer producer's): all its fields are kept. The
    importer refuses such a bundle ("upgrade gapsync"); ``inspect`` and the claims still read it."""

    @classmethod
    def from_dict(cls, custom: object, path: str = "?") -> Self:
        f = _Fields(custom, f"target {path!r}")
        return cls(kind=f.str_("kind", required=True), **f.done())

    def _pairs(self) -> list[tuple[str, Any]]:
        return [("kind", self.kind)]

    @classmethod
    def _example(cls) -> Self:
        return cls(kind="")


TARGET_RECORDS: dict[str, type[TargetRecord]] = {
    kind: cls for cls in (BundleInfoTarget, SbomTarget, PolicyTarget, AdvisoriesTarget, PythonFile, PythonMetadata,
                          OciImage, OciManifest, OciBlob, ModelTarget, ModelBlob, CondaPackage)
    for kind in cls.KINDS
}
BUNDLE_LEVEL_KINDS = frozenset({"bundle-info", "sbom", "policy", "advisories"})  # kept in the blob store, not published


def target_record(custom: object, path: str = "?") -> TargetRecord:
    """The record of one target's ``custom``, by its kind (``OtherTarget`` for a kind this gapsync
    does not know); ``BundleFormatError`` naming the target when a field is missing or ill-typed."""
    kind = custom.get("kind") if isinstance(custom, dict) else None
    return TARGET_RECORDS.get(kind, OtherTarget).from_dict(custom, path) if isinstance(kind, str) else \
        OtherTarget.from_dict(custom, path)


def record_of(t: _HasCustom) -> TargetRecord:
    return target_record(t.custom, t.path)


def check_targets(targets: Iterable[_HasCustom]) -> None:
    """Every target's ``custom`` is its kind's record (the importer calls this once, right after
    TUF, so that the readers after it never meet a missing or ill-typed field)."""
    for t in targets:
        record_of(t)


def target_key(t: _HasCustom) -> ArtifactKey | None:
    """The artifact a target belongs to (None for bundle-level and shared targets)."""
    return record_of(t).key()


# -- bundle.json --------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ArtifactFile(Record):
    """One file of an artifact in ``bundle.json``."""

    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"subdir", "build"})
    path: str | None = None  # its target path
    filename: str | None = None
    sha256: str | None = None
    size: int | None = None
    targets: tuple[str, ...] = ()  # the target ids (Python) or platforms (conda) it is for
    subdir: str | None = None  # conda
    build: str | None = None  # conda

    @classmethod
    def from_dict(cls, d: object, where: str = "file") -> Self:
        f = _Fields(d, where)
        return cls(path=f.str_("path", nullable=True), filename=f.str_("filename", nullable=True),
                   sha256=f.str_("sha256", nullable=True), size=f.int_("size", nullable=True), targets=f.strs("targets"),
                   subdir=f.str_("subdir"), build=f.str_("build"), **f.done())

    def _pairs(self) -> list[tuple[str, Any]]:
        return [("path", self.path), ("filename", self.filename), ("sha256", self.sha256), ("size", self.size),
                ("targets", self.targets), ("subdir", self.subdir), ("build", self.build)]

    @classmethod
    def _example(cls) -> Self:
        return cls()


@dataclass(frozen=True, kw_only=True)
class Artifact(Record):
    """One artifact in ``bundle.json``: what it is, its files, and (per kind) what the report and
    the SBOM show; ``license`` and ``decision`` are filled in after the scan."""

    OMIT_NONE: ClassVar[frozenset[str]] = frozenset(
        {"digest", "platforms", "missing_platforms", "blobs", "artifact_type", "subject", "chart", "source", "commit",
         "formats", "channel", "signatures", "size"})
    kind: str
    name: str
    version: str
    files: tuple[ArtifactFile, ...] = ()
    license: Any = None  # the scan's (an SPDX expression), else as the source says
    decision: str | None = None  # allow, warn or block (what the policy made of it)
    size: int | None = None  # oci, model, dataset: bytes
    digest: str | None = None  # oci: the top manifest's
    platforms: tuple[str, ...] | None = None  # oci
    missing_platforms: tuple[str, ...] | None = None  # oci
    blobs: dict[str, int] | None = None  # oci: digest -> size, each blob once
    artifact_type: str | None = None  # oci artifact
    subject: str | None = None  # oci signature or attestation
    chart: dict[str, Any] | None = None  # oci: a Helm chart's facts
    signatures: tuple[str, ...] | None = None  # oci: the signatures the policy verified
    source: str | None = None  # model, dataset
    commit: str | None = None  # model, dataset
    formats: tuple[str, ...] | None = None  # model, dataset
    channel: str | None = None  # conda: the upstream channel

    @classmethod
    def from_dict(cls, d: object, where: str = "artifact") -> Self:
        f = _Fields(d, where)
        files = f.list_("files")
        opt: dict[str, Any] = {k: (f.strs(k) if k in f.rest else None) for k in ("platforms", "missing_platforms", "signatures", "formats")}
        return cls(kind=f.str_("kind", required=True), name=f.str_("name", required=True),
                   version=f.str_("version", required=True),
                   files=tuple(ArtifactFile.from_dict(x, f"{where}: file") for x in files or []),
                   license=f.any_("license"), decision=f.str_("decision", nullable=True), size=f.int_("size"),
                   digest=f.str_("digest"), blobs=f.dict_("blobs"), artifact_type=f.str_("artifact_type"),
                   subject=f.str_("subject"), chart=f.dict_("chart"), source=f.str_("source"),
                   commit=f.str_("commit"), channel=f.str_("channel"), **opt, **f.done())

    def _pairs(self) -> list[tuple[str, Any]]:
        return [("kind", self.kind), ("name", self.name), ("version", self.version), ("files", self.files),
                ("license", self.license), ("decision", self.decision), ("size", self.size), ("digest", self.digest),
                ("platforms", self.platforms), ("missing_platforms", self.missing_platforms), ("blobs", self.blobs),
                ("artifact_type", self.artifact_type), ("subject", self.subject), ("chart", self.chart),
                ("signatures", self.signatures), ("source", self.source), ("commit", self.commit),
                ("formats", self.formats), ("channel", self.channel)]

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if "files" in out:
            out["files"] = [x.to_dict() for x in self.files]
        return out

    @classmethod
    def _example(cls) -> Self:
        return cls(kind="", name="", version="")

    def key(self) -> ArtifactKey:
        return ArtifactKey(self.kind, self.name, self.version)


@dataclass(frozen=True, kw_only=True)
class BundleInfo(Record):
    """``gapsync/bundle.json``: what the bundle is (name, channel, version, full or delta), who made
    it when, from which spec and lock, its artifacts, the scan's findings and the policy's
    decisions, and the advisory database and policy they came from."""

    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"python_version_differences", "base", "volumes"})
    format: int = 1  # 2 when a blob spans volumes in parts
    name: str | None = None
    channel: str | None = None
    version: int | None = None
    kind: str | None = None  # full or delta
    created: str | None = None
    producer: str | None = None  # "gapsync <version>"
    host: str | None = None
    spec_digest: str | None = None
    lock_digest: str | None = None
    artifacts: tuple[Artifact, ...] = ()
    findings: tuple[dict[str, Any], ...] = ()
    decisions: tuple[dict[str, Any], ...] = ()
    advisories: dict[str, Any] | None = None  # the advisory database's summary (null: none)
    policy: dict[str, Any] | None = None  # {name, source, sha256}
    python_version_differences: dict[str, dict[str, str]] | None = None  # {project: {target id: version}}
    base: dict[str, Any] | None = None  # a delta's: {source: history|receipt, version, ...}
    volumes: int | None = None  # when split: the count of volumes

    @classmethod
    def from_dict(cls, d: object, where: str = BUNDLE_INFO_PATH) -> Self:
        f = _Fields(d, where)
        fmt = f.int_("format")
        arts = f.list_("artifacts") or []
        findings, decisions = f.list_("findings"), f.list_("decisions")
        for what, items in (("findings", findings), ("decisions", decisions)):
            if items is not None and not all(isinstance(x, dict) for x in items):
                raise BundleFormatError(f"{where}: field {what!r} must be a list of objects")
        return cls(format=1 if fmt is None else fmt, name=f.str_("name", nullable=True),
                   channel=f.str_("channel", nullable=True), version=f.int_("version", nullable=True),
                   kind=f.str_("kind", nullable=True), created=f.str_("created", nullable=True),
                   producer=f.str_("producer", nullable=True), host=f.str_("host", nullable=True),
                   spec_digest=f.str_("spec_digest", nullable=True), lock_digest=f.str_("lock_digest", nullable=True),
                   artifacts=tuple(Artifact.from_dict(a, f"{where}: artifact {i}") for i, a in enumerate(arts)),
                   findings=tuple(findings or ()), decisions=tuple(decisions or ()),
                   advisories=f.dict_("advisories", nullable=True), policy=f.dict_("policy", nullable=True),
                   python_version_differences=f.dict_("python_version_differences"), base=f.dict_("base"),
                   volumes=f.int_("volumes"), **f.done())

    def _pairs(self) -> list[tuple[str, Any]]:
        return [("format", self.format), ("name", self.name), ("channel", self.channel), ("version", self.version),
                ("kind", self.kind), ("created", self.created), ("producer", self.producer), ("host", self.host),
                ("spec_digest", self.spec_digest), ("lock_digest", self.lock_digest), ("artifacts", self.artifacts),
                ("findings", self.findings), ("decisions", self.decisions), ("advisories", self.advisories),
                ("policy", self.policy), ("python_version_differences", self.python_version_differences),
                ("base", self.base), ("volumes", self.volumes)]

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if "artifacts" in out:
            out["artifacts"] = [a.to_dict() for a in self.artifacts]
        return out

    @classmethod
    def _example(cls) -> Self:
        return cls()
