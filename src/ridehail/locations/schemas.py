from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from pydantic import AwareDatetime, Field

from ridehail.kernel.clock import as_utc
from ridehail.locations.ports import LocationFix
from ridehail.web.schemas import Latitude, Longitude, RequestBody, ResponseBody


class LocationIn(RequestBody):
    latitude: Latitude
    longitude: Longitude
    heading: Annotated[float, Field(ge=0, lt=360, allow_inf_nan=False)] | None = None
    speed_mps: Annotated[float, Field(ge=0, le=150, allow_inf_nan=False)] | None = None
    accuracy_m: Annotated[float, Field(ge=0, le=100_000, allow_inf_nan=False)] | None = None
    # Strict models take datetimes only as objects; JSON carries ISO 8601 strings.
    recorded_at: Annotated[AwareDatetime, Field(strict=False)] | None = Field(
        default=None, description="When the device took the fix (ISO 8601 with a zone)"
    )

    def to_fix(self, driver_id: str, *, now: datetime) -> LocationFix:
        """The fix this report describes; without ``recorded_at`` it was taken ``now``."""
        return LocationFix(
            driver_id=driver_id,
            latitude=self.latitude,
            longitude=self.longitude,
            recorded_at=as_utc(self.recorded_at) if self.recorded_at else now,
            heading=self.heading,
            speed_mps=self.speed_mps,
            accuracy_m=self.accuracy_m,
        )


class LocationReport(msgspec.Struct, forbid_unknown_fields=True):
    """:class:`LocationIn` for the ingest fast path, decoded by msgspec in a fifth of the
    time. It accepts no body that :class:`LocationIn` refuses (the same fields, types,
    bounds and duplicate-key rule; msgspec refuses non-finite numbers as JSON has none, and
    an overflowing literal as out of range): whatever it refuses goes to the route, whose
    model answers. It leaves ``recorded_at`` to that model: a body carrying one is parsed
    again by :class:`LocationIn` (tests/api/test_location_fast_path.py holds the two to the
    same answer for any JSON object)."""

    latitude: Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
    longitude: Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
    heading: Annotated[float, msgspec.Meta(ge=0, lt=360)] | None = None
    speed_mps: Annotated[float, msgspec.Meta(ge=0, le=150)] | None = None
    accuracy_m: Annotated[float, msgspec.Meta(ge=0, le=100_000)] | None = None
    recorded_at: Any = None

    def to_fix(self, driver_id: str, *, now: datetime) -> LocationFix:
        """The fix this report describes, taken ``now`` (only for a report without
        ``recorded_at``)."""
        return LocationFix(
            driver_id,
            self.latitude,
            self.longitude,
            now,
            self.heading,
            self.speed_mps,
            self.accuracy_m,
        )


class TimedLocationIn(LocationIn):
    """A buffered point: when it was taken is required."""

    recorded_at: Annotated[AwareDatetime, Field(strict=False)]


#: Apps buffer points while offline; a few minutes at one point per second fit.
MAX_BATCH = 500


class LocationBatchIn(RequestBody):
    locations: Annotated[list[TimedLocationIn], Field(min_length=1, max_length=MAX_BATCH)]


class LocationBatchOut(ResponseBody):
    accepted: int = Field(description="Points stored (in the live position or the trace)")
    flagged: int = Field(
        description="Points kept out of matching: an implausible jump or a poor accuracy"
    )
