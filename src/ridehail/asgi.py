"""ASGI entry point for uvicorn: `ridehail.asgi:app`, configured from the environment."""

from __future__ import annotations

import os

from ridehail import bootstrap
from ridehail.app import create_app
from ridehail.logging import configure
from ridehail.settings import Settings

_settings = Settings()
configure(level=_settings.log_level, fmt=_settings.log_format)
# An API-only process still relays its own outbox rows (SKIP LOCKED makes that safe).
_roles = (
    bootstrap.ALL_ROLES
    if os.environ.get("RIDEHAIL_SERVE_ROLE", "all") == "all"
    else bootstrap.API_ROLES
)
app = create_app(_settings, roles=_roles)
