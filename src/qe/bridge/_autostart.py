"""Start the local Nexus for a worker whose configured Nexus is on this machine and down."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlparse

from .._config import DEFAULT_NATS_PORT

__all__ = ["start_local_nexus"]


async def start_local_nexus(url: str, home: Path) -> None:
    from ..nexus import NexusPaths, ServerSettings, start_detached

    parsed = urlparse(url)
    settings = ServerSettings(host="127.0.0.1", port=parsed.port or DEFAULT_NATS_PORT, tls=parsed.scheme == "tls")
    await asyncio.to_thread(start_detached, NexusPaths(home), settings)
