"""What a handler receives."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["APISpecs", "MessageSpecs", "Role"]

Role = str  # "owner" | "partner" | "user"


@dataclass(slots=True)
class APISpecs:
    """One API call: the command, its JSON body, and who sent it.

    ``app``, ``uid`` and ``resource`` come from the subject the Nexus delivered, which only
    that sender may publish; ``role`` is the sender's relation to this worker's app.
    """

    cmd: str
    body: Any
    app: str
    uid: str
    resource: str
    role: Role
    _progress: Callable[[Any], Coroutine[Any, Any, None]] | None = field(default=None, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)

    @property
    def jid(self) -> str:
        return f"{self.uid}@{self.app}/{self.resource}"

    def progress(self, value: Any) -> Awaitable[None]:
        """Send a progress update (a JSON value) to the caller; nothing when nobody waits.

        In an async handler: ``await specs.progress(value)``. In a sync handler (it runs in a
        thread): ``specs.progress(value)`` sends it and returns once it is on its way.
        """
        if self._progress is None:
            return _SENT
        loop = self._loop
        if loop is not None and loop.is_running() and _running_loop() is not loop:
            asyncio.run_coroutine_threadsafe(self._progress(value), loop).result(PROGRESS_TIMEOUT)
            return _SENT
        return self._progress(value)


PROGRESS_TIMEOUT = 10.0


class _Sent:
    """An awaitable that is already done: what ``progress`` returns when there is nothing to wait for."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


_SENT = _Sent()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@dataclass(slots=True)
class MessageSpecs:
    """One direct or channel message, and who sent it.

    ``channel`` is empty for a direct. ``itsme`` is my own channel message coming back to me;
    ``itsbro`` is a message from the same user (uid) sent by another block. The sender's
    ``app``, ``uid`` and ``resource`` come from the subject, which only that sender may publish.
    """

    fromjid: str
    body: Any
    role: Role
    channel: str
    app: str
    uid: str
    resource: str
    itsme: bool
    itsbro: bool
