"""Loader and matcher for the pickle-globals allowlist (``pickle_globals.yaml``).

Why data and not code: the list of what a model may import changes with the libraries people
use; reviewers should be able to read and extend it without reading the scanner. The rules of
precedence are documented at the top of the YAML file and in docs/scanner.md; this module only
implements them. A malformed policy file is an :class:`~gapsync.errors.InputError`.
"""

from __future__ import annotations

import _compat_pickle
import json
import re
import zlib
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from gapsync import fsutil
from gapsync.errors import InputError
from gapsync.model import Severity

DEFAULT_POLICY = "pickle_globals.yaml"
# The shipped YAML, already parsed, with the size and CRC-32 of the YAML it came from. Why:
# importing PyYAML costs more than scanning a small pickle, and `gapsync scan` runs in loops and
# hooks. It is used only while both match the YAML beside it (a staleness check, not a security
# one: both files ship in the package), so an edited allowlist is never shadowed by a stale
# copy; `python -m gapsync.policies.pickle_globals` rewrites it and a test keeps it current.
COMPILED_POLICY = "pickle_globals.json"
_HERE = Path(__file__).resolve().parent
# Modules under an allowed prefix that are still not allowed: test helpers run code on purpose.
_TEST_COMPONENTS = frozenset({"tests", "test", "testing", "_testing", "conftest", "estimator_checks"})
# A class name as libraries write them (CapWords, maybe private), or Cython's reconstructor of an
# extension type (``__pyx_unpickle_Tree``): what `allow.classes` prefixes admit.
_CLASS_NAME = re.compile(r"_{0,2}[A-Z][A-Za-z0-9_]*|__pyx_unpickle_[A-Za-z_][A-Za-z0-9_]*")


class GlobalAction(StrEnum):
    """What the allowlist says about one global."""

    ALLOW = "allow"
    REVIEW = "review"
    DENY = "deny"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class GlobalVerdict:
    """The decision for one global and the reason, so a finding can say *why*."""

    action: GlobalAction
    severity: Severity | None
    why: str
    category: str | None = None


@dataclass(frozen=True)
class _Rule:
    severity: Severity  # review and deny rules always carry one (from_dict requires it)
    why: str
    category: str | None


def normalize(module: str, name: str) -> tuple[str, str]:
    """Map Python 2 names to Python 3 ones exactly as ``pickle`` does with ``fix_imports``."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@dataclass
class PicklePolicy:
    """The parsed allowlist; :meth:`classify` is a pure function of (module, name)."""

    unknown_severity: Severity = Severity.HIGH
    allow_globals: dict[str, str] = field(default_factory=dict)  # "mod:name" -> why
    allow_modules: dict[str, str] = field(default_factory=dict)  # prefix -> why
    allow_classes: dict[str, str] = field(default_factory=dict)  # prefix -> why (class names only)
    # "module:Class.method": bound methods a pickle may build with getattr(instance or class, name)
    allow_methods: dict[str, str] = field(default_factory=dict)
    # Names a prefix rule never admits: re-exports of things that are not harmless at home
    # (``sklearn.pipeline:Memory`` is ``joblib.Memory``, ``torch.nn.modules.linear:F`` a module).
    prefix_exceptions: frozenset[str] = frozenset()
    review_globals: dict[str, _Rule] = field(default_factory=dict)
    deny_globals: dict[str, _Rule] = field(default_factory=dict)
    deny_modules: dict[str, _Rule] = field(default_factory=dict)
    nested_loaders: frozenset[str] = frozenset()
    # (module, name) -> verdict: a checkpoint names the same few globals thousands of times
    _memo: dict[tuple[str, str], GlobalVerdict] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Any, source: str = "policy") -> PicklePolicy:
        if not isinstance(data, dict) or data.get("version") != 1:
            raise InputError(f"{source}: not a version-1 pickle globals policy")
        try:
            pol = cls(unknown_severity=Severity(data.get("unknown_severity", "high")))
            for group in data.get("allow") or []:
                why = str(group.get("why", ""))
                for g in group.get("globals") or []:
                    pol.allow_globals[_check_ref(g, source)] = why
                for m in group.get("modules") or []:
                    pol.allow_modules[str(m)] = why
                for m in group.get("classes") or []:
                    pol.allow_classes[str(m)] = why
                for m in group.get("methods") or []:
                    pol.allow_methods[_check_ref(m, source)] = why
            pol.prefix_exceptions = frozenset(str(n) for n in data.get("prefix_exceptions") or [])
            for section, gtarget, mtarget in (("review", pol.review_globals, None),
                                              ("deny", pol.deny_globals, pol.deny_modules)):
                for group in data.get(section) or []:
                    rule = _Rule(Severity(group["severity"]), str(group.get("why", "")), group.get("category"))
                    for g in group.get("globals") or []:
                        gtarget[_check_ref(g, source)] = rule
                    for m in group.get("modules") or []:
                        if mtarget is None:
                            raise InputError(f"{source}: '{section}' takes globals only")
                        mtarget[str(m)] = rule
            pol.nested_loaders = frozenset(_check_ref(g, source) for g in data.get("nested_loaders") or [])
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise InputError(f"{source}: malformed pickle globals policy: {e}") from e
        return pol

    def classify(self, module: str, name: str) -> GlobalVerdict:
        """Decide one global; see the precedence rules in pickle_globals.yaml."""
        key = (module, name)
        verdict = self._memo.get(key)
        if verdict is None:
            if len(self._memo) > 65536:  # a hostile pickle can name millions of distinct globals
                self._memo.clear()
            verdict = self._memo[key] = self._classify(*normalize(module, name))
        return verdict

    def _classify(self, module: str, name: str) -> GlobalVerdict:
        ref = f"{module}:{name}"
        if ref in self.deny_globals:
            r = self.deny_globals[ref]
            return GlobalVerdict(GlobalAction.DENY, r.severity, r.why, r.category)
        if ref in self.allow_globals:
            return GlobalVerdict(GlobalAction.ALLOW, None, self.allow_globals[ref])
        if ref in self.review_globals:
            r = self.review_globals[ref]
            return GlobalVerdict(GlobalAction.REVIEW, r.severity, r.why, r.category)
        denied = self._deny_module(module)
        if "." in name:
            # "pathlib:os.system": an attribute chain; explain it by what it reaches when that is worse.
            parts = name.split(".")
            for i in range(1, len(parts)):
                inner_mod, inner_name = ".".join(parts[:i]), ".".join(parts[i:])
                inner = self.deny_globals.get(f"{inner_mod}:{inner_name}") or self._deny_module(inner_mod)
                if inner is not None and (denied is None or inner.severity.rank > denied.severity.rank):
                    denied = inner
                    break
        if denied is not None:
            return GlobalVerdict(GlobalAction.DENY, denied.severity, denied.why, denied.category)
        if self._allowed_by_module(module, name):
            return GlobalVerdict(GlobalAction.ALLOW, None, "allowed module prefix")
        if self._allowed_by_class_prefix(module, name):
            return GlobalVerdict(GlobalAction.ALLOW, None, "a class of an allowed module prefix")
        if "." in name:
            return GlobalVerdict(GlobalAction.UNKNOWN, self.unknown_severity,
                                 "reaches an attribute through a chain of names, not on the allowlist")
        return GlobalVerdict(GlobalAction.UNKNOWN, self.unknown_severity,
                             "not on the allowlist: loading imports it and can call it with any arguments")

    def allows_method(self, module: str, name: str, method: str) -> bool:
        """May ``getattr(<module.name instance or class>, method)`` be built? (how pickle saves a bound method)"""
        module, name = normalize(module, name)
        return f"{module}:{name}.{method}" in self.allow_methods

    def is_nested_loader(self, module: str, name: str) -> bool:
        module, name = normalize(module, name)
        return f"{module}:{name}" in self.nested_loaders

    def _deny_module(self, module: str) -> _Rule | None:
        best = None
        for prefix, rule in self.deny_modules.items():
            if _under(module, prefix) and (best is None or len(prefix) > len(best[0])):
                best = (prefix, rule)
        return best[1] if best else None

    def _allowed_by_module(self, module: str, name: str) -> bool:
        if not self._prefix_may_admit(module, name):
            return False
        return any(_under(module, prefix) for prefix in self.allow_modules)

    def _allowed_by_class_prefix(self, module: str, name: str) -> bool:
        if not (self._prefix_may_admit(module, name) and _CLASS_NAME.fullmatch(name)):
            return False
        return any(_under(module, prefix) for prefix in self.allow_classes)

    def _prefix_may_admit(self, module: str, name: str) -> bool:
        if not name.isidentifier() or (name.startswith("__") and name.endswith("__")):
            return False
        if name in self.prefix_exceptions:
            return False
        return not any(part in _TEST_COMPONENTS for part in module.split("."))


def _check_ref(ref: Any, source: str) -> str:
    if not isinstance(ref, str) or ref.count(":") != 1 or not all(ref.split(":")):
        raise InputError(f"{source}: {ref!r} is not a 'module:name' reference")
    return ref


def load_pickle_policy(path: Path | None = None) -> PicklePolicy:
    """The shipped allowlist, or the one at ``path`` (same schema)."""
    if path is None:
        return _default_policy()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read pickle globals policy: {e}") from e
    return PicklePolicy.from_dict(_load_yaml(text, path), str(path))


@lru_cache(maxsize=1)
def _default_policy() -> PicklePolicy:
    raw = (_HERE / DEFAULT_POLICY).read_bytes()
    try:
        compiled = json.loads((_HERE / COMPILED_POLICY).read_bytes())
    except (OSError, ValueError):
        compiled = None
    if isinstance(compiled, dict) and compiled.get("source") == _fingerprint(raw):
        return PicklePolicy.from_dict(compiled.get("policy"), COMPILED_POLICY)
    return PicklePolicy.from_dict(_load_yaml(raw.decode("utf-8"), DEFAULT_POLICY), DEFAULT_POLICY)


def compile_default_policy() -> Path:
    """Write pickle_globals.json from pickle_globals.yaml (after checking that it parses)."""
    raw = (_HERE / DEFAULT_POLICY).read_bytes()
    data = _load_yaml(raw.decode("utf-8"), DEFAULT_POLICY)
    PicklePolicy.from_dict(data, DEFAULT_POLICY)
    out = _HERE / COMPILED_POLICY
    doc = {"comment": f"generated from {DEFAULT_POLICY} by `python -m gapsync.policies.pickle_globals`; "
                      "edit the YAML, not this file",
           "source": _fingerprint(raw), "policy": data}
    fsutil.write_atomic(out, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return out


def _fingerprint(raw: bytes) -> dict[str, int]:
    return {"size": len(raw), "crc32": zlib.crc32(raw)}


def _load_yaml(text: str, source: Path | str) -> Any:
    """libyaml's safe loader when PyYAML has it; imported here, only when a YAML must be read."""
    import yaml

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 (a safe loader)
    except yaml.YAMLError as e:
        raise InputError(f"{source}: cannot read pickle globals policy: {' '.join(str(e).split())}") from e


if __name__ == "__main__":
    print(compile_default_policy())
