"""The adapters a running process holds, built once by the composition root (bootstrap)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ridehail.db import Database
from ridehail.kernel.auth import Principal
from ridehail.locations.ports import DriverLocationStore
from ridehail.messaging import EventBus, PubSub
from ridehail.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    db: Database
    locations: DriverLocationStore
    bus: EventBus
    #: Real-time fan-out (at-most-once) to WebSocket clients on any process.
    pubsub: PubSub
    verify_token: Callable[[str], Principal]
    redis: Any = None
    #: Wake this process's dispatcher early (a no-op where no dispatcher runs).
    nudge_dispatch: Callable[[], None] = lambda: None
    extras: dict[str, Any] = field(default_factory=dict)
