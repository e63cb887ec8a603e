"""Connection limits per key, enforced by the control plane.

nats-server has no per-user connection limit for users of its config file (only per account,
and every key shares one account so that apps can call each other). So the control plane
watches the server's own connection events, from a user of the system account
(``$SYS.ACCOUNT.$G.CONNECT`` / ``DISCONNECT``, each naming the connection's public key and
id), counts the open connections of each key, and closes those beyond the key's limit with
the server's kick request (``$SYS.REQ.SERVER.<id>.KICK``).

A connection over the limit is closed after ``GRACE`` seconds, not at once: a worker
registers within that time, and its register is refused with a clear ``429 busy: too many
connections`` (see :meth:`ConnectionLimits.check_register`) instead of leaving it to
reconnect in silence. A raw client that never registers is simply closed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from .._errors import Busy, QEError
from .._wire import decode_object, encode
from ._registry import Registry

__all__ = ["GRACE", "ConnectionLimits"]

log = logging.getLogger("qe.nexusd.limits")

GRACE = 1.0  # seconds an over-limit connection lives: enough for its register to be answered
SEEN_WAIT = 0.5  # how long a register waits for its connection's event
REQUEST_TIMEOUT = 2.0
EVENTS = "$SYS.ACCOUNT.$G.{}"


@dataclass
class _Conn:
    server: str
    key: str
    name: str
    over: bool = False


@dataclass
class _Seen:
    """Connections by (server, cid); a waiter per cid a register is waiting for."""

    conns: dict[int, _Conn] = field(default_factory=dict)
    by_key: dict[str, list[int]] = field(default_factory=dict)
    waiters: dict[int, asyncio.Event] = field(default_factory=dict)


class ConnectionLimits:
    """Count connections per key from server events; close those beyond each key's limit."""

    def __init__(self, registry: Registry, servers: tuple[str, ...], tls: Any = None) -> None:
        self.registry = registry
        self._servers = servers
        self._tls = tls
        self.nc = NatsClient()
        self._seen = _Seen()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connected = False

    async def start(self) -> None:
        await self.nc.connect(
            servers=list(self._servers),
            name="qe-nexusd-limits",
            nkeys_seed_str=self.registry.system_key().seed,
            tls=self._tls,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,  # type: ignore[arg-type]
            reconnected_cb=self._resync,
            error_cb=self._on_error,
        )
        self._connected = True
        await self.nc.subscribe(EVENTS.format("CONNECT"), cb=self._on_connect)
        await self.nc.subscribe(EVENTS.format("DISCONNECT"), cb=self._on_disconnect)
        await self.nc.flush()
        await self._resync()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._connected and not self.nc.is_closed:
            await self.nc.close()

    async def _on_error(self, exc: Exception) -> None:
        log.debug("system connection: %s", exc)

    # -- counting --------------------------------------------------------------------------

    async def _resync(self) -> None:
        """Rebuild the counts from the server's connection list (at start, after a reconnect)."""
        try:
            msg = await self.nc.request(
                "$SYS.REQ.SERVER.PING.CONNZ", encode({"auth": True, "limit": 1_000_000}), timeout=REQUEST_TIMEOUT
            )
            data = decode_object(msg.data, "connz", limit_depth=False).get("data") or {}
        except (QEError, nats.errors.Error, TimeoutError) as exc:
            log.warning("could not list the open connections: %s", exc)
            return
        server = str(data.get("server_id", ""))
        self._seen = _Seen(waiters=self._seen.waiters)
        for conn in data.get("connections") or []:
            if isinstance(conn, dict) and conn.get("account", "$G") == "$G":
                self._add(server, conn.get("cid"), conn.get("authorized_user"), conn.get("name"))

    async def _on_connect(self, msg: Msg) -> None:
        server, client = _event(msg)
        self._add(server, client.get("id"), client.get("user"), client.get("name"))

    async def _on_disconnect(self, msg: Msg) -> None:
        _, client = _event(msg)
        cid = client.get("id")
        conn = self._seen.conns.pop(cid, None) if isinstance(cid, int) else None
        if conn is not None:
            cids = self._seen.by_key.get(conn.key, [])
            if cid in cids:
                cids.remove(cid)
            if not cids:
                self._seen.by_key.pop(conn.key, None)

    def _add(self, server: str, cid: object, key: object, name: object) -> None:
        if not isinstance(cid, int) or not isinstance(key, str):
            return
        self.registry.refresh()  # limits as the registry says now (``qe key limit`` a moment ago)
        conn = _Conn(server, key, name if isinstance(name, str) else "")
        self._seen.conns[cid] = conn
        cids = self._seen.by_key.setdefault(key, [])
        cids.append(cid)
        limit = self.registry.connection_limit(key)
        if limit is not None and len(cids) > limit:
            self._refuse(cid, conn, limit)
        waiter = self._seen.waiters.pop(cid, None)
        if waiter is not None:
            waiter.set()

    def _refuse(self, cid: int, conn: _Conn, limit: int) -> None:
        conn.over = True
        info = self.registry.keys().get(conn.key, {})
        log.warning(
            "%s@%s has more than %d connections open with one key; closing connection %d (%s)",
            info.get("uid", "?"),
            info.get("app", "?"),
            limit,
            cid,
            conn.name or "unnamed",
        )
        task = asyncio.get_running_loop().create_task(self._kick_later(cid, conn), name=f"nexusd:kick:{cid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _kick_later(self, cid: int, conn: _Conn) -> None:
        await asyncio.sleep(GRACE)
        if self._seen.conns.get(cid) is not conn:
            return  # already gone
        try:
            await self.nc.request(f"$SYS.REQ.SERVER.{conn.server}.KICK", encode({"cid": cid}), timeout=REQUEST_TIMEOUT)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("could not close connection %d: %s", cid, exc)

    def enforce(self) -> None:
        """After a registry change: close the newest connections of keys now beyond their limit."""
        for key, cids in list(self._seen.by_key.items()):
            limit = self.registry.connection_limit(key)
            if limit is None:
                continue
            for cid in cids[limit:]:
                conn = self._seen.conns[cid]
                if not conn.over:
                    self._refuse(cid, conn, limit)

    # -- for the control plane -------------------------------------------------------------

    async def check_register(self, cid: object) -> None:
        """Refuse a worker's register when its connection is one too many for its key."""
        if not isinstance(cid, int) or isinstance(cid, bool):
            return  # an older SDK: its connection is still closed if over the limit
        conn = self._seen.conns.get(cid)
        if conn is None:  # its connect event may still be on its way
            waiter = self._seen.waiters.setdefault(cid, asyncio.Event())
            try:
                await asyncio.wait_for(waiter.wait(), SEEN_WAIT)
            except TimeoutError:
                return
            finally:
                self._seen.waiters.pop(cid, None)
            conn = self._seen.conns.get(cid)
        if conn is not None and conn.over:
            limit = self.registry.connection_limit(conn.key)
            app = self.registry.keys().get(conn.key, {}).get("app", "<app>")
            raise Busy(
                f"busy: too many connections with this key (its limit is {limit}); stop another block "
                f"using it, or raise the limit with 'qe key limit {app} <n>'"
            )


def _event(msg: Msg) -> tuple[str, dict[str, Any]]:
    try:
        event = decode_object(msg.data, "server event", limit_depth=False)
    except QEError:
        return "", {}
    server = event.get("server")
    client = event.get("client")
    return (
        str(server.get("id", "")) if isinstance(server, dict) else "",
        client if isinstance(client, dict) else {},
    )
