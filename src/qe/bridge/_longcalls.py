"""Long calls on the worker side: tell callers who took their call, and cancel on request.

A caller that gives up (timeout, Ctrl+C) must reach the one block running its call. Progress
messages travel on ``nx.to.<caller>.prog.<this block>`` (``{"reply": <inbox>, "progress": v}``),
so the subject names the block running the call, and the server guarantees that name; a call
still running after one sweep (``ACCEPT_EVERY``) gets an ``{"reply": <inbox>, "accepted": true}``
there too; calls that end sooner cost nothing extra. The caller then publishes::

    nx.to.<app>.<uid>.<res>.cancel.<caller app>.<caller uid>.<caller res>   {"reply": <its reply inbox>}

The subject carries the caller's identity (server-enforced) and the reply inbox carries the
identity of whoever receives the answer (``_INBOX.<app>.<uid>...``); the call is cancelled only
when both name the same app and uid, so nobody can cancel someone else's call.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from nats.aio.msg import Msg

from .._errors import QEError
from .._wire import encode
from ._client import NexusClient
from ._dispatch import Dispatcher, progress_subject

__all__ = ["ACCEPT_EVERY", "LongCalls"]

log = logging.getLogger("qe.worker")

ACCEPT_EVERY = 0.2


class LongCalls:
    def __init__(self, dispatcher: Dispatcher, client: NexusClient) -> None:
        self.dispatcher = dispatcher
        self.client = client
        self._seen: set[str] = set()
        self._accepted: set[str] = set()

    @property
    def cancel_subject(self) -> str:
        me = self.client.identity
        return f"nx.to.{me.app}.{me.uid}.{me.resource}.cancel.>"

    async def sweep(self) -> None:
        """Forever: name this block to callers whose call runs longer than one sweep."""
        me = self.client.identity.tokens
        while True:
            await asyncio.sleep(ACCEPT_EVERY)
            running = set(self.dispatcher.calls)
            if not running and not self._seen:
                continue
            self._accepted &= running
            for reply in (running & self._seen) - self._accepted:
                self._accepted.add(reply)
                call = self.dispatcher.calls.get(reply)
                if call is None:
                    continue
                try:
                    await self.client.publish(progress_subject(call[1], me), encode({"reply": reply, "accepted": True}))
                except QEError as exc:
                    log.debug("could not tell a caller who runs its call: %s", exc)
            self._seen = running

    @property
    def app_cancel_subject(self) -> str:
        """Cancels of callers that did not know yet which worker of my app runs their call."""
        return f"nx.cx.{self.client.identity.app}.>"

    async def on_cancel(self, msg: Msg) -> None:
        """``nx.to.<me>.cancel.<caller>`` or ``nx.cx.<my app>.<caller>``: a caller gave up."""
        parts = msg.subject.split(".")
        if len(parts) == 6:
            parts = [*parts[:3], "", "", "", *parts[3:]]  # caller tokens at 6, 7, 8 as below
        if len(parts) != 9:
            return
        try:
            reply = orjson.loads(msg.data).get("reply")
        except (orjson.JSONDecodeError, AttributeError):
            return
        if not isinstance(reply, str):
            return
        inbox = reply.split(".")
        if len(inbox) < 3 or inbox[1] != parts[6] or inbox[2] != parts[7]:
            if parts[1] == "to":  # to everyone of the app, a cancel for another worker's call is normal
                log.warning("ignored a cancel from %s@%s for a call it did not make", parts[7], parts[6])
            return
        call = self.dispatcher.calls.get(reply)
        if call is None:
            # a caller that gave up at once: its call came in the same read, and (3.11, no eager
            # tasks) the call's task, scheduled before this callback ran, registers it on this turn
            await asyncio.sleep(0)
            call = self.dispatcher.calls.get(reply)
        task = call[0] if call is not None else None
        if task is not None and not task.done():
            log.info("the caller %s@%s/%s gave up; cancelling its call", parts[7], parts[6], parts[8])
            task.cancel()
