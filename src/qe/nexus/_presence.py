"""Who is online: blocks by app, and each app's find answer, encoded once until it changes.

Heartbeats arrive every second from every block; most change nothing (an idle worker), so
they only refresh ``last_seen``. A find for an app whose blocks did not change since the last
find is answered with the bytes already encoded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .._names import Identity
from .._wire import encode

__all__ = ["Block", "Presence"]


@dataclass
class Block:
    identity: Identity
    instance: str
    info: dict[str, Any]
    last_seen: float = field(default_factory=time.monotonic)

    def describe(self) -> dict[str, Any]:
        info = self.info
        return {
            "jid": self.identity.jid,
            "app": self.identity.app,
            "uid": self.identity.uid,
            "resource": self.identity.resource,
            "host": info.get("host"),
            "pid": info.get("pid"),
            "public": info.get("public"),
            "since": info.get("since"),
            "inflight": info.get("inflight", 0),
            "version": info.get("version"),
        }


class Presence:
    def __init__(self) -> None:
        self._apps: dict[str, dict[Identity, Block]] = {}
        self._answers: dict[str, bytes] = {}  # app -> encoded find answer, dropped on change

    def __len__(self) -> int:
        return sum(len(blocks) for blocks in self._apps.values())

    def __iter__(self) -> Iterator[Block]:
        for blocks in list(self._apps.values()):
            yield from list(blocks.values())

    def get(self, ident: Identity) -> Block | None:
        return self._apps.get(ident.app, {}).get(ident)

    def put(self, block: Block) -> None:
        self._apps.setdefault(block.identity.app, {})[block.identity] = block
        self._answers.pop(block.identity.app, None)

    def refresh(self, block: Block, info: dict[str, Any]) -> None:
        """A heartbeat: alive now; the find answer changes only if the block's details did."""
        block.last_seen = time.monotonic()
        if info != block.info:
            block.info = info
            self._answers.pop(block.identity.app, None)

    def remove(self, ident: Identity) -> None:
        blocks = self._apps.get(ident.app)
        if blocks is not None and blocks.pop(ident, None) is not None:
            self._answers.pop(ident.app, None)
            if not blocks:
                del self._apps[ident.app]

    def expired(self, older_than: float) -> list[Identity]:
        return [block.identity for block in self if block.last_seen < older_than]

    def find(self, app: str) -> bytes:
        answer = self._answers.get(app)
        if answer is None:
            blocks = sorted(self._apps.get(app, {}).values(), key=lambda b: b.identity.jid)
            answer = encode(
                {
                    "code": 0,
                    "app": app,
                    "jids": [b.identity.jid for b in blocks],
                    "blocks": [b.describe() for b in blocks],
                }
            )
            self._answers[app] = answer
        return answer
