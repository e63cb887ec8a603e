"""Long calls: progress reaches the caller before the result; a caller that gives up cancels the handler."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from typing import Any

from qe.bridge import APISpecs, App
from qe.testing import Nexus
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


async def test_a_timed_out_call_cancels_the_handler(make_app, unique_app):
    app = unique_app("tmo")
    slow = Slow(await make_app(app, "pyslow"))
    caller = await make_app(unique_app("caller"), "pycaller")
    # no progress: the worker names itself in an "accepted" message after one sweep
    reply = await caller.api(app=app, cmd="wait", timeout=1.0)
    assert reply["code"] == 504
    await until(lambda: slow.cancelled == 1)


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


async def test_nobody_else_can_cancel_a_call(make_app, unique_app):
    app = unique_app("cxlother")
    worker = await make_app(app, "pyslow")
    slow = Slow(worker)
    caller = await make_app(unique_app("caller"), "pycaller")
    other = await make_app(unique_app("other"), "pyother")
    call = asyncio.create_task(caller.api(cmd="wait", jid=worker.jid, timeout=30))
    await until(lambda: slow.started == 1)
    reply = next(iter(worker._dispatcher.calls))
    # a different block (same owner, other app) claims to cancel the call: refused
    await other.client.publish(f"nx.to.{worker.identity.tokens}.cancel.{other.identity.tokens}", b'{"reply": "x"}')
    forged = json.dumps({"reply": reply.replace(caller.app, other.app, 1)}).encode()
    await other.client.publish(f"nx.to.{worker.identity.tokens}.cancel.{other.identity.tokens}", forged)
    # a ping through the same worker proves the cancels were processed (same connection order)
    await other.client.nc.flush()
    assert (await other.api(cmd="ping", jid=worker.jid))["code"] == 0
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
