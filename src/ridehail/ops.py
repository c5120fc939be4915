"""Operations endpoints: liveness, readiness, metrics."""

from __future__ import annotations

import asyncio
import os

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from ridehail.tally import DEFERRED
from ridehail.web.deps import RuntimeDep

router = APIRouter(tags=["operations"])

READY_TIMEOUT_S = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """The database and the location store answer; 503 naming what does not."""
    checks: dict[str, str] = {}
    for name, probe in (("database", runtime.db.ping), ("locations", runtime.locations.ping)):
        try:
            await asyncio.wait_for(probe(), timeout=READY_TIMEOUT_S)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    """Prometheus text format. Under `ridehail serve --workers N` every worker writes its
    samples to files in ``PROMETHEUS_MULTIPROC_DIR`` and whichever worker answers adds them
    all up, so a scrape sees the whole server, not one worker's share."""
    DEFERRED.flush()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
