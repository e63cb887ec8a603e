"""Serve the manager page with uvicorn on 127.0.0.1, inside an existing event loop.

:class:`ManagerServer` binds the socket itself (so a port in use is a clear
:class:`PortInUse` before anything starts, and port 0 works), runs uvicorn as an owned task
without letting it touch signal handlers (the caller owns those: ``qe manager`` or
``qe up``), records its address in ``<data home>/manager/state.json`` and stops in order:
no new requests, jobs finished, Nexus link closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from .._config import data_home
from .._errors import ConfigError
from ._env import Evox
from ._errors import PortInUse
from ._web import LoopbackOnly, Manager, create_app

__all__ = ["DEFAULT_MANAGER_PORT", "LOOPBACK", "ManagerServer", "manager_state_path", "read_manager_state"]

log = logging.getLogger("qe.manager")

DEFAULT_MANAGER_PORT = 7470
PORT_VAR = "QE_MANAGER_PORT"
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 10.0
SHUTDOWN_GRACE = 3


def manager_state_path() -> Path:
    return data_home() / "manager" / "state.json"


def read_manager_state() -> dict[str, Any] | None:
    try:
        data = json.loads(manager_state_path().read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def default_port() -> int:
    raw = os.environ.get(PORT_VAR)
    if not raw:
        return DEFAULT_MANAGER_PORT
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"{PORT_VAR} must be a port number, not {raw!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{PORT_VAR} must be between 0 and 65535, not {port}")
    return port


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the owner of the loop handles signals and sets should_exit


class ManagerServer:
    """The page for ``project`` on ``127.0.0.1:port``; ``async with`` starts and stops it."""

    def __init__(self, project: Path, evox: Evox, port: int | None = None) -> None:
        self.manager = Manager(project.resolve(), evox)
        self.port = default_port() if port is None else port
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None
        self._wrote_state = False

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/"

    async def __aenter__(self) -> ManagerServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if os.name != "nt":  # on Windows SO_REUSEADDR would let two servers share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, self.port))
        except OSError as exc:
            sock.close()
            if exc.errno in {errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1), errno.EACCES}:
                raise PortInUse(LOOPBACK, self.port) from None
            raise ConfigError(f"cannot listen on {LOOPBACK}:{self.port}: {exc.strerror or exc}") from None
        sock.listen(128)
        sock.setblocking(False)
        self.port = int(sock.getsockname()[1])
        return sock

    async def start(self) -> str:
        sock = self._bind()
        self.manager.port = self.port
        app = LoopbackOnly(create_app(self.manager), lambda: self.port)
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
        )
        self._server = _Uvicorn(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]), name="manager:http")
        try:
            await self._wait_started()
        except BaseException:
            sock.close()
            raise
        self._write_state()
        return self.url

    async def _wait_started(self) -> None:
        assert self._server is not None and self._task is not None
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what went wrong
                raise ConfigError(f"the manager page did not start on {self.url}")
            if time.monotonic() > deadline:
                await self.stop()
                raise ConfigError(f"the manager page did not start within {START_TIMEOUT:g} s")
            await asyncio.sleep(0.01)

    def _write_state(self) -> None:
        path = manager_state_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"url": self.url, "pid": os.getpid(), "project": str(self.manager.project), "started": time.time()}
        tmp = path.with_name(f"state.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
        self._wrote_state = True

    async def stop(self) -> None:
        """Idempotent: stop taking requests, close streams, finish jobs, close the Nexus link."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        if self._wrote_state:
            state = read_manager_state()
            if state is not None and state.get("pid") == os.getpid() and state.get("url") == self.url:
                manager_state_path().unlink(missing_ok=True)
            self._wrote_state = False
        self.manager.closing.set()
        server.should_exit = True
        try:
            await task
        finally:
            await self.manager.aclose()
