"""Fuzzing with hypothesis: bundles made from a valid one (world.b2) by flipping, truncating,
extending, duplicating, reordering, renaming and dropping members, and by raw byte edits of the
file; random specs (gapsync.yaml) and random policies.

Every bundle case is imported in-process (``cli``) into a fresh copy of a mirror that already
holds world.b1, and ends in exactly one of two ways:

* exit 0, only when the mutation is provably harmless, and then the published mirror is the
  one an untouched import gives. Harmless, and why:

  - re-serialising the same members (tar header bytes differ, member bytes do not);
  - reordering metadata among metadata or blobs among blobs: the reader keys members by name,
    every blob is checked against its signed digest, nothing depends on the order;
  - dropping a blob the mirror already holds (a delta does exactly that), or dropping
    ``metadata/1.root.json``, which the mirror already trusts: TUF starts from the pinned root;
  - a byte of ``timestamp.json`` or ``targets.json`` changed so that the document is still the
    same JSON (a space turned into a tab or a newline between tokens): signatures cover the
    canonical form of the signed part, not the file's whitespace. The same change in
    ``snapshot.json`` is refused (timestamp pins its sha256) and in a root too (the mirror
    compares roots it already trusts byte for byte).

  Every other change is refused, including bytes the reader does not use (tar padding, the
  checksum field's slack, extra zero blocks at the end): the reader refuses those so that a
  bundle has one byte-for-byte form (see gapsync/bundle/archive.py).

* exit 3 otherwise, with one line naming the bundle, an audit entry, the mirror unchanged byte
  for byte and its staging empty.

In both cases: never "internal error" (a traceback), and never a file written outside the
mirror: the test runs in a scratch working directory and compares the mirror's parent
directory before and after.

The number of cases run, and how they ended, is stored in pytest's cache under
``gapsync/figures/fuzz-*`` (docs/reliability.md quotes it).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tarfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.cli import cli
from tests.support.hostile_bundles import Member, read_members, write_members
from tests.support.trees import snapshot

FUZZ = settings(max_examples=300, derandomize=True, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
SMALL = settings(FUZZ, max_examples=200)

JSON_EQUAL_OK = ("metadata/timestamp.json", "metadata/targets.json")  # see the module docstring
TRUSTED_ROOT = "metadata/1.root.json"


# -- the base: a mirror with b1, the member layout of b2, the result of a clean import -------

@dataclass
class Base:
    root: Path  # scratch space for the cases
    template: Path  # mirror with world.b1 imported
    raw: bytes  # world.b2
    members: list[Member]
    layout: list[tuple[str, int, int, int, int]]  # name, header start, data start, data end, padding end
    end: int  # first end-of-archive block
    held: set[str]  # blob digests the template mirror holds
    clean: dict  # published view after an untouched import
    clean_tuf: dict
    figures: Counter
    n: int = 0


def published(m: Path) -> dict:
    """What readers and later imports see, without the TUF client state (md-N directories have
    random names) and the channel's state file, which holds the time of the import."""
    snap = snapshot(m)
    out = {k: v for k, v in snap.items() if not k.startswith((".gapsync/staging/", ".gapsync/trust/"))}
    out["state.version"] = json.loads((m / ".gapsync/trust/prod/state.json").read_text())["version"]
    return out


def tuf_files(m: Path) -> dict:
    cur = m / ".gapsync/trust/prod/current"
    return {n: (cur / n).read_bytes() for n in ("timestamp.json", "snapshot.json", "targets.json")}


@pytest.fixture(scope="module")
def base(world, tmp_path_factory, request) -> Base:
    root = tmp_path_factory.mktemp("fuzz")
    template = root / "template"
    assert cli("trust", "pin", world.root, "--mirror", template).code == 0
    assert cli("import", world.b1, "--mirror", template).code == 0
    held = {p.name for p in (template / ".gapsync/blobs/sha256").glob("*/*")}
    layout = []
    with tarfile.open(world.b2) as tf:
        for ti in tf:
            assert not ti.pax_headers, "the fuzz oracle assumes plain ustar headers"
            layout.append((ti.name, ti.offset, ti.offset_data, ti.offset_data + ti.size,
                           ti.offset_data + -(-ti.size // 512) * 512))
    clean_m = root / "clean"
    shutil.copytree(template, clean_m, symlinks=True)
    assert cli("import", world.b2, "--mirror", clean_m).code == 0
    b = Base(root, template, world.b2.read_bytes(), read_members(world.b2), layout, layout[-1][4], held,
             published(clean_m), tuf_files(clean_m), Counter())
    yield b
    request.config.cache.set(f"gapsync/figures/fuzz-{request.module.__name__.rsplit('.', 1)[-1]}",
                             dict(b.figures))


# -- the oracle --------------------------------------------------------------------------------

def _json_equal(new: bytes, old: bytes) -> bool:
    try:
        return json.loads(new.decode("utf-8")) == json.loads(old.decode("utf-8"))
    except (ValueError, RecursionError):
        return False


def harmless(base: Base, members: list[tuple[str, bytes]]) -> bool:
    """True when importing these members must succeed with the clean result (module docstring)."""
    original = {m.name: m.data for m in base.members}
    names = [n for n, _ in members]
    if len(set(names)) != len(names) or any(n not in original for n in names):
        return False
    kinds = [n.startswith("metadata/") for n in names]
    if kinds != sorted(kinds, reverse=True):  # all metadata first
        return False
    for name, data in members:
        if data != original[name] and not (name in JSON_EQUAL_OK and _json_equal(data, original[name])):
            return False
    missing = set(original) - set(names)
    for name in missing:
        if name.startswith("blobs/") and name.rsplit("/", 1)[1] in base.held:
            continue
        if name == TRUSTED_ROOT:
            continue
        return False
    return True


def exact(base: Base, members: list[tuple[str, bytes]]) -> bool:
    """The metadata bytes are the original's: the stored TUF files must be identical too."""
    original = {m.name: m.data for m in base.members}
    return all(data == original[name] for name, data in members if name.startswith("metadata/"))


@contextlib.contextmanager
def _case(base: Base):
    base.n += 1
    ex = base.root / f"case-{base.n}"
    (ex / "cwd").mkdir(parents=True)
    shutil.copytree(base.template, ex / "mirror", symlinks=True)
    try:
        yield ex
    finally:
        shutil.rmtree(ex, ignore_errors=True)


def import_case(base: Base, data: bytes, ok: bool, exact_tuf: bool, what: str, tag: str = "explicit") -> None:
    with _case(base) as ex:
        m, bundle = ex / "mirror", ex / "b.gapsync"
        bundle.write_bytes(data)
        before = snapshot(m)
        outside = {k: v for k, v in snapshot(ex).items() if not k.startswith("mirror")}
        log = m / ".gapsync/audit.log"
        entries = len(log.read_text().splitlines())
        with contextlib.chdir(ex / "cwd"):
            r = cli("import", bundle, "--mirror", m)
        assert "internal error" not in r.err and "Traceback" not in r.err, (what, r.err)
        assert {k: v for k, v in snapshot(ex).items() if not k.startswith("mirror")} == outside, what
        if ok:
            assert r.code == 0, (what, r.code, r.err)
            assert published(m) == base.clean, what
            if exact_tuf:
                assert tuf_files(m) == base.clean_tuf, what
            base.figures[f"{tag}: imported (harmless)"] += 1
        else:
            assert r.code == 3, (what, r.code, r.out, r.err)
            err = r.err.strip()
            assert "\n" not in err and str(bundle) in err, (what, err)
            assert snapshot(m) == before, what
            assert not any((m / ".gapsync/staging").iterdir()), what
            lines = log.read_text().splitlines()
            assert len(lines) == entries + 1 and json.loads(lines[-1])["result"] == "refused", what
            base.figures[f"{tag}: refused (exit 3)"] += 1
            base.figures[f"{tag}: reason: {_reason(err)}"] += 1
        base.figures[f"{tag}: cases"] += 1


def _reason(err: str) -> str:
    """A coarse label of the refusal, for the figures."""
    for word in ("checksum", "padding", "truncated", "unexpected member", "duplicate", "after the blobs",
                 "not a target", "signed length", "does not match", "lacks", "more blob members", "NUL",
                 "zero bytes after", "after the end", "does not list targets", "threshold", "differs from the trusted",
                 "not a TUF root", "refused", "missing or oversized", "targets.json", "damaged"):
        if word in err:
            return word
    return "other"


# -- member-level mutations --------------------------------------------------------------------

BLOB_NAME = st.binary(min_size=32, max_size=32).map(lambda b: f"blobs/sha256/{b.hex()}")
ODD_NAMES = st.sampled_from([
    "metadata/2.root.json", "metadata/targets.json", "metadata/timestamp.json", "metadata/1.root.json",
    "blobs/sha256/" + "A" * 64, "blobs/sha256/" + "0" * 63, "../x", "/etc/passwd", "metadata/../../x",
    "blobs/sha256/../../x", "README", "metadata/", "blobs/sha256/" + "0" * 64 + "/x", "./metadata/targets.json",
])
NAMES = st.one_of(BLOB_NAME, ODD_NAMES, st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
                                                 min_size=1, max_size=120))


@st.composite
def mutated(draw, members: list[Member]) -> tuple[list[tuple[str, bytes]], list[str]]:
    ms = [(m.name, m.data) for m in members]
    done = []
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(ms) - 1)) if ms else 0
        op = draw(st.sampled_from(["flip", "truncate", "extend", "duplicate", "move", "swap", "rename", "drop",
                                   "rename-existing", "add"]))
        if not ms and op != "add":
            continue
        if op == "flip" and ms[i][1]:
            name, data = ms[i]
            at = draw(st.integers(0, len(data) - 1))
            x = draw(st.integers(1, 255))
            ms[i] = (name, data[:at] + bytes([data[at] ^ x]) + data[at + 1:])
        elif op == "truncate":
            name, data = ms[i]
            ms[i] = (name, data[:draw(st.integers(0, max(0, len(data) - 1)))])
        elif op == "extend":
            name, data = ms[i]
            ms[i] = (name, data + draw(st.binary(min_size=1, max_size=600)))
        elif op == "duplicate":
            ms.insert(draw(st.integers(0, len(ms))), ms[i])
        elif op == "move":
            item = ms.pop(i)
            ms.insert(draw(st.integers(0, len(ms))), item)
        elif op == "swap":
            j = draw(st.integers(0, len(ms) - 1))
            ms[i], ms[j] = ms[j], ms[i]
        elif op == "rename":
            ms[i] = (draw(NAMES), ms[i][1])
        elif op == "rename-existing":
            ms[i] = (ms[draw(st.integers(0, len(ms) - 1))][0], ms[i][1])
        elif op == "drop":
            ms.pop(i)
        elif op == "add":
            ms.insert(draw(st.integers(0, len(ms))), (draw(NAMES), draw(st.binary(max_size=300))))
        done.append(f"{op}@{i}")
    return ms, done


def test_untouched_bundle_imports(base):
    """The oracle's anchor: the original file, and its members written again, import cleanly."""
    import_case(base, base.raw, ok=True, exact_tuf=True, what="untouched file")
    again = base.root / "again.gapsync"
    write_members(base.members, again)
    assert again.read_bytes() != base.raw  # other tar headers (mtime, names), same members
    import_case(base, again.read_bytes(), ok=True, exact_tuf=True, what="members written again")


def test_harmless_mutations_import(base):
    """Each kind of harmless change at least once, so the oracle's exceptions are exercised."""
    ms = [(m.name, m.data) for m in base.members]
    meta = [x for x in ms if x[0].startswith("metadata/")]
    blobs = [x for x in ms if x[0].startswith("blobs/")]
    held = [x for x in blobs if x[0].rsplit("/", 1)[1] in base.held]
    assert held, "b1 and b2 share blobs"
    ts = next(x for x in meta if x[0] == "metadata/timestamp.json")
    i = ts[1].index(b" ")
    cases = {
        "reversed metadata": meta[::-1] + blobs,
        "reversed blobs": meta + blobs[::-1],
        "dropped held blobs": meta + [x for x in blobs if x not in held],
        "dropped trusted root": [x for x in meta if x[0] != TRUSTED_ROOT] + blobs,
        "space to tab in timestamp.json": [(n, d[:i] + b"\t" + d[i + 1:] if n == ts[0] else d) for n, d in meta] + blobs,
    }
    for what, members in cases.items():
        assert harmless(base, members), what
        out = base.root / "h.gapsync"
        write_members([Member(n, d) for n, d in members], out)
        import_case(base, out.read_bytes(), ok=True, exact_tuf=exact(base, members), what=what)


@FUZZ
@given(st.data())
def test_fuzzed_members(base, data):
    members, ops = data.draw(mutated(base.members))
    out = base.root / "m.gapsync"
    write_members([Member(n, d) for n, d in members], out)
    ok = harmless(base, members)
    for o in ops:
        base.figures["members: op " + o.split("@")[0]] += 1
    import_case(base, out.read_bytes(), ok, exact(base, members) if ok else False, " ".join(ops), "members")


# -- raw byte edits ----------------------------------------------------------------------------

def _region(base: Base, pos: int) -> tuple[str, int]:
    """('header'|'data'|'padding'|'trailer', member index) of a byte of the original file."""
    for i, (_name, h, d, e, p) in enumerate(base.layout):
        if h <= pos < d:
            return "header", i
        if d <= pos < e:
            return "data", i
        if e <= pos < p:
            return "padding", i
    return "trailer", -1


@FUZZ
@given(st.data())
def test_fuzzed_bytes(base, data):
    raw = bytearray(base.raw)
    op = data.draw(st.sampled_from(["flip", "flip", "flip-data", "respace", "truncate", "append", "insert", "zero-range"]))
    ok = same_metadata = False
    if op in ("flip", "flip-data"):
        flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)), min_size=1, max_size=3))
        if op == "flip-data":  # aim at the data of the metadata members, where whitespace lives
            flips = [(base.layout[i % 4][2] + p % max(1, base.layout[i % 4][3] - base.layout[i % 4][2]), x)
                     for i, (p, x) in enumerate(flips)]
        for p, x in flips:
            raw[p] ^= x
        regions = {_region(base, p) for p, _ in flips}
        for kind, _ in regions:
            base.figures[f"bytes: flip in {kind}"] += 1
        if raw == bytearray(base.raw):
            ok = True  # the same byte flipped back
        elif all(kind == "data" for kind, _ in regions):
            members = [(name, bytes(raw[d:e])) for name, _h, d, e, _p in base.layout]
            ok = harmless(base, members)
            same_metadata = exact(base, members)
    elif op == "respace":  # JSON whitespace in a metadata member turned into other whitespace
        _name, _h, d, e, _p = base.layout[data.draw(st.integers(0, 3))]
        spaces = [i for i in range(d, e) if raw[i] in b" \t\n\r"]
        at = data.draw(st.sampled_from(spaces))
        raw[at] = data.draw(st.sampled_from([c for c in b" \t\n\r" if c != raw[at]]))
        members = [(name, bytes(raw[d:e])) for name, _h, d, e, _p in base.layout]
        ok = harmless(base, members)
        base.figures[f"bytes: respace in {_name} ({'harmless' if ok else 'refused'})"] += 1
    elif op == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif op == "append":
        raw += data.draw(st.one_of(st.binary(min_size=1, max_size=1024), st.sampled_from([b"\0" * 512, b"\0" * 10240])))
    elif op == "insert":
        at = data.draw(st.integers(0, len(raw)))
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=1024))
    elif op == "zero-range":
        a = data.draw(st.integers(0, base.end - 1))
        n = data.draw(st.integers(1, 1024))
        raw[a:a + n] = bytes(len(raw[a:a + n]))
        ok = raw == bytearray(base.raw)
    base.figures[f"bytes: op {op}"] += 1
    import_case(base, bytes(raw), ok, ok and (same_metadata or raw == bytearray(base.raw)), op, "bytes")


# -- specs and policies ------------------------------------------------------------------------

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=False),
                    st.text(max_size=40), st.dates())
VALUES = st.recursive(SCALARS, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=12), c, max_size=4)),
                      max_leaves=12)
# each of these breaks the YAML, or leaves a key no spec or policy has
BROKEN_YAML = ["key: [unclosed\n", "\tindented: with a tab\n", "a: b: c\n", "- item\nkey: value\n", "'unterminated\n",
               "&anchor\n*alias\n", "key: {a: 1\n", "%YAML 9.9\n---\n", "a: !!python/object:os.system x\n",
               "x: *undefined\n", "{{{{{{{{{{{{\n", "]\n", "key: value\n  more: indented\n"]


@dataclass(frozen=True)
class Schema:
    """What the generator needs to know to make a file certainly invalid: a valid document, the
    keys each mapping allows, the type test of some values, the required top-level keys."""

    valid: dict
    allowed: dict  # path of a mapping -> the keys it allows
    valid_value: dict  # path -> predicate: True for values that could be valid there
    required: tuple[str, ...]


def _get(doc, path: tuple):
    for k in path:
        doc = doc[k]
    return doc


@st.composite
def broken_yaml(draw, schema: Schema) -> tuple[str, bytes]:
    """(kind, file bytes) of a document that is certainly invalid."""
    doc = json.loads(json.dumps(schema.valid, default=str))
    kinds = ["wrong-type", "unknown-key", "not-a-mapping", "syntax", "bytes", "text"] + (["drop-required"] if schema.required else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "bytes":  # random bytes that decode as UTF-8; other bytes: see test_yaml_bombs
        return kind, draw(st.binary(max_size=200).filter(_utf8))
    if kind == "text":
        return kind, draw(st.text(max_size=200)).encode()
    if kind == "wrong-type":
        path = draw(st.sampled_from(sorted(schema.valid_value, key=str)))
        _get(doc, path[:-1])[path[-1]] = draw(VALUES.filter(lambda v, ok=schema.valid_value[path]: not ok(v)))
    elif kind == "unknown-key":
        parent = draw(st.sampled_from(sorted(schema.allowed, key=str)))
        key = draw(st.text(min_size=1, max_size=20).filter(lambda k, a=schema.allowed[parent]: k not in a))
        _get(doc, parent)[key] = draw(VALUES)
    elif kind == "drop-required":
        del doc[draw(st.sampled_from(schema.required))]
    elif kind == "not-a-mapping":
        doc = draw(st.one_of(st.lists(VALUES, max_size=3), SCALARS))
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    if kind == "syntax":
        lines = text.splitlines(keepends=True)
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(BROKEN_YAML)))
        text = "".join(lines)
    return kind, text.encode()


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _nonempty_str(v) -> bool:
    return isinstance(v, str) and bool(v)


SPEC = Schema(
    valid={"name": "t", "channel": "prod",
           "python": {"index_url": "http://127.0.0.1:9/simple/", "requirements": ["alpha"],
                      "targets": [{"python": "3.11", "platform": "manylinux_2_17_x86_64"}]}},
    allowed={(): {"name", "channel", "python", "images", "models", "policy"},
             ("python",): {"index_url", "requirements", "requirements_files", "targets", "sdists"},
             ("python", "targets", 0): {"python", "platform"}},
    valid_value={("name",): _nonempty_str, ("channel",): _nonempty_str, ("python",): lambda v: isinstance(v, dict),
                 ("python", "index_url"): _nonempty_str, ("python", "requirements"): lambda v: isinstance(v, list),
                 ("python", "targets"): lambda v: isinstance(v, list),
                 ("python", "targets", 0, "python"): _nonempty_str, ("python", "targets", 0, "platform"): _nonempty_str},
    required=("name", "channel"))

_SEVERITY = ("critical", "high", "medium", "low", "info", "none")
_ACTION = ("allow", "warn", "block")
POLICY = Schema(
    valid=yaml.safe_load((Path(__file__).resolve().parents[2] / "gapsync/policies/default.yaml").read_text()),
    allowed={(): {"name", "vulnerabilities", "licenses", "models", "blocked", "max_size", "waivers"},
             ("vulnerabilities",): {"block_at", "warn_at", "unknown_severity", "not_checked", "no_database"},
             ("licenses",): {"allow", "deny", "unknown"},
             ("models",): {"block_at", "warn_at", "required_formats", "scan_pickles_in_packages"}},
    valid_value={("vulnerabilities",): lambda v: isinstance(v, dict) or not v,
                 ("vulnerabilities", "block_at"): lambda v: str(v).lower() in _SEVERITY,
                 ("vulnerabilities", "unknown_severity"): lambda v: str(v).lower() in _ACTION,
                 ("licenses",): lambda v: isinstance(v, dict) or not v,
                 ("licenses", "allow"): lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
                 ("licenses", "unknown"): lambda v: str(v).lower() in _ACTION,
                 ("models",): lambda v: isinstance(v, dict) or not v,
                 ("models", "block_at"): lambda v: str(v).lower() in _SEVERITY,
                 ("models", "scan_pickles_in_packages"): lambda v: isinstance(v, bool),
                 ("blocked",): lambda v: not v or isinstance(v, list),
                 ("max_size",): lambda v: not v or isinstance(v, dict),
                 ("waivers",): lambda v: not v or isinstance(v, list)},
    required=())


def _check_input_error(r, path: Path, what: str, figures: Counter) -> None:
    assert "internal error" not in r.err and "Traceback" not in r.err, (what, r.err)
    assert r.code == 2, (what, r.code, r.out, r.err)
    err = r.err.strip()
    assert "\n" not in err and err.startswith(f"gapsync: error: {path}"), (what, err)
    figures["cases"] += 1
    figures["with a line number" if err.startswith(f"gapsync: error: {path}:") else "without a line number"] += 1


@pytest.fixture(scope="module")
def figures(request):
    c: Counter = Counter()
    yield c
    request.config.cache.set("gapsync/figures/fuzz-specs-policies", dict(c))


@SMALL
@given(case=broken_yaml(SPEC))
def test_fuzzed_specs(tmp_path_factory, figures, case):
    """`gapsync resolve -f SPEC`: exit 2 and one line naming the file (and usually the line)."""
    kind, text = case
    d = tmp_path_factory.mktemp("spec")
    spec = d / "gapsync.yaml"
    spec.write_bytes(text)
    r = cli("resolve", "-f", spec, "-o", d / "lock", "--cache", d / "cache")
    figures[f"spec {kind}"] += 1
    _check_input_error(r, spec, f"{kind}: {text!r}", figures)
    assert not (d / "lock").exists()
    shutil.rmtree(d)


@SMALL
@given(case=broken_yaml(POLICY))
def test_fuzzed_policies(world, tmp_path_factory, figures, case):
    """`gapsync scan BUNDLE --policy FILE`: exit 2 and one line naming the file."""
    kind, text = case
    d = tmp_path_factory.mktemp("policy")
    policy = d / "policy.yaml"
    policy.write_bytes(text)
    r = cli("scan", world.b2, "--policy", policy)
    figures[f"policy {kind}"] += 1
    _check_input_error(r, policy, f"{kind}: {text!r}", figures)
    shutil.rmtree(d)


LAUGHS = b"a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + b"".join(
    b"%c: &%c [%s]\n" % (98 + i, 98 + i, b", ".join([b"*%c" % (97 + i)] * 9)) for i in range(8))
YAML_BOMBS = {"nested 50,000 deep": b"a: " + b"[" * 50_000 + b"]" * 50_000 + b"\n",
              "billion laughs": LAUGHS,
              "not UTF-8": b"name: \xff\xfe\xfd\nchannel: prod\n",
              "NUL bytes": b"name: t\0\nchannel: prod\n",
              "UTF-16 with BOM": "name: t\n".encode("utf-16")}


# These cases found two bugs, fixed since: deep nesting raised RecursionError (yamlfile.load_located
# now refuses it), and bytes that are not UTF-8 raised UnicodeDecodeError (load_spec / load_policy).
BOMB_CASES = list(YAML_BOMBS)


@pytest.mark.parametrize("what", ["spec", "policy"])
@pytest.mark.parametrize("bomb", BOMB_CASES)
def test_yaml_bombs(world, tmp_path, what, bomb):
    """Deep nesting, exponential aliases, bytes that are not UTF-8: exit 2 with one line, fast."""
    f = tmp_path / f"{what}.yaml"
    f.write_bytes(YAML_BOMBS[bomb])
    t0 = time.monotonic()
    if what == "spec":
        r = cli("resolve", "-f", f, "-o", tmp_path / "lock", "--cache", tmp_path / "cache")
    else:
        r = cli("scan", world.b2, "--policy", f)
    assert time.monotonic() - t0 < 10
    _check_input_error(r, f, bomb, Counter())
