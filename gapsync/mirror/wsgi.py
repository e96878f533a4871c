"""The mirror as a WSGI application for a site's own server: gunicorn, uWSGI, mod_wsgi.

    GAPSYNC_MIRROR=/srv/gapsync/mirror gunicorn --bind 127.0.0.1:8080 --workers 2 --threads 8 \\
        gapsync.mirror.wsgi:application

The mirror directory comes from ``GAPSYNC_MIRROR`` (a WSGI server imports a module and cannot
pass arguments); ``gapsync serve`` runs the same :class:`~gapsync.mirror.serve.MirrorApp` under
waitress. See docs/operator-guide.md for nginx in front.
"""

from __future__ import annotations

import os
from pathlib import Path

from gapsync.mirror.serve import MirrorApp

_mirror = os.environ.get("GAPSYNC_MIRROR")
if not _mirror:
    raise RuntimeError("GAPSYNC_MIRROR is not set: the mirror directory gapsync.mirror.wsgi serves")
application = MirrorApp(Path(_mirror))
