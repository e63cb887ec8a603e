"""The page's link to the Nexus: which blocks are online (``find``) and ``ping``.

It connects as the local owner (the CLI's identity), lazily, and tries again at most every
:data:`RETRY` seconds while the Nexus is down; the page then shows "Nexus offline".
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from .._config import data_home, default_nexus_url
from .._errors import QEError
from .._names import Identity
from ..bridge._app import request_api, request_find
from ..bridge._client import ClientState, NexusClient
from ..nexus import NexusPaths, Registry, read_state

__all__ = ["NexusLink"]

RETRY = 2.0
FIND_TIMEOUT = 2.0
PING_TIMEOUT = 5.0


def nexus_url() -> str:
    if os.environ.get("QE_NEXUS"):
        return os.environ["QE_NEXUS"]
    state = read_state(NexusPaths(data_home()))
    return state.url if state is not None else default_nexus_url()


class NexusLink:
    def __init__(self) -> None:
        self._client: NexusClient | None = None
        self._next_try = 0.0
        self._lock = asyncio.Lock()
        self.url = nexus_url()

    async def _connected(self) -> NexusClient | None:
        async with self._lock:
            if self._client is not None and self._client.state is not ClientState.CLOSED:
                return self._client
            if time.monotonic() < self._next_try:
                return None
            self.url = nexus_url()
            try:
                registry = await asyncio.to_thread(Registry.open, NexusPaths(data_home()))
                identity = Identity("qe", registry.owner, f"manager-{os.getpid()}")
                client = NexusClient(identity, registry.cli_key(), (self.url,), name="qe-manager")
                await client.connect()
            except (QEError, OSError):
                self._next_try = time.monotonic() + RETRY
                return None
            self._client = client
            return client

    async def find(self, app: str) -> list[dict[str, Any]] | None:
        """The online blocks of ``app``; None when the Nexus cannot be asked."""
        client = await self._connected()
        if client is None:
            return None
        try:
            reply = await request_find(client, app, FIND_TIMEOUT)
        except QEError:
            return None
        return list(reply.get("blocks", []))

    async def ping(self, app: str, jid: str | None) -> dict[str, Any]:
        client = await self._connected()
        if client is None:
            return {"code": 502, "error": f"nexus unavailable: nothing answers at {self.url}"}
        try:
            return await request_api(client, app, "ping", {}, jid, PING_TIMEOUT, None)
        except QEError as exc:
            return exc.to_wire()

    async def close(self) -> None:
        async with self._lock:
            if self._client is not None:
                await self._client.close()
                self._client = None
