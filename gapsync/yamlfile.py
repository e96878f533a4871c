"""YAML files that people edit (the spec, the policy): every error names the file, the line and
the key, because the person who fixes it is looking at it in an editor."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from gapsync.errors import InputError
from gapsync.redact import redact_url


class Located:
    """Maps a key path like ('python', 'targets', 0, 'platform') to a line in the YAML file."""

    def __init__(self, path: Path, node: yaml.Node | None):
        self.path = path
        self.node = node

    def line(self, keys: tuple) -> int | None:
        node = self.node
        best = node.start_mark.line + 1 if node is not None else None
        for k in keys:
            if isinstance(node, yaml.MappingNode):
                for kn, vn in node.value:
                    if kn.value == k:
                        best = kn.start_mark.line + 1
                        node = vn
                        break
                else:
                    return best
            elif isinstance(node, yaml.SequenceNode) and isinstance(k, int) and k < len(node.value):
                node = node.value[k]
                best = node.start_mark.line + 1
            else:
                return best
        return best

    def error(self, keys: tuple, reason: str) -> InputError:
        dotted = "".join(f"[{k}]" if isinstance(k, int) else (f".{k}" if i else str(k)) for i, k in enumerate(keys))
        line = self.line(keys)
        where = f"{self.path}:{line}" if line else str(self.path)
        return InputError(f"{where}: {dotted or 'spec'}: {reason}")


def expect(loc: Located, keys: tuple, value: Any, typ: type | tuple, what: str) -> Any:
    if not isinstance(value, typ) or (typ is str and not value):
        raise loc.error(keys, f"expected {what}, got {type(value).__name__} {value!r}"[:200])
    return value


def http_url(loc: Located, keys: tuple, value: str, what: str) -> str:
    """``value`` if it is an http(s) URL that parses whole (a host, a port in range, brackets
    balanced): checked once here, so a URL in a spec is refused naming the file and key instead
    of raising ValueError (``Port out of range``, ``Invalid IPv6 URL``) deep in a download. The
    message never repeats the user info or query of the URL (they may hold credentials)."""
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 (raises ValueError when out of range or not a number)
    except ValueError:
        ok = False
    if not ok:
        raise loc.error(keys, f"{redact_url(value)!r}: expected an http(s) URL{what}")
    return value


def check_keys(loc: Located, keys: tuple, mapping: dict, allowed: set[str]) -> None:
    for k in mapping:
        if k not in allowed:
            raise loc.error((*keys, k), f"unknown key (expected one of: {', '.join(sorted(allowed))})")



def read_text(path: Path, what: str) -> str:
    """The file's text, or one line saying why not (missing, unreadable, not UTF-8)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start})") from e
    except OSError as e:
        raise InputError(f"{path}: cannot read {what} ({e.strerror})") from e


def load_located(path: Path, text: str) -> tuple[Any, Located]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InputError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from e
    except RecursionError as e:
        raise InputError(f"{path}: YAML nested too deeply") from e
    return data, Located(path, node)
