"""Timers on the worker's event loop: ``SetInterval``, ``SetTimeout``, their thread-safe
``...Safe`` forms, and the decorator forms ``@setInterval(ms, "name")``, ``clearInterval(name)``,
``@setTimeout(ms)``.

Ticks are scheduled on the loop's monotonic clock from the start time (``start + k * interval``),
so an interval does not drift; ticks missed while the loop was blocked are skipped, not
bunched. A sync callback runs on the loop (keep it short; use a thread for blocking work); an
async one runs as a task owned by the timer (a tick is skipped while the previous run is still
going). A failing callback is logged and the timer keeps going.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .._errors import UsageError

__all__ = [
    "SetInterval",
    "SetIntervalSafe",
    "SetTimeout",
    "SetTimeoutSafe",
    "clearInterval",
    "setInterval",
    "setTimeout",
]

log = logging.getLogger("qe.timers")

TimerCallback = Callable[[], Any]
F = TypeVar("F", bound=Callable[..., Any])


def _pick_loop(loop: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop:
    if loop is not None:
        return loop
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    if threading.current_thread() is not threading.main_thread():
        raise UsageError("create timers in the main thread or inside the event loop, or pass loop=")
    from ._runner import current_loop

    return current_loop()


class _Timer:
    _repeat = False

    def __init__(self, fn: TimerCallback, ms: float, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not callable(fn):
            raise TypeError("the timer callback must be callable")
        if not isinstance(ms, int | float) or isinstance(ms, bool) or not ms > 0 or not math.isfinite(ms):
            raise ValueError(f"the timer period must be a positive number of milliseconds, not {ms!r}")
        self.fn = fn
        self.ms = float(ms)
        self.loop = _pick_loop(loop)
        self.count = 0  # how many times the callback was started
        self.running = False
        self._interval = self.ms / 1000.0
        self._next = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.ms:g} ms {'running' if self.running else 'stopped'} count={self.count}>"

    def _check_thread(self) -> None:
        if not self.loop.is_running():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self.loop:
            name = type(self).__name__
            raise UsageError(f"{name} is not thread-safe; use {name}Safe from other threads")

    def start(self) -> _Timer:
        """Start (no-op if running); returns the timer, so ``t = SetInterval(f, 1000).start()`` works."""
        self._check_thread()
        self._start()
        return self

    def stop(self) -> None:
        """Stop; an async callback still running is cancelled. Idempotent."""
        self._check_thread()
        self._stop()

    cancel = stop

    def _start(self) -> None:
        if self.running:
            return
        self.running = True
        self._next = self.loop.time() + self._interval
        self._handle = self.loop.call_at(self._next, self._tick)

    def _stop(self) -> None:
        self.running = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for task in list(self._tasks):
            task.cancel()

    def _tick(self) -> None:
        self._handle = None
        if not self.running:
            return
        if not self._repeat:
            self.running = False
        self._run()
        if not self._repeat or not self.running:
            return
        self._next += self._interval
        now = self.loop.time()
        if self._next <= now:  # the loop was blocked: skip the missed ticks
            missed = math.floor((now - self._next) / self._interval) + 1
            self._next += missed * self._interval
            log.debug("%r skipped %d ticks", self, missed)
        self._handle = self.loop.call_at(self._next, self._tick)

    def _run(self) -> None:
        if self._tasks:
            log.debug("%r: previous run still going; tick skipped", self)
            return
        self.count += 1
        try:
            result = self.fn()
        except Exception:
            log.exception("timer callback %s failed", _name(self.fn))
            return
        if inspect.isawaitable(result):
            task = self.loop.create_task(_await(result), name=f"qe:timer:{_name(self.fn)}")
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("timer callback %s failed", _name(self.fn), exc_info=task.exception())


async def _await(value: Any) -> Any:
    return await value


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


class SetInterval(_Timer):
    """Call ``fn`` every ``ms`` milliseconds on the event loop, until :meth:`stop`."""

    _repeat = True


class SetTimeout(_Timer):
    """Call ``fn`` once, ``ms`` milliseconds after :meth:`start` (:meth:`cancel` stops it)."""


class _SafeMixin(_Timer):
    def _in_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return not self.loop.is_running()

    def start(self) -> _Timer:
        if self._in_loop_thread():
            self._start()
        else:
            self.loop.call_soon_threadsafe(self._start)
        return self

    def stop(self) -> None:
        if self._in_loop_thread():
            self._stop()
        else:
            self.loop.call_soon_threadsafe(self._stop)

    cancel = stop


class SetIntervalSafe(_SafeMixin, SetInterval):
    """:class:`SetInterval` whose ``start``/``stop`` may be called from any thread."""


class SetTimeoutSafe(_SafeMixin, SetTimeout):
    """:class:`SetTimeout` whose ``start``/``cancel`` may be called from any thread."""


# -- decorator forms -------------------------------------------------------------------------

_named: dict[str, _Timer] = {}


def setInterval(ms: float, name: str | None = None) -> Callable[[F], F]:  # noqa: N802 - the guide's name
    """``@setInterval(1000, "tick")``: run the function every ``ms``; ``clearInterval("tick")`` stops it."""

    def decorate(fn: F) -> F:
        timer = SetIntervalSafe(fn, ms)
        if name is not None:
            clearInterval(name)
            _named[name] = timer
        timer.start()
        return fn

    return decorate


def clearInterval(name: str) -> bool:  # noqa: N802 - the guide's name
    """Stop the interval started as ``@setInterval(ms, name)``; False if there is none."""
    timer = _named.pop(name, None)
    if timer is None:
        return False
    timer.stop()
    return True


def setTimeout(ms: float) -> Callable[[F], F]:  # noqa: N802 - the guide's name
    """``@setTimeout(5000)``: run the function once, ``ms`` from now."""

    def decorate(fn: F) -> F:
        SetTimeoutSafe(fn, ms).start()
        return fn

    return decorate
