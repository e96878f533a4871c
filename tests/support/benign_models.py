"""Benign model files made from the libraries' real objects, to keep the allowlist honest.

The pickle allowlist (gapsync/policies/pickle_globals.yaml) is built from what real models
reference: every estimator of ``sklearn.utils.all_estimators()`` (fitted on tiny data where it
fits), every ``torch.nn`` module class saved whole, torch optimizers and learning-rate
schedulers, pandas objects, NumPy values, xgboost and lightgbm models. This module only
*writes* such files (``pickle.dumps``, ``torch.save``, ``joblib.dump``); nothing here or in the
tests loads one back.

    python -m tests.support.benign_models OUT_DIR     # write the set, then scan it:
    gapsync scan OUT_DIR --json

A library that is not installed is skipped; an object that cannot be made or pickled is left
out (its reason is in the returned list of skips).
"""

from __future__ import annotations

import inspect
import io
import pickle
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROTOCOL = 4


@dataclass
class BenignSet:
    """What was written (path -> library) and what was skipped (name -> reason)."""

    files: dict[Path, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def generate(out: Path, libraries: tuple[str, ...] = ("sklearn", "torch", "pandas", "numpy", "xgboost",
                                                        "lightgbm")) -> BenignSet:
    """Write the benign files of each installed library under ``out/<library>/``."""
    result = BenignSet()
    makers: dict[str, Callable[[], Iterator[tuple[str, Callable[[Path], None]]]]] = {
        "sklearn": _sklearn, "torch": _torch, "pandas": _pandas, "numpy": _numpy,
        "xgboost": _xgboost, "lightgbm": _lightgbm}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lib in libraries:
            try:
                items = list(makers[lib]())
            except ImportError as e:
                result.skipped[lib] = f"not installed: {e}"
                continue
            (out / lib).mkdir(parents=True, exist_ok=True)
            for name, write in items:
                path = out / lib / name
                try:
                    write(path)
                except Exception as e:  # noqa: BLE001 - an object that cannot be made or saved is left out
                    result.skipped[f"{lib}/{name}"] = f"{type(e).__name__}: {e}"[:200]
                    path.unlink(missing_ok=True)
                    continue
                result.files[path] = lib
    return result


def _pickled(obj_factory: Callable[[], Any], protocol: int = PROTOCOL) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(pickle.dumps(obj_factory(), protocol=protocol))
    return write


# -- scikit-learn --------------------------------------------------------------------------------
def _sklearn() -> Iterator[tuple[str, Callable[[Path], None]]]:
    import joblib
    import numpy as np

    # the experimental estimators too, so that the set does not depend on what was imported before
    import sklearn.experimental.enable_halving_search_cv  # noqa: F401
    import sklearn.experimental.enable_iterative_imputer  # noqa: F401
    from sklearn.utils import all_estimators

    rng = np.random.RandomState(0)
    X = np.abs(rng.rand(30, 4)) + 0.1
    y_cls = np.array([0, 1, 2] * 10)
    y_reg = X[:, 0] * 2 + rng.rand(30) * 0.1
    for name, cls in all_estimators():
        def make(cls=cls):
            est = _sklearn_instance(cls)
            _sklearn_fit(est, X, y_cls, y_reg)
            return est

        yield f"{name}.pkl", _pickled(make)
    yield from _sklearn_variants(X, y_cls, y_reg)
    # joblib with compression (the file format people ship), a few pipelines
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    def pipeline():
        return make_pipeline(StandardScaler(), PCA(2), RandomForestClassifier(n_estimators=3)).fit(X, y_cls)

    def columns():
        Xc = np.c_[X[:, :2], rng.randint(0, 3, 30)]
        return ColumnTransformer([("s", StandardScaler(), [0, 1]), ("o", OneHotEncoder(), [2])]).fit(Xc)

    for comp in (0, 3, ("lzma", 3)):
        for label, factory in (("pipeline", pipeline), ("columns", columns)):
            def write(path: Path, factory=factory, comp=comp) -> None:
                joblib.dump(factory(), path, compress=comp)

            tag = comp[0] if isinstance(comp, tuple) else f"z{comp}"
            yield f"{label}-{tag}.joblib", write


def _sklearn_variants(X, y_cls, y_reg) -> Iterator[tuple[str, Callable[[Path], None]]]:
    """Estimators as people configure them: functions and scorers as parameters, searches with
    several metrics, the older pickle protocols (copyreg._reconstructor instead of NEWOBJ)."""
    import numpy as np
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.ensemble import HistGradientBoostingClassifier, StackingClassifier
    from sklearn.feature_selection import SelectKBest, chi2, mutual_info_classif
    from sklearn.impute import KNNImputer, SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression, SGDClassifier
    from sklearn.metrics import make_scorer, mean_absolute_error
    from sklearn.model_selection import GridSearchCV
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, PolynomialFeatures, StandardScaler

    variants: dict[str, Callable[[], Any]] = {
        "log-transformer": lambda: FunctionTransformer(np.log1p, inverse_func=np.expm1).fit(X),
        "target-transform": lambda: TransformedTargetRegressor(LinearRegression(), func=np.log1p,
                                                               inverse_func=np.expm1).fit(X, y_reg),
        "select-chi2": lambda: SelectKBest(chi2, k=2).fit(X, y_cls),
        "select-mutual-info": lambda: SelectKBest(mutual_info_classif, k=2).fit(X, y_cls),
        "grid-multimetric": lambda: GridSearchCV(LogisticRegression(max_iter=50), {"C": [0.5, 1.0]}, cv=2,
                                                 scoring={"acc": "accuracy", "f1": "f1_macro"}, refit="acc").fit(X, y_cls),
        "grid-make-scorer": lambda: GridSearchCV(LinearRegression(), {"fit_intercept": [True, False]}, cv=2,
                                                 scoring=make_scorer(mean_absolute_error, greater_is_better=False)).fit(X, y_reg),
        "calibrated": lambda: CalibratedClassifierCV(LogisticRegression(max_iter=50), cv=2).fit(X, y_cls),
        "stacking": lambda: StackingClassifier([("a", LogisticRegression(max_iter=50)), ("b", SGDClassifier())],
                                               cv=2).fit(X, y_cls),
        "mlp": lambda: MLPClassifier((4,), max_iter=20).fit(X, y_cls),
        "hgb-categorical": lambda: HistGradientBoostingClassifier(max_iter=3, categorical_features=[0]).fit(
            np.c_[np.arange(30) % 3, X[:, 1:]], y_cls),
        "imputers": lambda: make_pipeline(SimpleImputer(strategy="median"), KNNImputer(n_neighbors=2),
                                          PolynomialFeatures(2), StandardScaler()).fit(X),
    }
    for name, factory in variants.items():
        for protocol in (0, 2, 5):
            yield f"variant-{name}-p{protocol}.pkl", _pickled(factory, protocol)


def _sklearn_instance(cls):
    """An instance with default parameters; meta-estimators get a small inner estimator."""
    from sklearn.linear_model import LinearRegression, LogisticRegression

    params = inspect.signature(cls.__init__).parameters
    is_classifier = getattr(cls, "_estimator_type", None) == "classifier" or "Classifier" in cls.__name__
    inner = LogisticRegression(max_iter=50) if is_classifier else LinearRegression()
    kwargs: dict[str, Any] = {}
    if "estimator" in params and params["estimator"].default is inspect.Parameter.empty:
        kwargs["estimator"] = inner
    if "base_estimator" in params and params["base_estimator"].default is inspect.Parameter.empty:
        kwargs["base_estimator"] = inner
    if "estimators" in params and params["estimators"].default is inspect.Parameter.empty:
        second = LogisticRegression(C=0.5, max_iter=50) if is_classifier else LinearRegression(fit_intercept=False)
        kwargs["estimators"] = [("a", inner), ("b", second)]
    if "steps" in params:
        from sklearn.preprocessing import StandardScaler
        kwargs["steps"] = [("s", StandardScaler()), ("m", inner)]
    if "transformer_list" in params:
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import StandardScaler
        kwargs["transformer_list"] = [("s", StandardScaler()), ("p", PCA(1))]
    if "transformers" in params:
        from sklearn.preprocessing import StandardScaler
        kwargs["transformers"] = [("s", StandardScaler(), [0, 1])]
    if "param_grid" in params:
        kwargs["param_grid"] = {"fit_intercept": [True, False]} if not is_classifier else {"C": [0.5, 1.0]}
    if "param_distributions" in params:
        kwargs["param_distributions"] = {"fit_intercept": [True, False]} if not is_classifier else {"C": [0.5, 1.0]}
        if "n_iter" in params:
            kwargs["n_iter"] = 2
    if "cv" in params:
        kwargs["cv"] = 2
    if "n_components" in params and params["n_components"].default in (None, 2, "auto"):
        kwargs["n_components"] = 2
    if cls.__name__ == "SparseCoder":
        import numpy as np
        kwargs["dictionary"] = np.eye(4)
    if cls.__name__ == "FrozenEstimator":
        kwargs["estimator"] = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
    return cls(**kwargs)


def _sklearn_fit(est, X, y_cls, y_reg) -> None:
    """Fit on tiny data; an estimator that will not fit (text, specific inputs) is kept unfitted."""
    name = type(est).__name__
    is_classifier = getattr(est, "_estimator_type", None) == "classifier"
    attempts = []
    if name in ("CountVectorizer", "TfidfVectorizer", "HashingVectorizer"):
        attempts.append((["a b c", "b c d", "c d e"],))
    elif name in ("DictVectorizer", "FeatureHasher"):
        attempts.append(([{"a": 1, "b": 2}, {"b": 3, "c": 1}],))
    elif name in ("MultiLabelBinarizer",):
        attempts.append(([[1, 2], [3]],))
    elif name in ("LabelEncoder", "LabelBinarizer"):
        attempts.append((y_cls,))
    elif name == "IsotonicRegression":
        attempts.append((X[:, 0], y_reg))
    attempts += [(X, y_cls)] if is_classifier else [(X, y_reg), (X, y_cls)]
    attempts.append((X,))
    for args in attempts:
        try:
            est.fit(*args)
            return
        except Exception:  # noqa: BLE001, S112 - the next way of fitting is tried; unfitted is fine too
            continue


# -- PyTorch -------------------------------------------------------------------------------------
TORCH_ARGS: dict[str, Callable[[Any], Any]] = {
    # torch.nn classes whose constructor needs arguments, made small
    "Linear": lambda nn: nn.Linear(4, 3), "Bilinear": lambda nn: nn.Bilinear(4, 3, 2),
    "LazyLinear": lambda nn: nn.LazyLinear(3), "Embedding": lambda nn: nn.Embedding(10, 4),
    "EmbeddingBag": lambda nn: nn.EmbeddingBag(10, 4),
    "RNN": lambda nn: nn.RNN(4, 3), "LSTM": lambda nn: nn.LSTM(4, 3, num_layers=2),
    "GRU": lambda nn: nn.GRU(4, 3), "RNNCell": lambda nn: nn.RNNCell(4, 3), "LSTMCell": lambda nn: nn.LSTMCell(4, 3),
    "GRUCell": lambda nn: nn.GRUCell(4, 3), "MultiheadAttention": lambda nn: nn.MultiheadAttention(8, 2),
    "Transformer": lambda nn: nn.Transformer(8, 2, 1, 1, 16),
    "TransformerEncoderLayer": lambda nn: nn.TransformerEncoderLayer(8, 2, 16),
    "TransformerDecoderLayer": lambda nn: nn.TransformerDecoderLayer(8, 2, 16),
    "TransformerEncoder": lambda nn: nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), 2),
    "TransformerDecoder": lambda nn: nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16), 2),
    "BatchNorm1d": lambda nn: nn.BatchNorm1d(4), "BatchNorm2d": lambda nn: nn.BatchNorm2d(4),
    "BatchNorm3d": lambda nn: nn.BatchNorm3d(4), "SyncBatchNorm": lambda nn: nn.SyncBatchNorm(4),
    "InstanceNorm1d": lambda nn: nn.InstanceNorm1d(4, affine=True), "InstanceNorm2d": lambda nn: nn.InstanceNorm2d(4),
    "InstanceNorm3d": lambda nn: nn.InstanceNorm3d(4), "GroupNorm": lambda nn: nn.GroupNorm(2, 4),
    "LayerNorm": lambda nn: nn.LayerNorm(4), "RMSNorm": lambda nn: nn.RMSNorm(4),
    "LocalResponseNorm": lambda nn: nn.LocalResponseNorm(2), "CrossMapLRN2d": lambda nn: nn.CrossMapLRN2d(2),
    "PReLU": lambda nn: nn.PReLU(), "Softmax": lambda nn: nn.Softmax(dim=1),
    "AdaptiveLogSoftmaxWithLoss": lambda nn: nn.AdaptiveLogSoftmaxWithLoss(8, 10, [4]),
    "Unflatten": lambda nn: nn.Unflatten(1, (2, 2)), "Fold": lambda nn: nn.Fold((4, 4), 2),
    "Unfold": lambda nn: nn.Unfold(2), "PixelShuffle": lambda nn: nn.PixelShuffle(2),
    "PixelUnshuffle": lambda nn: nn.PixelUnshuffle(2), "ChannelShuffle": lambda nn: nn.ChannelShuffle(2),
    "Upsample": lambda nn: nn.Upsample(scale_factor=2), "UpsamplingNearest2d": lambda nn: nn.UpsamplingNearest2d(scale_factor=2),
    "UpsamplingBilinear2d": lambda nn: nn.UpsamplingBilinear2d(scale_factor=2),
    "Threshold": lambda nn: nn.Threshold(0.1, 0.0), "DataParallel": lambda nn: nn.DataParallel(nn.Linear(2, 2)),
    "LinearCrossEntropyLoss": lambda nn: nn.LinearCrossEntropyLoss(4, 3),
    "RNNBase": lambda nn: nn.RNNBase("LSTM", 4, 3), "RNNCellBase": lambda nn: nn.RNNCellBase(4, 3, True, 1),
    "Sequential": lambda nn: nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Dropout(0.1), nn.Linear(4, 2)),
    "ModuleList": lambda nn: nn.ModuleList([nn.Linear(2, 2), nn.Tanh()]),
    "ModuleDict": lambda nn: nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.GELU()}),
    "ParameterList": lambda nn: nn.ParameterList([nn.Parameter(__import__("torch").ones(2))]),
    "ParameterDict": lambda nn: nn.ParameterDict({"w": nn.Parameter(__import__("torch").ones(2))}),
}
for _n in ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"):
    TORCH_ARGS[_n] = lambda nn, _n=_n: getattr(nn, _n)(2, 3, 3)
for _n in ("LazyConv1d", "LazyConv2d", "LazyConv3d", "LazyConvTranspose1d", "LazyConvTranspose2d",
           "LazyConvTranspose3d"):
    TORCH_ARGS[_n] = lambda nn, _n=_n: getattr(nn, _n)(3, 3)
for _n in ("MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "LPPool1d", "LPPool2d",
           "LPPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "AdaptiveAvgPool1d",
           "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d",
           "FractionalMaxPool2d", "FractionalMaxPool3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
           "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d",
           "ReplicationPad3d", "ZeroPad1d", "ZeroPad2d", "ZeroPad3d", "CircularPad1d", "CircularPad2d",
           "CircularPad3d"):
    if _n.startswith("LPPool"):
        TORCH_ARGS[_n] = lambda nn, _n=_n: getattr(nn, _n)(2, 2)
    elif _n.startswith("ConstantPad"):
        TORCH_ARGS[_n] = lambda nn, _n=_n: getattr(nn, _n)(1, 0.0)
    elif _n.startswith("Fractional"):
        TORCH_ARGS[_n] = lambda nn, _n=_n: getattr(nn, _n)(2, output_size=2)
    else:
        TORCH_ARGS[_n] = lambda nn, _n=_n: getattr(nn, _n)(2)
for _n in ("LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d", "LazyInstanceNorm1d", "LazyInstanceNorm2d",
           "LazyInstanceNorm3d"):
    TORCH_ARGS[_n] = lambda nn, _n=_n: getattr(nn, _n)()


def _torch() -> Iterator[tuple[str, Callable[[Path], None]]]:
    import torch
    from torch import nn

    torch.manual_seed(0)  # the same bytes on every run

    def saver(factory, **kw):
        def write(path: Path) -> None:
            torch.save(factory(), path, **kw)
        return write

    for name, cls in sorted(vars(nn).items()):
        if not (inspect.isclass(cls) and issubclass(cls, nn.Module)) or name in ("Module", "Container"):
            continue
        factory = (lambda name=name: TORCH_ARGS[name](nn)) if name in TORCH_ARGS else (lambda cls=cls: cls())
        yield f"nn-{name}.pt", saver(factory)
    # whole models as people save them: zip and legacy formats, nested containers, utilities
    def convnet():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                             nn.MaxPool2d(2), nn.Conv2d(8, 16, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Dropout(0.2), nn.Linear(16, 10), nn.LogSoftmax(dim=1))

    def seq2seq():
        return nn.ModuleDict({"embed": nn.Embedding(50, 8), "rnn": nn.LSTM(8, 8, batch_first=True, bidirectional=True),
                              "encoder": nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2),
                              "head": nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 50))})

    def weight_normed():  # parametrized modules are saved only as state dicts
        return nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(4, 4)),
                             nn.utils.parametrizations.spectral_norm(nn.Linear(4, 2))).state_dict()

    def old_weight_norm():
        return nn.Sequential(nn.utils.weight_norm(nn.Linear(4, 4)), nn.utils.spectral_norm(nn.Linear(4, 2)))

    for label, factory in (("convnet", convnet), ("seq2seq", seq2seq), ("weight-norm", weight_normed),
                           ("weight-norm-hooks", old_weight_norm)):
        yield f"model-{label}.pt", saver(factory)
        yield f"model-{label}-legacy.pt", saver(factory, _use_new_zipfile_serialization=False)
    # optimizers and schedulers, whole and as state dicts (checkpoint dictionaries)
    def params():
        return nn.Linear(4, 2).parameters()

    optimizers = {name: cls for name, cls in vars(torch.optim).items()
                  if inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer}
    for name, cls in sorted(optimizers.items()):
        def make_opt(cls=cls):
            if cls.__name__ == "Muon":
                return cls([nn.Parameter(torch.ones(3, 3))])
            if cls.__name__ == "SparseAdam":
                return cls(list(nn.Embedding(4, 2, sparse=True).parameters()))
            return cls(params())

        yield f"optim-{name}.pt", saver(make_opt)
        yield f"optim-{name}-state.pt", saver(lambda make_opt=make_opt: make_opt().state_dict())
    sched = torch.optim.lr_scheduler
    schedulers = {
        "StepLR": lambda o: sched.StepLR(o, 2), "MultiStepLR": lambda o: sched.MultiStepLR(o, [1, 3]),
        "ConstantLR": lambda o: sched.ConstantLR(o), "LinearLR": lambda o: sched.LinearLR(o),
        "ExponentialLR": lambda o: sched.ExponentialLR(o, 0.9), "PolynomialLR": lambda o: sched.PolynomialLR(o),
        "CosineAnnealingLR": lambda o: sched.CosineAnnealingLR(o, 10),
        "ReduceLROnPlateau": lambda o: sched.ReduceLROnPlateau(o),
        "CyclicLR": lambda o: sched.CyclicLR(o, 0.01, 0.1), "OneCycleLR": lambda o: sched.OneCycleLR(o, 0.1, total_steps=10),
        "CosineAnnealingWarmRestarts": lambda o: sched.CosineAnnealingWarmRestarts(o, 5),
        "SequentialLR": lambda o: sched.SequentialLR(o, [sched.ConstantLR(o), sched.ExponentialLR(o, 0.9)], [2]),
        "ChainedScheduler": lambda o: sched.ChainedScheduler([sched.ConstantLR(o), sched.ExponentialLR(o, 0.9)]),
    }
    for name, make in sorted(schedulers.items()):
        def make_sched(make=make):
            opt = torch.optim.SGD(params(), lr=0.1)
            return make(opt)

        yield f"sched-{name}.pt", saver(make_sched)
        yield f"sched-{name}-state.pt", saver(lambda make_sched=make_sched: make_sched().state_dict())

    def checkpoint():
        model = convnet()
        opt = torch.optim.AdamW(model.parameters())
        import argparse
        import pathlib

        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3,
                "scheduler": sched.StepLR(opt, 2).state_dict(), "rng": torch.get_rng_state(),
                "args": argparse.Namespace(lr=0.1, data=pathlib.Path("/data/train"), layers=[2, 3]),
                "torch_version": torch.__version__}

    yield "checkpoint.pt", saver(checkpoint)


# -- pandas --------------------------------------------------------------------------------------
def _pandas() -> Iterator[tuple[str, Callable[[Path], None]]]:
    import numpy as np
    import pandas as pd

    values: dict[str, Callable[[], Any]] = {
        "frame": lambda: pd.DataFrame({"a": [1, 2], "b": [1.5, None], "c": ["x", "y"]}),
        "series": lambda: pd.Series([1.0, 2.0], name="s"),
        "index": lambda: pd.Index(["a", "b"]), "range-index": lambda: pd.RangeIndex(5),
        "multi-index": lambda: pd.MultiIndex.from_tuples([(1, "a"), (2, "b")], names=["n", "l"]),
        "datetime-index": lambda: pd.date_range("2024-01-01", periods=3, tz="UTC"),
        "timedelta-index": lambda: pd.timedelta_range("1 day", periods=3),
        "period-index": lambda: pd.period_range("2024-01", periods=3, freq="M"),
        "interval-index": lambda: pd.interval_range(0, 3),
        "categorical-index": lambda: pd.CategoricalIndex(["a", "b", "a"]),
        "categorical": lambda: pd.Categorical(["a", "b", "a"], ordered=True),
        "timestamp": lambda: pd.Timestamp("2024-01-01 12:00", tz="Europe/Paris"),
        "timedelta": lambda: pd.Timedelta("1h"), "period": lambda: pd.Period("2024-01", freq="M"),
        "interval": lambda: pd.Interval(0, 1), "nat": lambda: pd.NaT,
        "nullable": lambda: pd.DataFrame({"i": pd.array([1, None], dtype="Int64"),
                                          "b": pd.array([True, None], dtype="boolean"),
                                          "s": pd.array(["x", None], dtype="string"),
                                          "f": pd.array([1.0, None], dtype="Float64")}),
        "sparse": lambda: pd.Series(pd.arrays.SparseArray([0, 0, 1])),
        "datetimes": lambda: pd.DataFrame({"t": pd.to_datetime(["2024-01-01", "2024-01-02"]),
                                           "tz": pd.date_range("2024", periods=2, tz="US/Eastern"),
                                           "d": pd.to_timedelta([1, 2], unit="s")}),
        "categories-frame": lambda: pd.DataFrame({"c": pd.Categorical(["u", "v"])}).set_index("c"),
        "object-frame": lambda: pd.DataFrame({"o": [{"k": 1}, [1, 2]], "n": np.array([1, 2], dtype=np.int8)}),
        "periods-frame": lambda: pd.DataFrame({"p": pd.period_range("2024-01", periods=2, freq="D"),
                                               "iv": pd.interval_range(0, 2)}),
    }
    for name, factory in values.items():
        yield f"{name}.pkl", _pickled(factory)
    yield "frame-to-pickle.pkl", lambda path: values["datetimes"]().to_pickle(path)
    yield "frame-to-pickle.pkl.gz", lambda path: values["nullable"]().to_pickle(path)


# -- NumPy ---------------------------------------------------------------------------------------
def _numpy() -> Iterator[tuple[str, Callable[[Path], None]]]:
    import numpy as np

    values = {"float": lambda: np.arange(6.0).reshape(2, 3), "masked": lambda: np.ma.masked_array([1, 2], [0, 1]),
              "matrix": lambda: np.matrix([[1, 2]]), "record": lambda: np.rec.array([(1, 2.0)], dtype="i4,f8"),
              "datetime": lambda: np.array(["2024-01-01"], dtype="datetime64[D]"),
              "generator": lambda: np.random.default_rng(0), "random-state": lambda: np.random.RandomState(0),
              "bit-generators": lambda: [np.random.PCG64(1), np.random.MT19937(1), np.random.Philox(1),
                                         np.random.SFC64(1), np.random.SeedSequence(1)],
              "scalars": lambda: [np.float32(1), np.int64(2), np.bool_(True), np.str_("s"), np.complex128(1j),
                                  np.datetime64("2024-01-01"), np.timedelta64(1, "s")],
              "dtypes": lambda: [np.dtype("f4"), np.dtype([("a", "i4")]), np.dtype("U3"), np.dtype("M8[s]")]}
    for name, factory in values.items():
        for protocol in (2, 5):
            yield f"{name}-p{protocol}.pkl", _pickled(factory, protocol)


# -- gradient boosting libraries ------------------------------------------------------------------
def _xgboost() -> Iterator[tuple[str, Callable[[Path], None]]]:
    import numpy as np
    import xgboost as xgb

    X = np.random.RandomState(0).rand(40, 4)
    y = (X[:, 0] > 0.5).astype(int)
    models = {"classifier": lambda: xgb.XGBClassifier(n_estimators=3, max_depth=2).fit(X, y),
              "regressor": lambda: xgb.XGBRegressor(n_estimators=3, max_depth=2).fit(X, X[:, 1]),
              "ranker": lambda: xgb.XGBRanker(n_estimators=3).fit(X, y, qid=np.repeat([0, 1], 20)),
              "rf": lambda: xgb.XGBRFClassifier(n_estimators=3).fit(X, y),
              "booster": lambda: xgb.train({"max_depth": 2}, xgb.DMatrix(X, label=y), num_boost_round=2)}
    for name, factory in models.items():
        yield f"{name}.pkl", _pickled(factory)
        yield f"{name}.joblib", lambda path, factory=factory: __import__("joblib").dump(factory(), path, compress=3)


def _lightgbm() -> Iterator[tuple[str, Callable[[Path], None]]]:
    import lightgbm as lgb
    import numpy as np

    X = np.random.RandomState(0).rand(60, 4)
    y = (X[:, 0] > 0.5).astype(int)
    quiet = {"n_estimators": 3, "min_child_samples": 2, "verbose": -1}
    models = {"classifier": lambda: lgb.LGBMClassifier(**quiet).fit(X, y),
              "regressor": lambda: lgb.LGBMRegressor(**quiet).fit(X, X[:, 1]),
              "ranker": lambda: lgb.LGBMRanker(**quiet).fit(X, y, group=[30, 30]),
              "booster": lambda: lgb.train({"verbose": -1, "min_data_in_leaf": 2}, lgb.Dataset(X, label=y), 2)}
    for name, factory in models.items():
        yield f"{name}.pkl", _pickled(factory)
        yield f"{name}.joblib", lambda path, factory=factory: __import__("joblib").dump(factory(), path, compress=3)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[0], "\nusage: python -m tests.support.benign_models OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    result = generate(out)
    buf = io.StringIO()
    for name, reason in sorted(result.skipped.items()):
        print(f"skipped {name}: {reason}", file=buf)
    sys.stderr.write(buf.getvalue())
    print(f"{len(result.files)} files in {out} ({len(result.skipped)} skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
