"""Benign models of every format must pass with no finding of severity medium or worse.

The files are made here by saving real objects (writing is fine); nothing is ever loaded back.
"""

from __future__ import annotations

import pickle
import sys
import warnings

import pytest

from gapsync.model import Severity
from tests.support.samples import scan

np = pytest.importorskip("numpy")


@pytest.fixture(scope="module", autouse=True)
def stock_pickler():
    """The standard library's pickler as the libraries' users have it, not as dill left it.

    ``import dill`` (the datasets client imports it, and the datasets tests run earlier in the
    session) adds dill's reducers to the pure-Python ``pickle._Pickler`` dispatch table
    (``dill.extend``), and joblib, imported after that, copies the table into its
    ``NumpyPickler``: a joblib file then names ``dill._dill`` globals (``_load_type('slice')``
    for a ColumnTransformer's slices), which the scanner rightly denies. These tests check what
    scikit-learn, pandas and the boosters write themselves, so the extension is undone here, as
    torch undoes it (``torch/utils/_import_utils.py``), in the stdlib's table and in the copies
    its subclasses outside dill took; it is set up before the module's generated set."""
    dill = sys.modules.get("dill")
    if dill is None:
        return
    dill.extend(False)
    stock = pickle._Pickler.dispatch
    subclasses = list(pickle._Pickler.__subclasses__())
    while subclasses:
        cls = subclasses.pop()
        subclasses.extend(cls.__subclasses__())
        table = cls.__dict__.get("dispatch")
        if not isinstance(table, dict) or any(c.__module__.startswith("dill") for c in cls.__mro__):
            continue
        for kind, save in list(table.items()):
            if getattr(save, "__module__", "").startswith("dill"):
                if kind in stock:
                    table[kind] = stock[kind]
                else:
                    del table[kind]


def noisy(findings):
    return [(f.rule, f.severity.value, f.location, f.message) for f in findings
            if f.severity.rank >= Severity.MEDIUM.rank]


def sklearn_models():
    sk = pytest.importorskip("sklearn")
    assert sk
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.RandomState(0)
    X = rng.rand(60, 4)
    y = (X[:, 0] > 0.5).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "logreg": LogisticRegression().fit(X, y),
            "forest": RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y),
            "gboost": GradientBoostingClassifier(n_estimators=3).fit(X, y),
            "hgb": HistGradientBoostingClassifier(max_iter=3).fit(X, y),
            "tree": DecisionTreeRegressor(max_depth=3).fit(X, X[:, 1]),
            "pipeline": make_pipeline(StandardScaler(), PCA(2), SVC()).fit(X, y),
            "columns": ColumnTransformer([("s", StandardScaler(), [0, 1]), ("o", OneHotEncoder(), [2])]).fit(
                np.c_[X[:, :2], rng.randint(0, 3, 60)]),
            "kmeans": KMeans(2, n_init=1, random_state=0).fit(X),
            "knn": KNeighborsClassifier().fit(X, y),
            "tfidf": TfidfVectorizer().fit(["hello world foo", "world bar baz"]),
        }


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_sklearn_pickles_are_clean(tmp_path, protocol):
    for name, model in sklearn_models().items():
        p = tmp_path / f"{name}.pkl"
        p.write_bytes(pickle.dumps(model, protocol=protocol))
        assert noisy(scan(p)) == [], name


@pytest.mark.parametrize("compress", [None, "zlib", "gzip", "bz2", "lzma", "xz", "lz4"])
def test_sklearn_joblib_dumps_are_clean(tmp_path, compress):
    joblib = pytest.importorskip("joblib")
    if compress == "lz4":
        pytest.importorskip("lz4")
    for name, model in sklearn_models().items():
        p = tmp_path / f"{name}.joblib"
        joblib.dump(model, p, compress=(compress, 3) if compress else 0)
        assert noisy(scan(p)) == [], name


def test_joblib_object_arrays_and_numpy_values(tmp_path):
    joblib = pytest.importorskip("joblib")
    values = {"obj": np.array([{"a": 1}, None, "s"], dtype=object), "str": np.arange(3).astype("U5"),
              "struct": np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]), "scalar": np.float64(2.5),
              "complex": np.array([1 + 2j]), "rng": np.random.default_rng(0), "rs": np.random.RandomState(1),
              "fortran": np.asfortranarray(np.ones((3, 4)))}
    for name, v in values.items():
        p = tmp_path / f"{name}.joblib"
        joblib.dump(v, p)
        assert noisy(scan(p)) == [], name
        p2 = tmp_path / f"{name}.pkl"
        p2.write_bytes(pickle.dumps(v, protocol=4))
        assert noisy(scan(p2)) == [], name


def test_numpy_files_are_clean(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(10.0))
    np.save(tmp_path / "o.npy", np.array([1, "a", None], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "z.npz", a=np.arange(3), b=np.array([None], dtype=object))
    np.savez_compressed(tmp_path / "zc.npz", a=np.arange(3))
    for p in tmp_path.iterdir():
        assert scan(p) == [], p.name


def test_torch_state_dicts_are_clean(tmp_path):
    torch = pytest.importorskip("torch")
    from torch import nn

    sd = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Conv2d(1, 2, 3)).state_dict()
    torch.save(sd, tmp_path / "zip.pt")
    torch.save(sd, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save({"model": sd, "epoch": 3, "optimizer": torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1).state_dict()},
               tmp_path / "checkpoint.bin")
    torch.save(nn.Parameter(torch.ones(2)), tmp_path / "param.pt")
    torch.save({"bf16": torch.ones(3, dtype=torch.bfloat16), "i8": torch.zeros(2, dtype=torch.int8)},
               tmp_path / "dtypes.pth")
    for p in tmp_path.iterdir():
        assert scan(p) == [], p.name


# -- the generated benign set: every estimator, every torch.nn module, pandas, boosters -------------
@pytest.fixture(scope="module")
def benign_set(tmp_path_factory):
    """The files of tests/support/benign_models.py, written once for this module (never loaded)."""
    pytest.importorskip("sklearn")
    from tests.support.benign_models import generate

    out = tmp_path_factory.mktemp("benign")
    result = generate(out)
    from gapsync.scanner.base import scan_path

    flagged = {}
    for path in result.files:
        high = [f for f in scan_path(path).findings if f.severity.rank >= Severity.HIGH.rank]
        if high:
            flagged[path.relative_to(out).as_posix()] = [(f.rule, f.message[:120]) for f in high]
    return out, result, flagged


def test_generated_benign_set_is_quiet(benign_set):
    """Issue 14 §5: at most 1% of the real object graphs flagged high or worse."""
    _out, result, flagged = benign_set
    assert len(result.files) >= 200, result.skipped
    assert len(flagged) <= len(result.files) // 100, flagged


def test_every_sklearn_estimator_was_generated_and_is_quiet(benign_set):
    from sklearn.utils import all_estimators

    out, result, flagged = benign_set
    names = {p.name for p, lib in result.files.items() if lib == "sklearn"}
    missing = [n for n, _ in all_estimators() if f"{n}.pkl" not in names]
    assert missing == [], {n: result.skipped.get(f"sklearn/{n}.pkl") for n in missing}
    for name in ("FeatureAgglomeration", "SplineTransformer", "KNeighborsClassifier", "HistGradientBoostingRegressor"):
        assert f"sklearn/{name}.pkl" not in flagged, flagged.get(f"sklearn/{name}.pkl")
    assert not [k for k in flagged if k.startswith("sklearn/")]


def test_no_standard_torch_module_is_flagged(benign_set):
    torch = pytest.importorskip("torch")
    out, result, flagged = benign_set
    saved = {p.name for p, lib in result.files.items() if lib == "torch"}
    for name in ("Sequential", "Linear", "Conv2d", "LSTM", "TransformerEncoder", "Transformer", "LazyLinear",
                 "MultiheadAttention", "Embedding", "BatchNorm2d"):
        assert f"nn-{name}.pt" in saved, result.skipped.get(f"torch/nn-{name}.pt")
    modules = [n for n, c in vars(torch.nn).items() if isinstance(c, type) and issubclass(c, torch.nn.Module)]
    assert len([n for n in saved if n.startswith("nn-")]) >= len(modules) - 3, result.skipped
    assert [k for k in flagged if k.startswith("torch/")] == []


def test_pandas_and_boosters_are_quiet(benign_set):
    out, result, flagged = benign_set
    libs = {lib for lib in result.files.values()}
    assert "pandas" in libs
    assert [k for k in flagged if k.split("/")[0] in ("pandas", "numpy", "xgboost", "lightgbm")] == []


# -- what the allowlist still refuses -------------------------------------------------------------
def _call0(module: str, name: str, arg: str = "x") -> bytes:
    """Protocol 2: module.name(arg) (never loaded)."""
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X" + len(arg).to_bytes(4, "little") + arg.encode() + b"\x85R."


def _instance(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode() + b")\x81"


def _getattr_on_memo(memo: int, attr: str) -> bytes:
    return b"cbuiltins\ngetattr\nh" + bytes([memo]) + b"X" + len(attr).to_bytes(4, "little") + attr.encode() + b"\x86R"


@pytest.mark.parametrize("module,name", [
    ("__main__", "Net"), ("models.yolo", "Model"), ("mymodels.nn", "Linear"), ("numpy", "load"),
    ("numpy", "fromfile"), ("numpy", "memmap"), ("torch", "load"), ("torch.serialization", "load"),
    ("torch.hub", "load"), ("torch.jit", "load"), ("scipy.io", "loadmat"), ("scipy.io.matlab._mio", "loadmat"),
    ("pandas", "read_csv"), ("pandas", "read_pickle"), ("pandas.core.computation.eval", "eval"),
    ("pandas", "HDFStore"), ("sklearn.datasets", "fetch_openml"), ("sklearn.feature_selection._base", "attrgetter"),
    ("sklearn.compose._column_transformer", "partial"), ("sklearn.utils", "np"), ("sklearn.utils.validation", "check_memory"),
    ("torch.nn.modules.linear", "F"), ("torch.nn.modules.module", "register_module_forward_hook"),
    ("xgboost.sklearn", "DMatrix"), ("builtins", "getattr"), ("builtins", "eval"), ("os", "system"),
])
def test_refused_globals_stay_high(tmp_path, module, name):
    from tests.support.samples import is_malicious, write

    assert is_malicious(scan(write(tmp_path, "m.pkl", _call0(module, name))))


def test_user_defined_classes_in_a_torch_checkpoint_are_high(tmp_path):
    import zipfile

    for module, name in (("__main__", "Net"), ("models.yolo", "Model")):
        data = b"\x80\x02" + _instance(module, name) + b"}b."
        path = tmp_path / f"{name}.pt"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", data)
            z.writestr("archive/version", "3\n")
        fs = scan(path)
        assert any(f.rule == "pickle.global.unknown" and f.evidence.get("global") == f"{module}.{name}" for f in fs)


def test_bound_methods_only_the_listed_pairs(tmp_path):
    """pickle saves a bound method as getattr(obj, name): only listed (class, method) pairs pass."""
    from tests.support.samples import is_malicious, write

    lazy = b"\x80\x02" + _instance("torch.nn.modules.linear", "LazyLinear") + b"q\x000"
    ok = lazy + _getattr_on_memo(0, "_infer_parameters") + b"."
    assert not is_malicious(scan(write(tmp_path, "ok.pkl", ok)))
    zone = b"\x80\x02czoneinfo\nZoneInfo\nq\x000" + _getattr_on_memo(0, "_unpickle") + b"X\x03\x00\x00\x00UTC\x85R."
    assert not is_malicious(scan(write(tmp_path, "zone.pkl", zone)))
    hostile = {
        "other-method": lazy + _getattr_on_memo(0, "load_state_dict") + b".",
        "dunder": lazy + _getattr_on_memo(0, "__class__") + b".",
        "unlisted-class": b"\x80\x02" + _instance("torch.nn.modules.linear", "Linear") + b"q\x000"
                          + _getattr_on_memo(0, "_infer_parameters") + b".",
        "array-tofile": b"\x80\x02cnumpy\nndarray\nq\x000" + _getattr_on_memo(0, "tofile") + b".",
        "user-class": b"\x80\x02" + _instance("__main__", "Lazy") + b"q\x000" + _getattr_on_memo(0, "_infer_parameters") + b".",
        "module-object": b"\x80\x02cos\nsystem\nq\x000" + _getattr_on_memo(0, "_infer_parameters") + b".",
        "ok-then-bad": ok[:-1] + b"0" + _getattr_on_memo(0, "register_forward_hook") + b".",
        "never-called": lazy + b"cbuiltins\ngetattr\n]q\x01.",
        "same-global-reused": lazy + b"cbuiltins\ngetattr\nq\x05h\x00X\x11\x00\x00\x00_infer_parameters\x86R0"
                              b"h\x05h\x00X\x0f\x00\x00\x00load_state_dict\x86R.",
        "computed-name": lazy + b"cbuiltins\ngetattr\nh\x00" + b"cbuiltins\nstr\n)R\x86R.",
        "error-after": lazy + b"cbuiltins\ngetattr\n\xff",
        "zone-init": b"\x80\x02czoneinfo\nZoneInfo\nq\x000" + _getattr_on_memo(0, "__init__") + b".",
    }
    for label, data in hostile.items():
        fs = scan(write(tmp_path, f"{label}.pkl", data))
        assert is_malicious(fs), label
        if label not in ("user-class", "module-object", "computed-name", "error-after", "never-called"):
            assert any(f.evidence.get("global", "").endswith("getattr") for f in fs), (label, fs)


def test_legacy_torch_module_records_name_their_class(tmp_path):
    """Legacy torch.save stores whole modules as persistent ids ('module', cls, file, source); the class is judged."""
    from tests.support.samples import is_malicious, write

    def legacy(module: str, name: str) -> bytes:
        pid = b"(Vmodule\n" + b"c" + f"{module}\n{name}\n".encode() + b"V/src/x.py\nVsrc\ntQ"
        return b"\x80\x02" + pid + b")\x81}b."

    assert not is_malicious(scan(write(tmp_path, "ok.pkl", legacy("torch.nn.modules.linear", "Linear"))))
    assert is_malicious(scan(write(tmp_path, "user.pkl", legacy("__main__", "Net"))))
    assert is_malicious(scan(write(tmp_path, "os.pkl", legacy("os", "system"))))
    other = b"\x80\x02(Vstorage\ncos\nsystem\nV/x\nVs\ntQ)\x81."
    assert is_malicious(scan(write(tmp_path, "other.pkl", other)))


def test_partial_only_of_allowed_functions(tmp_path):
    """functools.partial(f, ...) only stores f: allowed when f is an allowed global, else high."""
    from tests.support.samples import is_malicious, write

    def partial(inner: bytes) -> bytes:
        return b"\x80\x02cfunctools\npartial\n" + inner + b"\x85R."

    ok = partial(b"cnumpy\nmean\n")
    assert not is_malicious(scan(write(tmp_path, "ok.pkl", ok)))
    hostile = {
        "eval": partial(b"cbuiltins\neval\n"),
        "user-function": partial(b"c__main__\nrun\n"),
        "computed": partial(b"cnumpy\nmean\n)R"),  # the result of a call, not a named global
        "never-called": b"\x80\x02cfunctools\npartial\n.",
        "getattr": partial(b"cbuiltins\ngetattr\n"),
        "called-later": ok[:-1] + b"X\x01\x00\x00\x00x\x85R.",  # partial(numpy.mean)('x'): an indirect call
    }
    for label, data in hostile.items():
        assert is_malicious(scan(write(tmp_path, f"{label}.pkl", data))), label
