"""Reading what an upstream sends, bounded: both sides use it (the connected side for index
pages, JSON answers and manifests; the registry client on either side for manifests and tokens).
Streams, and stops one byte past the cap, so memory stays flat whatever the server sends."""

from __future__ import annotations

import requests

from gapsync.errors import UpstreamError
from gapsync.redact import redact_text

CHUNK = 64 * 1024


def read_capped(resp: requests.Response, cap: int, what: str) -> bytes:
    """The body of a streamed response, at most ``cap`` bytes after decoding; raises
    UpstreamError (one line naming ``what``) as soon as one more byte arrives. The response is
    closed either way. A Content-Length over the cap is refused before reading."""
    try:
        declared = int(resp.headers.get("Content-Length", "-1"))
    except ValueError:
        declared = -1
    try:
        if declared > cap and not resp.headers.get("Content-Encoding"):
            raise UpstreamError(f"{redact_text(what)}: answer of {declared} bytes is over the {cap}-byte cap for this document; refused")
        buf = bytearray()
        raw = resp.raw
        while True:
            try:
                chunk = raw.read(CHUNK, decode_content=True)
            except Exception as e:  # urllib3's protocol/decoding errors, connection resets
                raise UpstreamError(f"{redact_text(what)}: reading the answer failed ({redact_text(str(e)).splitlines()[0][:200]})") from e
            if not chunk:
                break
            buf += chunk
            if len(buf) > cap:
                raise UpstreamError(f"{redact_text(what)}: answer larger than the {cap}-byte cap for this document; refused")
        return bytes(buf)
    finally:
        resp.close()
