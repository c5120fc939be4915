from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ridehail.db import Base, UTCDateTime


class Driver(Base):
    """A driver's profile: licence, vehicle and whether they want offers (availability)."""

    __tablename__ = "drivers_drivers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    license_number: Mapped[str] = mapped_column(String(64))
    vehicle_make: Mapped[str] = mapped_column(String(64))
    vehicle_model: Mapped[str] = mapped_column(String(64))
    vehicle_plate: Mapped[str] = mapped_column(String(32))
    vehicle_color: Mapped[str | None] = mapped_column(String(32), nullable=True)
    vehicle_seats: Mapped[int] = mapped_column(Integer, default=4)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    availability: Mapped[str] = mapped_column(String(16), default="offline", index=True)
    availability_changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    def vehicle(self) -> dict[str, object]:
        return {
            "make": self.vehicle_make,
            "model": self.vehicle_model,
            "plate": self.vehicle_plate,
            "color": self.vehicle_color,
            "seats": self.vehicle_seats,
        }
