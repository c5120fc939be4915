from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ridehail.db import Base, UTCDateTime


class Search(Base):
    """One row per ride being matched. Its deadlines live here, not in a process's memory,
    so any dispatcher can carry on a search another one started."""

    __tablename__ = "dispatch_searches"

    ride_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    state: Mapped[str] = mapped_column(String(10))  # active | closed
    pickup_latitude: Mapped[float] = mapped_column(Float)
    pickup_longitude: Mapped[float] = mapped_column(Float)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_check_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)

    __table_args__ = (Index("ix_dispatch_searches_state_next", "state", "next_check_at"),)


class Offer(Base):
    """A ride offered to one driver until ``expires_at``."""

    __tablename__ = "dispatch_offers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    ride_id: Mapped[str] = mapped_column(String(40))
    driver_id: Mapped[str] = mapped_column(String(40))
    # pending | accepted | declined | expired | withdrawn
    status: Mapped[str] = mapped_column(String(10))
    distance_to_pickup_m: Mapped[float] = mapped_column(Float)
    pickup: Mapped[dict[str, Any]] = mapped_column(JSON)
    dropoff: Mapped[dict[str, Any]] = mapped_column(JSON)
    fare_estimate: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("ride_id", "driver_id", name="uq_dispatch_offers_ride_driver"),
        Index("ix_dispatch_offers_driver_status", "driver_id", "status"),
        Index("ix_dispatch_offers_status_expires", "status", "expires_at"),
    )
