"""Long calls: progress reaches the caller before the result; a caller that gives up cancels the handler."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
from typing import Any

import pytest

import qe.bridge._longcalls
from qe.bridge import APISpecs, App
from qe.testing import Nexus
from security_kit import Raw, add_user
from waiting import until


class Slow:
    """A worker whose ``wait`` command runs until cancelled, recording what happened."""

    def __init__(self, worker: App) -> None:
        self.started = 0
        self.cancelled = 0
        worker.nexus.API("steps")(self.steps)
        worker.nexus.API("wait")(self.wait)

    async def steps(self, specs: APISpecs) -> dict[str, Any]:
        for n in range(3):
            await specs.progress({"step": n})
        return {"done": True}

    async def wait(self, specs: APISpecs) -> dict[str, Any]:
        self.started += 1
        try:
            if specs.body.get("progress"):
                await specs.progress("working")
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return {}


async def test_progress_messages_arrive_before_the_result(make_app, unique_app):
    app = unique_app("prog")
    Slow(await make_app(app, "pyslow"))
    caller = await make_app(unique_app("caller"), "pycaller")
    seen: list[Any] = []
    reply = await caller.api(app=app, cmd="steps", on_progress=seen.append)
    seen.append(reply)
    assert seen == [{"step": 0}, {"step": 1}, {"step": 2}, {"code": 0, "done": True}]


async def test_a_sync_handler_sends_progress_that_arrives_before_the_result(make_app, unique_app):
    app = unique_app("syncprog")
    worker = await make_app(app, "pysync")
    threads: list[bool] = []

    @worker.nexus.API("steps")
    def steps(specs: APISpecs) -> dict[str, Any]:
        # a plain def runs in a thread: progress is sent without await
        threads.append(threading.current_thread() is not threading.main_thread())
        for n in range(3):
            specs.progress({"step": n})
        return {"done": True}

    caller = await make_app(unique_app("caller"), "pycaller")
    seen: list[Any] = []
    reply = await caller.api(app=app, cmd="steps", on_progress=seen.append)
    seen.append(reply)
    assert seen == [{"step": 0}, {"step": 1}, {"step": 2}, {"code": 0, "done": True}]
    assert threads == [True]


async def test_a_timed_out_call_cancels_the_handler(make_app, unique_app):
    app = unique_app("tmo")
    slow = Slow(await make_app(app, "pyslow"))
    caller = await make_app(unique_app("caller"), "pycaller")
    # no progress: the worker names itself in an "accepted" message after one sweep
    reply = await caller.api(app=app, cmd="wait", timeout=1.0)
    assert reply["code"] == 504
    await until(lambda: slow.cancelled == 1)


async def test_a_caller_that_gives_up_before_the_worker_names_itself_still_cancels_the_handler(
    make_app, unique_app, qe_nexus: Nexus, monkeypatch, caplog
):
    # the caller gives up after 0.1 s, before the first "accepted" sweep (0.2 s); here the workers
    # never name themselves at all, so the caller's cancel to every worker of the app is all there is
    monkeypatch.setattr(qe.bridge._longcalls, "ACCEPT_EVERY", 3600.0)
    app = unique_app("cxearly")
    key = qe_nexus.new_app(app).secret
    slows = [Slow(await make_app(app, f"pyslow{i}", key=key)) for i in range(2)]
    caller = await make_app(unique_app("caller"), "pycaller")
    reply = await caller.api(app=app, cmd="wait", timeout=0.1)
    assert reply["code"] == 504
    await until(lambda: sum(s.cancelled for s in slows) == 1)
    assert sum(s.started for s in slows) == 1
    assert "ignored a cancel" not in caplog.text, "the worker that did not run the call ignores it quietly"


@pytest.mark.parametrize("by", ["app", "jid"])
async def test_a_caller_cancelled_right_after_sending_still_cancels_the_handler(make_app, unique_app, by: str):
    app = unique_app("cxnow")
    worker = await make_app(app, "pyslow")
    slow = Slow(worker)
    caller = await make_app(unique_app("caller"), "pycaller")
    target: dict[str, Any] = {"app": app} if by == "app" else {"jid": worker.jid}
    for n in range(1, 4):
        call = asyncio.create_task(caller.api(cmd="wait", **target))
        await asyncio.sleep(0)  # one loop turn: the request is sent, and the cancel follows it at once
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        # the call and its cancel may reach the worker in one read: the cancel must still find the call
        await until(lambda n=n: slow.cancelled == n, 5, lambda: f"{slow.cancelled} of {slow.started} calls cancelled")


async def test_a_cancelled_caller_task_cancels_the_handler(make_app, unique_app):
    app = unique_app("cxl")
    slow = Slow(await make_app(app, "pyslow"))
    caller = await make_app(unique_app("caller"), "pycaller")
    progress: list[Any] = []
    call = asyncio.create_task(caller.api(app=app, cmd="wait", body={"progress": True}, on_progress=progress.append))
    await until(lambda: progress == ["working"])
    call.cancel()
    await until(lambda: slow.cancelled == 1)
    assert call.cancelled()


async def test_a_jid_call_is_cancelled_without_waiting_for_the_worker_to_name_itself(make_app, unique_app):
    app = unique_app("cxljid")
    worker = await make_app(app, "pyslow")
    slow = Slow(worker)
    caller = await make_app(unique_app("caller"), "pycaller")
    call = asyncio.create_task(caller.api(cmd="wait", jid=worker.jid))
    await until(lambda: slow.started == 1)
    call.cancel()
    await until(lambda: slow.cancelled == 1)


async def test_nobody_else_can_cancel_a_call(make_app, unique_app, qe_nexus: Nexus):
    app = unique_app("cxlother")
    mallory = add_user(qe_nexus, unique_app("mallory"))
    stranger_key = qe_nexus.new_app(unique_app("strgapp"), owner=mallory)  # all registry changes first
    worker = await make_app(app, "pyslow")
    slow = Slow(worker)
    caller = await make_app(unique_app("caller"), "pycaller")
    other = await make_app(unique_app("other"), "pyother")
    call = asyncio.create_task(caller.api(app=app, cmd="wait", timeout=30))
    await until(lambda: slow.started == 1)
    reply = next(iter(worker._dispatcher.calls))
    forged = json.dumps({"reply": reply.replace(caller.app, other.app, 1)}).encode()
    stolen = json.dumps({"reply": reply}).encode()  # the caller's real inbox, were it ever seen
    # a different block (same owner, other app) claims to cancel the call: refused, to the block
    # by name and to every worker of the app (nx.cx, the subject of callers that do not know who runs it)
    for subject in (
        f"nx.to.{worker.identity.tokens}.cancel.{other.identity.tokens}",
        f"nx.cx.{app}.{other.identity.tokens}",
    ):
        for data in (b'{"reply": "x"}', forged, stolen):
            await other.client.publish(subject, data)
    # a ping through the same worker proves the cancels were processed (same connection order)
    await other.client.nc.flush()
    assert (await other.api(cmd="ping", jid=worker.jid))["code"] == 0
    # another user's key, raw: it may not write as the caller, and writing as itself changes nothing
    raw = await Raw(stranger_key).connect(qe_nexus.url)
    try:
        me = f"{stranger_key.app}.{mallory}.pymallory"
        await raw.conn.publish(f"nx.cx.{app}.{me}", stolen)
        await raw.conn.publish(f"nx.to.{worker.identity.tokens}.cancel.{me}", stolen)
        as_caller = f"nx.cx.{app}.{caller.identity.tokens}"
        await raw.conn.publish(as_caller, stolen)
        await raw.expect_violation(as_caller)
        ping = await raw.conn.request(f"nx.to.{worker.identity.tokens}.api.{me}", b'{"cmd": "ping"}', timeout=5)
        assert json.loads(ping.data) == {"code": 0, "pong": True}
    finally:
        await raw.close()
    assert slow.cancelled == 0 and not call.done()
    call.cancel()
    await until(lambda: slow.cancelled == 1)


async def test_qe_call_shows_progress_and_ctrl_c_cancels_the_handler(make_app, unique_app, qe_nexus: Nexus):
    app = unique_app("clicxl")
    worker = await make_app(app, "pyslow")
    slow = Slow(worker)
    pipes: dict[str, Any] = {"env": qe_nexus.env, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    steps = await asyncio.create_subprocess_exec(sys.executable, "-m", "qe", "call", app, "steps", **pipes)
    out, err = await steps.communicate()
    assert steps.returncode == 0, err
    assert json.loads(out) == {"code": 0, "done": True}
    lines = err.decode().splitlines()
    assert [line for line in lines if "progress" in line] == [
        'progress: {"step":0}',
        'progress: {"step":1}',
        'progress: {"step":2}',
    ]

    waiting = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "qe",
        "call",
        app,
        "wait",
        '{"progress": true}',
        **pipes,
    )
    await until(lambda: slow.started == 1, 20)
    # the first progress message told qe who runs the call; now the user presses Ctrl+C
    assert waiting.stderr is not None
    line = await asyncio.wait_for(waiting.stderr.readline(), 10)
    assert b"progress" in line
    waiting.send_signal(signal.SIGINT)
    await waiting.communicate()
    assert waiting.returncode == 130
    await until(lambda: slow.cancelled == 1)
