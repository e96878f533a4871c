"""A Docker registry token server for tests: 127.0.0.1 only, RS256 JWTs, request log.

    python token_server.py PORT --key KEY.pem --cert CERT.pem --issuer ISS --service SVC
                           --user USER:PASS [--user …] [--anonymous-pull] [--log FILE] [--ttl SECONDS]

Why: distribution's ``auth: token`` sends clients a ``401 WWW-Authenticate: Bearer realm,service,scope``
and trusts only JWTs signed by a key whose certificate chains to its ``rootcertbundle``. This
server is that realm, so the tests exercise the same Bearer flow Docker Hub and GHCR use.

``GET /token?service=SVC&scope=repository:NAME:pull,push[&scope=…]`` with Basic credentials
answers ``{"token", "access_token", "expires_in", "issued_at"}``. Several ``scope`` parameters are
allowed (a cross-repository mount asks for two) and so are several space-separated scopes in one
parameter. It grants *exactly* the requested scopes (no more: a client asking for too little
must fail at the registry). Without credentials: 401, unless ``--anonymous-pull`` (then only the
``pull`` actions are granted). ``POST /token`` with the OAuth2 password grant is answered too.
Each ``/token`` request is logged to ``--log`` as one JSON line, so a test can assert the flow
happened. ``GET /health`` answers 200 (readiness). Stopped by the test with SIGTERM.

JWT: header ``{"typ": "JWT", "alg": "RS256", "x5c": [base64 DER of CERT]}``; claims ``iss``,
``sub``, ``aud`` (the service, a string: distribution 2.8 compares a single audience), ``exp``,
``nbf``, ``iat``, ``jti``, ``access``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def b64url(data: bytes) -> str:
    """JOSE base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parse_scopes(values: list[str]) -> list[dict]:
    """``repository:team/app:pull,push`` -> ``{"type", "name", "actions"}``; names may hold ':'.

    Repeated resources are merged (actions united, order kept) so the access claim is exact.
    """
    merged: dict[tuple[str, str], list[str]] = {}
    for value in values:
        for scope in value.split():
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            kind, name, actions = parts[0], ":".join(parts[1:-1]), [a for a in parts[-1].split(",") if a]
            have = merged.setdefault((kind, name), [])
            have += [a for a in actions if a not in have]
    return [{"type": k, "name": n, "actions": a} for (k, n), a in merged.items()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--key", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--issuer", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--user", action="append", default=[], help="USER:PASS, repeatable")
    ap.add_argument("--anonymous-pull", action="store_true")
    ap.add_argument("--log")
    ap.add_argument("--ttl", type=int, default=300)
    a = ap.parse_args()

    with open(a.key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    with open(a.cert, "rb") as f:
        cert_der = x509.load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER)
    users = dict(u.split(":", 1) for u in a.user)
    header = b64url(json.dumps({"typ": "JWT", "alg": "RS256",
                                "x5c": [base64.b64encode(cert_der).decode()]}).encode())
    log_lock = threading.Lock()

    def issue(user: str | None, access: list[dict]) -> dict:
        now = int(time.time())
        claims = {"iss": a.issuer, "sub": user or "", "aud": a.service, "exp": now + a.ttl, "nbf": now - 30,
                  "iat": now, "jti": secrets.token_hex(16), "access": access}
        signing_input = f"{header}.{b64url(json.dumps(claims).encode())}"
        sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        token = f"{signing_input}.{b64url(sig)}"
        issued = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"token": token, "access_token": token, "expires_in": a.ttl, "issued_at": issued}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: object) -> None:  # quiet: the JSON log is the record
            pass

        def _send(self, status: int, body: dict, extra: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _record(self, **entry: object) -> None:
            if a.log:
                with log_lock, open(a.log, "a") as f:
                    f.write(json.dumps({"time": time.time(), "method": self.command, "path": self.path,
                                        **entry}) + "\n")

        def _basic(self) -> tuple[str, str] | None:
            h = self.headers.get("Authorization", "")
            if not h.lower().startswith("basic "):
                return None
            try:
                user, _, pw = base64.b64decode(h[6:].strip()).decode().partition(":")
            except ValueError:
                return ("", "")
            return user, pw

        def _answer(self, creds: tuple[str, str] | None, service: str | None, scopes: list[str]) -> None:
            requested = parse_scopes(scopes)
            if service is not None and service != a.service:
                self._record(user=creds and creds[0], service=service, scopes=scopes, granted=None, status=400)
                self._send(400, {"errors": [{"code": "INVALID_SERVICE", "message": f"unknown service {service}"}]})
                return
            if creds is None and a.anonymous_pull:
                user, granted = None, [{**r, "actions": [x for x in r["actions"] if x == "pull"]} for r in requested]
                granted = [g for g in granted if g["actions"]]
            elif creds is not None and creds[0] in users and secrets.compare_digest(users[creds[0]], creds[1]):
                user, granted = creds[0], requested
            else:
                self._record(user=creds and creds[0], service=service, scopes=scopes, granted=None, status=401)
                self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad or missing credentials"}]},
                           {"WWW-Authenticate": 'Basic realm="gapsync-test-token"'})
                return
            self._record(user=user, service=service, scopes=scopes, granted=granted, status=200)
            self._send(200, issue(user, granted))

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/health":
                self._send(200, {"ok": True})
                return
            if url.path != "/token":
                self._send(404, {"errors": [{"code": "NOT_FOUND"}]})
                return
            q = parse_qs(url.query)
            self._answer(self._basic(), (q.get("service") or [None])[0], q.get("scope", []))

        def do_POST(self) -> None:
            """OAuth2 password grant (what the docker CLI uses to refresh); same checks as GET."""
            url = urlsplit(self.path)
            if url.path != "/token":
                self._send(404, {"errors": [{"code": "NOT_FOUND"}]})
                return
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            if (form.get("grant_type") or [""])[0] != "password":
                self._record(user=None, service=None, scopes=[], granted=None, status=400)
                self._send(400, {"error": "unsupported_grant_type"})
                return
            creds = ((form.get("username") or [""])[0], (form.get("password") or [""])[0])
            self._answer(creds, (form.get("service") or [None])[0], form.get("scope", []))

    ThreadingHTTPServer(("127.0.0.1", a.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
