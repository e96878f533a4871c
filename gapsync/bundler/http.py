"""One configured ``requests`` session per thread: bounded pool, retries with backoff, timeouts;
documents read with a size cap; credentials kept per origin, never in a recorded URL.

Authentication comes from the URL (user:password@host) or ~/.netrc. A URL's user info is taken
out once, where the URL enters gapsync (:func:`remember_credentials`): the URL that is recorded
(lock, signed metadata, reports, logs, messages) has none, and the credentials are sent only
to the origin (scheme, host, port) they came with, as ``Authorization: Basic``.

Every document an upstream sends that gapsync parses (index pages, JSON answers, listings,
tokens, manifests) is read through :func:`read_capped`, which streams and stops one byte past
the cap: an 81 MB index page costs a few hundred kB of memory and is refused at once. The
session's adapter applies a backstop cap to any response read without ``stream=True``.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase, _basic_auth_str
from requests.utils import get_netrc_auth
from urllib3.util.retry import Retry

from gapsync import __version__
from gapsync.redact import redact_text, redact_url
from gapsync.upstream import CHUNK, read_capped  # noqa: F401  (re-exported: the connected side reads through here)

USER_AGENT = f"gapsync/{__version__}"
TIMEOUT = (10, 60)  # connect, read (seconds between bytes)

# Size caps for upstream documents, read before parsing (bytes, after content decoding).
MAX_INDEX_PAGE = 32 << 20  # a PEP 503/691 project page; PyPI's largest are a few MB
MAX_JSON_ANSWER = 16 << 20  # JSON API answers (Hub model info, MLflow, registry listings)
MAX_TOKEN = 1 << 20  # a registry token answer
MAX_DOCUMENT = 64 << 20  # backstop for any response read whole without an explicit cap

_local = threading.local()
_credentials: dict[tuple[str, str, int | None], tuple[str, str]] = {}
_unmasked: dict[str, str] = {}  # recorded URL (secret query values masked) -> the URL to send
_unmasked_prefixes: dict[str, str] = {}  # the same for every URL under a masked path token
_cred_lock = threading.Lock()


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in."""
    p = urlsplit(url)
    port = p.port or {"http": 80, "https": 443}.get(p.scheme)
    return p.scheme.lower(), (p.hostname or "").lower(), port


def remember_credentials(url: str) -> str:
    """Keep ``url``'s user info for its origin only and return the URL without it (the form
    that may be recorded). URLs without user info are returned as they are."""
    p = urlsplit(url)
    if p.username is not None or p.password is not None:
        from urllib.parse import unquote

        with _cred_lock:
            _credentials[origin(url)] = (unquote(p.username or ""), unquote(p.password or ""))
    clean = redact_url(url)
    bare = urlsplit(clean)._replace(fragment="").geturl()
    real = p._replace(netloc=p.netloc.rpartition("@")[2], fragment="").geturl()
    if bare != real:  # a secret in the query or the path: recorded masked, sent as given
        with _cred_lock:
            _unmasked[bare] = real
            if not p.query:  # a path token (a conda channel): the URLs under it too
                _unmasked_prefixes[bare.rstrip("/") + "/"] = real.rstrip("/") + "/"
    return clean


def unmask(url: str) -> str:
    """The URL to send for a recorded (masked) one: what :func:`remember_credentials` kept."""
    with _cred_lock:
        real = _unmasked.get(url)
        if real is None:
            for masked, prefix in _unmasked_prefixes.items():
                if url.startswith(masked):
                    return prefix + url[len(masked):]
    return real or url


class _OriginAuth(AuthBase):
    """Basic credentials for the origin they were given for, else ~/.netrc, else none."""

    def __call__(self, r):
        if "Authorization" in r.headers:
            return r
        with _cred_lock:
            cred = _credentials.get(origin(r.url))
        if cred is None:
            cred = get_netrc_auth(r.url)
        if cred:
            r.headers["Authorization"] = _basic_auth_str(*cred)
        return r


class _CappedAdapter(HTTPAdapter):
    """Streams every response; one read whole (``stream=False``) is read here in chunks and
    refused past ``MAX_DOCUMENT``, so no caller can parse an unbounded body by accident."""

    def send(self, request, stream=False, **kw):
        if request.url:
            request.url = unmask(request.url)
        resp = super().send(request, stream=True, **kw)
        if not stream and request.method != "HEAD":  # a HEAD's Content-Length is the entity's, no body comes
            resp._content = read_capped(resp, MAX_DOCUMENT, redact_url(request.url or "?"))
            resp._content_consumed = True
        return resp


def cap_answers(s: requests.Session, cap: int = MAX_DOCUMENT) -> requests.Session:
    """Cap every answer ``s`` reads whole (``stream=False``) at ``cap`` bytes, for a library's
    own session (MLflow's): a response hook runs before requests reads the body, so it is read
    here, in chunks, and refused one byte past the cap. Streamed downloads pass untouched."""
    def hook(resp, *args, **kw):
        if not kw.get("stream") and resp._content is False and resp.request.method != "HEAD":
            resp._content = read_capped(resp, cap, redact_url(resp.url or "?"))
            resp._content_consumed = True
        return resp

    if hook.__qualname__ not in [getattr(h, "__qualname__", "") for h in s.hooks["response"]]:
        s.hooks["response"].append(hook)
    return s


def new_session(pool: int = 16) -> requests.Session:
    """A configured session: retries with backoff, the capping adapter, per-origin credentials."""
    s = requests.Session()
    retry = Retry(total=4, connect=4, read=2, status=4, backoff_factor=0.5,
                  status_forcelist=(429, 500, 502, 503, 504), allowed_methods=("GET", "HEAD"),
                  respect_retry_after_header=True, raise_on_status=False)
    adapter = _CappedAdapter(pool_connections=pool, pool_maxsize=pool, max_retries=retry)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    s.headers["User-Agent"] = USER_AGENT
    s.auth = _OriginAuth()
    return s


def session(pool: int = 16) -> requests.Session:
    """This thread's session (one per thread: a Session is not shared between threads)."""
    s = getattr(_local, "session", None)
    if s is None:
        s = _local.session = new_session(pool)
    return s


def get_document(url: str, cap: int, what: str | None = None, headers: dict[str, str] | None = None,
                 ok: tuple[int, ...] = (200,)) -> tuple[requests.Response, bytes]:
    """GET a document to parse: streamed, capped, errors one line naming the (redacted) URL.
    Returns the response (headers, status, final URL; its body consumed) and the bytes."""
    name = redact_url(what or url)
    try:
        r = session().get(url, headers=headers, timeout=TIMEOUT, stream=True)
    except requests.RequestException as e:
        from gapsync.errors import FetchError

        raise FetchError(f"{name}: {redact_text(str(e))}") from e
    if r.status_code not in ok:
        r.close()
        return r, b""
    return r, read_capped(r, cap, name)


def remember_spec_credentials(spec) -> None:
    """The user info of every URL a spec names (the index, URL models, endpoints), kept for its
    origin: what ``bundle create --lock`` needs, since the lock records the URLs without it."""
    urls = [spec.python.index_url] if getattr(spec, "python", None) else []
    urls += [m.location for m in getattr(spec, "models", ()) if isinstance(m.location, str) and "://" in m.location]
    for u in urls:
        remember_credentials(u)
