"""Directs, channels, decorators, find, bodies and events between workers on a real Nexus."""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

import qe.bridge._messaging
from qe.bridge import (
    APISpecs,
    App,
    Busy,
    DuplicateResource,
    Forbidden,
    InvalidBody,
    MessageSpecs,
    NoWorkerOnline,
    PayloadTooLarge,
)
from qe.nexus._control import EXPIRY
from qe.testing import Nexus
from waiting import until, until_async

_users = itertools.count(1)
PROBE = Path(__file__).parent / "blocks" / "probe.py"


def stranger_key(nexus: Nexus, app: str) -> Any:
    """A key of another user (uid), owning its own app ``app``."""
    registry = nexus.registry
    uid = f"stranger{next(_users)}-{app}"[:40]
    registry.add_user(uid)
    return nexus.new_app(app, owner=uid).secret


async def test_a_direct_reaches_the_direct_handler_and_msgreceiver_with_the_sender(make_app, unique_app):
    app = unique_app("dm")
    worker = await make_app(app, "pyreceiver")
    sender = await make_app(unique_app("dmsend"), "pysender")
    got: list[MessageSpecs] = []
    every: list[MessageSpecs] = []

    @worker.nexus.Direct()
    async def on_direct(specs: MessageSpecs) -> None:
        got.append(specs)

    worker.xmpp.msgreceiver = every.append

    assert await sender.direct(app=app, body={"hi": 1}) == {"code": 0}
    await until(lambda: len(got) == 1 and len(every) == 1)
    specs = got[0]
    assert specs.body == {"hi": 1}
    assert specs.channel == ""
    assert specs.fromjid == sender.jid
    assert (specs.app, specs.uid, specs.resource) == (sender.app, sender.identity.uid, "pysender")
    assert specs.role == "owner"  # same local owner
    assert specs.itsbro and not specs.itsme


async def test_a_direct_to_a_jid_reaches_only_that_block(make_app, unique_app, qe_nexus: Nexus):
    app = unique_app("dmjid")
    key = qe_nexus.new_app(app).secret
    # the receiver subscribes before the sender connects (see test_channel_flags_...)
    two = await make_app(app, "pytwo", key=key)
    one = await make_app(app, "pyone", key=key)
    seen: list[str] = []
    for worker in (one, two):
        worker.nexus.Direct()(lambda specs, w=worker: seen.append(w.resource))
    for _ in range(10):
        await one.direct(body=[1, 2], jid=two.jid)
    await until(lambda: len(seen) == 10)
    assert set(seen) == {"pytwo"}


async def test_direct_errors_are_reported_to_the_sender(make_app, unique_app, qe_nexus: Nexus):
    sender = await make_app(unique_app("dmerr"), "pysender")
    with pytest.raises(NoWorkerOnline, match="no worker online"):
        await sender.direct(app=unique_app("nobody"), body={})
    with pytest.raises(InvalidBody, match="JSON object or list"):
        sender.direct(app="x", body="text")
    with pytest.raises(PayloadTooLarge):
        sender.direct(app="x", body={"x": "a" * (sender.client.max_payload + 10)})
    # a private worker refuses directs from users (another uid), and the sender hears it
    private_app = unique_app("dmpriv")
    await make_app(private_app, "pyprivate", public=False)
    stranger = await make_app(unique_app("strg"), "pystranger", key=stranger_key(qe_nexus, unique_app("strgapp")))
    with pytest.raises(Forbidden):
        await stranger.direct(app=private_app, body={})


class Held:
    """A direct handler that records each message and holds the first one until released."""

    def __init__(self, worker: App) -> None:
        self.started: list[Any] = []
        self.handled: list[Any] = []
        self.release = asyncio.Event()
        worker.nexus.Direct()(self.on_direct)

    async def on_direct(self, specs: MessageSpecs) -> None:
        self.started.append(specs.body["n"])
        await self.release.wait()
        self.handled.append(specs.body["n"])


async def test_a_slow_direct_handler_does_not_delay_the_acknowledgement_of_the_next_sender(make_app, unique_app):
    app = unique_app("dmslow")
    held = Held(await make_app(app, "pyslow"))
    first = await make_app(unique_app("dmone"), "pyfirst")
    second = await make_app(unique_app("dmtwo"), "pysecond")
    assert await first.direct(app=app, body={"n": 1}) == {"code": 0}
    await until(lambda: held.started == [1])
    # the first handler is still running: the second sender is acknowledged at once all the same
    # (well within the DIRECT_TIMEOUT it would otherwise have run into)
    started = time.monotonic()
    assert await second.direct(app=app, body={"n": 2}, timeout=3.0) == {"code": 0}
    assert time.monotonic() - started < 3.0
    assert held.started == [1], "the second waits for the first: one lane, handled in arrival order"
    held.release.set()
    await until(lambda: held.handled == [1, 2])


async def test_a_direct_to_a_full_lane_is_refused_as_busy_and_the_sender_knows(make_app, unique_app, monkeypatch):
    monkeypatch.setattr(qe.bridge._messaging, "LANE_LIMIT", 2)
    app = unique_app("dmfull")
    worker = await make_app(app, "pyfull")
    held = Held(worker)
    sender = await make_app(unique_app("dmfullsnd"), "pysender")
    assert await sender.direct(app=app, body={"n": 0}) == {"code": 0}
    await until(lambda: held.started == [0])  # taken out of the lane: its handler runs
    for n in (1, 2):  # these two fill the lane
        assert await sender.direct(app=app, body={"n": n}) == {"code": 0}
    with pytest.raises(Busy, match=rf"busy: {re.escape(worker.jid)} has 2 directs waiting") as refused:
        await sender.direct(app=app, body={"n": 3})
    assert refused.value.code == 429
    held.release.set()
    await until(lambda: held.handled == [0, 1, 2])
    # room again: the next direct is taken and handled; the refused one never is
    assert await sender.direct(app=app, body={"n": 4}) == {"code": 0}
    await until(lambda: held.handled == [0, 1, 2, 4])


async def test_a_channel_message_to_a_full_lane_waits_for_room_and_none_is_lost(make_app, unique_app, monkeypatch):
    monkeypatch.setattr(qe.bridge._messaging, "LANE_LIMIT", 2)
    channel = unique_app("chfull")
    sender = await make_app(unique_app("chfullsnd"), "pysender")
    worker = await make_app(unique_app("chfullrcv"), "pyfull")
    release = asyncio.Event()
    handled: list[int] = []

    @worker.nexus.Channel(channel)
    async def on_message(specs: MessageSpecs) -> None:
        await release.wait()
        handled.append(specs.body["n"])

    await worker.subscribe(channel)
    for n in range(8):  # one in the handler, two in the lane, the rest wait for room
        await sender.sendtochannel(channel, {"n": n})
    lanes = worker._messaging._lanes
    await until(lambda: channel in lanes and lanes[channel].full())  # the rest wait for room
    release.set()
    await until(lambda: handled == list(range(8)))


async def test_directs_already_taken_are_handled_when_the_worker_stops_cleanly(make_app, unique_app):
    app = unique_app("dmstop")
    worker = await make_app(app, "pystop")
    held = Held(worker)
    sender = await make_app(unique_app("dmstopsnd"), "pysender")
    for n in range(3):
        assert await sender.direct(app=app, body={"n": n}) == {"code": 0}
    await until(lambda: held.started == [0])
    stopping = asyncio.create_task(worker.stop())
    done, _ = await asyncio.wait({stopping}, timeout=0.5)
    assert not done, "stop waits for the directs it acknowledged"
    held.release.set()
    await asyncio.wait_for(stopping, 10)
    assert held.handled == [0, 1, 2]


async def test_channel_flags_itsme_itsbro_and_a_stranger(make_app, unique_app, qe_nexus: Nexus, caplog):
    channel = unique_app("flags")
    keys = [qe_nexus.new_app(unique_app("chme")).secret, qe_nexus.new_app(unique_app("chbro")).secret]
    keys.append(stranger_key(qe_nexus, unique_app("stapp")))  # all registry changes before anyone connects
    # the senders are connected before the subscription exists: subscribe() must return only
    # once the server has it (nats-py's single flush does not ensure that; NexusClient.sync does)
    bro = await make_app("", "pybro", key=keys[1])
    stranger = await make_app("", "pyst", key=keys[2])
    me = await make_app("", "pyme", key=keys[0])
    got: list[MessageSpecs] = []
    me.nexus.Channel(channel)(got.append)
    await me.subscribe(channel)
    for sender in (me, bro, stranger):
        await sender.sendtochannel(channel, {"from": sender.resource})
    await until(lambda: len(got) == 3, what=lambda: f"3 messages, got {[s.body for s in got]}; log: {caplog.text}")
    flags = {s.body["from"]: (s.itsme, s.itsbro, s.channel, s.role) for s in got}
    assert flags == {
        "pyme": (True, False, channel, "owner"),
        "pybro": (False, True, channel, "owner"),
        "pyst": (False, False, channel, "user"),
    }


async def test_channel_order_per_sender_3_subscribers_1000_messages(make_app, unique_app):
    channel = unique_app("order")
    senders = [await make_app(unique_app("snd"), f"pysnd{i}") for i in range(2)]
    subscribers = [await make_app(unique_app("sub"), f"pysub{i}") for i in range(3)]
    received: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for sub in subscribers:
        sub.nexus.Channel(channel)(lambda s, r=sub.resource: received[r].append((s.fromjid, s.body.get("n", "end"))))
        await sub.subscribe(channel)

    async def send(sender: App) -> None:
        for n in range(500):
            await sender.sendtochannel(channel, {"n": n})

    await asyncio.gather(*(send(s) for s in senders))
    await until(lambda: all(len(received[s.resource]) >= 1000 for s in subscribers), 30, "1000 messages each")
    # a late duplicate would come after the count is reached: one last marker per sender, which
    # arrives after everything that sender sent before it (order per sender), flushes them out
    for sender in senders:
        await sender.sendtochannel(channel, {"end": True})

    def markers(sub: App) -> int:
        return sum(1 for _, n in received[sub.resource] if n == "end")

    await until(lambda: all(markers(s) == len(senders) for s in subscribers), 10, "every sender's end marker")
    for sub in subscribers:
        messages = received[sub.resource]
        assert len(messages) == 1000 + len(senders), "none lost, none duplicated"
        for sender in senders:
            assert [n for jid, n in messages if jid == sender.jid] == [*range(500), "end"], "in order per sender"


async def test_unsubscribe_stops_delivery_and_bodies_must_be_objects_or_lists(make_app, unique_app):
    channel = unique_app("unsub")
    worker = await make_app(unique_app("unsubapp"), "pyw")
    got: list[Any] = []
    worker.xmpp.msgreceiver = lambda specs: got.append(specs.body)
    await worker.subscribe(channel)
    await worker.sendtochannel(channel, [1])
    await until(lambda: got == [[1]])
    await worker.unsubscribe(channel)
    await worker.subscribe(channel + "-other")
    await worker.sendtochannel(channel, [2])
    await worker.sendtochannel(channel + "-other", [3])
    await until(lambda: [3] in got)
    assert got == [[1], [3]]
    for bad in ("text", 1, None, 2.5):
        with pytest.raises(InvalidBody):
            worker.sendtochannel(channel, bad)


async def test_a_failing_message_handler_is_logged_and_the_next_message_still_arrives(make_app, unique_app, caplog):
    channel = unique_app("fail")
    worker = await make_app(unique_app("failapp"), "pyw")
    got: list[int] = []

    @worker.nexus.Channel(channel)
    def handler(specs: MessageSpecs) -> None:
        if specs.body["n"] == 0:
            raise RuntimeError("bad message")
        got.append(specs.body["n"])

    await worker.subscribe(channel)
    await worker.sendtochannel(channel, {"n": 0})
    await worker.sendtochannel(channel, {"n": 1})
    await until(lambda: got == [1])
    assert "bad message" in caplog.text


async def test_find_lists_blocks_with_their_fields_and_a_clean_stop_at_once(make_app, unique_app):
    app = unique_app("find")
    one = await make_app(app, "pyone", public=False)
    two = await make_app(app, "pytwo")
    reply = await one.find(app=app)
    assert reply["code"] == 0
    assert reply["jids"] == sorted([one.jid, two.jid])
    block = next(b for b in reply["blocks"] if b["jid"] == one.jid)
    assert block["resource"] == "pyone" and block["uid"] == one.identity.uid and block["app"] == app
    assert block["public"] is False and block["inflight"] == 0
    assert isinstance(block["pid"], int) and block["host"] and block["since"] > 0
    await two.stop()
    assert (await one.find(app=app))["jids"] == [one.jid], "a clean stop is reflected at once"


async def test_a_worker_whose_only_slot_is_busy_stays_in_find_and_keeps_its_resource(
    make_app, unique_app, qe_nexus: Nexus
):
    app = unique_app("busy")
    key = qe_nexus.new_app(app).secret
    worker = await make_app(app, "pybusy", key=key, concurrency=1)
    started, release = asyncio.Event(), asyncio.Event()

    @worker.nexus.API("hold")
    async def hold(specs: APISpecs) -> dict[str, Any]:
        started.set()
        await release.wait()
        return {"held": True}

    watcher = await make_app(unique_app("watch"), "pywatch")
    call = asyncio.create_task(watcher.api(app=app, cmd="hold", timeout=60))
    await asyncio.wait_for(started.wait(), 10)
    assert (await watcher.api(cmd="ping", jid=worker.jid, timeout=0.5))["code"] == 504, "even a ping waits in line"
    # busy for longer than the control plane waits for a heartbeat: still listed all along
    end = time.monotonic() + EXPIRY + 1.0
    while time.monotonic() < end:
        assert (await watcher.find(app=app))["jids"] == [worker.jid]
        await asyncio.sleep(0.2)
    # its heartbeats carry its load: find shows the call it is running
    assert (await watcher.find(app=app))["blocks"][0]["inflight"] >= 1
    # and still the live holder of its name: a second worker with the same resource is refused
    with pytest.raises(DuplicateResource, match="already online") as refused:
        await make_app(app, "pybusy", key=key)
    assert refused.value.code == 409
    assert (await watcher.find(app=app))["jids"] == [worker.jid]
    release.set()
    assert await call == {"code": 0, "held": True}


async def test_find_reflects_a_crash_within_3_seconds(make_app, unique_app):
    app = unique_app("crash")
    watcher = await make_app(unique_app("watch"), "pywatch")
    victim = await make_app(app, "pyvictim")
    assert (await watcher.find(app=app))["jids"] == [victim.jid]
    # a crash: the connection drops without a goodbye and heartbeats stop
    for task in list(victim._tasks):
        task.cancel()
    await victim.client.nc.close()
    crashed = time.monotonic()

    async def gone() -> bool:
        return not (await watcher.find(app=app))["jids"]

    await until_async(gone, 10, "the crashed block to leave find")
    elapsed = time.monotonic() - crashed
    assert elapsed <= 3.0, f"the crashed block left find after {elapsed:.2f} s"


async def test_find_reflects_a_killed_worker_process_within_3_seconds(
    make_app, unique_app, qe_nexus: Nexus, qe_worker, tmp_path
):
    app = unique_app("kill")
    block = qe_nexus.new_block(tmp_path, app)
    shutil.copy(PROBE, block / "probe.py")
    worker = qe_worker(block, script="probe.py")
    watcher = await make_app(unique_app("watch"), "pywatch")
    jid = f"{qe_nexus.registry.owner}@{app}/pyprobe"
    assert (await watcher.find(app=app))["jids"] == [jid]
    worker.proc.kill()  # SIGKILL: no goodbye, no unsubscribe, the process is just gone
    killed = time.monotonic()
    await asyncio.to_thread(worker.proc.wait, 10)

    async def gone() -> bool:
        return not (await watcher.find(app=app))["jids"]

    await until_async(gone, 10, "the killed block to leave find")
    elapsed = time.monotonic() - killed
    assert elapsed <= 3.0, f"the killed block left find after {elapsed:.2f} s"


async def test_connect_and_disconnect_events(make_app, unique_app):
    worker = await make_app(unique_app("evt"), "pyevt", start=False)
    events: list[str] = []
    worker.on("__connect", lambda: events.append("connect"))

    @worker.on("__disconnect")
    async def gone() -> None:
        events.append("disconnect")

    with pytest.raises(ValueError, match="unknown event"):
        worker.on("connect", print)
    await worker.start()
    await until(lambda: events == ["connect"])
    await worker.stop()
    assert events == ["connect", "disconnect"]


async def test_malformed_messages_get_clear_errors_and_the_worker_keeps_going(make_app, unique_app, qe_nexus: Nexus):
    app = unique_app("junk")
    channel = unique_app("junkch")
    worker = await make_app(app, "pyjunk")
    got: list[Any] = []
    worker.xmpp.msgreceiver = lambda specs: got.append(specs.body)
    await worker.subscribe(channel)
    client = qe_nexus.client()
    await client.connect(reconnect=False)
    try:
        me = client.identity.tokens
        for junk in (b"", b"not json", b'"text"', b"42", b"[1, 2", b"\xff\xfe"):
            reply = await client.request(f"nx.dm.{app}.{me}", junk, timeout=5, target=app)
            assert reply["code"] == 400 and reply["error"].startswith("invalid body"), reply
            await client.publish(f"nx.ch.{channel}.{me}", junk)
        await client.publish(f"nx.ch.{channel}.{me}", b'{"ok": true}')
        assert await client.request(f"nx.dm.{app}.{me}", b"[]", timeout=5, target=app) == {"code": 0}
    finally:
        await client.close()
    await until(lambda: got in ([[], {"ok": True}], [{"ok": True}, []]))
    assert (await worker.api(cmd="ping", jid=worker.jid))["code"] == 0
