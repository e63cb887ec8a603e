"""Helpers for the security tests: raw nats-py clients (the attacker's tools) and async waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from qe._keys import AppKey
from qe.testing import Nexus


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> None:
    """Wait (without blocking the loop) until ``predicate()`` is truthy."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


async def eventually_async(check: Callable[[], Awaitable[bool]], timeout: float = 5.0, what: str = "condition") -> None:
    """Like :func:`eventually` for a check that has to await (e.g. make a call)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)


class Raw:
    """A raw nats-py connection holding a real key: what an attacker with that key can write."""

    def __init__(self, key: AppKey) -> None:
        self.key = key
        self.errors: list[str] = []
        self.disconnected = asyncio.Event()
        self.nc: Client | None = None

    async def connect(self, url: str, **options: Any) -> Raw:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        async def on_disconnect() -> None:
            self.disconnected.set()

        self.nc = await nats.connect(
            url,
            nkeys_seed_str=self.key.seed,
            inbox_prefix=f"_INBOX.{self.key.app}.{self.key.uid}",
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            allow_reconnect=False,
            **options,
        )
        return self

    @property
    def conn(self) -> Client:
        assert self.nc is not None
        return self.nc

    def violations(self, subject: str) -> list[str]:
        return [e for e in self.errors if "permissions violation" in e.lower() and subject.lower() in e.lower()]

    async def expect_violation(self, subject: str) -> str:
        await self.conn.flush()
        await eventually(lambda: self.violations(subject), what=f"a permissions violation for {subject}")
        return self.violations(subject)[0]

    async def close(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()


class Inbox:
    """A subscription that collects what it receives."""

    def __init__(self) -> None:
        self.messages: list[Msg] = []

    async def cb(self, msg: Msg) -> None:
        self.messages.append(msg)

    @property
    def subjects(self) -> list[str]:
        return [m.subject for m in self.messages]


def add_user(nexus: Nexus, uid: str) -> str:
    nexus.registry.add_user(uid)
    return uid
