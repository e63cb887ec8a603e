"""``App.on("__connect" | "__disconnect", callback)``: connection events of a worker.

``__connect`` fires when the worker is online (after start, and after a reconnect once it has
registered again); ``__disconnect`` when the connection drops and when the worker stops. A
callback may be sync or async; a failing one is logged and the worker goes on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["EVENTS", "EventsMixin"]

log = logging.getLogger("qe.worker")

EVENTS = ("__connect", "__disconnect")


class EventsMixin:
    _events: dict[str, list[Callable[[], Any]]]

    def _own(self, coro: Any, name: str) -> asyncio.Task[Any]:
        raise NotImplementedError

    def on(self, event: str, callback: Callable[[], Any] | None = None) -> Any:
        """``App.on("__connect", cb)`` / ``App.on("__disconnect", cb)``; also a decorator (``@App.on(...)``)."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; use one of {', '.join(EVENTS)}")

        def register(cb: Callable[[], Any]) -> Callable[[], Any]:
            self._events.setdefault(event, []).append(cb)
            return cb

        return register if callback is None else register(callback)

    def _fire(self, event: str) -> list[asyncio.Task[Any]]:
        return [self._own(self._run_event(event, cb), f"event {event}") for cb in self._events.get(event, [])]

    @staticmethod
    async def _run_event(event: str, cb: Callable[[], Any]) -> None:
        try:
            result = cb()
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("the %s callback %s failed", event, getattr(cb, "__qualname__", cb))
