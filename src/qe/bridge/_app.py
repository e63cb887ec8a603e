"""``App``: one python worker block on the Nexus."""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from .. import __version__
from .._config import DEFAULT_REST_PORT, WorkerSettings, is_loopback_url
from .._errors import (
    Busy,
    CallTimeout,
    ConfigError,
    DuplicateResource,
    NexusUnavailable,
    NoWorkerOnline,
    QEError,
    error_from_wire,
)
from .._names import Identity, api_subject, check_app, parse_jid, sys_subject, to_subject
from .._wire import check_body, decode_object, encode, encode_checked
from ._blocking import InLoop, run_blocking, running_loop
from ._client import NexusClient, ProgressCallback
from ._dispatch import Dispatcher, Handler
from ._events import EventsMixin
from ._longcalls import LongCalls
from ._messaging import MessageHandler, Messaging, MessagingMixin

__all__ = ["App", "AppState"]

log = logging.getLogger("qe.worker")

HEARTBEAT_INTERVAL = 1.0
REGISTER_TIMEOUT = 5.0
STOP_DEADLINE = 10.0
CONTROL_PLANE_WAIT_LOG_EVERY = 10.0
READY_WAIT = 30.0  # how long a blocking find/api waits for the worker to come online
_EAGER = sys.version_info >= (3, 12)


class AppState(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"


class _Xmpp:
    """The guide's ``App.xmpp``: assign ``onapi`` (API calls) and ``msgreceiver`` (every direct and channel message)."""

    def __init__(self, dispatcher: Dispatcher, messaging: Messaging) -> None:
        self._dispatcher = dispatcher
        self._messaging = messaging

    @property
    def msgreceiver(self) -> MessageHandler | None:
        return self._messaging.receiver

    @msgreceiver.setter
    def msgreceiver(self, handler: MessageHandler | None) -> None:
        self._messaging.receiver = handler

    @property
    def onapi(self) -> Handler | None:
        return self._dispatcher.fallback

    @onapi.setter
    def onapi(self, handler: Handler | None) -> None:
        self._dispatcher.fallback = handler


class _Nexus:
    """Decorators: ``@App.nexus.API("cmd")`` (wins over ``App.xmpp.onapi``), ``@App.nexus.Direct()``,
    ``@App.nexus.Channel("name")`` (subscribes to the channel too)."""

    def __init__(self, dispatcher: Dispatcher, messaging: Messaging, subscribe: Callable[[str], Any]) -> None:
        self._dispatcher = dispatcher
        self._messaging = messaging
        self._subscribe = subscribe

    def Direct(self) -> Callable[[MessageHandler], MessageHandler]:  # noqa: N802 - the guide's name
        def register(handler: MessageHandler) -> MessageHandler:
            self._messaging.direct_handlers.append(handler)
            return handler

        return register

    def Channel(self, name: str) -> Callable[[MessageHandler], MessageHandler]:  # noqa: N802 - the guide's name
        self._subscribe(name)

        def register(handler: MessageHandler) -> MessageHandler:
            self._messaging.channel_handlers.setdefault(name, []).append(handler)
            return handler

        return register

    def API(self, cmd: str) -> Callable[[Handler], Handler]:  # noqa: N802 - the guide's name
        if not isinstance(cmd, str) or not cmd:
            raise ValueError("@App.nexus.API needs a command name")

        def register(handler: Handler) -> Handler:
            self._dispatcher.commands[cmd] = handler
            return handler

        return register


class App(EventsMixin, MessagingMixin):
    """A python worker: joins the Nexus as ``uid@app/resource`` and serves API calls.

    Created at module level (the guide's way) it starts itself when the event loop runs.
    Created inside a running loop, call ``await app.start()`` (or ``async with app``).
    """

    def __init__(
        self,
        resource: str | None = None,
        public: bool | None = None,
        rest: bool | int | None = None,
        *,
        app: str | None = None,
        securekey: str | None = None,
        key: str | None = None,
        nexus: str | list[str] | None = None,
        image: str | None = None,
        concurrency: int | None = None,
        autostart: bool = True,
        autostart_nexus: bool = True,
    ) -> None:
        code = {
            "resource": resource,
            "public": public,
            "rest": rest,
            "app": app,
            "key": key or securekey,
            "nexus": nexus,
            "image": image,
            "concurrency": concurrency,
        }
        self.settings = WorkerSettings.build(code)
        self.identity = Identity(self.settings.app, self.settings.key.uid, self.settings.resource)
        self.state = AppState.NEW
        self.instance = secrets.token_hex(8)
        self.client = NexusClient(self.identity, self.settings.key, self.settings.nexus, tls_ca=self.settings.tls_ca)
        self._dispatcher = Dispatcher(
            public=self.settings.public,
            concurrency=self.settings.concurrency,
            publish=self.client.publish,
            max_payload=lambda: self.client.max_payload,
        )
        self._dispatcher.me = self.identity.tokens
        self._messaging = Messaging(self.client, self._dispatcher.roles, lambda: self.settings.public)
        self._longcalls = LongCalls(self._dispatcher, self.client)
        self.xmpp = _Xmpp(self._dispatcher, self._messaging)
        self.nexus = _Nexus(self._dispatcher, self._messaging, self.subscribe)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready_evt = asyncio.Event()
        self._events: dict[str, list[Callable[[], Any]]] = {}
        self._rest: Any = None
        self._autostart_nexus = autostart_nexus
        self._since = time.time()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subs: list[Any] = []
        self._stopped: asyncio.Event | None = None
        self.start_task: asyncio.Task[None] | None = None
        self._served = False  # came online at least once (a refused start never did)
        self.client.on_reconnect.append(self._on_reconnected)
        self.client.on_disconnect.append(self._on_disconnected)
        if autostart:
            from ._runner import autostart as _autostart

            _autostart(self)

    # -- identity --------------------------------------------------------------------------

    @property
    def jid(self) -> str:
        return self.identity.jid

    @property
    def app(self) -> str:
        return self.identity.app

    @property
    def resource(self) -> str:
        return self.identity.resource

    def __repr__(self) -> str:
        return f"<App {self.jid} {self.state.value}>"

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect, claim the resource, subscribe; returns when the worker is serving."""
        if self.state is not AppState.NEW:
            raise RuntimeError(f"start() called on a {self.state.value} App")
        self.state = AppState.STARTING
        self._stopped = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        await self._connect()
        await self._register()
        me = self.identity
        self._subs = [
            await self.client.nc.subscribe(f"nx.api.{me.app}.>", queue=me.app, cb=self._dispatcher.on_api),
            # a queue group even for my own name: if two instances ever held it, a call still runs once
            await self.client.nc.subscribe(f"nx.to.{me.tokens}.api.>", queue=me.tokens, cb=self._dispatcher.on_to_me),
            # "are you there?" from the control plane: answered here, never queued behind busy handlers
            await self.client.nc.subscribe(f"nx.to.{me.tokens}.live.>", cb=self._on_live),
            await self.client.nc.subscribe(self._longcalls.cancel_subject, cb=self._longcalls.on_cancel),
            await self.client.nc.subscribe(self._longcalls.app_cancel_subject, cb=self._longcalls.on_cancel),
            # owner/partner changes from the control plane (roles of later callers)
            await self.client.nc.subscribe(f"nx.evt.{me.app}.app", cb=self._on_app_event),
        ]
        await self._messaging.start()
        if self.settings.rest is not None or self._rest is not None:
            await self._rest_server().start()
        self._own(self._heartbeat(), "heartbeat")
        self._own(self._longcalls.sweep(), "long calls")
        self.state = AppState.READY
        self._served = True
        self._ready_evt.set()
        self._fire("__connect")
        log.info("%s is online (app %s, %s)", self.jid, me.app, "public" if self.settings.public else "private")

    async def stop(self) -> None:
        """Ordered shutdown: stop intake, finish in-flight calls, say goodbye, close. Idempotent."""
        if self.state in (AppState.STOPPING, AppState.STOPPED):
            if self._stopped is not None:
                await self._stopped.wait()
            return
        started = self.state is not AppState.NEW
        self.state = AppState.STOPPING
        if started:
            self._dispatcher.accepting = False
            for sub in self._subs:
                try:
                    await sub.unsubscribe()
                except Exception:
                    log.debug("unsubscribe failed", exc_info=True)
            await self._messaging.stop()
            if self._rest is not None:
                await self._rest.stop()
            if not await self._dispatcher.wait_idle(STOP_DEADLINE):
                log.warning(
                    "%d calls still running after %g s; cancelling them", self._dispatcher.inflight, STOP_DEADLINE
                )
                for task in list(self._dispatcher.tasks):
                    task.cancel()
            if self.client.nc.is_connected:
                try:
                    await self.client.publish(sys_subject("bye", self.identity), encode({"instance": self.instance}))
                except QEError:
                    log.debug("could not say goodbye", exc_info=True)
        if self._ready_evt.is_set():
            self._ready_evt.clear()
            await asyncio.gather(*self._fire("__disconnect"))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._dispatcher.tasks, return_exceptions=True)
        await self.client.close()
        self.state = AppState.STOPPED
        if self._stopped is not None:
            self._stopped.set()
        if self._served:
            log.info("%s stopped", self.jid)

    async def ready(self) -> None:
        """Wait until the worker serves (starting it if nobody has)."""
        if self.start_task is not None:
            await self.start_task
        elif self.state is AppState.NEW:
            await self.start()

    async def wait_stopped(self) -> None:
        if self._stopped is None:
            self._stopped = asyncio.Event()
        await self._stopped.wait()

    def _own(self, coro: Any, name: str) -> asyncio.Task[Any]:
        return self._own_on(asyncio.get_running_loop(), coro, name)

    def _own_on(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], name: str, eager: bool = False
    ) -> asyncio.Task[Any]:
        if eager and _EAGER:  # 3.12+: run at once; a send that need not wait never yields to the loop
            task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, name=f"qe:{name}", eager_start=True)  # type: ignore[call-arg]
            if task.done():
                return task
        else:
            task = loop.create_task(coro, name=f"qe:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _online(self) -> bool:
        return self.state is AppState.READY

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the worker is online (``timeout`` seconds at most: then ``NexusUnavailable``)."""
        if self.state is AppState.READY:
            return
        if self.state in (AppState.STOPPING, AppState.STOPPED):
            raise NexusUnavailable(f"{self.jid} has stopped")
        try:
            await asyncio.wait_for(self._ready_evt.wait(), timeout)
        except TimeoutError:
            raise NexusUnavailable(f"{self.jid} did not come online within {timeout:g} s") from None

    async def _on_disconnected(self) -> None:
        if self._ready_evt.is_set():
            self._ready_evt.clear()
            self._fire("__disconnect")

    # -- REST ------------------------------------------------------------------------------

    @property
    def rest(self) -> Any:
        """The worker's FastAPI app (``@App.rest.get("/")``), served on the ``rest`` port.

        Used before the worker starts with no ``rest=`` given, it is served on port 8000 (as the
        QE docs' examples expect); ``rest=False`` refuses it.
        """
        return self._rest_server().app

    def _rest_server(self) -> Any:
        if self._rest is None:
            port = self.settings.rest
            if port is None:
                # the QE docs use App.rest with no rest= given: serve it on the default port then
                if self.settings.rest_off:
                    raise ConfigError("App.rest needs a port: this worker has rest=False; use App(rest=8000)")
                if self.state is not AppState.NEW:
                    raise ConfigError(
                        "App.rest needs a port: set its routes before the worker starts (it then serves on "
                        f"{DEFAULT_REST_PORT}), or create it with App(rest=PORT)"
                    )
                port = DEFAULT_REST_PORT
            from ._rest import RestServer

            self._rest = RestServer(port, title=self.jid)
        return self._rest

    async def _connect(self) -> None:
        urls = self.settings.nexus
        local = all(is_loopback_url(u) for u in urls)
        waited_since = time.monotonic()
        last_log = 0.0
        tried_autostart = False
        while True:
            try:
                await self.client.connect()
                return
            except NexusUnavailable:
                if local and self._autostart_nexus and not tried_autostart:
                    tried_autostart = True
                    from ._autostart import start_local_nexus

                    log.info("no Nexus at %s; starting the local one", ", ".join(urls))
                    await start_local_nexus(urls[0], self.settings.home)
                    continue
                now = time.monotonic()
                if now - last_log >= CONTROL_PLANE_WAIT_LOG_EVERY:
                    log.warning("waiting for the Nexus at %s (%.0f s so far)", ", ".join(urls), now - waited_since)
                    last_log = now
                await asyncio.sleep(1.0)

    def _presence(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "public": self.settings.public,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": self._since,
            "inflight": self._dispatcher.inflight,
            "version": __version__,
        }

    async def _register(self) -> None:
        """Claim ``uid@app/resource``; refused if another live block holds it."""
        waited = time.monotonic()
        while True:
            try:
                reply = await self.client.request(
                    sys_subject("register", self.identity),
                    # the connection's id: a key over its connection limit is refused by name
                    encode({**self._presence(), "cid": self.client.nc.client_id}),
                    timeout=REGISTER_TIMEOUT,
                    target="the control plane",
                )
                break
            except (NoWorkerOnline, CallTimeout):
                if time.monotonic() - waited > REGISTER_TIMEOUT:
                    log.warning("the Nexus has no control plane answering yet; still trying")
                    waited = time.monotonic()
                await asyncio.sleep(0.5)
        if reply.get("code") != 0:
            raise error_from_wire(reply)
        self._dispatcher.roles.update(reply)

    async def _on_live(self, msg: Any) -> None:
        if msg.reply:
            try:
                await self.client.publish(msg.reply, encode({"code": 0, "instance": self.instance}))
            except QEError as exc:
                log.debug("could not answer a liveness check: %s", exc)

    async def _on_app_event(self, msg: Any) -> None:
        """``nx.evt.<app>.app``: only the control plane may publish it (no other key may)."""
        try:
            self._dispatcher.roles.update(decode_object(msg.data, "app event"))
        except QEError as exc:
            log.warning("ignored a malformed app event: %s", exc)

    async def _on_reconnected(self) -> None:
        if self.state is not AppState.READY:
            return
        try:
            await self._register()
        except DuplicateResource:
            log.error("after reconnecting, %s is held by another block; stopping", self.jid)
            self._own(self.stop(), "stop")
            return
        except Busy as exc:
            log.error("after reconnecting, the Nexus refused %s (%s); stopping", self.jid, exc)
            self._own(self.stop(), "stop")
            return
        except QEError as exc:
            log.warning("re-registering after reconnect failed: %s", exc)
        if not self._ready_evt.is_set():
            self._ready_evt.set()
            self._fire("__connect")

    async def _heartbeat(self) -> None:
        subject = sys_subject("hb", self.identity)
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            if self.client.nc.is_connected:
                try:
                    await self.client.publish(subject, encode(self._presence()))
                except QEError as exc:
                    log.debug("heartbeat not sent: %s", exc)

    # -- calls out -------------------------------------------------------------------------

    async def call(
        self,
        app: str | None = None,
        cmd: str = "ping",
        body: Any = None,
        jid: str | None = None,
        timeout: float = 30.0,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Like :meth:`api` but raises a :class:`~qe.bridge.QEError` subclass on failure."""
        return await request_api(self.client, app, cmd, body, jid, timeout, on_progress)

    def api(
        self,
        app: str | None = None,
        cmd: str = "ping",
        body: Any = None,
        jid: str | None = None,
        timeout: float = 30.0,
        on_progress: ProgressCallback | None = None,
    ) -> Any:
        """Call ``cmd`` on a worker of ``app`` (or the block ``jid``); gives a dict, never raises.

        Success has ``code: 0``; failure has a nonzero ``code`` and an ``error`` text. In async
        code ``await App.api(...)``; in sync code (module level, a sync handler) it blocks and
        returns the dict (see :meth:`api_sync`). ``on_progress(value)`` gets the handler's
        progress reports; giving up (timeout, cancellation) cancels the handler.
        """
        if running_loop() is not None:
            return InLoop(self._api(app, cmd, body, jid, timeout, on_progress), "api")
        return self.api_sync(app, cmd, body, jid, timeout, on_progress)

    async def _api(
        self,
        app: str | None,
        cmd: str,
        body: Any,
        jid: str | None,
        timeout: float,
        on_progress: ProgressCallback | None,
    ) -> dict[str, Any]:
        try:
            if self.state is not AppState.READY:
                await self.wait_ready(READY_WAIT)
            return await request_api(self.client, app, cmd, body, jid, timeout, on_progress)
        except QEError as exc:
            return exc.to_wire()

    def api_sync(
        self,
        app: str | None = None,
        cmd: str = "ping",
        body: Any = None,
        jid: str | None = None,
        timeout: float = 30.0,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """:meth:`api` from sync code: waits for the worker to be online, then for the answer.

        Refused with ``UsageError`` inside a running event loop (it would freeze the worker).
        """
        return run_blocking(self._loop, lambda: self._api(app, cmd, body, jid, timeout, on_progress), "api")

    def find(self, app: str | None = None, timeout: float = 5.0) -> Any:
        """The online blocks of ``app`` (default: mine): ``{"code": 0, "jids": [...], "blocks": [...]}``.

        Each block: ``jid``, ``app``, ``uid``, ``resource``, ``host``, ``pid``, ``public``,
        ``since`` (online since, epoch seconds), ``inflight`` (calls running), ``version``.
        Awaitable in async code, blocking in sync code (see :meth:`find_sync`).
        """
        if running_loop() is not None:
            return InLoop(self._find(app, timeout), "find")
        return self.find_sync(app, timeout)

    async def _find(self, app: str | None, timeout: float) -> dict[str, Any]:
        try:
            if self.state is not AppState.READY:
                await self.wait_ready(READY_WAIT)
            return await request_find(self.client, app or self.identity.app, timeout)
        except QEError as exc:
            return exc.to_wire()

    def find_sync(self, app: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """:meth:`find` from sync code; refused with ``UsageError`` inside a running event loop."""
        return run_blocking(self._loop, lambda: self._find(app, timeout), "find")


async def request_api(
    client: NexusClient,
    app: str | None,
    cmd: str,
    body: Any,
    jid: str | None,
    timeout: float,
    on_progress: ProgressCallback | None,
) -> dict[str, Any]:
    """One API call over ``client``; raises on any failure (shared by App and the CLI)."""
    if not isinstance(cmd, str) or not cmd:
        raise QEError("cmd must be a non-empty text")
    data = encode_checked({"cmd": cmd, "body": check_body(body)}, client.max_payload)
    if jid is not None:
        target = parse_jid(jid)
        subject, name = to_subject(target, "api", client.identity), jid
    else:
        name = check_app(app)
        subject = api_subject(name, client.identity)
    reply = await client.request(subject, data, timeout=timeout, target=name, on_progress=on_progress)
    if reply.get("code") != 0:
        raise error_from_wire(reply)
    return reply


async def request_find(client: NexusClient, app: str, timeout: float) -> dict[str, Any]:
    check_app(app)
    reply = await client.request(
        sys_subject("find", client.identity), encode({"app": app}), timeout=timeout, target="the control plane"
    )
    if reply.get("code") != 0:
        raise error_from_wire(reply)
    return reply
