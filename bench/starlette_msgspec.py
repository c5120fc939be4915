"""A second reference point for the HTTP ingest benchmark: the least a framework route can
do for the location PUT - a plain Starlette route that decodes and validates the body with
msgspec (coordinates in range, no unknown fields) and answers 204. No token check, no store
write. Served by uvicorn exactly as `ridehail serve` and bench/bare_asgi.py are.

    .venv/bin/python -m bench.starlette_msgspec --port 8002
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.common import serve_like_ridehail

Latitude = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Longitude = Annotated[float, msgspec.Meta(ge=-180, le=180)]


class Location(msgspec.Struct, forbid_unknown_fields=True):
    latitude: Latitude
    longitude: Longitude
    heading: Annotated[float, msgspec.Meta(ge=0, lt=360)] | None = None
    accuracy_m: Annotated[float, msgspec.Meta(ge=0)] | None = None


_decoder = msgspec.json.Decoder(Location)


async def put_location(request: Request) -> Response:
    try:
        _decoder.decode(await request.body())
    except msgspec.ValidationError as exc:
        return Response(str(exc), status_code=422)
    return Response(status_code=204)


async def healthz(_request: Request) -> Response:
    return Response(status_code=204)


app = Starlette(
    routes=[
        Route("/api/v1/drivers/{driver_id}/location", put_location, methods=["PUT"]),
        Route("/healthz", healthz),
    ]
)


def main() -> None:
    serve_like_ridehail("bench.starlette_msgspec:app", __doc__ or "", 8002)


if __name__ == "__main__":
    main()
