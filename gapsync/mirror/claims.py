"""Channels stay in their lane: a published name belongs to the channel that published it.

A *name* is what a client of the mirror asks for: a Python file (``pypi/files/<file>``), an
image reference in ``oci/index.json``, a model reference (``refs/<revision>``) and the snapshot
a commit names in the Hugging Face cache, and, for any other kind, the target's path. Each name
is recorded with its owner channel and the value it points at (the file's sha256, the image's
digest, the commit, the snapshot's file list). Before anything is published, the importer asks
:func:`check`: a release that would give a name another channel owns a different value is
refused (exit 3, both channels named), and the mirror stays as it was. Publishing the same value
(the same bytes, the same digest, the same commit and files) under another channel's name is
allowed and changes nothing: the first channel keeps the name. A channel may always move its own
names (a tag that moved upstream).

Namespaces: a channel pinned with ``gapsync trust pin ... --namespace NAME`` publishes into its
own trees under ``MIRROR/ns/NAME/`` (``pypi/``, ``oci/``, ``models/hf/``, laid out as the
mirror's top, files hard-linked from the one blob store), so two channels may carry the same
names without meeting. Claims are kept per namespace.

On disk (JSON, replaced atomically through the import's publish journal, so a failed publish
undoes it too)::

    <namespace meta>/claims.json   {"format": 1, "names": {"<kind>:<name>": {"channel", "value"}}}
    MIRROR/.gapsync/namespaces.json {"format": 1, "channels": {"<channel>": "<namespace>"}}
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gapsync import fsutil
from gapsync.bundle.records import CondaPackage, ModelTarget, OciImage, PythonFile, PythonMetadata
from gapsync.canonical import sorted_json
from gapsync.errors import ChannelConflictError, InputError
from gapsync.mirror.journal import DIRECT, DirectWriter
from gapsync.mirror.layout import MirrorLayout
from gapsync.model import Target

FORMAT = 1
MAX_STATE = 256 << 20  # the claims file is read whole: refuse a planted giant
NAMESPACE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
# per-channel facts kept in the blob store, never published under a shared name
UNCLAIMED_KINDS = frozenset({"bundle-info", "sbom", "policy", "advisories"})
# named by their own digest: the same name always means the same bytes
CONTENT_ADDRESSED_KINDS = frozenset({"oci-blob", "oci-manifest", "model-blob"})


@dataclass(frozen=True)
class Name:
    key: str  # "<kind>:<name>", the claim's key
    value: str  # what the name points at
    label: str  # for people: "image docker.io/team/app:1.0"


def names_of(t: Target, manifest_of: Callable[[Target], dict] | None) -> list[Name]:
    """Every published name a target makes visible. Models name two things in the cache (the
    ref and the commit's snapshot) and may come from different sources under one cache folder,
    so they get their own names; every other kind (today's and any future one) is named by its
    target path, whose value is the blob's sha256. Without ``manifest_of`` (before the blobs are
    staged) a model's snapshot name is left out; its reference is known from the signed target."""
    if t.kind in UNCLAIMED_KINDS or t.kind in CONTENT_ADDRESSED_KINDS:
        return []
    if t.kind in ("model", "dataset"):  # a dataset's names are its own (datasets--org--name)
        m, k = ModelTarget.from_target(t), t.kind
        name, rev, commit = m.name, m.revision, m.commit
        out = []
        if manifest_of is not None:
            doc = manifest_of(t)
            files = sorted((str(f.get("path")), str(f.get("etag"))) for f in doc.get("files", []))
            snapshot = hashlib.sha256(json.dumps(files).encode()).hexdigest()
            out.append(Name(f"{k}-commit:{name}@{commit}", snapshot, f"{k} {name} snapshot {commit}"))
        if rev != commit:
            out.append(Name(f"{k}-ref:{name}@{rev}", commit, f"{k} {name} revision {rev}"))
        return out
    if t.kind == "oci-image":
        image = OciImage.from_target(t)
        return [Name(f"oci-image:{image.ref}", image.digest, f"image {image.ref}")]
    if t.kind in ("python", "python-metadata"):
        fn = PythonFile.from_target(t).filename if t.kind == "python" else PythonMetadata.from_target(t).of + ".metadata"
        return [Name(f"python-file:{fn}", t.blob.digest, f"Python file {fn}")]
    if t.kind == "conda":  # the file and its repodata record (depends...): another channel may change neither
        record = sorted_json(CondaPackage.from_target(t).record, default=str).decode()  # this form: values in existing claims
        value = hashlib.sha256(f"{t.blob.digest}\n{record}".encode()).hexdigest()
        return [Name(f"conda:{t.path}", value, f"conda package {t.path}")]
    return [Name(f"{t.kind}:{t.path}", t.blob.digest, f"{t.kind} {t.path}")]


# -- namespaces -------------------------------------------------------------------------------
class NamespaceLayout(MirrorLayout):
    """A channel's own published trees, ``MIRROR/ns/<name>/``, laid out as the mirror's top
    (with their inventories under its ``.gapsync/``); blobs stay in the mirror's one store."""

    def __init__(self, base: MirrorLayout, name: str):
        if not NAMESPACE_RE.match(name):
            raise InputError(f"bad namespace {name!r} (lower-case letters, digits, ._-)")
        super().__init__(base.namespace_root(name))
        self.base = base
        self.namespace = name

    def blob_path(self, digest: str) -> Path:
        return self.base.blob_path(digest)

    def has_blob(self, digest: str, size: int) -> bool:
        return self.base.has_blob(digest, size)


def _read_json(path: Path, what: str) -> dict:
    try:
        data = fsutil.read_regular(path, MAX_STATE)
    except FileNotFoundError:
        return {}
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise InputError(f"{path}: {what} is not valid JSON ({type(e).__name__})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: {what} is not a JSON object")
    return doc


def namespaces(layout: MirrorLayout) -> dict[str, str]:
    doc = _read_json(layout.namespaces_path, "the channel namespaces")
    chans = doc.get("channels") or {}
    return {str(k): str(v) for k, v in chans.items()} if isinstance(chans, dict) else {}


def namespace_of(layout: MirrorLayout, channel: str) -> str | None:
    return namespaces(layout).get(channel)


def set_namespace(layout: MirrorLayout, channel: str, name: str) -> None:
    """Give ``channel`` its own namespace (at ``trust pin`` time). Changing it after the channel
    has published would leave its names in two places: refused."""
    NamespaceLayout(layout, name)  # checks the name
    current = namespaces(layout)
    if current.get(channel) == name:
        return
    if channel in current or layout.state(channel).version > 0:
        have = current.get(channel)
        raise InputError(f"{layout.root}: channel {channel!r} already publishes into "
                         f"{'namespace ' + repr(have) if have else 'the shared namespace'}; a namespace is chosen "
                         "when the channel is pinned, before its first import")
    current[channel] = name
    fsutil.write_atomic(layout.namespaces_path, json.dumps({"format": FORMAT, "channels": current}, indent=1,
                                                            sort_keys=True).encode())


def published_layout(layout: MirrorLayout, channel: str) -> MirrorLayout:
    """Where ``channel`` publishes: its namespace's trees, or the mirror's top."""
    ns = namespace_of(layout, channel)
    return NamespaceLayout(layout, ns) if ns else layout


# -- claims -----------------------------------------------------------------------------------
def read_claims(view: MirrorLayout) -> dict[str, dict]:
    if not view.claims_path.exists() and not view.claims_path.is_symlink():
        return _bootstrap(view)
    doc = _read_json(view.claims_path, "the channel claims")
    names = doc.get("names") or {}
    return names if isinstance(names, dict) else {}


def _bootstrap(view: MirrorLayout) -> dict[str, dict]:
    """The claims of a mirror that published before claims were kept: every channel that
    publishes into ``view`` claims the names of its last imported (signed, re-verified) release,
    the channel that imported first winning a name two of them hold. Written out by the next
    import's :func:`record`."""
    from gapsync.mirror.exports.lockfiles import signed_targets

    base = view.base if isinstance(view, NamespaceLayout) else view
    ns = view.namespace if isinstance(view, NamespaceLayout) else None
    spaces = namespaces(base)
    chans = [c for c in base.channels() if spaces.get(c) == ns and base.state(c).version > 0]

    def first_import(c: str) -> str:
        bundles = base.state(c).bundles or [{}]
        return str(bundles[0].get("imported", "")) if isinstance(bundles[0], dict) else ""

    claims: dict[str, dict] = {}
    for c in sorted(chans, key=lambda c: (first_import(c), c)):
        _, targets = signed_targets(base, c)
        for t in targets:
            try:
                names = names_of(t, lambda t: json.loads(fsutil.read_regular(base.blob_path(t.blob.digest), MAX_STATE)))
            except (OSError, ValueError, RecursionError, AttributeError, TypeError):
                continue  # a model that was never published here (blocked): it claims nothing
            for n in names:
                claims.setdefault(n.key, {"channel": c, "value": n.value})
    return claims


def check(view: MirrorLayout, channel: str, targets: list[Target], manifest_of: Callable[[Target], dict] | None,
          bundle: Path) -> None:
    """Refuse (before anything is published) a release that would give another channel's name
    a different value; one line naming both channels, the name and how many more clash."""
    claims = read_claims(view)
    clashes = []
    for t in targets:
        for n in names_of(t, manifest_of):
            c = claims.get(n.key)
            if isinstance(c, dict) and c.get("channel") != channel and c.get("value") != n.value:
                clashes.append((n, c))
    if clashes:
        n, c = clashes[0]
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        where = f" in namespace {view.namespace!r}" if isinstance(view, NamespaceLayout) else ""
        raise ChannelConflictError(
            f"{bundle}: channel {channel!r} would replace {n.label}{where}, which channel {c.get('channel')!r} "
            f"published ({str(c.get('value'))[:24]}… here, {n.value[:24]}… in the bundle){more}; refused, nothing "
            "published: give the channels separate namespaces (gapsync trust pin --namespace) or rename upstream")


def record(view: MirrorLayout, channel: str, targets: list[Target], manifest_of: Callable[[Target], dict],
           fs: DirectWriter = DIRECT) -> None:
    """Claim the names this release published (a name another channel owns with the same value
    stays that channel's); written through the publish journal."""
    claims = read_claims(view)
    changed = not view.claims_path.exists()  # a bootstrapped set is written out once
    for t in targets:
        for n in names_of(t, manifest_of):
            c = claims.get(n.key)
            if isinstance(c, dict) and c.get("channel") != channel:
                continue  # check() let it through: the same value, the first channel keeps it
            if c != {"channel": channel, "value": n.value}:
                claims[n.key] = {"channel": channel, "value": n.value}
                changed = True
    if changed:
        fs.write_atomic(view.claims_path, json.dumps({"format": FORMAT, "names": claims}, indent=0,
                                                       sort_keys=True).encode())
