"""Integration events: what one domain tells the others, in the past tense.

They travel as JSON through the outbox and the event bus, so every field is a plain value.
Consumers must be idempotent: the same event may arrive more than once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Self

from ridehail.kernel.clock import utcnow
from ridehail.kernel.ids import new_id


@dataclass(frozen=True, kw_only=True)
class IntegrationEvent:
    topic: ClassVar[str] = ""
    event_id: str = field(default_factory=lambda: new_id("evt"))
    occurred_at: datetime = field(default_factory=utcnow)

    @property
    def aggregate_id(self) -> str:
        raise NotImplementedError

    def to_payload(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["occurred_at"] = self.occurred_at.isoformat()
        return data

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Self:
        data = dict(payload)
        data["occurred_at"] = datetime.fromisoformat(data["occurred_at"])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, kw_only=True)
class RideRequested(IntegrationEvent):
    topic: ClassVar[str] = "rides.requested"
    ride_id: str
    rider_id: str
    pickup_latitude: float
    pickup_longitude: float
    seats: int = 1

    @property
    def aggregate_id(self) -> str:
        return self.ride_id


@dataclass(frozen=True, kw_only=True)
class RideStatusChanged(IntegrationEvent):
    """Every transition of a ride after it was requested."""

    topic: ClassVar[str] = "rides.status_changed"
    ride_id: str
    rider_id: str
    driver_id: str | None
    previous_status: str
    status: str
    reason: str | None = None

    @property
    def aggregate_id(self) -> str:
        return self.ride_id


@dataclass(frozen=True, kw_only=True)
class DriverWentOffline(IntegrationEvent):
    topic: ClassVar[str] = "drivers.offline"
    driver_id: str

    @property
    def aggregate_id(self) -> str:
        return self.driver_id


ALL_EVENTS: tuple[type[IntegrationEvent], ...] = (
    RideRequested,
    RideStatusChanged,
    DriverWentOffline,
)
