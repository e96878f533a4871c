"""The pickle allowlist's prefix rules, checked against the installed libraries themselves: every
name a prefix admits (``prefix_members``), and the re-exported classes that are harmless."""

from __future__ import annotations

from gapsync.policies import pickle_globals as pg

# Homes whose classes are harmless to construct with any arguments when a prefix re-exports them.
HARMLESS_HOMES = ("abc", "typing", "typing_extensions", "numbers", "enum", "collections.abc", "_collections_abc",
                   "dataclasses", "_cyutility", "View.MemoryView")  # the last two: Cython's memoryview helpers
# Classes of other homes that only store their arguments (constructing one does nothing else).
HARMLESS_CLASSES = {"inspect.Parameter", "collections.UserDict", "builtins.ellipsis", "types.GenericAlias",
                     "re.Pattern", "importlib._bootstrap.Components"}  # the last: a pandas namedtuple, misnamed


def prefix_members(prefix: str):
    """(module, name, object) for every name of every importable module under ``prefix``."""
    import importlib
    import pkgutil
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = importlib.import_module(prefix)
        names = [prefix]
        if hasattr(root, "__path__"):
            names += [m.name for m in pkgutil.walk_packages(root.__path__, prefix + ".", onerror=lambda _n: None)]
        for name in names:
            if any(part in pg._TEST_COMPONENTS for part in name.split(".")):
                continue
            try:
                module = importlib.import_module(name)
            except Exception:  # noqa: BLE001, S112 - what cannot be imported cannot be unpickled either
                continue
            for attr, obj in list(vars(module).items()):
                yield name, attr, obj
