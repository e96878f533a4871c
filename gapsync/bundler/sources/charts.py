"""Helm charts: from OCI registries (``oci://registry/repo/chart:version``) and from classic HTTP
chart repositories (``{repo: URL, name, version}``, resolved through the repository's
``index.yaml`` and pinned to the archive's sha256).

Why a ``charts:`` section and not chart entries among ``images.refs``: a chart from an HTTP
repository has three coordinates (repository, name, version) that are no image reference, and
``images_from_charts`` is a choice about charts; both kinds still end as OCI artifacts in the lock
(a Helm chart manifest: config ``application/vnd.cncf.helm.config.v1+json``, one
``…chart.content.v1.tar+gzip`` layer), so they share the image path's dedupe, deltas, volumes,
scans, layout, push and serve. An HTTP chart gets the manifest Helm itself would push
(``helm push``), built deterministically from the archive, so both sides compute the same bytes.

A chart is read, never rendered: the archive is streamed with entry, size and ratio budgets
(no links, no absolute or ``..`` names), ``Chart.yaml`` and ``values.yaml`` parsed with
``yaml.safe_load``, templates scanned line by line for literal ``image:`` values.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit

import yaml

from gapsync.bundler.cache import BlobCache
from gapsync.bundler.fetch import FetchItem
from gapsync.bundler.lock import Lock, LockedImage
from gapsync.bundler.sources.base import FetchContext, ResolveContext
from gapsync.canonical import canonical_json
from gapsync.errors import DigestMismatchError, FetchError, InputError, UpstreamError
from gapsync.model import SHA256_RE
from gapsync.oci import OCI_MANIFEST, ImageRef, Platform
from gapsync.yamlfile import Located, check_keys, expect, http_url

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CONTENT = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
MAX_INDEX = 32 << 20  # a repository's index.yaml (Bitnami's was ~15 MB before they split it)
MAX_ARCHIVE = 64 << 20  # a chart archive
MAX_ENTRIES = 5000  # members of a chart archive
MAX_UNPACKED = 128 << 20  # bytes of a chart archive once decompressed
MAX_READ = 4 << 20  # one file read from a chart (Chart.yaml, values.yaml, a template)
MAX_DEPTH = 16  # path components of a member
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,127}$")
CHART_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$")
TEMPLATE_IMAGE_RE = re.compile(r"^\s*-?\s*image:\s*[\"']?([^\"'\s{}#]+)[\"']?\s*(?:#.*)?$")


class ChartError(UpstreamError):
    """A chart archive or repository index that is malformed, hostile or over its budget."""


@dataclass(frozen=True)
class ChartRef:
    """``oci`` (an ``oci://`` reference) or ``http`` (repository URL, chart name, version)."""

    kind: str
    location: str  # oci: registry/repo/chart:version; http: the repository URL (ends with /)
    name: str
    version: str

    def canonical(self) -> dict[str, str]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ChartsSpec:
    refs: tuple[ChartRef, ...]
    images_from_charts: bool = False
    insecure: tuple[str, ...] = ()
    platforms: tuple[Platform, ...] = (Platform("linux", "amd64"),)

    def canonical(self) -> dict[str, Any]:
        return {"refs": [r.canonical() for r in self.refs], "images_from_charts": self.images_from_charts,
                "insecure": list(self.insecure), "platforms": [str(p) for p in self.platforms]}


def load_section(loc: Located, raw: Any) -> ChartsSpec:
    """The ``charts:`` section: ``refs`` of ``oci://…:version`` strings or ``{repo, name, version}``."""
    from gapsync.oci_client import LOOPBACK

    k = ("charts",)
    expect(loc, k, raw, dict, "a mapping with refs (and images_from_charts, insecure, platforms)")
    check_keys(loc, k, raw, {"refs", "images_from_charts", "insecure", "platforms"})
    refs: list[ChartRef] = []
    for i, r in enumerate(expect(loc, (*k, "refs"), raw.get("refs"), list, "a list of charts")):
        rk = (*k, "refs", i)
        if isinstance(r, str):
            if not r.startswith("oci://"):
                raise loc.error(rk, f"{r!r}: an OCI chart is oci://registry/repository/chart:version")
            try:
                ref = ImageRef.parse(r[len("oci://"):])
            except ValueError as e:
                raise loc.error(rk, str(e)) from e
            if ref.tag is None or ref.tag == "latest" and ":latest" not in r:
                raise loc.error(rk, f"{r!r}: name the chart's version (oci://…/chart:1.2.3)")
            refs.append(ChartRef("oci", str(ref), ref.repository.rsplit("/", 1)[-1], ref.tag or ""))
            continue
        expect(loc, rk, r, dict, "oci://… or a mapping {repo: URL, name, version}")
        check_keys(loc, rk, r, {"repo", "name", "version"})
        repo = expect(loc, (*rk, "repo"), r.get("repo"), str, "the chart repository's URL")
        http_url(loc, (*rk, "repo"), repo, "")
        from gapsync.bundler.http import remember_credentials

        # user info kept for the repository's origin (sent there only), never in the lock or a message
        repo = remember_credentials(repo)
        name = expect(loc, (*rk, "name"), r.get("name"), str, "the chart's name")
        version = expect(loc, (*rk, "version"), r.get("version"), (str, int, float), "the chart's version")
        version = str(version)
        if not CHART_NAME_RE.match(name):
            raise loc.error((*rk, "name"), f"{name!r}: not a chart name (lower-case letters, digits, ._-)")
        if not VERSION_RE.match(version):
            raise loc.error((*rk, "version"), f"{version!r}: not a chart version")
        refs.append(ChartRef("http", repo if repo.endswith("/") else repo + "/", name, version))
    if not refs:
        raise loc.error((*k, "refs"), "name at least one chart")
    if len({(r.kind, r.location, r.name, r.version) for r in refs}) != len(refs):
        raise loc.error((*k, "refs"), "the same chart is listed twice")
    images_from = expect(loc, (*k, "images_from_charts"), raw.get("images_from_charts", False), bool, "true or false")
    insecure = expect(loc, (*k, "insecure"), raw.get("insecure", []), list, "a list of loopback registries")
    for i, h in enumerate(insecure):
        expect(loc, (*k, "insecure", i), h, str, "host:port")
        if not LOOPBACK.match(h):
            raise loc.error((*k, "insecure", i), f"{h!r}: plain HTTP is only allowed to a loopback registry")
    plats = []
    for i, p in enumerate(expect(loc, (*k, "platforms"), raw.get("platforms", ["linux/amd64"]), list, "a list")):
        try:
            plats.append(Platform.parse(str(p)))
        except ValueError as e:
            raise loc.error((*k, "platforms", i), str(e)) from e
    return ChartsSpec(tuple(refs), images_from, tuple(insecure), tuple(plats) or (Platform("linux", "amd64"),))


# -- reading a chart archive (never rendering it) ------------------------------------------------
@dataclass
class ChartFacts:
    chart: dict[str, Any]  # Chart.yaml
    values: dict[str, Any]  # the top chart's values.yaml (safe_load)
    template_images: list[str] = field(default_factory=list)


class _Counted(io.RawIOBase):
    """The decompressed stream, refused once it passes the budget (a gzip bomb stops there)."""

    def __init__(self, raw, what: str, limit: int):
        self.raw, self.what, self.limit, self.count = raw, what, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.raw.read(len(b))
        self.count += len(data)
        if self.count > self.limit:
            raise ChartError(f"{self.what}: more than {self.limit} bytes once decompressed; refused")
        b[:len(data)] = data
        return len(data)


def read_chart(data: bytes, what: str) -> ChartFacts:
    """Chart.yaml, values.yaml and the literal ``image:`` lines of the templates, read from the
    archive as a stream under budgets; any link, device, absolute or ``..`` member, or a member
    outside the chart's one top directory, refuses the chart (one line)."""
    if len(data) > MAX_ARCHIVE:
        raise ChartError(f"{what}: archive of {len(data)} bytes (limit {MAX_ARCHIVE})")
    stream = io.BufferedReader(_Counted(gzip.GzipFile(fileobj=io.BytesIO(data)), what, MAX_UNPACKED))
    top: str | None = None
    chart_yaml = values_yaml = None
    images: list[str] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            for n, m in enumerate(tf):
                if n >= MAX_ENTRIES:
                    raise ChartError(f"{what}: more than {MAX_ENTRIES} entries; refused")
                parts = m.name.split("/")
                if (m.name.startswith("/") or "\\" in m.name or any(p in ("..",) for p in parts)
                        or len(parts) > MAX_DEPTH or any(c < " " for c in m.name)):
                    raise ChartError(f"{what}: member {m.name[:120]!r} escapes the chart; refused")
                if not (m.isreg() or m.isdir()):
                    raise ChartError(f"{what}: member {m.name[:120]!r} is a link or a special file; refused")
                parts = [p for p in parts if p not in ("", ".")]
                if not parts:
                    continue
                if top is None:
                    top = parts[0]
                elif parts[0] != top:
                    raise ChartError(f"{what}: members in two top directories ({top!r}, {parts[0]!r}); refused")
                if not m.isreg():
                    continue
                rel = "/".join(parts[1:])
                wanted = rel in ("Chart.yaml", "values.yaml") or (
                    rel.startswith("templates/") and rel.endswith((".yaml", ".yml", ".tpl")))
                if not wanted:
                    continue
                if m.size > MAX_READ:
                    raise ChartError(f"{what}: {m.name[:120]!r} is {m.size} bytes (limit {MAX_READ}); refused")
                f = tf.extractfile(m)
                body = f.read(MAX_READ + 1) if f else b""
                if rel == "Chart.yaml":
                    chart_yaml = body
                elif rel == "values.yaml":
                    values_yaml = body
                else:
                    images += template_images(body.decode("utf-8", "replace"))
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as e:
        raise ChartError(f"{what}: not a readable chart archive ({type(e).__name__}: {str(e)[:120]})") from None
    if chart_yaml is None:
        raise ChartError(f"{what}: no Chart.yaml in the archive")
    chart = _yaml_mapping(chart_yaml, f"{what}: Chart.yaml")
    for key in ("name", "version"):
        if not isinstance(chart.get(key), str | int | float) or isinstance(chart.get(key), bool):
            raise ChartError(f"{what}: Chart.yaml has no {key}")
    name, version = str(chart["name"]), str(chart["version"])
    if not CHART_NAME_RE.match(name) or not VERSION_RE.match(version):
        raise ChartError(f"{what}: Chart.yaml's name {name[:80]!r} or version {version[:80]!r} is not one a chart "
                         "repository can publish (lower-case name, no path)")
    values = _yaml_mapping(values_yaml, f"{what}: values.yaml") if values_yaml else {}
    return ChartFacts(chart, values, images)


def _yaml_mapping(data: bytes, what: str) -> dict[str, Any]:
    try:  # never yaml.load: no Python objects from a chart; libyaml's safe loader when there is one
        doc = yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    except (yaml.YAMLError, RecursionError, UnicodeDecodeError) as e:
        raise ChartError(f"{what}: not YAML ({type(e).__name__})") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ChartError(f"{what}: not a mapping")
    return doc


def template_images(text: str) -> list[str]:
    """Literal ``image: repo:tag`` lines of a template (lines with ``{{`` are not rendered, so skipped)."""
    return [m.group(1) for line in text.splitlines() if "{{" not in line and (m := TEMPLATE_IMAGE_RE.match(line))]


MAX_VALUE_NODES = 200_000  # nodes of values.yaml walked: YAML aliases can make a tree of billions


def values_images(values: Any, app_version: str | None, depth: int = 0, budget: list[int] | None = None) -> list[str]:
    """Images named in default values: ``image: repo:tag`` strings and ``image: {registry,
    repository, tag, digest}`` mappings (the tag defaulting to the chart's appVersion, as most
    charts' templates do). The walk is budgeted: aliases (``&a``/``*a``) nest a small file into a
    huge tree, refused rather than walked."""
    out: list[str] = []
    budget = budget if budget is not None else [MAX_VALUE_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise ChartError(f"values.yaml: more than {MAX_VALUE_NODES} nodes once aliases are expanded; refused")
    if depth > 32:
        return out
    if isinstance(values, dict):
        for k, v in values.items():
            if k == "image" and isinstance(v, str):
                out.append(v)
            elif k == "image" and isinstance(v, dict) and isinstance(v.get("repository"), str):
                repo = v["repository"]
                reg = v.get("registry")
                if isinstance(reg, str) and reg:
                    repo = f"{reg.rstrip('/')}/{repo}"
                tag, digest = v.get("tag"), v.get("digest")
                if isinstance(digest, str) and digest:
                    out.append(f"{repo}@{digest}")
                elif isinstance(tag, str | int | float) and not isinstance(tag, bool) and str(tag):
                    out.append(f"{repo}:{tag}")
                elif app_version:
                    out.append(f"{repo}:{app_version}")
            else:
                out += values_images(v, app_version, depth + 1, budget)
    elif isinstance(values, list):
        for v in values:
            out += values_images(v, app_version, depth + 1, budget)
    return out


def images_named(facts: ChartFacts, what: str = "chart") -> tuple[list[str], list[str]]:
    """(valid image references, skipped strings) a chart names in its values and templates."""
    app = facts.chart.get("appVersion")
    try:
        raw = values_images(facts.values, str(app) if app is not None else None) + facts.template_images
    except ChartError as e:
        raise ChartError(f"{what}: {e}") from None
    good, skipped = [], []
    for r in dict.fromkeys(raw):
        try:
            good.append(str(ImageRef.parse(r)))
        except ValueError:
            skipped.append(r[:200])
    return list(dict.fromkeys(good)), skipped


# -- OCI form of an HTTP chart ----------------------------------------------------------------
def helm_manifest(archive: bytes, chart: dict[str, Any]) -> tuple[bytes, bytes]:
    """(manifest, config) as ``helm push`` writes them: the config is Chart.yaml as JSON."""
    config = canonical_json(chart, default=str)  # its digest is in locks and bundles: bytes fixed
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": HELM_CONFIG, "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                           "size": len(config)},
                "layers": [{"mediaType": HELM_CONTENT, "digest": "sha256:" + hashlib.sha256(archive).hexdigest(),
                            "size": len(archive)}],
                "annotations": {"org.opencontainers.image.title": str(chart["name"]),
                                "org.opencontainers.image.version": str(chart["version"])}}
    return json.dumps(manifest, indent=2, sort_keys=True).encode(), config


def http_name(ref: ChartRef) -> str:
    """The OCI name an HTTP chart gets: ``host[:port]/path/chart`` (lower-case, safe components)."""
    u = urlsplit(ref.location)
    comps = [re.sub(r"[^a-z0-9._-]+", "-", c.lower()).strip("._-") for c in u.path.split("/") if c]
    host = (u.hostname or "charts").lower() + (f":{u.port}" if u.port else "")
    if "." not in host and ":" not in host:
        host += ".local"
    name = "/".join([host, *[c for c in comps if c], ref.name])
    return name


def _fetch(url: str, cap: int, what: str) -> bytes:
    from gapsync.bundler.http import get_document, unmask

    r, data = get_document(unmask(url), cap, what)  # a token in the path is sent, recorded masked
    if r.status_code != 200:
        raise FetchError(f"{what}: HTTP {r.status_code}")
    return data


def _index_entry(ref: ChartRef) -> tuple[str, str]:
    """(archive URL, sha256) of the chart version in the repository's index.yaml (typed checks)."""
    what = f"{ref.location}index.yaml"
    index = _yaml_mapping(_fetch(ref.location + "index.yaml", MAX_INDEX, what), what)
    entries = index.get("entries")
    if not isinstance(entries, dict):
        raise ChartError(f"{what}: no entries mapping")
    versions = entries.get(ref.name)
    if not isinstance(versions, list):
        raise InputError(f"{what}: no chart {ref.name!r}")
    for v in versions:
        if isinstance(v, dict) and str(v.get("version")) == ref.version:
            urls, digest = v.get("urls"), v.get("digest")
            if not isinstance(urls, list) or not urls or not isinstance(urls[0], str):
                raise ChartError(f"{what}: {ref.name} {ref.version} has no archive URL")
            if not isinstance(digest, str) or not SHA256_RE.match(digest):
                raise ChartError(f"{what}: {ref.name} {ref.version} has no sha256 digest; refused (nothing to pin)")
            url = urljoin(ref.location, urls[0])
            if urlsplit(url).scheme not in ("http", "https"):
                raise ChartError(f"{what}: {ref.name} {ref.version}: archive URL {url[:120]!r} is not http(s)")
            from gapsync.bundler.http import remember_credentials

            return remember_credentials(url), digest  # user info in an index's URL: never recorded
    have = sorted(str(v.get("version")) for v in versions if isinstance(v, dict))[:20]
    raise InputError(f"{what}: no version {ref.version} of {ref.name} (it has {have})")


def _store_http(url: str, digest: str, name: str, version: str, cache: BlobCache) -> tuple[bytes, ChartFacts, bytes]:
    """Download the archive (sha256 checked), read it, store archive, config and manifest."""
    if cache.has(digest):
        archive = cache.path(digest).read_bytes()
    else:
        archive = _fetch(url, MAX_ARCHIVE, url)
        if hashlib.sha256(archive).hexdigest() != digest:
            raise DigestMismatchError(f"{url}: the archive does not match the index's sha256 {digest}")
    facts = read_chart(archive, url)
    if str(facts.chart.get("name")) != name or str(facts.chart.get("version")) != version:
        raise ChartError(f"{url}: Chart.yaml says {facts.chart.get('name')} {facts.chart.get('version')}, "
                         f"the index {name} {version}")
    cache.put_bytes(archive, what=url)
    manifest, config = helm_manifest(archive, facts.chart)
    cache.put_bytes(config, what=f"{url} config")
    cache.put_bytes(manifest, what=f"{url} manifest")
    return manifest, facts, archive


def _chart_info(ref: ChartRef, facts: ChartFacts, archive_digest: str, images: list[str], skipped: list[str]) -> dict:
    return {"name": str(facts.chart["name"]), "version": str(facts.chart["version"]),
            "app_version": str(facts.chart.get("appVersion")) if facts.chart.get("appVersion") is not None else None,
            "description": str(facts.chart.get("description") or "")[:500], "api_version": str(facts.chart.get("apiVersion") or "v2"),
            "repo": f"oci://{ref.location}" if ref.kind == "oci" else ref.location, "archive": archive_digest,
            "images": images, **({"skipped_images": skipped} if skipped else {})}


def resolve(spec, cache: BlobCache, jobs: int = 8) -> list[LockedImage]:
    """Every chart of ``spec.charts`` as a locked OCI artifact, plus (``images_from_charts``) the
    images they name, resolved like the spec's own images (signatures and all)."""
    from gapsync.bundler.sources import oci
    from gapsync.bundler.spec import ImagesSpec

    cs: ChartsSpec = spec.charts
    insecure = tuple(dict.fromkeys([*cs.insecure, *(spec.images.insecure if spec.images else ())]))
    clients = oci.Clients(insecure)
    out: list[LockedImage] = []
    wanted: dict[str, list[str]] = {}  # image ref -> charts that asked for it
    for ref in cs.refs:
        if ref.kind == "oci":
            iref = ImageRef.parse(ref.location)
            origin = oci.RegistryOrigin(clients, iref, cache)
            img = oci.resolve_image(origin, ImagesSpec((iref,), cs.platforms), f"oci://{ref.location}")
            if img.artifact_type != HELM_CONFIG:
                raise InputError(f"oci://{ref.location}: not a Helm chart (its type is {img.artifact_type or 'an image'})")
            doc = json.loads(origin.manifest(img.digest))
            layers = [d for d in oci._descriptors(doc, "layers", ref.location) if d.get("mediaType") == HELM_CONTENT]
            if len(layers) != 1:
                raise ChartError(f"oci://{ref.location}: expected one chart content layer, found {len(layers)}")
            archive = origin.small_blob(layers[0]["digest"], layers[0]["size"], MAX_ARCHIVE)
            facts = read_chart(archive, f"oci://{ref.location}")
            if str(facts.chart["version"]).replace("+", "_") != ref.version:
                raise ChartError(f"oci://{ref.location}: Chart.yaml says version {facts.chart['version']}, not the tag's")
            archive_digest = layers[0]["digest"].split(":", 1)[1]
            out += oci.attached(origin, img)  # a chart signed with cosign: its signature travels too
        else:
            url, archive_digest = _index_entry(ref)
            manifest, facts, _ = _store_http(url, archive_digest, ref.name, ref.version, cache)
            name, tag = http_name(ref), ref.version.replace("+", "_")
            img = LockedImage(ref=f"{ref.location} {ref.name} {ref.version}", name=name, tag=tag,
                              digest="sha256:" + hashlib.sha256(manifest).hexdigest(), media_type=OCI_MANIFEST,
                              size=len(manifest), platforms=[], missing_platforms=[], manifests=[],
                              source={"kind": "chart_repo", "location": url, "ref": archive_digest},
                              artifact_type=HELM_CONFIG)
        images, skipped = images_named(facts, img.ref)
        img.chart = _chart_info(ref, facts, archive_digest, images, skipped)
        out.append(img)
        for i in images:
            wanted.setdefault(i, []).append(f"{img.chart['name']}-{img.chart['version']}")
    if cs.images_from_charts and wanted:
        have = {str(r) for r in (spec.images.refs if spec.images else ())}
        refs = [ImageRef.parse(r) for r in wanted if r not in have]
        if refs:
            from gapsync.names import BadName, check_image_name

            for r in refs:
                try:
                    check_image_name(r.name)
                except BadName as e:
                    raise InputError(f"image {r} named by chart(s) {wanted[str(r)]}: {e}") from None
            plats = spec.images.platforms if spec.images else cs.platforms
            out += oci.resolve(ImagesSpec(tuple(refs), plats, insecure=insecure), [str(r) for r in refs], cache, jobs)
    return out


def ensure_cached(images: list[LockedImage], cache: BlobCache) -> None:
    """``bundle create --lock`` in a fresh cache: HTTP charts are fetched again by their pinned
    URL and sha256, and their manifest rebuilt (deterministic, so its digest must be the lock's)."""
    for img in images:
        src = img.source or {}
        if src.get("kind") != "chart_repo" or cache.has(img.digest.split(":", 1)[1]):
            continue
        chart = img.chart or {}
        manifest, _, _ = _store_http(str(src.get("location")), str(src.get("ref")), str(chart.get("name")),
                                     str(chart.get("version")), cache)
        if "sha256:" + hashlib.sha256(manifest).hexdigest() != img.digest:
            raise DigestMismatchError(f"{src.get('location')}: the chart's manifest is not the lock's {img.digest}")


class ChartSource:
    """The ``charts:`` section is one entry: the charts and the images they name resolve
    together, after the spec's own images, leaving out images already locked. An HTTP chart's
    record is an OCI artifact whose manifest gapsync built: fetching it rebuilds that manifest
    from the pinned archive when the cache lacks it, then reads it as any locked image."""

    name: ClassVar[str] = "chart"

    def resolve(self, entry: ChartsSpec, ctx: ResolveContext) -> Lock:
        assert entry is ctx.spec.charts  # a chart's images take the images section's platforms
        have = {(i.name, i.digest) for i in ctx.lock.images}
        return Lock(ctx.lock.spec_digest, images=[i for i in resolve(ctx.spec, ctx.cache, ctx.jobs)
                                                  if (i.name, i.digest) not in have])

    def fetch(self, record: LockedImage, ctx: FetchContext) -> list[FetchItem]:
        from gapsync.bundler.sources.oci import OciSource

        ensure_cached([record], ctx.cache)
        return OciSource().fetch(record, ctx)
