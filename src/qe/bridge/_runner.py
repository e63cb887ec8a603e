"""Script mode: the guide's ``loop = asyncio.get_event_loop(); loop.run_forever()``.

An ``App`` created with no running loop gets the current loop (one is created and set if
there is none, so the guide's ``get_event_loop()`` returns it without a warning on
3.11-3.14), schedules its own start on it, and installs SIGINT/SIGTERM handlers: the first
signal runs the ordered shutdown and stops the loop (``run_forever`` returns, exit 0); a
second one exits at once. A fatal start-up error (bad key, duplicate resource) is printed as
one line and exits with a nonzero code, without a traceback. A script run in a block folder
writes the block's missing ``terminal.sh`` / ``terminal.bat`` (:mod:`qe._terminals`).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import signal
import sys
import warnings
from typing import TYPE_CHECKING

from .._errors import ConfigError, QEError
from .._terminals import write_missing_terminals

if TYPE_CHECKING:
    from ._app import App

__all__ = ["autostart", "configure_logging", "current_loop", "startup"]

log = logging.getLogger("qe.worker")


def configure_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")


def current_loop() -> asyncio.AbstractEventLoop:
    """The loop ``asyncio.get_event_loop()`` will return in this thread, created if needed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            loop = asyncio.get_event_loop()
        if not loop.is_closed():
            return loop
    except RuntimeError:
        pass
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop


def autostart(app: App) -> None:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None:
        # inside a running loop: start as a task; ``await app.ready()`` waits for it
        app._loop = running
        app.start_task = running.create_task(app.start(), name="qe:start")
        return
    configure_logging()
    write_missing_terminals()  # the guide: "run run.py once to generate terminal.bat"
    loop = current_loop()
    app._loop = loop  # module-level find/api/direct/subscribe use it before run_forever
    _ScriptRunner(app, loop).install()


class _ScriptRunner:
    def __init__(self, app: App, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        self.signals = 0
        self.task: asyncio.Task[None] | None = None
        self.stopper: asyncio.Task[None] | None = None

    def install(self) -> None:
        self.task = self.loop.create_task(self._main(), name="qe:main")
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.loop.add_signal_handler(sig, self._on_signal)
            except (NotImplementedError, RuntimeError):  # Windows: no loop signal handlers
                signal.signal(sig, lambda *_: self.loop.call_soon_threadsafe(self._on_signal))
        atexit.register(self._close_loop)

    async def _main(self) -> None:
        try:
            await self.app.start()
        except QEError as exc:
            print(f"qe: {exc.message}", file=sys.stderr, flush=True)
            await self.app.stop()
            self.loop.call_soon(_exit, 2 if isinstance(exc, ConfigError) else 1)
            return
        except Exception:
            log.exception("the worker could not start")
            await self.app.stop()
            self.loop.call_soon(_exit, 1)
            return
        await self.app.wait_stopped()

    def _on_signal(self) -> None:
        self.signals += 1
        if self.signals > 1:
            print("qe: second interrupt; exiting now", file=sys.stderr, flush=True)
            os._exit(130)
        log.info("stopping (Ctrl+C again to exit at once)")
        self.stopper = self.loop.create_task(self._stop(), name="qe:stop")

    async def _stop(self) -> None:
        if self.task is not None and not self.task.done() and self.app.state.value in ("new", "starting"):
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.app.stop()
        self.loop.stop()

    def _close_loop(self) -> None:
        if self.loop.is_running() or self.loop.is_closed():
            return
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


def _exit(code: int) -> None:
    raise SystemExit(code)


def startup() -> None:
    """The guide's ``startup()``: logging, and one-line errors instead of tracebacks for ours."""
    configure_logging()
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: object) -> None:
        if isinstance(exc, QEError):
            print(f"qe: {exc.message}", file=sys.stderr, flush=True)
            return
        previous(kind, exc, tb)  # type: ignore[arg-type]

    sys.excepthook = hook
