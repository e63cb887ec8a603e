"""Incoming API calls: decode, check the caller, run the handler, answer.

nats-py runs one subscription's callbacks one after another, so the callback only parses
the subject and hands the call to a task; the handler runs under a semaphore
(``concurrency``), and excess calls wait in line, none is dropped. A sync handler runs in a
thread so it cannot block the loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
from nats.aio.msg import Msg

from .._errors import BadRequest, Forbidden, HandlerFailed, PayloadTooLarge, QEError, UnknownCommand
from .._wire import decode_object, encode
from ._specs import APISpecs

__all__ = ["Dispatcher", "Handler"]

log = logging.getLogger("qe.worker")

Handler = Callable[[APISpecs], Awaitable[Any] | Any]
PONG: dict[str, Any] = {"code": 0, "pong": True}
_EAGER = sys.version_info >= (3, 12)


class Roles:
    """Who owns the app and who are its partners (from the control plane)."""

    def __init__(self) -> None:
        self.owner: str | None = None
        self.partners: frozenset[str] = frozenset()

    def update(self, info: dict[str, Any]) -> None:
        owner = info.get("owner")
        self.owner = owner if isinstance(owner, str) else None
        partners = info.get("partners")
        self.partners = (
            frozenset(p for p in partners if isinstance(p, str)) if isinstance(partners, list) else frozenset()
        )

    def of(self, uid: str) -> str:
        if uid == self.owner:
            return "owner"
        if uid in self.partners:
            return "partner"
        return "user"


class Dispatcher:
    def __init__(
        self,
        *,
        public: bool,
        concurrency: int,
        publish: Callable[[str, bytes], Awaitable[None]],
        max_payload: Callable[[], int],
    ) -> None:
        self.public = public
        self.roles = Roles()
        self.commands: dict[str, Handler] = {}
        self.fallback: Handler | None = None
        self._publish = publish
        self._max_payload = max_payload
        self._sem = asyncio.Semaphore(concurrency)
        self.tasks: set[asyncio.Task[None]] = set()
        # reply inbox -> (the task serving that call, the caller's "<app>.<uid>.<res>")
        self.calls: dict[str, tuple[asyncio.Task[Any], str]] = {}
        self.me = ""  # this block's "<app>.<uid>.<res>": the sender of its progress messages
        self.accepting = True
        self._idle: asyncio.Future[None] | None = None  # set while stop() waits for in-flight calls

    @property
    def inflight(self) -> int:
        return len(self.tasks)

    # -- intake ----------------------------------------------------------------------------

    async def on_api(self, msg: Msg) -> None:
        """``nx.api.<me>.<app>.<uid>.<res>``: any worker of my app."""
        parts = msg.subject.split(".")
        if len(parts) == 6:
            self._spawn(msg, parts[3], parts[4], parts[5])

    async def on_to_me(self, msg: Msg) -> None:
        """``nx.to.<me>.<uid>.<res>.<kind>.<app>.<uid>.<res>``: this block by name."""
        parts = msg.subject.split(".")
        if len(parts) == 9 and parts[5] == "api":
            self._spawn(msg, parts[6], parts[7], parts[8])

    def _spawn(self, msg: Msg, app: str, uid: str, resource: str) -> None:
        if not self.accepting:
            return  # unsubscribed already; a late message goes unanswered and the caller times out
        coro = self._serve(msg, app, uid, resource)
        loop = asyncio.get_running_loop()
        if _EAGER:
            # 3.12+: run at once as a real task; only a call that has to wait gets scheduled
            task: asyncio.Task[None] = asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg]
        else:
            task = loop.create_task(coro)
        if not task.done():
            self.tasks.add(task)  # _serve removes it when it ends (no done-callback per call)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is in flight (at most ``timeout`` s)."""
        if not self.tasks:
            return True
        self._idle = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._idle, timeout)
        except TimeoutError:
            return False
        finally:
            self._idle = None
        return True

    # -- one call --------------------------------------------------------------------------

    async def _serve(self, msg: Msg, app: str, uid: str, resource: str) -> None:
        task = asyncio.current_task()
        reply_to = msg.reply
        try:
            caller = f"{app}.{uid}.{resource}"
            if reply_to and task is not None:
                self.calls[reply_to] = (task, caller)  # so the caller can cancel it (see _longcalls)
            try:
                async with self._sem:
                    reply = await self.answer(msg.data, app, uid, resource, self._progress_to(reply_to, caller))
            finally:
                if reply_to:
                    self.calls.pop(reply_to, None)
            if reply_to:
                await self._publish(reply_to, self._encode_reply(reply))
        except Exception:
            log.exception("serving a call failed")
        finally:
            self.tasks.discard(task)
            if not self.tasks and self._idle is not None and not self._idle.done():
                self._idle.set_result(None)

    def _progress_to(self, reply_to: str | None, caller: str) -> Callable[[Any], Coroutine[Any, Any, None]] | None:
        if not reply_to:
            return None

        async def progress(value: Any) -> None:
            await self._publish(progress_subject(caller, self.me), encode({"reply": reply_to, "progress": value}))

        return progress

    def _encode_reply(self, reply: dict[str, Any]) -> bytes:
        try:
            data = encode(reply)
        except (TypeError, orjson.JSONEncodeError) as exc:
            data = encode(HandlerFailed(f"the handler's result is not JSON-serializable ({exc})").to_wire())
        limit = self._max_payload()
        if len(data) > limit:
            data = encode(PayloadTooLarge(len(data), limit).to_wire())
        return data

    async def answer(
        self,
        data: bytes,
        app: str,
        uid: str,
        resource: str,
        progress: Callable[[Any], Coroutine[Any, Any, None]] | None = None,
    ) -> dict[str, Any]:
        """The reply to one request, as a dict; never raises (but cancellation)."""
        try:
            request = decode_object(data, "request")
        except QEError as exc:
            return exc.to_wire()
        cmd = request.get("cmd")
        if not isinstance(cmd, str) or not cmd:
            return BadRequest("bad request: the request needs a text field 'cmd'").to_wire()
        role = self.roles.of(uid)
        if not self.public and role == "user":
            return Forbidden().to_wire()
        handler = self.commands.get(cmd, self.fallback)
        result: Any = None
        if handler is not None:
            loop = asyncio.get_running_loop() if progress is not None else None  # for sync handlers' progress
            specs = APISpecs(cmd, request.get("body", {}), app, uid, resource, role, progress, loop)
            try:
                result = await run_handler(handler, specs)
            except QEError as exc:
                return exc.to_wire()
            except Exception as exc:
                log.exception("handler for %r failed", cmd)
                return HandlerFailed(f"{type(exc).__name__}: {exc}").to_wire()
        if result is None:
            return PONG if cmd == "ping" else UnknownCommand(cmd).to_wire()
        if not isinstance(result, dict):
            return HandlerFailed(
                f"the handler returned {type(result).__name__}; it must return a JSON object (dict)"
            ).to_wire()
        if "code" not in result:
            return {"code": 0, **result}
        return result


@functools.lru_cache(maxsize=256)
def _is_async_cached(handler: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(handler)


def _is_async(handler: Callable[..., Any]) -> bool:
    try:
        return _is_async_cached(handler)  # asked on every call: cached per handler
    except TypeError:  # an unhashable callable object
        return inspect.iscoroutinefunction(handler)


def progress_subject(caller: str, me: str) -> str:
    """Where a worker tells a caller about a running call: the caller's blocks may read it,
    and the worker's identity in it is enforced by the server."""
    return f"nx.to.{caller}.prog.{me}"


async def run_handler(handler: Callable[..., Any], *args: Any) -> Any:
    """Run an async handler in this task, a sync one in a thread."""
    if _is_async(handler):
        return await handler(*args)
    result = await asyncio.to_thread(handler, *args)
    if inspect.isawaitable(result):
        result = await result
    return result
