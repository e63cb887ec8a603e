"""Directs and channels: one-way messages, kept off the API path (own subscriptions, own callbacks).

Subjects (sender identity = the last three tokens, which only that sender may publish)::

    nx.dm.<to_app>.<app>.<uid>.<res>                          direct to one worker of to_app (queue group)
    nx.to.<to_app>.<to_uid>.<to_res>.dm.<app>.<uid>.<res>     direct to one named block
    nx.ch.<channel>.<app>.<uid>.<res>                         channel broadcast

A direct is sent as a request: the receiving worker acknowledges it (``{"code": 0}``, or an
error such as ``forbidden``) as soon as it arrives, before its handlers run, and NATS answers
"no responders" when no worker is subscribed, so the sender always learns whether the message
was taken, however long the handlers take. Each intake (the directs, and each channel) is a
*lane*: a queue drained by one owned task, so its handlers run one after another in arrival
order (NATS keeps the order of one sender's messages) without holding up the acknowledgements.
A lane holds at most ``LANE_LIMIT`` messages: a direct beyond that is refused with ``busy``
(the sender knows), a channel message waits (NATS buffers it, as for any slow subscriber).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .._errors import Busy, Forbidden, InvalidBody, QEError, error_from_wire
from .._names import Identity, check_app, check_channel, parse_jid, to_subject
from .._wire import check_body, encode, encode_checked
from ._blocking import run_now, running_loop, submit
from ._client import NexusClient
from ._dispatch import Roles, run_handler
from ._specs import MessageSpecs

__all__ = ["DIRECT_TIMEOUT", "LANE_LIMIT", "MessageHandler", "Messaging", "MessagingMixin"]

log = logging.getLogger("qe.worker")

MessageHandler = Callable[[MessageSpecs], Awaitable[Any] | Any]
DIRECT_TIMEOUT = 5.0
LANE_LIMIT = 10_000
ACK = encode({"code": 0})


class _Lane:
    """One intake's messages, handled one after another, in arrival order, by one owned task.

    A deque and a wake-up future rather than an ``asyncio.Queue``: a lane sits on the path of
    every channel delivery, and the queue's bookkeeping cost more than the rest of a delivery.
    """

    def __init__(self, name: str, handlers: Callable[[], list[MessageHandler]]) -> None:
        self.name = name
        self.handlers = handlers
        self.items: deque[MessageSpecs] = deque()
        self._loop = asyncio.get_running_loop()
        self._wakeup: asyncio.Future[None] | None = None  # set while the task waits for messages
        self._idle = asyncio.Event()  # nothing queued and nothing being handled
        self._idle.set()
        self._room = asyncio.Event()  # below LANE_LIMIT
        self._room.set()
        self.task = self._loop.create_task(self._run(), name=f"qe:lane {name or 'directs'}")

    def full(self) -> bool:
        return len(self.items) >= LANE_LIMIT

    def put_nowait(self, specs: MessageSpecs) -> None:
        self.items.append(specs)
        self._idle.clear()
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def put(self, specs: MessageSpecs) -> None:
        """Queue ``specs``, waiting while the lane is full."""
        while self.full():
            self._room.clear()
            await self._room.wait()
        self.put_nowait(specs)

    async def _run(self) -> None:
        items = self.items
        while True:
            if not items:
                self._idle.set()
                self._wakeup = self._loop.create_future()
                try:
                    await self._wakeup
                finally:
                    self._wakeup = None
                continue
            specs = items.popleft()
            if not self._room.is_set() and len(items) < LANE_LIMIT:
                self._room.set()
            for handler in self.handlers():
                try:
                    await run_handler(handler, specs)
                except Exception:
                    log.exception("message handler %s failed", getattr(handler, "__qualname__", handler))

    async def close(self, deadline: float) -> None:
        """Let the queued messages be handled (``deadline`` seconds at most), then end the task."""
        try:
            await asyncio.wait_for(self._idle.wait(), deadline)
        except TimeoutError:
            log.warning("%d messages not handled after %g s: dropped", len(self.items), deadline)
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


class Messaging:
    """The direct and channel side of one worker: handlers, subscriptions, sending."""

    def __init__(self, client: NexusClient, roles: Roles, public: Callable[[], bool]) -> None:
        self.client = client
        self.me = client.identity
        self.roles = roles
        self._public = public
        self.receiver: MessageHandler | None = None
        self.direct_handlers: list[MessageHandler] = []
        self.channel_handlers: dict[str, list[MessageHandler]] = {}
        self.channels: dict[str, Subscription | None] = {}  # wanted channels, and their subscriptions
        self._subs: list[Subscription] = []
        self._lanes: dict[str, _Lane] = {}  # "" = directs, else a channel
        self._lock = asyncio.Lock()
        self.started = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to my directs and to every wanted channel."""
        nc, me = self.client.nc, self.me
        self._subs = [
            await nc.subscribe(f"nx.dm.{me.app}.>", queue=me.app, cb=self._on_direct),
            await nc.subscribe(f"nx.to.{me.tokens}.dm.>", queue=me.tokens, cb=self._on_direct_to_me),
        ]
        self.started = True
        for name in list(self.channels):
            await self._subscribe(name)
        await self.client.sync()

    async def stop(self, deadline: float = 10.0) -> None:
        """Stop intake, let the messages already taken be handled (under ``deadline``), end the lanes."""
        self.started = False
        subs = self._subs + [s for s in self.channels.values() if s is not None]
        self._subs = []
        self.channels = dict.fromkeys(self.channels)
        for sub in subs:
            try:
                await sub.unsubscribe()
            except Exception:
                log.debug("unsubscribe failed", exc_info=True)
        lanes, self._lanes = list(self._lanes.values()), {}
        await asyncio.gather(*(lane.close(deadline) for lane in lanes))

    def _lane(self, channel: str) -> _Lane:
        lane = self._lanes.get(channel)
        if lane is None:
            lane = self._lanes[channel] = _Lane(channel, lambda: self._handlers(channel))
        return lane

    def _handlers(self, channel: str) -> list[MessageHandler]:
        handlers = self.channel_handlers.get(channel, []) if channel else self.direct_handlers
        return [*handlers, *([self.receiver] if self.receiver is not None else [])]

    # -- channels --------------------------------------------------------------------------

    async def subscribe(self, name: str) -> None:
        """Receive channel ``name`` (idempotent); returns once the Nexus knows the subscription."""
        check_channel(name)
        self.channels.setdefault(name, None)
        if self.started:
            await self._subscribe(name)

    async def _subscribe(self, name: str) -> None:
        # one subscription per channel; the lock is held until the server has it, so a second
        # subscribe() of the same channel, running meanwhile, also returns only once it is in effect
        async with self._lock:
            if name not in self.channels or self.channels[name] is not None:
                return  # unsubscribed meanwhile, or subscribed already
            sub = await self.client.nc.subscribe(f"nx.ch.{name}.>", cb=self._on_channel)
            if name not in self.channels:  # unsubscribe() came while the server was asked
                await sub.unsubscribe()
                return
            self.channels[name] = sub
            await self.client.sync()

    def unwant(self, name: str) -> Subscription | None:
        """Forget channel ``name`` at once (a later start will not subscribe it); returns its subscription."""
        check_channel(name)
        return self.channels.pop(name, None)

    async def unsubscribe(self, name: str) -> None:
        sub = self.unwant(name)
        if sub is not None:
            await sub.unsubscribe()

    async def send_channel(self, name: str, data: bytes) -> None:
        await self.client.publish(f"nx.ch.{name}.{self.me.tokens}", data)

    # -- directs ---------------------------------------------------------------------------

    async def send_direct(self, app: str | None, data: bytes, jid: str | None, timeout: float) -> dict[str, Any]:
        """Deliver one direct; raises if no worker took it (or it was refused)."""
        if jid is not None:
            subject, target = to_subject(parse_jid(jid), "dm", self.me), jid
        else:
            target = check_app(app)
            subject = f"nx.dm.{target}.{self.me.tokens}"
        reply = await self.client.request(subject, data, timeout=timeout, target=target)
        if reply.get("code") != 0:
            raise error_from_wire(reply)
        return reply

    # -- intake ----------------------------------------------------------------------------

    async def _on_direct(self, msg: Msg) -> None:
        parts = msg.subject.split(".")
        if len(parts) == 6:
            await self._deliver(msg, "", Identity(parts[3], parts[4], parts[5]))

    async def _on_direct_to_me(self, msg: Msg) -> None:
        parts = msg.subject.split(".")
        if len(parts) == 9:
            await self._deliver(msg, "", Identity(parts[6], parts[7], parts[8]))

    async def _on_channel(self, msg: Msg) -> None:
        parts = msg.subject.split(".")
        if len(parts) == 6 and parts[2] in self.channels:  # not one unsubscribed a moment ago
            await self._deliver(msg, parts[2], Identity(parts[3], parts[4], parts[5]))

    async def _deliver(self, msg: Msg, channel: str, sender: Identity) -> None:
        role = self.roles.of(sender.uid)
        try:
            body = decode_body(msg.data)
            if not channel and not self._public() and role == "user":
                raise Forbidden()
        except QEError as exc:
            if msg.reply:
                await self._respond(msg.reply, encode(exc.to_wire()))
            else:
                log.warning("dropped a message on channel %r from %s: %s", channel, sender.jid, exc.message)
            return
        lane = self._lane(channel)
        if msg.reply and lane.full():
            busy = Busy(f"busy: {self.me.jid} has {LANE_LIMIT} directs waiting")
            await self._respond(msg.reply, encode(busy.to_wire()))
            return
        me = self.me
        itsme = sender == me
        specs = MessageSpecs(
            fromjid=sender.jid,
            body=body,
            role=role,
            channel=channel,
            app=sender.app,
            uid=sender.uid,
            resource=sender.resource,
            itsme=itsme,
            itsbro=not itsme and sender.uid == me.uid,
        )
        if msg.reply:
            lane.put_nowait(specs)  # room checked above, with no await in between
            await self._respond(msg.reply, ACK)
        else:
            await lane.put(specs)  # a channel message waits for room (NATS buffers the rest)

    async def _respond(self, reply: str, data: bytes) -> None:
        try:
            await self.client.publish(reply, data)
        except QEError as exc:
            log.debug("could not acknowledge a direct: %s", exc)


def decode_body(data: bytes) -> Any:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidBody(f"not valid JSON ({exc.msg})") from None
    if not isinstance(body, dict | list):
        raise InvalidBody(f"must be a JSON object or list, not {type(body).__name__}")
    return body


def encode_body(body: Any, max_payload: int) -> bytes:
    """A message body for the wire: JSON object or list only, refused here if it does not fit."""
    if body is None or not isinstance(body, dict | list):
        raise InvalidBody(f"must be a JSON object or list, not {type(body).__name__}")
    return encode_checked(check_body(body), max_payload)


class MessagingMixin:
    """``App.direct``, ``App.subscribe``, ``App.unsubscribe``, ``App.sendtochannel``.

    Each may be called from async code (returns a task to await, if you want to wait or see
    the error), at module level before ``run_forever`` (queued until the worker is online) or
    from a sync handler's thread. Bad input (a body that is not a JSON object or list, a bad
    channel name, a payload over the limit) raises at once, before anything is queued.
    """

    client: NexusClient
    _messaging: Messaging
    _loop: asyncio.AbstractEventLoop | None

    def _own_on(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], name: str, eager: bool = False
    ) -> asyncio.Task[Any]:
        raise NotImplementedError

    async def wait_ready(self, timeout: float | None = None) -> None:
        raise NotImplementedError

    def _online(self) -> bool:
        raise NotImplementedError

    def _sent(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """An already finished future: what a send that went out at once returns."""
        done: asyncio.Future[None] | None = getattr(self, "_sent_future", None)
        if done is None or done.get_loop() is not loop:
            done = loop.create_future()
            done.set_result(None)
            self._sent_future = done
        return done

    def direct(
        self, app: str | None = None, body: Any = None, jid: str | None = None, timeout: float = DIRECT_TIMEOUT
    ) -> Any:
        """Send ``body`` one way to one worker of ``app`` (or to the block ``jid``).

        Awaiting the result gives ``{"code": 0}`` once a worker took the message, or raises
        ``NoWorkerOnline``/``Forbidden``/``CallTimeout``; unawaited failures are logged.
        """
        if jid is None:
            check_app(app)
        else:
            parse_jid(jid)
        data = encode_body(body, self.client.max_payload)

        async def send() -> dict[str, Any]:
            await self.wait_ready()
            return await self._messaging.send_direct(app, data, jid, timeout)

        return submit(self._loop, self._own_on, send, f"direct to {jid or app}")

    def subscribe(self, channel: str) -> Any:
        """Receive the messages of ``channel`` (idempotent); await to know the Nexus has the subscription."""
        check_channel(channel)
        self._messaging.channels.setdefault(channel, None)

        async def go() -> None:
            await self.wait_ready()
            await self._messaging._subscribe(channel)  # nothing if unsubscribe() came meanwhile

        return submit(self._loop, self._own_on, go, f"subscribe to {channel}")

    def unsubscribe(self, channel: str) -> Any:
        """Stop receiving ``channel``; in effect at once for messages not yet delivered."""
        sub = self._messaging.unwant(channel)

        async def go() -> None:
            if sub is not None:
                await sub.unsubscribe()

        return submit(self._loop, self._own_on, go, f"unsubscribe {channel}")

    def sendtochannel(self, channel: str, body: Any) -> Any:
        """Broadcast ``body`` (a JSON object or list) to every subscriber of ``channel``."""
        check_channel(channel)
        data = encode_body(body, self.client.max_payload)
        loop = self._loop
        if self._online() and loop is not None and running_loop() is loop:
            # the common case, a worker sending from its own loop: straight into the send buffer
            subject = f"nx.ch.{channel}.{self._messaging.me.tokens}"
            return run_now(loop, self.client.publish(subject, data), self._own_on, self._sent(loop), "send")

        async def send() -> None:
            await self.wait_ready()
            await self._messaging.send_channel(channel, data)

        return submit(self._loop, self._own_on, send, f"send to channel {channel}")
