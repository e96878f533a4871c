"""One configured ``requests`` session per thread: bounded pool, retries with backoff, timeouts.

Authentication comes from the URL (user:password@host) or ~/.netrc, which requests reads.
"""

from __future__ import annotations

import threading

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from gapsync import __version__

USER_AGENT = f"gapsync/{__version__}"
TIMEOUT = (10, 60)  # connect, read (seconds between bytes)
_local = threading.local()


def session(pool: int = 16) -> requests.Session:
    s = getattr(_local, "session", None)
    if s is None:
        s = requests.Session()
        retry = Retry(total=4, connect=4, read=2, status=4, backoff_factor=0.5,
                      status_forcelist=(429, 500, 502, 503, 504), allowed_methods=("GET", "HEAD"),
                      respect_retry_after_header=True, raise_on_status=False)
        adapter = HTTPAdapter(pool_connections=pool, pool_maxsize=pool, max_retries=retry)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        s.headers["User-Agent"] = USER_AGENT
        _local.session = s
    return s
