"""Live driver locations: ingest, nearest-driver search, trip traces.

Depends on no other domain, so it can be lifted out into its own service.
"""

from ridehail.locations.ports import (
    DriverLocationStore,
    LocationFix,
    NearbyDriver,
    Recorded,
    position_channel,
    position_message,
)
from ridehail.locations.schemas import LocationIn
from ridehail.locations.service import (
    ingest,
    ingest_many,
    nearby,
    trace_distance_m,
)

__all__ = [
    "DriverLocationStore",
    "LocationFix",
    "LocationIn",
    "NearbyDriver",
    "Recorded",
    "ingest",
    "ingest_many",
    "nearby",
    "position_channel",
    "position_message",
    "trace_distance_m",
]
