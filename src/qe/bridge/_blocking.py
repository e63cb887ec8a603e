"""Calling the SDK from code that is not async: module level, sync handlers, other threads.

The guide's programs call ``App.find(...)``, ``App.api(...)``, ``App.direct(...)`` and
``App.subscribe(...)`` at module level, before ``loop.run_forever()``. Three cases:

* inside the worker's running loop (async code): the call returns an awaitable (``await App.find(...)``);
* module level (the loop exists but does not run yet): ``find``/``api`` run the loop until the
  worker is online and the answer is in, and return it; one-way sends are queued and go out
  once the worker is online;
* another thread while the loop runs (a sync handler): the work is handed to the loop and
  ``find``/``api`` wait for the answer.

``find_sync``/``api_sync`` always block, and refuse (``UsageError``) inside a running loop,
where blocking would freeze the worker.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any, NoReturn, TypeVar

from .._errors import QEError, UsageError

__all__ = ["InLoop", "run_blocking", "run_now", "running_loop", "submit"]

log = logging.getLogger("qe.worker")

T = TypeVar("T")


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class InLoop(Coroutine[Any, Any, T]):
    """What ``App.find``/``App.api`` give inside the running loop: a coroutine to ``await``.

    Used as if it were the answer (``App.find(...)["jids"]`` in a sync callback that runs on
    the loop, such as a timer's), it raises a ``UsageError`` saying what to write instead,
    rather than a puzzling ``TypeError`` and a "never awaited" warning.
    """

    __slots__ = ("_coro", "_what")

    def __init__(self, coro: Coroutine[Any, Any, T], what: str) -> None:
        self._coro = coro
        self._what = what

    def __await__(self) -> Generator[Any, None, T]:
        return self._coro.__await__()

    def send(self, value: Any) -> Any:
        return self._coro.send(value)

    def throw(self, *args: Any) -> Any:
        return self._coro.throw(*args)

    def close(self) -> None:
        self._coro.close()

    def _misused(self, *_: Any, **__: Any) -> NoReturn:
        self._coro.close()
        raise UsageError(
            f"App.{self._what}(...) was used without `await` inside the running event loop, where it cannot "
            f"block: write `await App.{self._what}(...)` in an async function (a sync timer callback can "
            f"become `async def`; a sync API handler runs in a thread, where App.{self._what}() blocks)"
        )

    __getitem__ = __iter__ = __contains__ = __len__ = __bool__ = get = keys = items = values = _misused

    def __repr__(self) -> str:
        return f"<App.{self._what}(...): await it>"


def run_blocking(loop: asyncio.AbstractEventLoop | None, make: Callable[[], Coroutine[Any, Any, T]], what: str) -> T:
    """Run ``make()`` to completion from sync code and return its result."""
    if running_loop() is not None:
        raise UsageError(
            f"App.{what}_sync() would block the running event loop (and the worker with it); "
            f"in async code use `await App.{what}(...)`"
        )
    if loop is None or loop.is_closed():
        raise UsageError("the App has no event loop: create it at module level (the guide's way) or start it first")
    if loop.is_running():  # called from another thread: the worker's loop does the work
        return asyncio.run_coroutine_threadsafe(make(), loop).result()
    return loop.run_until_complete(make())


def submit(
    loop: asyncio.AbstractEventLoop | None,
    own: Callable[[asyncio.AbstractEventLoop, Coroutine[Any, Any, T], str, bool], asyncio.Task[T]],
    make: Callable[[], Coroutine[Any, Any, T]],
    what: str,
) -> Any:
    """Start ``make()`` on the worker's loop without waiting; returns something to await if wanted.

    In the loop: an owned task. At module level: an owned task that runs once the loop does.
    From another thread: a ``concurrent.futures.Future``. A failure is logged (and raised to
    whoever awaits the result), never dropped.
    """
    here = running_loop()
    if here is not None:  # eager where the Python allows it: sends keep their order and need no loop turn
        return _report(own(here, make(), what, True), what)
    if loop is None or loop.is_closed():
        raise UsageError("the App has no event loop: create it at module level (the guide's way) or start it first")
    if loop.is_running():
        future = asyncio.run_coroutine_threadsafe(make(), loop)
        future.add_done_callback(lambda f: _log_failure(f.exception() if not f.cancelled() else None, what))
        return future
    return _report(own(loop, make(), what, False), what)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, T], yielded: Any) -> Generator[Any, Any, T]:
    """Drive ``coro`` on from a suspension point, exactly as ``yield from`` would."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # cancellation and the like go into the coroutine
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]


async def _finish(coro: Coroutine[Any, Any, T], yielded: Any) -> T:
    return await _resume(coro, yielded)


def run_now(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, None],
    own: Callable[[asyncio.AbstractEventLoop, Coroutine[Any, Any, None], str, bool], asyncio.Task[None]],
    done: asyncio.Future[None],
    what: str,
) -> asyncio.Future[None]:
    """Run a send (our code and nats-py's publish, which never look at the current task) at once.

    Usually it finishes without waiting (the message is in the client's buffer): no task, no
    loop turn, and ``done`` (an already finished future) is returned. If it has to wait (the
    buffer is full), an owned task carries on from there. Failures are logged and raised to
    whoever awaits the result.
    """
    try:
        yielded = coro.send(None)
    except StopIteration:
        return done
    except Exception as exc:
        _log_failure(exc, what)
        failed: asyncio.Future[None] = loop.create_future()
        failed.set_exception(exc)
        failed.exception()  # logged above; awaiting it still raises
        return failed
    return _report(own(loop, _finish(coro, yielded), what, False), what)


def _report(task: asyncio.Task[T], what: str) -> asyncio.Task[T]:
    task.add_done_callback(lambda t: _log_failure(t.exception() if not t.cancelled() else None, what))
    return task


def _log_failure(exc: BaseException | None, what: str) -> None:
    if isinstance(exc, QEError):
        log.warning("%s failed: %s", what, exc.message)
    elif exc is not None:
        log.error("%s failed", what, exc_info=exc)
