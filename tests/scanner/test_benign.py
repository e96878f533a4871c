"""Benign models of every format must pass with no finding of severity medium or worse.

The files are made here by saving real objects (writing is fine); nothing is ever loaded back.
"""

from __future__ import annotations

import pickle
import warnings

import pytest
from scanner_samples import scan

from gapsync.model import Severity

np = pytest.importorskip("numpy")


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
