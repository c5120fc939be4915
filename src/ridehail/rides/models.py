from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from ridehail.db import Base, UTCDateTime

_DRIVER_ACTIVE_SQL = "status IN ('driver_en_route', 'driver_arrived', 'in_progress')"
_RIDER_ACTIVE_SQL = "status IN ('searching', 'driver_en_route', 'driver_arrived', 'in_progress')"


class Ride(Base):
    __tablename__ = "rides_rides"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    rider_id: Mapped[str] = mapped_column(String(40))
    driver_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    status: Mapped[str] = mapped_column(String(24))
    start_latitude: Mapped[float] = mapped_column(Float)
    start_longitude: Mapped[float] = mapped_column(Float)
    end_latitude: Mapped[float] = mapped_column(Float)
    end_longitude: Mapped[float] = mapped_column(Float)
    #: Passenger seats asked for; only vehicles with at least this many are offered the ride.
    seats: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    #: The product (fare policy) the ride is priced as.
    product: Mapped[str] = mapped_column(String(32), default="standard", server_default="standard")
    fare_estimate: Mapped[dict[str, Any]] = mapped_column(JSON)
    fare: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: The rider's payment method (payments domain id) chosen at request; None is cash.
    payment_method_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: The surge multiplier locked at request time ("1.0", "1.5"; None on rides from
    #: before surge, meaning 1.0) and the H3 cell of the pickup it was read for (demand).
    surge_multiplier: Mapped[str | None] = mapped_column(String(8), nullable=True)
    pickup_cell: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: The trip's recorded route at completion, [[latitude, longitude], ...] (thinned).
    route_points: Mapped[list[list[float]] | None] = mapped_column(JSON, nullable=True)
    #: Driver name and vehicle as they were when the driver accepted (receipts keep them).
    driver_snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    distance_m: Mapped[float | None] = mapped_column(Float, nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    cancel_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    cancelled_by: Mapped[str | None] = mapped_column(String(10), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    arrived_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        Index("ix_rides_rides_rider_id_id", "rider_id", "id"),
        Index("ix_rides_rides_driver_id_id", "driver_id", "id"),
        Index("ix_rides_rides_status_id", "status", "id"),
        #: Surge demand: the rides requested in the last window, by pickup cell.
        Index("ix_rides_rides_created_at", "created_at"),
        Index(
            "uq_rides_one_active_ride_per_driver",
            "driver_id",
            unique=True,
            postgresql_where=text(_DRIVER_ACTIVE_SQL),
            sqlite_where=text(_DRIVER_ACTIVE_SQL),
        ),
        Index(
            "uq_rides_one_active_ride_per_rider",
            "rider_id",
            unique=True,
            postgresql_where=text(_RIDER_ACTIVE_SQL),
            sqlite_where=text(_RIDER_ACTIVE_SQL),
        ),
    )
