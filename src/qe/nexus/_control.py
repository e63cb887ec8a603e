"""The control plane (``nexusd``): presence, find, unique resources, registry events.

It listens on ``nx.sys.<verb>.<app>.<uid>.<res>`` (queue group ``nexusd``, so replicas
share the work). The sender is read from the subject, which the server lets only that
credential publish.

Presence: a block registers once, then sends a heartbeat every second; a clean stop says
``bye`` (removed at once). A block whose heartbeat is late (``SUSPECT_AFTER``) is asked
whether it is there; if its process is gone the server answers "no responders" at once and
the block is removed (a crash leaves find within about 2 s); one that is only slow stays until
its heartbeats have been missing for ``EXPIRY``. A resource held by
a live block cannot be claimed by another; a holder that no longer answers ``ping`` is
replaced at once, so a crashed worker can be restarted immediately.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from nats.aio.msg import Msg

from .._errors import BadRequest, DuplicateResource, NoWorkerOnline, QEError
from .._names import Identity, check_any_resource, check_app, to_subject
from .._wire import decode_object, encode
from ..bridge._client import NexusClient
from ._connlimits import ConnectionLimits
from ._presence import Block, Presence
from ._registry import SYSTEM_APP, SYSTEM_UID, Registry

__all__ = ["EXPIRY", "ControlPlane"]

log = logging.getLogger("qe.nexusd")

EXPIRY = 3.0
SUSPECT_AFTER = 1.5
SWEEP_EVERY = 0.25
REGISTRY_POLL = 1.0
LIVENESS_TIMEOUT = 1.0
CONTROL_IDENTITY = Identity(SYSTEM_APP, SYSTEM_UID, "nexusd")


class ControlPlane:
    def __init__(self, registry: Registry, client: NexusClient, limits: ConnectionLimits | None = None) -> None:
        self.registry = registry
        self.client = client
        self.limits = limits
        self.presence = Presence()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._probing: set[Identity] = set()
        self._registry_mtime = 0.0  # the registry version events were last published for

    async def start(self) -> None:
        await self.client.nc.subscribe("nx.sys.>", queue="nexusd", cb=self._on_sys)
        await self.client.sync()
        self._registry_mtime = self.registry.file_mtime()
        self._own(self._sweep(), "sweep")
        self._own(self._watch_registry(), "registry")

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _own(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"nexusd:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- intake ----------------------------------------------------------------------------

    async def _on_sys(self, msg: Msg) -> None:
        parts = msg.subject.split(".")
        if len(parts) != 6:
            return
        sender = Identity(parts[3], parts[4], parts[5])
        if parts[2] == "register":  # may wait for a ping of the holder: in its own task
            self._own(self._handle(parts[2], sender, msg), "register")
        else:  # heartbeats, goodbyes and finds never wait: answered here, in order
            await self._handle(parts[2], sender, msg)

    async def _handle(self, verb: str, sender: Identity, msg: Msg) -> None:
        reply: dict[str, Any] | bytes | None
        try:
            request = decode_object(msg.data, "request")
            reply = await self._answer(verb, sender, request)
        except QEError as exc:
            reply = exc.to_wire()
        except Exception as exc:  # never let one bad request take the control plane down
            log.exception("control plane request %r from %s failed", verb, sender.jid)
            reply = {"code": 500, "error": f"control plane error: {type(exc).__name__}"}
        if msg.reply and reply is not None:
            await self.client.nc.publish(msg.reply, reply if isinstance(reply, bytes) else encode(reply))

    async def _answer(self, verb: str, sender: Identity, request: dict[str, Any]) -> dict[str, Any] | bytes | None:
        if verb in ("register", "hb"):
            check_any_resource(sender.resource)  # it is shown to others by find
        if verb == "register":
            return await self._register(sender, request)
        if verb == "hb":
            self._heartbeat(sender, request)
            return None
        if verb == "bye":
            self._bye(sender, request)
            return None
        if verb == "find":
            return self.presence.find(check_app(request.get("app")))
        raise BadRequest(f"bad request: unknown control-plane verb {verb!r}")

    # -- presence --------------------------------------------------------------------------

    @staticmethod
    def _instance(request: dict[str, Any]) -> str:
        instance = request.get("instance")
        if not isinstance(instance, str) or not instance or len(instance) > 64:
            raise BadRequest("bad request: 'instance' must be a short text")
        return instance

    async def _register(self, sender: Identity, request: dict[str, Any]) -> dict[str, Any]:
        instance = self._instance(request)
        if self.limits is not None:
            await self.limits.check_register(request.get("cid"))
        holder = self.presence.get(sender)
        if holder is not None and holder.instance != instance and await self._alive(holder):
            where = f"pid {holder.info.get('pid')} on {holder.info.get('host')}"
            raise DuplicateResource(
                f"resource {sender.resource!r} is already online as {sender.jid} ({where}); "
                "each python worker needs a unique resource: stop that one or choose another "
                "(e.g. 'python run.py resource=pyworker2')"
            )
        self.presence.put(Block(sender, instance, _clean_info(request)))
        log.info("%s is online", sender.jid)
        # an app created a moment ago: answer with its owner, not with the stale registry
        self.registry.refresh()
        app = self.registry.app(sender.app) or {}
        return {"code": 0, "owner": app.get("owner"), "partners": app.get("partners", [])}

    async def _alive(self, block: Block) -> bool:
        """Ask the holder of a resource whether it is there; no answer means it is gone.

        The worker answers ``nx.to.<block>.live`` in its subscription callback, never behind
        its calls, so a worker whose every call slot is busy is still alive here.
        """
        try:
            reply = await self.client.request(
                to_subject(block.identity, "live", CONTROL_IDENTITY),
                b"{}",
                timeout=LIVENESS_TIMEOUT,
                target=block.identity.jid,
            )
        except QEError:
            return False
        return reply.get("code") == 0  # some instance holds the name (the newcomer has not subscribed yet)

    def _heartbeat(self, sender: Identity, request: dict[str, Any]) -> None:
        instance = self._instance(request)
        block = self.presence.get(sender)
        if block is None:
            # after a control-plane restart: the heartbeat carries everything register did
            self.presence.put(Block(sender, instance, _clean_info(request)))
        elif block.instance == instance:
            self.presence.refresh(block, _clean_info(request))

    def _bye(self, sender: Identity, request: dict[str, Any]) -> None:
        block = self.presence.get(sender)
        if block is not None and block.instance == self._instance(request):
            self.presence.remove(sender)
            log.info("%s went offline", sender.jid)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            now = time.monotonic()
            for ident in self.presence.expired(now - EXPIRY):
                self.presence.remove(ident)
                log.info("%s stopped answering; removed", ident.jid)
            for ident in self.presence.expired(now - SUSPECT_AFTER):
                block = self.presence.get(ident)
                if block is not None and ident not in self._probing:
                    self._probing.add(ident)
                    self._own(self._probe(block), "probe")

    async def _probe(self, block: Block) -> None:
        """A late heartbeat: remove the block at once if nothing is subscribed under its name."""
        try:
            await self.client.request(
                to_subject(block.identity, "live", CONTROL_IDENTITY), b"{}", timeout=LIVENESS_TIMEOUT, target=""
            )
        except NoWorkerOnline:
            if self.presence.get(block.identity) is block:
                self.presence.remove(block.identity)
                log.info("%s is gone (disconnected); removed", block.identity.jid)
        except QEError:
            pass  # slow, not gone: EXPIRY decides
        finally:
            self._probing.discard(block.identity)

    # -- registry changes ------------------------------------------------------------------

    async def _watch_registry(self) -> None:
        while True:
            await asyncio.sleep(REGISTRY_POLL)
            mtime = self.registry.file_mtime()
            if mtime == self._registry_mtime:
                continue
            self._registry_mtime = mtime
            if not self.registry.refresh():
                continue
            if self.limits is not None:
                self.limits.enforce()
            for name, info in self.registry.data["apps"].items():
                await self.client.nc.publish(
                    f"nx.evt.{name}.app", encode({"owner": info["owner"], "partners": info.get("partners", [])})
                )


_INFO_FIELDS = {"host": str, "pid": int, "public": bool, "since": float, "inflight": int, "version": str}


def _clean_info(request: dict[str, Any]) -> dict[str, Any]:
    """Keep only known presence fields of the right types (they are shown to others)."""
    out: dict[str, Any] = {}
    for name, kind in _INFO_FIELDS.items():
        value = request.get(name)
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            out[name] = value[:200] if isinstance(value, str) else value
    return out
