"""Credentials never recorded: the one function every place that records a URL goes through.

A URL may carry a password (``http://alice:pw@index/``) or a token in its query
(``?token=…``, a pre-signed ``X-Amz-Signature``, anaconda.org's ``/t/<token>/`` path). Whatever gapsync writes down (the lock, the
signed target metadata, reports, the audit log, log lines, error messages) holds the URL
without its user info and with the values of secret-looking query parameters replaced by
``***``. The credentials themselves stay in memory, with the origin they belong to
(``gapsync.bundler.http.remember_credentials``). No I/O here; both sides import it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# query parameters whose value is a secret (matched case-insensitively, whole name)
SECRET_PARAMS = re.compile(
    r"^(?:token|access_?token|refresh_?token|id_?token|auth|authorization|api[_-]?key|key|password|passwd|pwd|"
    r"secret|client_?secret|signature|sig|session|sessionid|jwt|x-amz-(?:signature|credential|security-token)|"
    r"x-goog-(?:signature|credential))\Z", re.I)
# a token as a path segment: anaconda.org's /t/<token>/ channels
_PATH_TOKEN = re.compile(r"(/t/)[^/\s?#'\"<>]+")
_USERINFO_IN_TEXT = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,15}://)[^\s/?#@'\"<>]*@")
_SECRET_PARAM_IN_TEXT = re.compile(
    r"(?i)([?&;](?:token|access_?token|refresh_?token|id_?token|auth|authorization|api[_-]?key|key|password|passwd|pwd|"
    r"secret|client_?secret|signature|sig|session|sessionid|jwt|x-amz-(?:signature|credential|security-token)|"
    r"x-goog-(?:signature|credential))=)[^&#\s'\"<>]*")


def redact_url(url: str) -> str:
    """The URL as it may be recorded: no user info, secret query values masked. A string that
    does not parse as a URL is masked as free text."""
    if not isinstance(url, str) or "://" not in url:
        return redact_text(url) if isinstance(url, str) else url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        path = _PATH_TOKEN.sub(r"\1" + MASK, parts.path)
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(SECRET_PARAMS.match(k) for k, _ in pairs):
                query = urlencode([(k, MASK if SECRET_PARAMS.match(k) else v) for k, v in pairs], safe="*")
        return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))
    except ValueError:
        return redact_text(url)


def redact_text(text: str) -> str:
    """Free text (an error message, a tool's stderr) with every URL's user info removed and
    secret query values masked."""
    if not isinstance(text, str):
        return text
    text = _USERINFO_IN_TEXT.sub(r"\1", text)
    text = re.sub(r"(?i)(\b[a-z][a-z0-9+.-]{0,15}://[^\s/]+[^\s]*?/t/)[^/\s?#'\"<>]+", r"\1" + MASK, text)
    return _SECRET_PARAM_IN_TEXT.sub(lambda m: m.group(1) + MASK, text)


def redact_value(value: Any, depth: int = 0) -> Any:
    """Strings anywhere in a JSON-like value (an audit entry's details, a log event's fields)."""
    if isinstance(value, str):
        return redact_text(value)
    if depth > 32:
        return value
    if isinstance(value, dict):
        return {k: redact_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v, depth + 1) for v in value]
    return value
