from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, Field

from ridehail.web.schemas import Latitude, Longitude, RequestBody


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
