"""The connection to the Nexus: one nats-py client, its reply mux, and the one place where
nats-py errors become ours.

Calls use a single wildcard subscription ``_INBOX.<app>.<uid>.<random>.*`` (the credential may
only read its own inboxes). Each call has a random token; a reply with the status header 503
means no subscriber took the request (``no worker online``). Progress reports arrive on
``nx.to.<me>.prog.<worker>`` (the subject names the worker, enforced by the server): they are
handed to the call's ``on_progress`` and name the block running the call, which a caller that
gives up (timeout or cancellation) sends a cancel (``qe.bridge._longcalls``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import secrets
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .._errors import (
    CallTimeout,
    NexusUnavailable,
    NotAuthorized,
    NoWorkerOnline,
    PayloadTooLarge,
    QEError,
)
from .._keys import AppKey
from .._names import Identity, parse_jid
from .._wire import decode_object, encode

__all__ = ["ClientState", "NexusClient"]

log = logging.getLogger("qe.client")

ProgressCallback = Callable[[dict[str, Any]], Awaitable[None] | None]

CONNECT_TIMEOUT = 2.0
RECONNECT_WAIT = 0.5
ABANDON_TIMEOUT = 0.5


class ClientState(enum.Enum):
    NEW = "new"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class _Pending:
    __slots__ = ("future", "on_progress", "worker")

    def __init__(self, future: asyncio.Future[dict[str, Any]], on_progress: ProgressCallback | None) -> None:
        self.future = future
        self.on_progress = on_progress
        self.worker: str | None = None  # the jid of the block running the call, once it names itself


class NexusClient:
    """One authenticated connection, identified as ``identity``."""

    def __init__(
        self,
        identity: Identity,
        key: AppKey,
        servers: tuple[str, ...],
        *,
        name: str | None = None,
        tls_ca: Path | None = None,
    ) -> None:
        self.identity = identity
        self._key = key
        self._servers = servers
        self._tls_ca = tls_ca
        self._name = name or identity.jid
        self.nc = NatsClient()
        self.state = ClientState.NEW
        self._pending: dict[str, _Pending] = {}
        self._mux_prefix = f"{identity.inbox_prefix}.{secrets.token_hex(8)}."
        self._mux_sub: Subscription | None = None
        self._refused: Exception | None = None  # the server's "Authorization Violation", if any
        self.on_connect: list[Callable[[], Awaitable[None]]] = []
        self.on_disconnect: list[Callable[[], Awaitable[None]]] = []
        self.on_reconnect: list[Callable[[], Awaitable[None]]] = []

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self, *, reconnect: bool = True) -> None:
        try:
            await self.nc.connect(
                servers=list(self._servers),
                name=self._name,
                nkeys_seed_str=self._key.seed,
                tls=self._tls_context(),
                inbox_prefix=self.identity.inbox_prefix,
                connect_timeout=int(CONNECT_TIMEOUT),
                allow_reconnect=reconnect,
                # nats-py retries a first connect forever unless this is positive; we want a
                # short first try over the servers, and endless reconnects once connected
                max_reconnect_attempts=1,
                reconnect_time_wait=RECONNECT_WAIT,  # type: ignore[arg-type]
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
                closed_cb=self._on_closed,
                ping_interval=10,
                max_outstanding_pings=2,
                # every subject we publish is built from names checked in qe._names
                skip_subject_validation=True,
            )
        except Exception as exc:
            # nats-py may leave reconnect machinery running after a failed first connect
            await self._abandon()
            # nats-py ends a failed first connect with "no servers available"; the reason came earlier
            cause = self._refused if self._refused is not None else exc
            raise translate_connect_error(cause, self._servers) from exc
        if reconnect:
            self.nc.options["max_reconnect_attempts"] = -1
        self.state = ClientState.CONNECTED
        self._mux_sub = await self.nc.subscribe(self._mux_prefix + "*", cb=self._on_reply)
        await self.nc.subscribe(f"nx.to.{self.identity.tokens}.prog.>", cb=self._on_progress)
        for cb in self.on_connect:
            await cb()

    def _tls_context(self) -> ssl.SSLContext | None:
        """Verify the server for ``tls://`` addresses (trusting ``tls_ca`` if given)."""
        wants_tls = any(urlparse(u).scheme in {"tls", "wss"} for u in self._servers)
        if not wants_tls and self._tls_ca is None:
            return None
        from .._tls import client_context  # only TLS users pay for its imports (worker RSS)

        return client_context(self._tls_ca)

    async def _abandon(self) -> None:
        try:
            # bounded: after a failed TLS handshake nats-py's close() waits for a transport that never ends
            await asyncio.wait_for(self.nc.close(), ABANDON_TIMEOUT)
        except Exception:  # the connection never came up; nothing to close cleanly
            log.debug("closing a failed connection", exc_info=True)
        self.nc = NatsClient()

    async def close(self) -> None:
        """Drain subscriptions and close; idempotent."""
        if self.state is ClientState.CLOSED:
            return
        never_connected = self.state is ClientState.NEW  # a failed connect left a fresh nats client
        self.state = ClientState.CLOSED
        if never_connected:
            return  # nats-py's close() asserts on a client that never connected
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(NexusUnavailable("connection closed"))
        self._pending.clear()
        if self.nc.is_connected:
            try:
                await self.nc.drain()
            except Exception:
                log.debug("drain failed; closing", exc_info=True)
        if not self.nc.is_closed:
            await self.nc.close()

    async def sync(self) -> None:
        """Return once nats-server has processed everything sent so far (subscriptions included).

        nats-py 2.16 writes a flush's PING straight to the socket, ahead of commands still in its
        buffer, so a single ``flush()`` can return before the server has a SUB (messages published
        right then by others are lost). By the time that first PONG is read, the buffer has been
        written; the second PING therefore travels behind every earlier command.
        """
        await self.nc.flush()
        await self.nc.flush()

    @property
    def max_payload(self) -> int:
        return self.nc.max_payload or 1024 * 1024

    # -- callbacks from nats-py ------------------------------------------------------------

    async def _on_error(self, exc: Exception) -> None:
        text = str(exc)
        if "Permissions Violation" in text or "permissions violation" in text.lower():
            log.warning("the Nexus refused an operation: %s", text.strip("'"))
        elif "authorization violation" in text.lower():
            if self._refused is None and self.state is not ClientState.NEW:
                log.error("the Nexus refuses this key (%s): it was revoked or rotated", self._key)
            self._refused = exc
        elif isinstance(exc, nats.errors.StaleConnectionError | ConnectionRefusedError | OSError):
            log.debug("connection error: %s", exc)
        else:
            log.debug("nats error: %r", exc)

    async def _on_disconnected(self) -> None:
        if self.state is ClientState.CONNECTED:
            self.state = ClientState.RECONNECTING
            log.warning("disconnected from the Nexus; reconnecting")
            for cb in self.on_disconnect:
                await cb()

    async def _on_reconnected(self) -> None:
        if self.state is ClientState.CLOSED:
            return
        self.state = ClientState.CONNECTED
        log.info("reconnected to the Nexus at %s", self.nc.connected_url.netloc if self.nc.connected_url else "?")
        for cb in self.on_reconnect:
            await cb()

    async def _on_closed(self) -> None:
        self.state = ClientState.CLOSED

    # -- calls -----------------------------------------------------------------------------

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject[len(self._mux_prefix) :]
        pending = self._pending.get(token)
        if pending is None or pending.future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            pending.future.set_exception(NoWorkerOnline(""))
            return
        try:
            pending.future.set_result(decode_object(msg.data, "reply", limit_depth=False))
        except QEError as exc:
            pending.future.set_exception(exc)

    async def _on_progress(self, msg: Msg) -> None:
        """``nx.to.<me>.prog.<worker>``: a worker reports on a call of ours (or that it took it)."""
        parts = msg.subject.split(".")
        if len(parts) != 9:
            return
        try:
            report = decode_object(msg.data, "progress")
        except QEError:
            return
        reply = report.get("reply")
        if not isinstance(reply, str) or not reply.startswith(self._mux_prefix):
            return
        pending = self._pending.get(reply[len(self._mux_prefix) :])
        if pending is None or pending.future.done():
            return
        worker = Identity(parts[6], parts[7], parts[8]).jid
        if pending.worker is None:
            pending.worker = worker
        elif pending.worker != worker:
            return  # only the block that took the call reports on it
        if "progress" in report and pending.on_progress is not None:
            try:
                result = pending.on_progress(report["progress"])
                if result is not None:
                    await result
            except Exception:
                log.exception("on_progress callback failed")

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        timeout: float,
        target: str,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Send ``data`` to ``subject`` and wait for the one final reply."""
        if len(data) > self.max_payload:
            raise PayloadTooLarge(len(data), self.max_payload)
        if self.state is ClientState.CLOSED or self.state is ClientState.NEW:
            raise NexusUnavailable("not connected")
        # unguessable: a worker sees one reply inbox, it must not be able to name our others
        token = os.urandom(6).hex()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        # a timer on the future itself: cheaper than asyncio.wait_for on this hot path
        timer = loop.call_later(timeout, _expire, future)
        self._pending[token] = _Pending(future, on_progress)
        try:
            try:
                await self.nc.publish(subject, data, reply=self._mux_prefix + token)
            except Exception as exc:
                raise translate_publish_error(exc) from exc
            try:
                return await future
            except TimeoutError:
                await self._give_up(subject, token)
                if self.state is ClientState.RECONNECTING:
                    raise NexusUnavailable(
                        f"no answer from {target} within {timeout:g} s: the connection to the Nexus is down"
                    ) from None
                raise CallTimeout(target, timeout) from None
            except asyncio.CancelledError:
                await self._give_up(subject, token)
                raise
            except NoWorkerOnline:
                raise NoWorkerOnline(target) from None
        finally:
            timer.cancel()
            self._pending.pop(token, None)

    async def _give_up(self, subject: str, token: str) -> None:
        """Tell the block running this call that nobody waits any more, so it cancels the call.

        Best effort: the block is known from the jid the call targeted, or from the first
        progress/accepted message (see ``qe.bridge._longcalls``).
        """
        pending = self._pending.get(token)
        parts = subject.split(".")
        me = self.identity.tokens
        if pending is not None and pending.worker is not None:
            try:
                cancel = f"nx.to.{parse_jid(pending.worker).tokens}.cancel.{me}"
            except QEError:
                return
        elif len(parts) == 9 and parts[1] == "to" and parts[5] == "api":
            cancel = f"nx.to.{'.'.join(parts[2:5])}.cancel.{me}"
        elif len(parts) == 6 and parts[1] == "api":
            # nobody has said yet which worker took it (short calls never do): every worker of
            # the app hears this, and the one running the call cancels it
            cancel = f"nx.cx.{parts[2]}.{me}"
        else:
            return
        data = encode({"reply": self._mux_prefix + token})
        try:
            await self.nc.publish(cancel, data)
        except Exception:
            log.debug("could not send a cancel (%s)", cancel, exc_info=True)

    async def publish(self, subject: str, data: bytes) -> None:
        if len(data) > self.max_payload:
            raise PayloadTooLarge(len(data), self.max_payload)
        try:
            await self.nc.publish(subject, data)
        except Exception as exc:
            raise translate_publish_error(exc) from exc


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def translate_connect_error(exc: BaseException, servers: tuple[str, ...]) -> QEError:
    where = ", ".join(servers)
    text = str(exc)
    if "authorization" in text.lower():
        return NotAuthorized(f"the Nexus at {where} refused this key (unknown, rotated or revoked)")
    if isinstance(exc, ssl.SSLError) or "certificate" in text.lower() or "tls" in text.lower():
        reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or type(exc).__name__
        return NexusUnavailable(
            f"TLS with the Nexus at {where} failed ({reason}); use a tls:// address and trust its CA "
            "(tls_ca in qe.toml or QE_TLS_CA)"
        )
    return NexusUnavailable(f"cannot reach the Nexus at {where}")


def translate_publish_error(exc: BaseException) -> QEError:
    if isinstance(exc, nats.errors.MaxPayloadError):
        return NexusUnavailable(f"the Nexus refused the message size: {exc}")
    if isinstance(exc, nats.errors.ConnectionClosedError | nats.errors.ConnectionDrainingError):
        return NexusUnavailable("connection closed")
    if isinstance(exc, nats.errors.OutboundBufferLimitError):
        return NexusUnavailable("disconnected from the Nexus and the send buffer is full")
    return NexusUnavailable(f"{type(exc).__name__}: {exc}")
