"""Prefect flows and the ``melodyflow`` CLI: wiring only, no domain logic."""

import os as _os

# The first ephemeral-API start on a fresh machine migrates a new database and can exceed Prefect's
# 20 s default; and this tool should not phone home.  Both stay overridable by the environment.
_os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
_os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
