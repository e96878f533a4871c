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
from gapsync.scanner.formats.pickle_ops import OPCODES
from tests.support.allowlist import HARMLESS_CLASSES, HARMLESS_HOMES, prefix_members


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
    for field in ("unknown_severity", "allow_globals", "allow_modules", "allow_classes", "prefix_exceptions",
                  "review_globals", "deny_globals", "deny_modules", "nested_loaders"):
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


# -- the prefix rules, checked against the libraries themselves --------------------------------------
def _prefix_admission_problem(pol, module: str, name: str, obj) -> str | None:
    """Why admitting ``module:name`` by a prefix rule would be wrong, or None."""
    import inspect
    import types

    if pol.classify(module, name).action is not pg.GlobalAction.ALLOW or f"{module}:{name}" in pol.allow_globals:
        return None
    if isinstance(obj, types.ModuleType):
        return "a module (reached through it, any attribute is one getattr away)"
    if inspect.isclass(obj):
        home, qual = getattr(obj, "__module__", "") or "", getattr(obj, "__qualname__", name)
        if home == module or pol.classify(home, qual).action is pg.GlobalAction.ALLOW:
            return None
        if home in HARMLESS_HOMES or f"{home}.{qual}" in HARMLESS_CLASSES or issubclass(obj, BaseException):
            return None
        return f"re-exports the class {home}.{qual}, which is not allowed where it lives"
    if type(obj).__module__ == "typing" or isinstance(obj, types.GenericAlias | types.UnionType):
        return None  # type annotations: dict[str, Tensor], Optional[int] ...
    if callable(obj):
        if name.startswith("__pyx_unpickle_"):
            return None  # Cython's reconstructor: X.__new__(type) with type a subtype of its class X, then its state
        home = getattr(obj, "__module__", None)
        if home in HARMLESS_HOMES:  # typing.Callable, typing.NamedTuple ...
            return None
        return f"a function or callable object (from {home}), not a class: list it exactly if a model needs it"
    return None  # plain data (constants, dtypes, sentinels) cannot be called


@pytest.mark.parametrize("library", ["sklearn", "torch", "pandas", "numpy"])
def test_prefix_rules_admit_only_classes_that_live_there(library):
    """Every name an `allow.modules`/`allow.classes` prefix admits, resolved in the installed library.

    A prefix must never admit a module object, a function, or a re-export of something that is not
    allowed at home (sklearn.pipeline re-exports joblib.Memory; torch.nn.modules.linear has F). Fix a
    failure with an exact deny, a `prefix_exceptions` name, or a narrower prefix.
    """
    pytest.importorskip(library)
    pol = pg.load_pickle_policy()
    prefixes = [p for p in list(pol.allow_modules) + list(pol.allow_classes) if p.split(".")[0] == library]
    assert prefixes or library == "numpy"
    problems = []
    for prefix in prefixes:
        for module, name, obj in prefix_members(prefix):
            why = _prefix_admission_problem(pol, module, name, obj)
            if why:
                problems.append(f"{module}:{name}: {why}")
    assert problems == [], f"{len(problems)} admitted by a prefix:\n" + "\n".join(sorted(problems)[:80])


def test_dangerous_names_stay_refused():
    """What reads or writes files, runs code or reaches interpreter state is never allowed,
    however it is spelled (a re-export under an allowed prefix included)."""
    pol = pg.load_pickle_policy()
    refused = [("numpy", "load"), ("numpy", "fromfile"), ("numpy", "memmap"), ("numpy", "loadtxt"),
               ("numpy.lib.npyio", "load"), ("numpy", "save"), ("torch", "load"), ("torch.serialization", "load"),
               ("torch.hub", "load"), ("torch.jit", "load"), ("torch", "from_file"), ("scipy.io", "loadmat"),
               ("scipy.io.matlab._mio", "loadmat"), ("scipy.io", "savemat"), ("pandas", "read_csv"),
               ("pandas", "read_pickle"), ("pandas.io.pickle", "read_pickle"), ("pandas", "eval"),
               ("pandas.core.computation.expr", "Expr"), ("pandas.core.computation.eval", "eval"),
               ("pandas", "ExcelWriter"), ("pandas", "HDFStore"), ("sklearn.datasets", "load_svmlight_file"),
               ("sklearn.datasets._base", "load_files"), ("sklearn.utils._joblib", "Memory"),
               ("sklearn.pipeline", "Memory"), ("sklearn.utils.validation", "check_memory"),
               ("sklearn.utils.fixes", "import_module"), ("sklearn.utils", "np"),
               ("sklearn.utils.parallel", "Parallel"), ("sklearn.externals._packaging.version", "Version"),
               ("torch.nn.modules.linear", "F"), ("torch.nn.modules.module", "register_module_forward_hook"),
               ("torch.optim.lr_scheduler", "partial"), ("xgboost.core", "DMatrix"), ("xgboost", "DMatrix"),
               ("lightgbm.basic", "Dataset"), ("builtins", "eval"), ("builtins", "getattr"),
               ("builtins", "__import__"), ("importlib", "import_module"), ("os", "system"),
               ("subprocess", "Popen"), ("functools", "partial"), ("operator", "attrgetter")]
    allowed = [f"{m}:{n}" for m, n in refused if pol.classify(m, n).action is pg.GlobalAction.ALLOW]
    assert allowed == []
    for module, name in [("__main__", "Net"), ("models.yolo", "Model"), ("mypkg.nn", "Linear"),
                         ("torch_custom.nn.modules", "Linear")]:
        assert pol.classify(module, name).action is pg.GlobalAction.UNKNOWN, (module, name)


def test_every_named_sklearn_scorer_is_allowed():
    """GridSearchCV(scoring="neg_mean_squared_error") pickles the scorer's function: each one is listed."""
    pytest.importorskip("sklearn")
    from sklearn.metrics import get_scorer, get_scorer_names

    pol = pg.load_pickle_policy()
    missing = []
    for name in get_scorer_names():
        func = getattr(get_scorer(name), "_score_func", None)
        if func is not None and pol.classify(func.__module__, func.__qualname__).action is not pg.GlobalAction.ALLOW:
            missing.append(f"{name}: {func.__module__}:{func.__qualname__}")
    assert missing == []
