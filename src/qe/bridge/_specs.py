"""What a handler receives."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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
    _progress: Callable[[Any], Awaitable[None]] | None = field(default=None, repr=False)

    @property
    def jid(self) -> str:
        return f"{self.uid}@{self.app}/{self.resource}"

    async def progress(self, value: Any) -> None:
        """Send a progress update to the caller (JSON value); no-op when nobody waits."""
        if self._progress is not None:
            await self._progress(value)


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
