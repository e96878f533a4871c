"""Progress and events for unattended runs: JSON lines on stderr when stderr is not a terminal
(a timer, cron, a pipe), short text on a terminal. ``GAPSYNC_LOG_FORMAT=json|text`` overrides.

Which commands log progress off a terminal: the scheduled job (``sync``, which calls
:func:`set_unattended`) always; every other command only when ``GAPSYNC_LOG_FORMAT=json`` asks.
A failure of ``bundle create`` or ``import`` run from a script is then exactly one line on
stderr (the error), not the error at the end of a stream of progress events."""

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


_unattended = {"on": False}


def set_unattended(on: bool = True) -> None:
    """This run is the scheduled job: off a terminal, progress goes out as JSON lines. The CLI
    entry point clears it at the start of every command (in-process callers run several)."""
    _unattended["on"] = on


def progress_logs() -> bool:
    """Whether progress events (downloads, warnings that are not failures) are logged as JSON lines
    off a terminal: always for the scheduled job, otherwise only when GAPSYNC_LOG_FORMAT=json."""
    forced = os.environ.get("GAPSYNC_LOG_FORMAT")
    if forced in ("json", "text"):
        return forced == "json"
    return _unattended["on"] and not sys.stderr.isatty()


def event(name: str, level: str = "info", **fields: Any) -> None:
    fields = redact_value(fields)  # a URL's user info or token never reaches a log line
    if json_logs():
        doc = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "level": level, "event": name, **fields}
        sys.stderr.write(json.dumps(doc, default=str) + "\n")
    else:
        detail = " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, "", [], {}))
        sys.stderr.write(f"{name}: {detail}\n" if detail else f"{name}\n")
    sys.stderr.flush()
