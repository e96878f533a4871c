"""Progress and events for unattended runs: JSON lines on stderr when stderr is not a terminal
(a timer, cron, a pipe), short text on a terminal. ``GAPSYNC_LOG_FORMAT=json|text`` overrides."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from gapsync.redact import redact_value


def json_logs() -> bool:
    forced = os.environ.get("GAPSYNC_LOG_FORMAT")
    if forced in ("json", "text"):
        return forced == "json"
    return not sys.stderr.isatty()


def event(name: str, level: str = "info", **fields: Any) -> None:
    fields = redact_value(fields)  # a URL's user info or token never reaches a log line
    if json_logs():
        doc = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "level": level, "event": name, **fields}
        sys.stderr.write(json.dumps(doc, default=str) + "\n")
    else:
        detail = " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, "", [], {}))
        sys.stderr.write(f"{name}: {detail}\n" if detail else f"{name}\n")
    sys.stderr.flush()
