"""Calls between processes: load sharing, failover, errors, restarts of the Nexus."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import run_qe
from qe.bridge._app import request_api
from qe.testing import Nexus, WorkerProcess, wait_until

PROBE = Path(__file__).parent / "blocks" / "probe.py"


def probe_block(nexus: Nexus, tmp_path: Path, app: str) -> Path:
    block = nexus.new_block(tmp_path, app)
    shutil.copy(PROBE, block / "probe.py")
    return block


async def call(nexus: Nexus, app: str, cmd: str, body: object = None, timeout: float = 10, jid: str | None = None):
    client = nexus.client()
    await client.connect(reconnect=False)
    try:
        return await request_api(client, app, cmd, body, jid, timeout, None)
    finally:
        await client.close()


async def many(nexus: Nexus, app: str, cmd: str, n: int) -> list[dict]:
    client = nexus.client()
    await client.connect(reconnect=False)
    try:
        return list(await asyncio.gather(*(request_api(client, app, cmd, {}, None, 10, None) for _ in range(n))))
    finally:
        await client.close()


def test_two_workers_share_the_load_and_the_survivor_takes_over(qe_nexus: Nexus, qe_worker, tmp_path, unique_app):
    app = unique_app("lb")
    block = probe_block(qe_nexus, tmp_path, app)
    first = qe_worker(block, "resource=pyone", script="probe.py")
    qe_worker(block, "resource=pytwo", script="probe.py")

    replies = asyncio.run(many(qe_nexus, app, "who", 200))
    served = Counter(r["resource"] for r in replies)
    assert set(served) == {"pyone", "pytwo"}, served
    assert sum(served.values()) == 200

    first.kill()
    later = asyncio.run(many(qe_nexus, app, "who", 50))
    assert all(r["code"] == 0 for r in later)
    assert {r["resource"] for r in later} == {"pytwo"}


def test_a_jid_call_reaches_exactly_that_block(qe_nexus: Nexus, qe_worker, tmp_path, unique_app):
    app = unique_app("jid")
    block = probe_block(qe_nexus, tmp_path, app)
    qe_worker(block, "resource=pyone", script="probe.py")
    qe_worker(block, "resource=pytwo", script="probe.py")
    jid = f"{qe_nexus.registry.owner}@{app}/pytwo"

    async def calls() -> set[str]:
        return {(await call(qe_nexus, app, "who", jid=jid))["resource"] for _ in range(20)}

    assert asyncio.run(calls()) == {"pytwo"}
    result = run_qe(qe_nexus, "call", app, "who", "--jid", jid)
    assert json.loads(result.stdout)["resource"] == "pytwo"


def test_a_handler_exception_is_answered_and_the_worker_keeps_serving(qe_nexus, qe_worker, tmp_path, unique_app):
    app = unique_app("boom")
    worker = qe_worker(probe_block(qe_nexus, tmp_path, app), script="probe.py")
    result = run_qe(qe_nexus, "call", app, "boom")
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"code": 500, "error": "ValueError: boom"}
    assert json.loads(run_qe(qe_nexus, "call", app, "ping").stdout) == {"code": 0, "pong": True}
    assert "ValueError: boom" in worker.output  # logged with its traceback for the developer


def test_a_call_with_no_worker_online_fails_fast_with_a_clear_error(qe_nexus: Nexus, unique_app):
    app = unique_app("none")
    started = time.monotonic()
    result = run_qe(qe_nexus, "call", app, "ping", "--timeout", "30")
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"code": 503, "error": f"no worker online: {app}"}
    assert time.monotonic() - started < 10, "no worker must not wait for the 30 s timeout"


def test_a_slow_handler_gives_a_timeout_error(qe_nexus: Nexus, qe_worker, tmp_path, unique_app):
    app = unique_app("slow")
    qe_worker(probe_block(qe_nexus, tmp_path, app), script="probe.py")
    result = run_qe(qe_nexus, "call", app, "sleep", '{"s": 5}', "--timeout", "0.5")
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"code": 504, "error": f"timeout: no answer from {app} within 0.5 s"}


def test_a_bad_json_body_on_the_command_line_is_refused_before_sending(qe_nexus: Nexus, unique_app):
    result = run_qe(qe_nexus, "call", unique_app("bad"), "ping", "{not json")
    assert result.returncode == 2
    assert "not valid JSON" in result.stderr and "Traceback" not in result.stderr


def test_a_sync_handler_runs_in_a_thread_and_never_blocks_the_worker(qe_nexus, qe_worker, tmp_path, unique_app):
    app = unique_app("sync")
    qe_worker(probe_block(qe_nexus, tmp_path, app), script="probe.py")

    async def scenario() -> tuple[dict, dict]:
        blocked = asyncio.create_task(call(qe_nexus, app, "blocking", {"s": 2}))
        await asyncio.sleep(0.3)
        ping = await call(qe_nexus, app, "ping", timeout=1.5)  # answered while the thread sleeps
        assert not blocked.done()
        return ping, await blocked

    ping, blocked = asyncio.run(scenario())
    assert ping == {"code": 0, "pong": True}
    assert blocked == {"code": 0, "blocked": True}


def test_every_call_is_executed_exactly_once(qe_nexus: Nexus, qe_worker, tmp_path, unique_app):
    app = unique_app("once")
    qe_worker(probe_block(qe_nexus, tmp_path, app), script="probe.py")
    replies = asyncio.run(many(qe_nexus, app, "who", 300))
    counts = sorted(r["served"] for r in replies)
    assert counts == list(range(1, 301)), "each request must run once: no call lost, none repeated"


@pytest.mark.parametrize("how", ["nats-server killed", "qe down then up"])
def test_workers_reconnect_and_serve_after_the_nexus_restarts(tmp_path: Path, unique_app, how: str):
    nexus = Nexus(tmp_path / "home").start()
    app = unique_app("rst")
    worker = WorkerProcess(probe_block(nexus, tmp_path, app), [], nexus.env, script="probe.py")
    try:
        worker.wait_online()
        assert asyncio.run(call(nexus, app, "ping"))["pong"] is True
        if how == "nats-server killed":
            old = nexus.kill_server()
            wait_until(lambda: nexus.running() and nexus.nats_pid() != old, 15, what="nats-server restart")
        else:
            nexus.stop()
            nexus.start()

        def answers() -> bool:
            try:
                return asyncio.run(call(nexus, app, "ping", timeout=1))["pong"] is True
            except Exception:
                return False

        wait_until(answers, 20, interval=0.3, what="the worker to serve again")
        wait_until(lambda: "reconnected" in worker.output, 5, what="the reconnect log line")
        assert worker.proc.poll() is None
        # the control plane knows the block again (heartbeats rebuild presence)
        wait_until(lambda: json.loads(run_qe(nexus, "find", app, "--json").stdout)["jids"] != [], 10, what="presence")
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0
    finally:
        worker.stop()
        nexus.stop()


async def test_app_api_says_no_worker_online_within_a_second(make_app, unique_app, qe_nexus: Nexus):
    app = unique_app("gone")
    qe_nexus.new_app(app)  # registered, no worker running
    caller = await make_app(unique_app("caller"), "pycaller")
    started = time.monotonic()
    reply = await caller.api(app=app, cmd="ping", timeout=30)
    elapsed = time.monotonic() - started
    assert reply == {"code": 503, "error": f"no worker online: {app}"}
    assert elapsed < 1.0, f"'no worker online' took {elapsed:.2f} s; it must not wait for the timeout"


async def test_app_call_raises_no_worker_online_and_call_timeout_with_their_codes(make_app, unique_app, qe_nexus):
    from qe.bridge import APISpecs, CallTimeout, NoWorkerOnline, QEError

    nobody = unique_app("gone")
    qe_nexus.new_app(nobody)
    slow_app = unique_app("slow")
    slow = await make_app(slow_app, "pyslow")

    @slow.nexus.API("sleep")
    async def sleep(specs: APISpecs) -> dict:
        await asyncio.sleep(float(specs.body["s"]))
        return {"slept": True}

    caller = await make_app(unique_app("caller"), "pycaller")
    with pytest.raises(NoWorkerOnline) as none:
        await caller.call(app=nobody, cmd="ping", timeout=30)
    assert none.value.code == 503 and str(none.value) == f"no worker online: {nobody}"
    with pytest.raises(CallTimeout) as late:
        await caller.call(app=slow_app, cmd="sleep", body={"s": 5}, timeout=0.5)
    assert late.value.code == 504 and late.value.timeout == 0.5
    assert str(late.value) == f"timeout: no answer from {slow_app} within 0.5 s"
    assert isinstance(none.value, QEError) and isinstance(late.value, QEError)
    assert await caller.call(app=slow_app, cmd="sleep", body={"s": 0}) == {"code": 0, "slept": True}
