"""The data the pickle scanner reads at start-up, written out for speed, must stay exactly what
its sources say: the opcode table (pickletools) and the compiled allowlist (the YAML)."""

from __future__ import annotations

import json
import pickletools
import shutil

import pytest
import yaml

from gapsync.errors import InputError
from gapsync.policies import pickle_globals as pg
from gapsync.scanner.pickle_ops import OPCODES


def test_opcode_table_is_pickletools_table():
    expected = {op.code.encode("latin-1")[0]: (op.name, op.arg.name if op.arg is not None else None)
                for op in pickletools.opcodes}
    assert OPCODES == expected


def test_compiled_allowlist_is_current():
    """Fails when pickle_globals.yaml was edited without `python -m gapsync.policies.pickle_globals`."""
    raw = (pg._HERE / pg.DEFAULT_POLICY).read_bytes()
    compiled = json.loads((pg._HERE / pg.COMPILED_POLICY).read_text())
    assert compiled["source"] == pg._fingerprint(raw), "run: python -m gapsync.policies.pickle_globals"
    assert compiled["policy"] == yaml.safe_load(raw)


def _policy_dir(tmp_path, monkeypatch):
    for name in (pg.DEFAULT_POLICY, pg.COMPILED_POLICY):
        shutil.copy(pg._HERE / name, tmp_path / name)
    monkeypatch.setattr(pg, "_HERE", tmp_path)
    pg._default_policy.cache_clear()
    return tmp_path


@pytest.fixture
def policy_dir(tmp_path, monkeypatch):
    yield _policy_dir(tmp_path, monkeypatch)
    pg._default_policy.cache_clear()


def test_compiled_allowlist_is_used_and_agrees(policy_dir, monkeypatch):
    from_json = pg.load_pickle_policy()
    assert from_json.allow_globals and from_json.deny_modules
    pg._default_policy.cache_clear()
    (policy_dir / pg.COMPILED_POLICY).unlink()
    from_yaml = pg.load_pickle_policy()
    for field in ("unknown_severity", "allow_globals", "allow_modules", "review_globals", "deny_globals",
                  "deny_modules", "nested_loaders"):
        assert getattr(from_json, field) == getattr(from_yaml, field), field


def test_stale_compiled_allowlist_is_ignored(policy_dir):
    """An edit to the YAML wins over the JSON written before it: the edited rule is in force."""
    text = (policy_dir / pg.DEFAULT_POLICY).read_text()
    assert pg.load_pickle_policy().classify("mypkg.models", "Net").action is pg.GlobalAction.UNKNOWN
    pg._default_policy.cache_clear()
    edited = text.replace("\nallow:\n", "\nallow:\n  - why: test edit\n    globals: [\"mypkg.models:Net\"]\n", 1)
    assert edited != text
    (policy_dir / pg.DEFAULT_POLICY).write_text(edited)
    assert pg.load_pickle_policy().classify("mypkg.models", "Net").action is pg.GlobalAction.ALLOW


def test_corrupt_compiled_allowlist_falls_back_to_yaml(policy_dir):
    (policy_dir / pg.COMPILED_POLICY).write_text("{not json")
    assert pg.load_pickle_policy().classify("builtins", "exec").action is pg.GlobalAction.DENY


def test_malformed_yaml_policy_file_is_an_input_error(tmp_path):
    bad = tmp_path / "globals.yaml"
    bad.write_text("version: 1\nallow: [\n")
    with pytest.raises(InputError, match="globals.yaml"):
        pg.load_pickle_policy(bad)


def test_classify_memo_matches_the_rules():
    pol = pg.load_pickle_policy()
    refs = [("builtins", "exec"), ("__builtin__", "eval"), ("numpy", "dtype"), ("collections", "OrderedDict"),
            ("os", "system"), ("pathlib", "os.system"), ("unknown.mod", "thing"), ("torch._utils", "_rebuild_tensor_v2")]
    first = [pol.classify(m, n) for m, n in refs]
    again = [pol.classify(m, n) for m, n in refs]
    direct = [pol._classify(*pg.normalize(m, n)) for m, n in refs]
    assert first == again == direct
    assert first[1].action is pg.GlobalAction.DENY  # Python 2 name mapped before the memo key matters


def test_classify_memo_is_bounded_and_per_policy(tmp_path):
    pol = pg.load_pickle_policy()
    pol._memo.clear()
    for i in range(65537):  # a hostile pickle naming that many distinct globals
        pol._memo[("m", f"n{i}")] = pg.GlobalVerdict(pg.GlobalAction.ALLOW, None, "fake")
    assert pol.classify("builtins", "exec").action is pg.GlobalAction.DENY
    assert len(pol._memo) == 1  # cleared, not grown without end
    custom = tmp_path / "globals.yaml"
    custom.write_text("version: 1\nunknown_severity: low\n")
    other = pg.load_pickle_policy(custom)
    assert other._memo is not pol._memo
    assert other.classify("builtins", "exec").action is pg.GlobalAction.UNKNOWN  # this policy denies nothing
    assert pol.classify("builtins", "exec").action is pg.GlobalAction.DENY
    pol._memo.clear()
