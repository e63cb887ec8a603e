"""Limits: payload size (refused at the sender), concurrent calls per worker (excess waits), connections."""

from __future__ import annotations

import asyncio

from conftest import run_qe
from qe.bridge import APISpecs
from qe.nexus import ServerSettings
from qe.nexus._server import render_config
from qe.testing import Nexus
from security_kit import Inbox, Raw, eventually


async def test_a_too_large_payload_is_refused_at_the_sender_before_anything_is_sent(
    qe_nexus: Nexus, make_app, unique_app
) -> None:
    app = unique_app("big")
    caller = await make_app(unique_app("caller"), resource="pycaller")
    listener_key = qe_nexus.new_app(app)
    listener = await Raw(listener_key).connect(qe_nexus.url)
    try:
        seen = Inbox()
        await listener.conn.subscribe(f"nx.api.{app}.>", cb=seen.cb)
        await listener.conn.flush()

        reply = await caller.api(app, "store", {"blob": "x" * (1024 * 1024)}, timeout=5)
        assert reply["code"] == 413
        assert reply["error"].startswith("payload too large: ") and reply["error"].endswith(" > 1048576 bytes")

        await caller.client.publish(f"nx.api.{app}.{caller.identity.tokens}", b'{"cmd": "after"}')
        await eventually(lambda: seen.messages, what="the small message")
        assert [m.data for m in seen.messages] == [b'{"cmd": "after"}']  # the big one never left
    finally:
        await listener.close()


async def test_calls_beyond_a_workers_concurrency_wait_their_turn_and_all_complete(make_app, unique_app) -> None:
    app = unique_app("busy")
    worker = await make_app(app, resource="pybusy", concurrency=2)
    release = asyncio.Event()
    running: list[int] = []
    peak = 0

    @worker.nexus.API("work")
    async def work(specs: APISpecs) -> dict:
        nonlocal peak
        running.append(1)
        peak = max(peak, len(running))
        await release.wait()
        running.pop()
        return {"n": specs.body["n"]}

    calls = [asyncio.ensure_future(worker.api(app, "work", {"n": n}, timeout=20)) for n in range(6)]
    await eventually(lambda: len(running) == 2, what="two calls to run")
    assert not any(c.done() for c in calls)  # the other four wait; none is refused
    release.set()
    replies = await asyncio.gather(*calls)
    assert sorted(r["n"] for r in replies) == list(range(6))
    assert peak == 2


def test_the_server_config_caps_connections_and_payloads(qe_nexus: Nexus) -> None:
    settings = ServerSettings(port=qe_nexus.port, max_connections=100, max_payload=4096)
    conf = render_config(qe_nexus.registry, settings, qe_nexus.paths)
    assert conf["max_connections"] == 100 and conf["max_payload"] == 4096
    assert all("permissions" in user for user in conf["authorization"]["users"][1:])


async def test_a_key_beyond_its_connection_limit_has_the_newest_connection_closed_and_the_rest_stay(
    qe_nexus: Nexus, unique_app
) -> None:
    app = unique_app("conns")
    key = qe_nexus.new_app(app)
    other_key = qe_nexus.new_app(unique_app("conns"))
    result = run_qe(qe_nexus, "key", "limit", app, "2")
    assert result.returncode == 0, result.stderr
    assert "may hold 2 connections" in result.stdout
    assert "max 2 connections" in run_qe(qe_nexus, "key", "list", app).stdout

    first = await Raw(key).connect(qe_nexus.url)
    second = await Raw(key).connect(qe_nexus.url)
    others = [await Raw(other_key).connect(qe_nexus.url) for _ in range(3)]  # another key: its own count
    third = await Raw(key).connect(qe_nexus.url)
    try:
        await asyncio.wait_for(third.disconnected.wait(), 5.0)  # closed by the Nexus
        for raw in (first, second, *others):
            await raw.conn.flush(timeout=2)  # still connected and served
            assert not raw.disconnected.is_set()
    finally:
        for raw in (first, second, third, *others):
            await raw.close()


def test_a_worker_started_beyond_its_keys_connection_limit_exits_with_a_clear_message(
    qe_nexus: Nexus, qe_worker, unique_app, tmp_path
) -> None:
    app = unique_app("connw")
    block = qe_nexus.new_block(tmp_path, app)
    assert run_qe(qe_nexus, "key", "limit", app, "1").returncode == 0
    qe_worker(block)  # the one connection the key may hold

    extra = qe_worker(block, "resource=pyextra", wait=False)
    assert extra.wait(timeout=20) == 1
    assert "too many connections with this key (its limit is 1)" in extra.output
    assert "Traceback" not in extra.output
    ping = run_qe(qe_nexus, "call", app, "ping")
    assert ping.returncode == 0 and '"pong": true' in ping.stdout  # the first one still serves
