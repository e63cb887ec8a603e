"""Identity cannot be spoofed: an attacker with a real key for app A, writing raw nats-py code."""

from __future__ import annotations

import asyncio

import orjson
from nats.aio.msg import Msg

from qe.bridge import APISpecs
from qe.bridge._app import request_api
from qe.nexus import apply_registry
from qe.testing import Nexus
from security_kit import Inbox, Raw, add_user, eventually


async def test_a_key_cannot_publish_as_another_app_or_another_uid(qe_nexus: Nexus, unique_app) -> None:
    a, b = unique_app("atk"), unique_app("vic")
    key_a, key_b = qe_nexus.new_app(a), qe_nexus.new_app(b)
    victim = await Raw(key_b).connect(qe_nexus.url)
    attacker = await Raw(key_a).connect(qe_nexus.url)
    try:
        seen = Inbox()
        await victim.conn.subscribe(f"nx.api.{b}.>", cb=seen.cb)
        await victim.conn.subscribe(f"nx.to.{b}.>", cb=seen.cb)
        await victim.conn.flush()

        spoofed = [
            f"nx.api.{b}.{b}.{key_b.uid}.pyvictim",  # as app B
            f"nx.api.{b}.{a}.someone-else.pyx",  # as another uid of my own app
            f"nx.to.{b}.{key_b.uid}.pyvictim.api.{b}.{key_b.uid}.pyvictim",  # to one block, as B
            f"nx.sys.register.{b}.{key_b.uid}.pyvictim",  # claim B's resource at the control plane
            f"nx.evt.{b}.app",  # forge a registry event
            f"_INBOX.{b}.{key_b.uid}.x.1",  # inject a reply into B's calls
        ]
        for subject in spoofed:
            await attacker.conn.publish(subject, b'{"cmd": "ping", "body": {}}')
            assert "violation for publish" in (await attacker.expect_violation(subject)).lower()

        # one connection's messages arrive in order: once the honest one is seen, no spoofed one came first
        honest = f"nx.api.{b}.{a}.{key_a.uid}.pyattacker"
        await attacker.conn.publish(honest, b'{"cmd": "ping", "body": {}}')
        await eventually(lambda: seen.messages, what="the honest message")
        assert seen.subjects == [honest]
        assert attacker.conn.is_connected  # a violation is refused, not a disconnect
    finally:
        await attacker.close()
        await victim.close()


async def test_a_key_cannot_read_another_apps_requests_or_reply_inboxes(qe_nexus: Nexus, unique_app) -> None:
    a, b = unique_app("atk"), unique_app("vic")
    key_a, key_b, key_b2 = qe_nexus.new_app(a), qe_nexus.new_app(b), qe_nexus.new_app(b)
    attacker = await Raw(key_a).connect(qe_nexus.url)
    worker = await Raw(key_b).connect(qe_nexus.url)
    caller = await Raw(key_b2).connect(qe_nexus.url)
    try:
        stolen = Inbox()
        forbidden = [f"nx.api.{b}.>", f"nx.dm.{b}.>", f"_INBOX.{b}.{key_b.uid}.>", "_INBOX.>", "nx.sys.>", ">"]
        for subject in forbidden:
            await attacker.conn.subscribe(subject, cb=stolen.cb)
            assert "violation for subscription" in (await attacker.expect_violation(subject)).lower()

        async def answer(msg) -> None:
            await msg.respond(b'{"code": 0, "secret": "for B only"}')

        await worker.conn.subscribe(f"nx.api.{b}.>", queue=b, cb=answer)
        await worker.conn.flush()
        reply = await caller.conn.request(f"nx.api.{b}.{b}.{key_b2.uid}.pycaller", b"{}", timeout=5)
        assert orjson.loads(reply.data)["secret"] == "for B only"
        assert reply.subject.startswith(f"_INBOX.{b}.{key_b2.uid}.")

        await attacker.conn.flush()  # anything routed to the attacker would have arrived by now
        assert stolen.messages == []
    finally:
        for conn in (caller, worker, attacker):
            await conn.close()


async def test_a_private_worker_answers_forbidden_to_a_user_and_its_handler_never_runs(
    qe_nexus: Nexus, make_app, unique_app
) -> None:
    a, b = unique_app("atk"), unique_app("priv")
    mallory = add_user(qe_nexus, unique_app("mallory"))
    key_a = qe_nexus.new_app(a, owner=mallory)
    calls: list[APISpecs] = []

    async def handler(specs: APISpecs) -> dict:
        calls.append(specs)
        return {"secret": 42}

    worker = await make_app(b, resource="pyprivate", public=False)
    worker.xmpp.onapi = handler
    attacker = await Raw(key_a).connect(qe_nexus.url)
    try:
        request = orjson.dumps({"cmd": "secret", "body": {}})
        for subject in (
            f"nx.api.{b}.{a}.{mallory}.pyattacker",
            f"nx.to.{b}.{worker.identity.uid}.pyprivate.api.{a}.{mallory}.pyattacker",
        ):
            reply = await attacker.conn.request(subject, request, timeout=5)
            assert orjson.loads(reply.data) == {"code": 403, "error": "forbidden"}
        # ping too: a private worker tells a stranger nothing
        reply = await attacker.conn.request(f"nx.api.{b}.{a}.{mallory}.pyattacker", b'{"cmd": "ping"}', timeout=5)
        assert orjson.loads(reply.data)["error"] == "forbidden"
        assert calls == []

        owner = qe_nexus.client()  # the app's owner is served
        await owner.connect(reconnect=False)
        try:
            assert (await request_api(owner, b, "secret", {}, None, 5, None))["secret"] == 42
        finally:
            await owner.close()
        assert [c.role for c in calls] == ["owner"]
    finally:
        await attacker.close()


async def test_a_user_key_of_an_app_cannot_take_that_apps_requests(qe_nexus: Nexus, unique_app) -> None:
    app = unique_app("shop")
    qe_nexus.new_app(app)
    eve = add_user(qe_nexus, unique_app("eve"))
    registry = qe_nexus.registry
    key = registry.create_key(app, eve)  # a key of the app for someone who is neither owner nor partner
    apply_registry(registry)
    raw = await Raw(key).connect(qe_nexus.url)
    try:
        for subject in (f"nx.api.{app}.>", f"nx.dm.{app}.>", f"nx.to.{app}.{registry.owner}.*.>"):
            await raw.conn.subscribe(subject, cb=Inbox().cb)
            await raw.expect_violation(subject)
        # what is addressed to it still works
        await raw.conn.subscribe(f"nx.to.{app}.{eve}.pymine.>", cb=Inbox().cb)
        await raw.conn.flush()
        assert raw.violations(f"nx.to.{app}.{eve}") == []
    finally:
        await raw.close()


async def test_a_worker_may_answer_a_request_once_and_only_the_inbox_it_was_given(qe_nexus: Nexus, unique_app) -> None:
    """One reply per request: the server forgets an answered inbox (nothing piles up in it under
    load), and a worker cannot reach the caller's other inboxes."""
    app = unique_app("once")
    worker = await Raw(qe_nexus.new_app(app)).connect(qe_nexus.url)
    caller = qe_nexus.client()
    await caller.connect(reconnect=False)
    try:
        requests: list[Msg] = []

        async def on_request(msg: Msg) -> None:
            requests.append(msg)

        await worker.conn.subscribe(f"nx.api.{app}.>", queue=app, cb=on_request)
        await worker.conn.flush()
        await worker.conn.flush()
        call = asyncio.create_task(request_api(caller, app, "ping", {}, None, 5, None))
        await eventually(lambda: requests, what="the request")
        inbox = requests[0].reply
        await worker.conn.publish(inbox, b'{"code": 0, "first": true}')
        assert await call == {"code": 0, "first": True}
        await worker.conn.publish(inbox, b'{"code": 0, "second": true}')
        await worker.expect_violation(inbox)
        sibling = inbox.rsplit(".", 1)[0] + ".0123456789ab"
        await worker.conn.publish(sibling, b'{"code": 0}')
        await worker.expect_violation(sibling)
    finally:
        await caller.close()
        await worker.close()
