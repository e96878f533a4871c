"""A client for the OCI distribution API, used to pull on the connected side and to push on the
air-gapped side. Plain ``requests``; no engine, no skopeo.

Authentication as Docker Hub, GHCR and the CNCF distribution server do it: a 401 names a
``Bearer`` realm (a token per scope, anonymous or with Basic credentials) or ``Basic``.
Redirects are followed by hand: to the same host always; to another host only for blob
downloads (registries hand those to a CDN), and then without credentials; the bytes are checked
against their digest anyway. A manifest, token or upload redirected to another host is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlencode, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from gapsync import __version__
from gapsync.errors import DigestMismatchError, FetchError, InputError, PublishError, UpstreamError
from gapsync.oci import ACCEPT_MANIFESTS, DIGEST_RE, DOCKER_HUB, DOCKER_HUB_API
from gapsync.oci_auth import Credentials, credentials_for
from gapsync.redact import redact_text, redact_url
from gapsync.upstream import read_capped

MAX_MANIFEST = 4 * 1024 * 1024
MAX_TOKEN_ANSWER = 1 << 20  # a token server's JSON answer
MAX_TOKEN = 64 * 1024  # the token itself: it becomes a header
TIMEOUT = (10, 120)
LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$")
_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+\Z")  # printable ASCII, no space: nothing that can split a header
# Token services that registries are known to name as their realm (another host by design):
# the credentials of the registry may go there. Any other host gets them only when the
# credential configuration (docker config.json) names that host itself.
KNOWN_REALMS = {DOCKER_HUB: ("auth.docker.io",), DOCKER_HUB_API: ("auth.docker.io",),
                "registry.gitlab.com": ("gitlab.com",)}


def _origin(url: str) -> tuple[str, str, int | None]:
    p = urlsplit(url)
    return p.scheme.lower(), (p.hostname or "").lower(), p.port or {"http": 80, "https": 443}.get(p.scheme.lower())


def _is_loopback(host: str) -> bool:
    return bool(LOOPBACK.match(host)) or host == "::1"


@dataclass(frozen=True)
class Manifest:
    data: bytes
    media_type: str
    digest: str


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


class RegistryClient:
    def __init__(self, registry: str, *, scheme: str = "https", credentials: Credentials | None = None,
                 use_docker_config: bool = True, retries: int = 4):
        self._realm_creds_from_config = use_docker_config
        self.registry = registry
        host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
        self.base = f"{scheme}://{host}"
        self.host = host
        self.credentials = credentials if credentials is not None else (credentials_for(registry) if use_docker_config else None)
        self._tokens: dict[str, str] = {}
        self._basic = False
        self._lock = threading.Lock()
        self._local = threading.local()
        self.retries = retries

    @classmethod
    def from_url(cls, url: str, credentials: Credentials | None = None) -> tuple[RegistryClient, str]:
        """``http(s)://host[:port][/prefix]`` -> (client, prefix)."""
        parts = urlsplit(url if "://" in url else f"https://{url}")
        host = parts.netloc.rpartition("@")[2]  # user info: used as the credentials, never as a name
        if parts.scheme not in ("http", "https") or not host:
            raise InputError(f"{redact_url(url)!r}: expected a registry URL like https://registry.internal or http://127.0.0.1:5000")
        if credentials is None and (parts.username or parts.password):
            credentials = Credentials(unquote(parts.username or ""), unquote(parts.password or ""))
        return cls(host, scheme=parts.scheme, credentials=credentials), parts.path.strip("/")

    # -- transport ---------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        s = getattr(self._local, "s", None)
        if s is None:
            s = requests.Session()
            retry = Retry(total=self.retries, connect=self.retries, read=2, status=self.retries, backoff_factor=0.5,
                          status_forcelist=(429, 500, 502, 503, 504), allowed_methods=("GET", "HEAD"),
                          respect_retry_after_header=True, raise_on_status=False)
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=retry)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            s.headers["User-Agent"] = f"gapsync/{__version__}"
            self._local.s = s
        return s

    def _auth_header(self, scope: str) -> dict[str, str]:
        with self._lock:
            token = self._tokens.get(scope)
            basic = self._basic
        if token:
            return {"Authorization": f"Bearer {token}"}
        if basic and self.credentials:
            raw = f"{self.credentials.username}:{self.credentials.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def _realm_credentials(self, realm: str) -> Credentials | None:
        """The credentials a token realm may receive: the registry's own when the realm is the
        registry's origin (scheme, host, port) or its known token service; the realm host's own
        when the credential configuration names that host; otherwise none (an anonymous token)."""
        scheme, host, port = _origin(realm)
        if (scheme, host, port) == _origin(self.base):
            return self.credentials
        if scheme == "https" and host in KNOWN_REALMS.get(self.registry, ()):
            return self.credentials
        if self._realm_creds_from_config:
            netloc = host if port in (None, 443) else f"{host}:{port}"
            try:
                return credentials_for(netloc)
            except InputError:
                return None
        return None

    def _check_realm(self, realm: str) -> None:
        """A realm is an https URL (or http on loopback, or the registry's own origin when the
        operator made the registry itself plain http); anything else is refused, one line."""
        try:
            scheme, host, port = _origin(realm)
        except ValueError:
            raise UpstreamError(f"{self.registry}: token realm {redact_url(realm)!r} is not a URL; refused") from None
        if scheme not in ("https", "http") or not host:
            raise UpstreamError(f"{self.registry}: token realm {redact_url(realm)!r} is not an http(s) URL; refused")
        if scheme == "http" and not _is_loopback(host) and (scheme, host, port) != _origin(self.base):
            raise UpstreamError(f"{self.registry}: token realm {redact_url(realm)!r} is plain http on another host; "
                                "realms must be https (loopback aside); refused")

    def _fetch_token(self, params: dict[str, str], scopes: list[str]) -> str:
        realm = params.get("realm")
        if not realm:
            raise UpstreamError(f"{self.registry}: Bearer challenge without a realm")
        self._check_realm(realm)
        query = [("service", params["service"])] if "service" in params else []
        query += [("scope", s) for s in scopes]
        creds = self._realm_credentials(realm)
        where = f"{self.registry}: token realm {redact_url(realm)}"
        try:
            if creds and creds.identity_token:
                r = self._session().post(realm, data={"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                                                     "service": params.get("service", ""), "scope": " ".join(scopes),
                                                     "client_id": "gapsync"}, timeout=TIMEOUT, allow_redirects=False,
                                         stream=True)
            else:
                auth = (creds.username, creds.password) if creds and (creds.username or creds.password) else None
                sep = "&" if urlsplit(realm).query else "?"
                r = self._session().get(f"{realm}{sep}{urlencode(query)}", auth=auth, timeout=TIMEOUT,
                                        allow_redirects=False, stream=True)
        except requests.RequestException as e:
            raise FetchError(f"{where}: {redact_text(str(e))}") from e
        if r.status_code in (401, 403):
            r.close()
            raise FetchError(f"{self.registry}: token server refused the credentials for {' '.join(scopes)} (HTTP {r.status_code})")
        if r.status_code != 200:
            r.close()
            raise FetchError(f"{where}: token request failed (HTTP {r.status_code})")
        body = read_capped(r, MAX_TOKEN_ANSWER, where)
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            raise UpstreamError(f"{where}: token answer is not JSON") from None
        if not isinstance(doc, dict):
            raise UpstreamError(f"{where}: token answer is a JSON {type(doc).__name__}, not an object")
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str) or not token:
            raise UpstreamError(f"{where}: token answer has no token string ('token' is {type(token).__name__})")
        if len(token) > MAX_TOKEN or not _TOKEN_CHARS.match(token):
            raise UpstreamError(f"{where}: token is not a header-safe string of at most {MAX_TOKEN} characters")
        return token

    def request(self, method: str, url: str, *, scope: str, extra_scopes: tuple[str, ...] = (), blob: bool = False,
                headers: dict[str, str] | None = None, data=None, stream: bool = False, ok_redirect: bool = True) -> requests.Response:
        """One API call with auth and hand-followed redirects. Returns the final response."""
        url = url if url.startswith("http") else f"{self.base}{url}"
        scopes = [scope, *extra_scopes]
        key = " ".join(scopes)
        tried_auth = False
        hops = 0
        # credentials and tokens go to the registry's own origin only: an upload Location or a
        # redirect on another host, port or scheme (http after https) gets none
        send_auth = _origin(url) == _origin(self.base)
        while True:
            h = dict(headers or {})
            if send_auth:
                h.update(self._auth_header(key))
            try:
                r = self._session().request(method, url, headers=h, data=data, stream=stream, timeout=TIMEOUT,
                                            allow_redirects=False)
            except requests.RequestException as e:
                raise FetchError(f"{self.registry}: {method} {urlsplit(url).path}: {e}") from e
            if r.status_code == 401 and not tried_auth and send_auth:
                tried_auth = True
                scheme, params = _challenge(r.headers.get("WWW-Authenticate", ""))
                r.close()
                if scheme == "bearer":
                    token = self._fetch_token(params, scopes)
                    with self._lock:
                        self._tokens[key] = token
                elif scheme == "basic":
                    if not self.credentials:
                        raise FetchError(f"{self.registry}: needs credentials (add them to ~/.docker/config.json)")
                    with self._lock:
                        self._basic = True
                else:
                    raise FetchError(f"{self.registry}: unsupported authentication {scheme!r}")
                continue
            if r.status_code in (301, 302, 303, 307, 308) and ok_redirect:
                hops += 1
                loc = r.headers.get("Location")
                r.close()
                if not loc or hops > 5:
                    raise FetchError(f"{self.registry}: bad redirect for {urlsplit(url).path}")
                nxt = urljoin(url, loc)
                if _origin(nxt) != _origin(url):
                    if not (blob and method in ("GET", "HEAD")):
                        raise FetchError(f"{self.registry}: {method} {urlsplit(url).path} redirected to another host "
                                         f"({urlsplit(nxt).netloc}); refused")
                    send_auth = False  # never hand our token to a CDN
                url = nxt
                if r.status_code == 303:
                    method, data = "GET", None
                continue
            return r

    # -- read ------------------------------------------------------------------------------
    def get_manifest(self, repo: str, reference: str) -> Manifest:
        r = self.request("GET", f"/v2/{repo}/manifests/{reference}", scope=f"repository:{repo}:pull",
                         headers={"Accept": ACCEPT_MANIFESTS}, stream=True)
        with r:
            if r.status_code == 404:
                raise FetchError(f"{self.registry}/{repo}:{reference}: manifest not found")
            if r.status_code != 200:
                raise FetchError(f"{self.registry}/{repo}:{reference}: manifest request failed (HTTP {r.status_code})")
            media_type = r.headers.get("Content-Type", "").split(";")[0].strip()
            header_digest = r.headers.get("Docker-Content-Digest")
            data = read_capped(r, MAX_MANIFEST, f"{self.registry}/{repo}:{reference}: manifest")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if DIGEST_RE.match(reference) and digest != reference:
            raise DigestMismatchError(f"{self.registry}/{repo}@{reference}: registry served a manifest whose digest is {digest}")
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            raise DigestMismatchError(f"{self.registry}/{repo}:{reference}: Docker-Content-Digest {header_digest} "
                                      f"does not match the bytes ({digest})")
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            raise UpstreamError(f"{self.registry}/{repo}:{reference}: manifest is not JSON") from None
        if not isinstance(doc, dict):
            raise UpstreamError(f"{self.registry}/{repo}:{reference}: manifest is a JSON {type(doc).__name__}, not an object")
        declared = doc.get("mediaType")
        if declared is not None and not isinstance(declared, str):
            raise UpstreamError(f"{self.registry}/{repo}:{reference}: manifest's mediaType is not a string")
        return Manifest(data, declared or media_type, digest)

    def open_blob(self, repo: str, digest: str, start: int = 0) -> requests.Response:
        headers = {"Range": f"bytes={start}-"} if start else {}
        r = self.request("GET", f"/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull", blob=True,
                         headers=headers, stream=True)
        if r.status_code == 404:
            r.close()
            raise FetchError(f"{self.registry}/{repo}: blob {digest} not found (the manifest references a blob the registry does not serve)")
        return r

    # -- write -----------------------------------------------------------------------------
    def _push_scope(self, repo: str) -> str:
        return f"repository:{repo}:pull,push"

    def blob_exists(self, repo: str, digest: str) -> bool:
        r = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=self._push_scope(repo), blob=True)
        r.close()
        return r.status_code == 200

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/?{urlencode({'mount': digest, 'from': from_repo})}",
                         scope=self._push_scope(repo), extra_scopes=(f"repository:{from_repo}:pull",), ok_redirect=False)
        r.close()
        if r.status_code == 201:
            return True
        if r.status_code == 202 and r.headers.get("Location"):  # a plain session was opened instead: cancel it
            self.request("DELETE", urljoin(self.base + "/", r.headers["Location"]), scope=self._push_scope(repo),
                         ok_redirect=False).close()
        return False

    def upload_blob(self, repo: str, digest: str, path: Path, size: int, chunk_size: int) -> None:
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope=self._push_scope(repo), ok_redirect=False)
        r.close()
        if r.status_code != 202 or not r.headers.get("Location"):
            raise PublishError(f"{self.registry}/{repo}: cannot start an upload of {digest} (HTTP {r.status_code})")
        location = urljoin(self.base + "/", r.headers["Location"])
        scope = self._push_scope(repo)
        with path.open("rb") as f:
            if size > chunk_size:
                offset = 0
                while offset < size:
                    length = min(chunk_size, size - offset)
                    end = offset + length - 1
                    r = self.request("PATCH", location, scope=scope, data=_Window(f, offset, length), ok_redirect=False,
                                     headers={"Content-Type": "application/octet-stream",
                                              "Content-Range": f"{offset}-{end}", "Content-Length": str(length)})
                    r.close()
                    if r.status_code != 202 or not r.headers.get("Location"):
                        raise PublishError(f"{self.registry}/{repo}: chunk {offset}-{end} of {digest} refused (HTTP {r.status_code})")
                    location = urljoin(self.base + "/", r.headers["Location"])
                    offset = end + 1
                body = _Window(f, size, 0)
            else:
                body = _Window(f, 0, size)  # streamed from the file, never held whole in memory
            sep = "&" if "?" in location else "?"
            r = self.request("PUT", f"{location}{sep}{urlencode({'digest': digest})}", scope=scope, data=body,
                             ok_redirect=False, headers={"Content-Type": "application/octet-stream",
                                                         "Content-Length": str(len(body))})
            r.close()
        if r.status_code != 201:
            raise PublishError(f"{self.registry}/{repo}: upload of {digest} refused (HTTP {r.status_code})")

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        r = self.request("HEAD", f"/v2/{repo}/manifests/{reference}", scope=self._push_scope(repo),
                         headers={"Accept": ACCEPT_MANIFESTS})
        r.close()
        return r.headers.get("Docker-Content-Digest") if r.status_code == 200 else None

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> requests.Response:
        r = self.request("PUT", f"/v2/{repo}/manifests/{reference}", scope=self._push_scope(repo), data=data,
                         headers={"Content-Type": media_type}, ok_redirect=False)
        r.close()
        return r


class _Window:
    """``length`` bytes of an open file from ``offset``, as a file-like body that requests
    streams in small reads (with a Content-Length), so a 10 GB layer never sits in memory."""

    def __init__(self, f, offset: int, length: int):
        self.f, self.offset, self.left, self.length = f, offset, length, length
        self.f.seek(offset)

    def __len__(self) -> int:
        return self.length

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n is None or n < 0 else min(n, self.left, 1 << 20)
        data = self.f.read(n)
        self.left -= len(data)
        return data


def with_retries(what: str, fn, attempts: int = 4, base_delay: float = 0.5):
    """Run ``fn`` again after transient failures (connection trouble, 5xx), with backoff."""
    for i in range(attempts):
        try:
            return fn()
        except (FetchError, PublishError) as e:
            if i == attempts - 1:
                raise
            msg = str(e)
            if not any(s in msg for s in ("HTTP 5", "Connection", "connection", "timed out", "Max retries")):
                raise
            time.sleep(base_delay * (2 ** i))
    raise AssertionError(what)
