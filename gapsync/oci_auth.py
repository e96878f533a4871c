"""Registry credentials the way the Docker CLI finds them: ``$DOCKER_CONFIG/config.json`` or
``~/.docker/config.json`` (``credHelpers``, ``credsStore``, then ``auths``), credential helpers
run as ``docker-credential-<name> get``. Nothing is cached on disk by gapsync.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gapsync.errors import InputError

HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    identity_token: str | None = None

    def __repr__(self) -> str:  # never print secrets
        return f"Credentials(username={self.username!r})"


def _config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _keys(registry: str) -> list[str]:
    keys = [registry, f"https://{registry}", f"http://{registry}"]
    if registry in HUB_KEYS:
        keys += list(HUB_KEYS)
    return keys


def _helper(name: str, server: str) -> Credentials | None:
    exe = f"docker-credential-{name}"
    try:
        r = subprocess.run([exe, "get"], input=server, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as e:
        raise InputError(f"{_config_path()}: credential helper {exe} is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise InputError(f"credential helper {exe} did not answer in 30 s") from e
    if r.returncode != 0:
        return None  # "credentials not found in native keychain": anonymous
    try:
        doc = json.loads(r.stdout)
    except ValueError as e:
        raise InputError(f"credential helper {exe} printed something that is not JSON") from e
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k, ""), str) for k in ("Username", "Secret")):
        raise InputError(f"credential helper {exe} printed JSON without string Username and Secret")
    if doc.get("Username") == "<token>":
        return Credentials("", "", doc.get("Secret"))
    return Credentials(doc.get("Username", ""), doc.get("Secret", ""))


def credentials_for(registry: str) -> Credentials | None:
    path = _config_path()
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise InputError(f"{path}: not valid JSON ({type(e).__name__})") from e
    if not isinstance(cfg, dict):
        raise InputError(f"{path}: not a JSON object")
    helpers = cfg.get("credHelpers") or {}
    if not isinstance(helpers, dict) or not isinstance(cfg.get("auths") or {}, dict) \
            or not isinstance(cfg.get("credsStore") or "", str):
        raise InputError(f"{path}: credHelpers and auths must be objects, credsStore a string")
    for k in _keys(registry):
        if k in helpers:
            return _helper(helpers[k], k)
    auths = cfg.get("auths") or {}
    for k in _keys(registry):
        entry = auths.get(k)
        if not entry:
            continue
        if not isinstance(entry, dict) or not all(isinstance(entry.get(f) or "", str)
                                                  for f in ("auth", "identitytoken", "username", "password")):
            raise InputError(f"{path}: auths[{k}] is not an object of strings")
        if entry.get("identitytoken"):
            return Credentials("", "", entry["identitytoken"])
        if entry.get("auth"):
            try:
                user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as e:
                raise InputError(f"{path}: auths[{k}].auth is not base64 user:password") from e
            return Credentials(user, pw)
        if entry.get("username"):
            return Credentials(entry["username"], entry.get("password", ""))
    if cfg.get("credsStore"):
        return _helper(cfg["credsStore"], _keys(registry)[0] if registry not in HUB_KEYS else HUB_KEYS[0])
    return None
