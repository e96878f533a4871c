"""Keras model configs (``config.json`` of ``.keras``, ``model_config`` of ``.h5``): code in disguise.

A Keras config names classes and functions by module; loading it imports those modules and
builds those objects. A ``Lambda`` layer carries marshalled Python bytecode (or a function
reference) that runs when the model is built or called. So: every ``Lambda`` is critical, every
class or function from a module outside Keras is high (or worse, rated by the pickle allowlist's
deny list when it names e.g. ``builtins.exec``), and custom registered objects are medium.
"""

from __future__ import annotations

from typing import Any

from gapsync.model import Finding, Severity
from gapsync.policies.pickle_globals import GlobalAction, load_pickle_policy
from gapsync.scanner.base import Where, finding

KERAS_MODULES = ("keras", "tf_keras", "keras_hub", "keras_nlp", "keras_cv", "tensorflow.keras",
                 "tensorflow.python.keras")
LAMBDA_CLASSES = {"Lambda"}
MAX_NODES = 1_000_000


def is_keras_config(data: Any) -> bool:
    return isinstance(data, dict) and "class_name" in data and "config" in data


def analyse_keras_config(data: Any, where: Where) -> list[Finding]:
    out: list[Finding] = []
    policy = load_pickle_policy()
    seen = 0
    stack: list[tuple[Any, str]] = [(data, "$")]
    while stack:
        node, path = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            out.append(finding(where, "keras.config_too_large", Severity.MEDIUM, "config too large to analyse fully"))
            break
        if isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        stack.extend((v, f"{path}.{k}") for k, v in node.items())
        cls = node.get("class_name")
        if not isinstance(cls, str):
            continue
        module = node.get("module")
        cfg = node.get("config")
        if cls in LAMBDA_CLASSES:
            fn = cfg.get("function") if isinstance(cfg, dict) else None
            out.append(finding(where, "keras.lambda", Severity.CRITICAL,
                               f"Lambda layer at {path}: it carries Python code that runs when the model is built or "
                               "called", path=path, function=str(fn)[:120]))
            continue
        if isinstance(module, str) and module and not module.startswith(KERAS_MODULES):
            name = cfg if cls == "function" and isinstance(cfg, str) else cls
            verdict = policy.classify(module, name)
            if verdict.action is GlobalAction.ALLOW:
                continue
            sev = verdict.severity if verdict.action is GlobalAction.DENY and verdict.severity else Severity.HIGH
            out.append(finding(where, "keras.custom_module", sev,
                               f"{module}.{name} at {path}: loading imports a module outside Keras ({verdict.why})",
                               path=path, module=module, name=name))
            continue
        registered = node.get("registered_name")
        if isinstance(registered, str) and ">" in registered and not registered.startswith(("keras", "Keras")):
            out.append(finding(where, "keras.custom_object", Severity.MEDIUM,
                               f"custom object {registered!r} at {path}: needs code registered outside the model",
                               path=path, registered_name=registered))
    return out
