"""Weeks of the scheduled job in one test: two channels, real upstreams that change, one air-gapped
mirror, and after every step the mirror's published trees equal those of a mirror fed full bundles.

The external zone is real: a PEP 503 index of small real wheels (a static server that asks
clients to revalidate its pages, see ``RevalidatingIndex``), a
``docker-registry`` holding library/app-a:1.0 (an OCI index) and team/app-b:2.0 (Docker media
types, sharing its base layer with app-a), and the Hugging Face Hub stand-in with acme/tiny-bert
and acme/other. Channel ``prod`` has root and targets 2-of-2 (``channel init --key a --key b
--threshold 2``): every bundle is made by ``sync --unapproved`` with key a and co-signed with
``bundle approve`` with key b. Channel ``research`` has one key. Both are imported into ONE mirror
(both roots pinned).

Next to each channel, a reference channel of the same name (its own state, key and cache) makes a
FULL ``bundle create`` of the same spec at every step, imported into a reference mirror in the
same order; after every step the two mirrors' ``pypi/``, ``oci/`` and ``models/hf/`` trees must be
equal file for file (``.gapsync/`` holds the blob store, trust state and temp names: not compared).

Steps (each upstream change is a real one, seen by a fresh resolve):

1. first sync of both channels (full); prod unapproved is refused, approved imports; research in
   volumes with parity, imported shuffled with repeats; ``sync`` again: exit 5 for both.
2. a package bumped upstream (beta 1.1, both channels use it) and one added to research's spec:
   prod's delta carries exactly beta 1.1's wheel and metadata; research's delta is in volumes,
   one is lost, an older bundle's volume is imported (replay, refused) and put in the lost one's
   place (refused, and repair rebuilds it), the rest imported out of order.
3. an image tag moved (a new image pushed with skopeo under library/app-a:1.0): prod's delta in
   volumes with parity, a volume lost and repaired, an unapproved volume refused, one approval for
   all volumes; research adds a package, but its bundle stays on the DMZ (a stick forgotten).
4. a model revision added (a new commit, ``main`` moved): research's next delta reaches the mirror
   before the forgotten one and is refused (its base was never imported), then both in order.
5. research's key is rotated (root v2) and a receipt from the mirror goes back: signed by an
   unknown key it is refused (exit 3, no bundle, the channel unchanged); with the air side's key,
   research's delta for an image prod already brought carries no blob at all, signed by the new
   key, and the mirror follows the root chain; prod has nothing new (exit 5).

Every refused bundle is exit 3 with the mirror unchanged byte for byte (``assert_refused``).

Two more tests pin product bugs found on the way, fixed since: a release published minutes after
the last sync was not seen (uv's HTTP cache), and a delta in volumes whose base never reached the
mirror was half-imported.
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import tarfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gapsync.bundle.keys import load_signing_key
from tests.support.channels import new_channel, write_spec
from tests.support.cli import cli
from tests.support.hostile_bundles import assert_refused
from tests.support.models import (
    OTHER,
    TINY,
    FakeHub,
    build_default_repos,
    config_json,
    safetensors_bytes,
    write_repo,
)
from tests.support.oci import (
    BASE_LAYER,
    ImageSpec,
    Layer,
    PlatformSpec,
    Registry,
    build_layout,
    default_images,
    push_with_skopeo,
)
from tests.support.servers import static_server
from tests.support.trees import snapshot
from tests.support.wheels import make_wheel, write_index

needs_registry = pytest.mark.skipif(not all(shutil.which(t) for t in ("docker-registry", "skopeo")),
                                    reason="needs docker-registry and skopeo (apt-get install docker-registry skopeo)")

PUBLISHED = ("pypi/", "oci/", "models/hf/", "ns/")


# -- the external zone ----------------------------------------------------------------------------

class _RevalidateHandler(SimpleHTTPRequestHandler):
    def end_headers(self) -> None:
        self.send_header("Cache-Control", "max-age=0, must-revalidate")
        super().end_headers()

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's signature
        pass


class _Server(ThreadingHTTPServer):
    request_queue_size = 64  # uv opens many connections at once
    daemon_threads = True


class RevalidatingIndex:
    """A static PEP 503 index that tells clients to revalidate its pages (``Cache-Control:
    max-age=0``, If-Modified-Since answered with 304 when unchanged), in a thread of this process.

    Why not tests/support/servers/static_http.py: it sends no Cache-Control, and uv then takes a page as
    fresh for 600 s without asking again, so a release published a few seconds after the previous
    sync is not seen (the product issue ``test_sync_sees_a_release_published_right_after_the_last_one``
    records). Here every step's release must be seen at once."""

    def __init__(self, root: Path):
        self.httpd = _Server(("127.0.0.1", 0), functools.partial(_RevalidateHandler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/simple/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class Upstream:
    """Index, registry and Hub, each changed by the test the way upstreams change."""

    def __init__(self, base: Path):
        self.servers: list = []
        try:
            self._start(base)
        except BaseException:
            self.stop()  # never leak a server that did come up
            raise

    def _start(self, base: Path) -> None:
        self.rnd = random.Random(8)
        self.index_root = base / "index"
        for name, version, requires in (("alpha", "1.0", ("beta>=1",)), ("beta", "1.0", ()), ("gamma", "1.0", ()),
                                        ("later", "1.0", ()), ("delta", "1.0", ())):
            self.add_wheel(name, version, requires)
        self.stamp = int(time.time())
        self.write_index()
        self.index = RevalidatingIndex(self.index_root)
        self.servers.append(self.index)
        self.layout = base / "layout"
        build_layout(self.layout, [i for i in default_images() if i.name in ("app-a", "app-b")])
        self.registry = Registry(base / "registry")
        self.servers.append(self.registry)
        for name, ref in (("app-a", "library/app-a:1.0"), ("app-b", "team/app-b:2.0")):
            push_with_skopeo(self.layout, name, f"{self.registry.host}/{ref}")
        hub_root = base / "hub" / "root"
        hub_root.mkdir(parents=True)
        self.hub = FakeHub(hub_root, repos=build_default_repos(hub_root))
        self.servers.append(self.hub)

    def stop(self) -> None:
        for s in reversed(self.servers):
            s.stop()

    def add_wheel(self, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
        make_wheel(self.index_root / "files", name, version, requires=requires, payload=self.rnd.randbytes(40_000))

    def write_index(self) -> None:
        """Rewrite the pages with an mtime later than any before: If-Modified-Since never hides a change."""
        write_index(self.index_root)
        self.stamp += 10
        for page in (self.index_root / "simple").rglob("index.html"):
            os.utime(page, (self.stamp, self.stamp))

    def image(self, repository: str) -> str:
        return f"{self.registry.host}/{repository}"

    def move_tag(self) -> str:
        """A new build of app-a (same base layer, new app layers) pushed under library/app-a:1.0."""
        platforms = tuple(PlatformSpec(p, (BASE_LAYER, Layer({"app/identity.txt": f"app-a 1.0 rebuilt for {p}\n".encode(),
                                                             "app/data.bin": self.rnd.randbytes(30_000)})))
                          for p in ("linux/amd64", "linux/arm64", "linux/arm/v7"))
        built = build_layout(self.layout, [ImageSpec("app-a-rebuilt", platforms, repository="library/app-a", tag="1.0",
                                                     cmd=("/app/a",))])
        push_with_skopeo(self.layout, "app-a-rebuilt", self.image("library/app-a:1.0"))
        return built["app-a-rebuilt"]["digest"]

    def new_model_revision(self) -> str:
        """A new commit of acme/tiny-bert (new weights and config), and branch main moved to it."""
        repo = self.hub.repos[TINY]
        files = {**repo.files("main"), "config.json": config_json(gapsync_revision="week-4"),
                 "model.safetensors": safetensors_bytes({"embeddings.word_embeddings.weight": ([96, 128], 5),
                                                         "pooler.dense.weight": ([64, 64], 6)})}
        commit = write_repo(self.hub.root, TINY, {"week-4": files})["week-4"]
        self.hub.move(TINY, "main", commit)
        return commit


@pytest.fixture
def upstream(tmp_path):
    up = Upstream(tmp_path / "external")
    try:
        yield up
    finally:
        up.stop()


# -- the DMZ --------------------------------------------------------------------------------------

class Dmz:
    """A channel made by ``sync`` (deltas) and its reference twin made by ``bundle create`` (full)."""

    def __init__(self, base: Path, up: Upstream, name: str, keys: int):
        self.base, self.up, self.name = base, up, name
        self.ch = new_channel(base / name, name, keys=keys, threshold=keys)
        self.ref = new_channel(base / f"ref-{name}", name)
        self.spec = base / f"{name}.yaml"
        self.approval = keys > 1
        self.outs = 0

    def write_spec(self, requirements: list[str], images: list[str], models: list[str]) -> None:
        extra = (f"images:\n  insecure: [\"{self.up.registry.host}\"]\n"
                 f"  refs: {json.dumps([self.up.image(r) for r in images])}\nmodels:\n")
        for m in models:
            extra += f"  - hf: {m}\n    revision: main\n    endpoint: {self.up.hub.url}\n"
        write_spec(self.spec, self.up.index.url, requirements, channel=self.name, pythons=("3.12",), extra=extra)

    def out(self, what: str) -> Path:
        self.outs += 1
        return self.base / "usb" / f"{self.name}-{self.outs:02d}-{what}"

    def sync(self, *extra, expect: int = 0) -> dict:
        args = ["sync", "-f", self.spec, "--state", self.ch.state, "--key", self.ch.keys[0], "-o", self.out("sync"),
                "--cache", self.base / "cache", "--json", *extra]
        r = cli(*args, *(["--unapproved"] if self.approval else []))
        assert r.code == expect, f"exit {r.code}: {r.err.strip().splitlines()[-1:]}"
        if expect == 5:
            assert not args[args.index("-o") + 1].exists()  # nothing written
        return json.loads(r.out) if r.out.strip() else {}

    def full(self) -> Path:
        """The reference: a full bundle of the same spec at the same version."""
        r = cli("bundle", "create", "-f", self.spec, "--state", self.ref.state, "--key", self.ref.keys[0],
                "-o", self.out("full"), "--cache", self.base / "ref-cache", "--json")
        assert r.code == 0, f"exit {r.code}: {r.err.strip().splitlines()[-1:]}"
        return Path(json.loads(r.out)["bundle"])

    def approve(self, *files: Path) -> None:
        r = cli("bundle", "approve", *files, "--key", self.ch.keys[1])
        assert r.code == 0, r.err
        assert r.out.count("approved with key") == 1, r.out

    def state(self) -> dict:
        return snapshot(self.ch.state, ignore=("audit.log", "audit.log.head", f"{self.name}/.lock"))


# -- the air side ---------------------------------------------------------------------------------

def published(mirror: Path) -> dict:
    return {k: v for k, v in snapshot(mirror).items() if k.startswith(PUBLISHED)}


def imp(mirror: Path, bundle: Path, *codes: int) -> dict:
    r = cli("import", bundle, "--mirror", mirror, "--json")
    assert r.code in (codes or (0,)), f"{bundle.name}: exit {r.code}: {r.err.strip()}"
    return json.loads(r.out) if r.code == 0 else {}


def import_volumes(mirror: Path, volumes: list[Path], seed: int) -> None:
    """Every volume once, two of them twice, shuffled; at the end nothing waits for a volume."""
    order = volumes + volumes[:2]
    random.Random(seed).shuffle(order)
    pending = None
    for v in order:
        doc = imp(mirror, v, 0, 5)
        if doc:
            pending = doc["pending"]
    assert pending == []
    imp(mirror, volumes[0], 5)


def carried(*files: Path) -> list[str]:
    """The target paths whose blob one of these bundle files (or volumes) carries, bundle-level ones aside."""
    out: set[str] = set()
    for f in files:
        with tarfile.open(f) as tf:
            targets = json.loads(tf.extractfile("metadata/targets.json").read())["signed"]["targets"]
            digests = {n.rsplit("/", 1)[1] for n in tf.getnames() if n.startswith("blobs/")}
        out |= {p for p, t in targets.items() if t["hashes"]["sha256"] in digests and not p.startswith("gapsync/")}
    return sorted(out)


def lose(path: Path) -> tuple[bytes, bytes]:
    """A volume (and its .minisig) that did not make it across; returns their bytes."""
    sig = path.with_name(path.name + ".minisig")
    kept = path.read_bytes(), sig.read_bytes()
    path.unlink()
    sig.unlink()
    return kept


def repair(out_dir: Path, *rebuilt: Path) -> None:
    r = cli("bundle", "repair", out_dir, "--json")
    assert r.code == 0, r.err
    assert sorted(json.loads(r.out)["rebuilt"]) == sorted(str(p) for p in rebuilt)


@needs_registry
def test_weeks_of_sync_two_channels_one_mirror(upstream, tmp_path):
    up = upstream
    dmz = tmp_path / "dmz"
    prod = Dmz(dmz, up, "prod", keys=2)
    research = Dmz(dmz, up, "research", keys=1)
    mirror, ref_mirror = tmp_path / "air" / "mirror", tmp_path / "air" / "ref-mirror"
    # both channels carry the model acme/tiny-bert and move its "main" at their own pace: a name
    # belongs to one channel (gapsync/mirror/claims.py), so research publishes in its own namespace
    for m, chans in ((mirror, (prod.ch, research.ch)), (ref_mirror, (prod.ref, research.ref))):
        for ch, ns in zip(chans, ((), ("--namespace", "research")), strict=True):
            r = cli("trust", "pin", ch.root, "--mirror", m, *ns)
            assert r.code == 0, r.err
    refs_imported: list[Path] = []

    def same_as_full(*refs: Path) -> None:
        for b in refs:
            imp(ref_mirror, b)
            refs_imported.append(b)
        assert published(mirror) == published(ref_mirror)

    prod_images, research_images = ["library/app-a:1.0"], ["team/app-b:2.0"]
    prod.write_spec(["alpha"], prod_images, [TINY])
    research.write_spec(["beta", "gamma"], research_images, [TINY, OTHER])

    # 1. first sync: full bundles --------------------------------------------------------------
    p1 = prod.sync()
    assert (p1["kind"], p1["version"]) == ("full", 1)
    b = Path(p1["bundle"])
    assert_refused(b, mirror, "needs 2 signature(s) of the targets role, has 1", "gapsync bundle approve")
    prod.approve(b)
    imp(mirror, b)
    r1 = research.sync("--max-volume-size", "110KB", "--parity", "1")
    assert (r1["kind"], r1["version"]) == ("full", 1)
    research_v1 = [Path(v) for v in r1["volumes"]]
    assert len(research_v1) >= 3 and len(r1["parity"]) == 1
    import_volumes(mirror, research_v1, seed=1)
    same_as_full(prod.full(), research.full())
    assert (mirror / "pypi/simple/alpha/index.html").exists() and (mirror / "ns/research/models/hf/models--acme--other").is_dir()
    for d in (prod, research):  # nothing changed upstream: no bundle, the channel does not advance
        before = d.state()
        assert d.sync(expect=5)["nothing_new"] is True
        assert d.state() == before

    # 2. a package bumped upstream (both channels use beta) and one added to research's spec ----
    up.add_wheel("beta", "1.1")
    up.write_index()
    research.write_spec(["beta", "gamma", "later"], research_images, [TINY, OTHER])
    p2 = prod.sync()
    assert (p2["kind"], p2["version"]) == ("delta", 2)
    b = Path(p2["bundle"])
    assert carried(b) == ["python/beta/beta-1.1-py3-none-any.whl", "python/beta/beta-1.1-py3-none-any.whl.metadata"]
    prod.approve(b)
    imp(mirror, b)
    r2 = research.sync("--max-volume-size", "100KB", "--parity", "1")
    assert (r2["kind"], r2["version"]) == ("delta", 2)
    vols = [Path(v) for v in r2["volumes"]]
    assert len(vols) >= 2
    assert carried(*vols) == ["python/beta/beta-1.1-py3-none-any.whl", "python/beta/beta-1.1-py3-none-any.whl.metadata",
                              "python/later/later-1.0-py3-none-any.whl", "python/later/later-1.0-py3-none-any.whl.metadata"]
    lost, lost_sig = lose(vols[-1])
    waiting = [imp(mirror, v).get("pending") for v in random.Random(4).sample(vols[:-1], len(vols) - 1)]
    assert waiting[-1], "the lost volume's artifacts wait for it"
    # an older bundle's volume: refused as a replay, whether under its own name or the lost one's
    assert_refused(research_v1[0], mirror, "older or replayed bundle")
    shutil.copy(research_v1[-1], vols[-1])
    assert_refused(vols[-1], mirror, "older or replayed bundle")
    repair(vols[-1].parent, vols[-1])  # the substitute is "damaged": rebuilt from parity, with its .minisig
    assert vols[-1].read_bytes() == lost and vols[-1].with_name(vols[-1].name + ".minisig").read_bytes() == lost_sig
    assert imp(mirror, vols[-1])["pending"] == []
    for v in random.Random(2).sample(vols, len(vols)):  # repeats: nothing new
        imp(mirror, v, 5)
    same_as_full(prod.full(), research.full())
    assert {p.name for p in (mirror / "pypi/files").glob("beta-*.whl")} == {"beta-1.0-py3-none-any.whl",
                                                                            "beta-1.1-py3-none-any.whl"}

    # 3. an image tag moved upstream; research adds a package but its stick stays behind --------
    rebuilt = up.move_tag()
    p3 = prod.sync("--max-volume-size", "70KB", "--parity", "1")
    assert (p3["kind"], p3["version"]) == ("delta", 3)
    vols = [Path(v) for v in p3["volumes"]]
    assert len(vols) >= 2 and len(p3["parity"]) == 1
    moved = carried(*vols)
    assert moved and all(p.startswith("oci/") for p in moved)
    assert_refused(vols[0], mirror, "needs 2 signature(s) of the targets role, has 1")
    prod.approve(*vols)
    assert sorted(p.name for p in vols[0].parent.glob("*.approvals.json")) == ["t-prod-3.gapsync.approvals.json"]
    lost, _ = lose(vols[0])
    repair(vols[0].parent, vols[0])
    assert vols[0].read_bytes() == lost
    import_volumes(mirror, vols[::-1], seed=3)
    research.write_spec(["beta", "gamma", "later", "delta"], research_images, [TINY, OTHER])
    r3 = research.sync()
    assert (r3["kind"], r3["version"]) == ("delta", 3)
    forgotten = Path(r3["bundle"])
    ref_p3, ref_r3 = prod.full(), research.full()
    same_as_full(ref_p3)  # research v3 reaches neither mirror this week
    index = json.loads((mirror / "oci/index.json").read_text())
    [entry] = [e for e in index["manifests"] if e["annotations"]["org.opencontainers.image.ref.name"].endswith("app-a:1.0")]
    assert entry["digest"] == rebuilt  # the tag's entry moved with it

    # 4. a model revision added upstream: research's next delta arrives before the forgotten one --
    commit = up.new_model_revision()
    p4 = prod.sync()
    assert (p4["kind"], p4["version"]) == ("delta", 4)
    b = Path(p4["bundle"])
    prod.approve(b)
    r4 = research.sync()
    assert (r4["kind"], r4["version"]) == ("delta", 4)
    assert carried(Path(r4["bundle"])) == carried(b)  # the new revision's files and manifest, in both
    assert any(p.startswith("model/hf/acme/tiny-bert@") for p in carried(b))
    assert_refused(Path(r4["bundle"]), mirror, "a delta made for a mirror that has version 3", "full bundle")
    imp(mirror, forgotten)
    imp(mirror, Path(r4["bundle"]))
    imp(mirror, b)
    same_as_full(ref_r3, research.full(), prod.full())
    assert (mirror / "models/hf/models--acme--tiny-bert/refs/main").read_text() == commit
    assert (mirror / f"models/hf/models--acme--tiny-bert/snapshots/{commit}/model.safetensors").is_symlink()

    # 5. a receipt goes back; research now also takes the image prod already brought -------------
    for name in ("air", "rogue"):
        assert cli("keys", "generate", "--out", tmp_path / "air-keys", "--name", name).code == 0
    receipt = tmp_path / "receipt.json"
    r = cli("receipt", "--mirror", mirror, "-o", receipt, "--key", tmp_path / "air-keys/air.key")
    assert r.code == 0, r.err
    research.write_spec(["beta", "gamma", "later", "delta"], research_images + prod_images, [TINY, OTHER])
    # and research's key is rotated: root v2, signed by the old and the new key; the mirror follows the chain
    assert cli("keys", "generate", "--out", dmz / "research/keys", "--name", "research-next").code == 0
    new_key = dmz / "research/keys/research-next.key"
    r = cli("channel", "rotate", "research", "--state", research.ch.state, "--old-key", research.ch.keys[0],
            "--new-key", new_key)
    assert r.code == 0, r.err
    research.ch.keys = [new_key]
    before, usb = research.state(), sorted((dmz / "usb").rglob("*"))
    r = cli("sync", "-f", research.spec, "--state", research.ch.state, "--key", research.ch.keys[0],
            "-o", dmz / "usb" / "rogue", "--cache", dmz / "cache", "--receipt", receipt,
            "--receipt-key", tmp_path / "air-keys/rogue.pub")
    assert r.code == 3 and str(receipt) in r.err, r.err
    assert research.state() == before and sorted((dmz / "usb").rglob("*")) == usb  # no bundle, no advance
    r5 = research.sync("--receipt", receipt, "--receipt-key", tmp_path / "air-keys/air.pub")
    assert (r5["kind"], r5["version"]) == ("delta", 5)
    assert carried(Path(r5["bundle"])) == []  # everything the new image needs is on the air side already
    assert imp(mirror, Path(r5["bundle"]))["signers"] == [load_signing_key(new_key).public.tuf_key().keyid]
    root = json.loads((mirror / ".gapsync/trust/research/current/root.json").read_text())
    assert root["signed"]["version"] == 2
    assert prod.sync(expect=5)["nothing_new"] is True
    same_as_full(research.full())
    assert [json.loads(cli("bundle", "inspect", b, "--json").out)["version"] for b in refs_imported] == \
        [1, 1, 2, 2, 3, 3, 4, 4, 5]
    for m in (mirror, ref_mirror):
        assert cli("audit", "verify", "--mirror", m).code == 0


def test_sync_sees_a_release_published_right_after_the_last_one(tmp_path):
    """The operator runs sync by hand right after an upstream security release: it must be seen."""
    root = tmp_path / "index"
    make_wheel(root / "files", "beta", "1.0")
    write_index(root)
    srv = static_server(root)  # like nginx or http.server over a folder: Last-Modified, no Cache-Control
    try:
        ch = new_channel(tmp_path, "prod")
        spec = write_spec(tmp_path / "g.yaml", srv.url, ["beta"], pythons=("3.12",))
        args = ["sync", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "--cache", tmp_path / "cache", "--json"]
        assert cli(*args, "-o", tmp_path / "o1").code == 0
        make_wheel(root / "files", "beta", "1.1")  # the fix is released upstream
        write_index(root)
        r = cli(*args, "-o", tmp_path / "o2")
    finally:
        srv.stop()
    assert r.code == 0, r.err.strip().splitlines()[-1]
    assert carried(Path(json.loads(r.out)["bundle"])) == ["python/beta/beta-1.1-py3-none-any.whl",
                                                          "python/beta/beta-1.1-py3-none-any.whl.metadata"]


def test_sync_sees_a_page_rewritten_in_the_second_it_was_read(tmp_path):
    """``Last-Modified`` has one-second resolution: a page rewritten in the second it was read
    keeps its value, and a server comparing times answers 304 to ``If-Modified-Since``. The
    index's files here carry a fixed time an hour ahead (so the answer's ``Date`` is never a
    second past it, as when the page was written in the second it was read), and the rewritten
    page gets the same time: the next sync must still see the release."""
    root = tmp_path / "index"
    ahead = time.time() + 3600

    def same_time() -> None:
        for p in root.rglob("*"):
            if p.is_file():
                os.utime(p, (ahead, ahead))

    make_wheel(root / "files", "beta", "1.0")
    write_index(root)
    same_time()
    srv = static_server(root)
    try:
        ch = new_channel(tmp_path, "prod")
        spec = write_spec(tmp_path / "g.yaml", srv.url, ["beta"], pythons=("3.12",))
        args = ["sync", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "--cache", tmp_path / "cache", "--json"]
        assert cli(*args, "-o", tmp_path / "o1").code == 0
        make_wheel(root / "files", "beta", "1.1")
        write_index(root)
        same_time()  # the same Last-Modified as the page the first sync recorded
        r = cli(*args, "-o", tmp_path / "o2")
    finally:
        srv.stop()
    assert r.code == 0, r.err.strip().splitlines()[-1]
    assert "python/beta/beta-1.1-py3-none-any.whl" in carried(Path(json.loads(r.out)["bundle"]))


def test_a_delta_in_volumes_whose_base_was_never_imported_is_refused(tmp_path):
    root = tmp_path / "index"
    rnd = random.Random(9)
    for name in ("beta", "later", "delta"):
        make_wheel(root / "files", name, "1.0", payload=rnd.randbytes(40_000))
    write_index(root)
    srv = static_server(root)
    try:
        ch = new_channel(tmp_path, "research")
        spec = tmp_path / "g.yaml"
        made = []
        for i, reqs in enumerate((["beta"], ["beta", "later"], ["beta", "later", "delta"]), 1):
            write_spec(spec, srv.url, reqs, channel="research", pythons=("3.12",))
            r = cli("sync", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / f"o{i}",
                    "--cache", tmp_path / "cache", "--json", *(["--max-volume-size", "70KB"] if i == 3 else []))
            assert r.code == 0, r.err.strip().splitlines()[-1]
            made.append(json.loads(r.out))
    finally:
        srv.stop()
    volumes = [Path(v) for v in made[2]["volumes"]]
    assert made[2]["kind"] == "delta" and len(volumes) >= 2
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    imp(m, Path(made[0]["bundle"]))  # version 2 never arrives
    for v in volumes:
        assert_refused(v, m, "a delta made for a mirror that has version 2", "full bundle")
