"""The baseline for the HTTP ingest benchmark: a raw ASGI callable that reads the request
body and answers 204, served by uvicorn exactly as `ridehail serve` serves the app.

    .venv/bin/python -m bench.bare_asgi --port 8001
"""

from __future__ import annotations

import argparse

from starlette.types import Receive, Scope, Send


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client went away
        more_body = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    # The same uvicorn.run arguments as `ridehail serve` (src/ridehail/cli.py).
    uvicorn.run(
        "bench.bare_asgi:app",
        host=args.host,
        port=args.port,
        workers=1,
        log_level="warning",
        # ridehail writes its own access log (structured, by route template); uvicorn's
        # would format the client address and path of every request even when filtered.
        access_log=False,
        ws_max_size=65_536,
        proxy_headers=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
