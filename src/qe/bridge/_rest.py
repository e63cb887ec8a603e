"""``App.rest``: a FastAPI app served by uvicorn inside the worker's own event loop.

Imported only when a worker asks for REST (``App(rest=8000)``), so a worker with
``rest=False`` never loads FastAPI or uvicorn. The port is bound here first, so "port in use"
is a clear ``ConfigError`` instead of uvicorn exiting the process; uvicorn's own signal
handling is switched off, since the worker's runner owns Ctrl+C. The address is ``127.0.0.1``
unless ``QE_REST_HOST`` says otherwise (e.g. ``0.0.0.0`` to serve other machines).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from .._errors import ConfigError

__all__ = ["RestServer"]

log = logging.getLogger("qe.worker")

STOP_TIMEOUT = 5.0


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers (the worker handles signals)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn versions
        return


class RestServer:
    def __init__(self, port: int, title: str) -> None:
        self.port = port
        self.host = os.environ.get("QE_REST_HOST", "127.0.0.1")
        self.app = FastAPI(title=title)
        self._server: _Server | None = None
        self._task: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        """Bind the port and serve; returns once uvicorn accepts connections."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"rest port {self.port} on {self.host} is not available ({exc.strerror})") from None
        sock.setblocking(False)
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        self._server = _Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]), name="qe:rest")
        while not self._server.started:
            if self._task.done():
                sock.close()
                self._task.result()
                raise ConfigError(f"the REST server on port {self.port} stopped while starting")
            await asyncio.sleep(0.01)
        log.info("REST on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), STOP_TIMEOUT)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        except Exception:
            log.debug("the REST server failed while stopping", exc_info=True)
        self._server = None
        self._task = None
