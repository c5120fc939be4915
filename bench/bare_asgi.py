"""The baseline for the HTTP ingest benchmark: a raw ASGI callable that reads the request
body and answers 204, served by uvicorn exactly as `ridehail serve` serves the app.

    .venv/bin/python -m bench.bare_asgi --port 8001
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from bench.common import serve_like_ridehail


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
    serve_like_ridehail("bench.bare_asgi:app", __doc__ or "", 8001)


if __name__ == "__main__":
    main()
