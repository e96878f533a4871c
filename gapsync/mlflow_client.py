"""The ``mlflow`` client as both sides use it: the connected side reads registered models from a
tracking server, the air side registers imported models into the site's own. Optional
(``gapsync[mlflow]``), so imported only when a command needs it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from gapsync.errors import InputError


def client(uri: str):
    try:
        from mlflow import MlflowClient
    except ImportError as e:
        raise InputError("MLflow models need the mlflow client: pip install 'gapsync[mlflow]'") from e
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextmanager
def quiet_stdout() -> Iterator[None]:
    """The mlflow client prints links ("View run at …") on stdout, which must stay ours (--json)."""
    with contextlib.redirect_stdout(sys.stderr):
        yield
