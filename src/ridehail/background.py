"""A background loop that wakes on a nudge or a timer, and stops gracefully."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

log = structlog.get_logger("ridehail.background")

#: How long stop() waits for the step in progress before cancelling it.
STOP_GRACE_S = 10.0


class BackgroundLoop:
    """Runs :meth:`step` whenever nudged, and at least every ``interval_s``.

    A nudge only lowers latency: a missed one costs one interval. ``stop`` lets the step in
    progress finish and cancels only one that overruns, because a query cancelled mid-flight
    could leave its connection inside a transaction.
    """

    name = "background-loop"

    def __init__(
        self,
        *,
        interval_s: float,
        listen: Callable[[Callable[[], None]], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """``listen(nudge)``, if given, runs beside the loop for as long as it does, calling
        ``nudge`` when something outside the process signals work (a PostgreSQL NOTIFY)."""
        self._interval_s = interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._listen = listen
        self._listener: asyncio.Task[None] | None = None

    @property
    def stopping(self) -> bool:
        """A stop is under way: a long step should wind up."""
        return self._stopping

    def nudge(self) -> None:
        self._wake.set()

    async def step(self) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=self.name)
        if self._listen is not None:
            self._listener = asyncio.create_task(
                self._listen(self.nudge), name=f"{self.name}-listen"
            )

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=STOP_GRACE_S)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        # Stopped, no longer stopping: a step called directly afterwards (a test driving
        # the rounds itself) runs in full.
        self._stopping = False

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background_step_failed", loop=self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval_s)
            self._wake.clear()
