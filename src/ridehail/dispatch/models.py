from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from ridehail.db import Base, UTCDateTime

_PENDING_SQL = "status = 'pending'"


class Search(Base):
    """One row per ride being matched. Its deadlines live here, not in a process's memory,
    so any dispatcher can carry on a search another one started."""

    __tablename__ = "dispatch_searches"

    ride_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    state: Mapped[str] = mapped_column(String(10))  # active | closed
    pickup_latitude: Mapped[float] = mapped_column(Float)
    pickup_longitude: Mapped[float] = mapped_column(Float)
    seats: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_check_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Offers made so far.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Candidate searches run so far (a round may end in offers, a wait or nothing).
    rounds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The widest ring the last round had to search.
    radius_m: Mapped[float | None] = mapped_column(Float, nullable=True)
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
    eta_s: Mapped[float | None] = mapped_column(Float, nullable=True)
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
        # A driver holds at most one open offer, whichever dispatcher made it: the database
        # refuses the second (offers are inserted ON CONFLICT DO NOTHING).
        Index(
            "uq_dispatch_offers_one_pending_per_driver",
            "driver_id",
            unique=True,
            postgresql_where=text(_PENDING_SQL),
            sqlite_where=text(_PENDING_SQL),
        ),
    )


class Candidate(Base):
    """The dispatch log: one row per driver a search round considered, with the numbers it
    ranked them by and what it decided. What became of an offer (accepted, declined,
    expired, withdrawn) is on the offer row; the admin view joins them."""

    __tablename__ = "dispatch_candidates"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    ride_id: Mapped[str] = mapped_column(String(40))
    round: Mapped[int] = mapped_column(Integer)
    strategy: Mapped[str] = mapped_column(String(12))
    driver_id: Mapped[str] = mapped_column(String(40))
    distance_m: Mapped[float] = mapped_column(Float)
    eta_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    acceptance_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    idle_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: offered | skipped | passed_over
    decision: Mapped[str] = mapped_column(String(12))
    reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    considered_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_dispatch_candidates_ride_id", "ride_id", "id"),)


class DriverState(Base):
    """What dispatch remembers about a driver between rides, from ride events: when their
    last trip ended (idle time counts from then, or from going available if later)."""

    __tablename__ = "dispatch_driver_states"

    driver_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_trip_ended_at: Mapped[datetime] = mapped_column(UTCDateTime())
