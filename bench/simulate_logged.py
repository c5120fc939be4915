"""`ridehail simulate`, unchanged, except that every transport failure (an API call that got
no HTTP answer: status 0 in the metrics) is also printed to stderr when it happens, with
its exception, so that a simulator process that dies in set-up leaves the cause in its log.

    .venv/bin/python -m bench.simulate_logged simulate --url ... (the ridehail CLI's arguments)
"""

from __future__ import annotations

import sys
import time

from ridehail.simulator.metrics import Recorder


def main() -> None:
    original = Recorder.request

    def request(
        self: Recorder, endpoint: str, ms: float, status: int, t_s: float, detail: str
    ) -> None:
        if status == 0:
            stamp = time.strftime("%H:%M:%S")
            sys.stderr.write(f"{stamp} no answer: {endpoint} after {ms:.0f} ms: {detail}\n")
        original(self, endpoint, ms, status, t_s, detail)

    Recorder.request = request  # type: ignore[method-assign]
    from ridehail.cli import app

    sys.argv = ["ridehail", *sys.argv[1:]]
    app()


if __name__ == "__main__":
    main()
