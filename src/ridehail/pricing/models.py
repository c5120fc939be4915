from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ridehail.db import Base, UTCDateTime


class SurgeCellRow(Base):
    """The surge in force in one H3 cell, written by the surge updater (dispatch role) and
    read by every process that prices a ride. Only cells with demand, supply or a
    multiplier above 1 near recent demand are kept."""

    __tablename__ = "pricing_surge_cells"

    cell: Mapped[str] = mapped_column(String(16), primary_key=True)
    resolution: Mapped[int] = mapped_column(Integer)
    #: A decimal string ("1.0", "1.7"): exact on both databases, never a float.
    multiplier: Mapped[str] = mapped_column(String(8))
    demand: Mapped[int] = mapped_column(Integer)
    supply: Mapped[int] = mapped_column(Integer)
    #: The cell's centre.
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
