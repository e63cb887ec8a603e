"""REST inside the worker's loop, no web stack without it, and calling the SDK from sync code."""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from conftest import run_qe
from qe.bridge import APISpecs, ConfigError, SetTimeout, UsageError, serial_generator
from qe.testing import Nexus, free_port

BLOCKS = Path(__file__).parent / "blocks"


def http_get(url: str) -> tuple[int, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, json.loads(response.read())


def http_post(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


async def test_rest_routes_are_served_on_the_port_inside_the_worker(make_app, unique_app):
    port = free_port()
    worker = await make_app(unique_app("rest"), "pyrest", start=False, rest=port)

    @worker.rest.get("/")
    async def root() -> dict[str, Any]:
        # runs on the worker's own loop: it can call the Nexus directly
        return {"jid": worker.jid, "find": (await worker.find())["jids"]}

    @worker.rest.post("/echo")
    def echo(body: dict[str, Any]) -> dict[str, Any]:
        return {"echo": body}

    await worker.start()
    status, root_reply = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/")
    assert status == 200 and root_reply == {"jid": worker.jid, "find": [worker.jid]}
    echoed = await asyncio.to_thread(http_post, f"http://127.0.0.1:{port}/echo", {"x": [1]})
    assert echoed == (200, {"echo": {"x": [1]}})
    await worker.stop()
    with pytest.raises(OSError):
        await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/")


async def test_rest_needs_a_port_and_a_busy_port_is_a_clear_error(make_app, unique_app):
    worker = await make_app(unique_app("norest"), "pynorest")
    with pytest.raises(ConfigError, match=r"App\.rest needs a port"):
        worker.rest  # noqa: B018
    port = free_port()
    first = await make_app(unique_app("rest1"), "pyrest1", rest=port)
    assert first.rest is not None
    second = await make_app(unique_app("rest2"), "pyrest2", start=False, rest=port)
    with pytest.raises(ConfigError, match=f"rest port {port}"):
        await second.start()


def test_a_worker_with_rest_false_never_imports_the_web_stack(qe_nexus: Nexus, qe_worker, tmp_path, unique_app):
    block = qe_nexus.new_block(tmp_path, unique_app("webless"))
    shutil.copy(BLOCKS / "norest.py", block / "norest.py")
    worker = qe_worker(block, script="norest.py")
    worker.wait_output("web modules loaded:")
    assert "web modules loaded: []" in worker.output


async def test_blocking_calls_inside_the_running_loop_are_refused_clearly(make_app, unique_app):
    worker = await make_app(unique_app("blk"), "pyblk")
    with pytest.raises(UsageError, match=r"await App.find"):
        worker.find_sync()
    with pytest.raises(UsageError, match=r"await App.api"):
        worker.api_sync(cmd="ping", jid=worker.jid)


async def test_find_and_api_used_without_await_inside_the_loop_say_to_await_them(make_app, unique_app):
    worker = await make_app(unique_app("noawait"), "pynoawait")
    with pytest.raises(UsageError, match=r"App\.find\(\.\.\.\) was used without `await`.*write `await App\.find"):
        worker.find()["jids"]
    with pytest.raises(UsageError, match=r"write `await App\.api\(\.\.\.\)`"):
        worker.api(cmd="ping", jid=worker.jid)["code"]
    for misuse in (
        lambda: "jids" in worker.find(),
        lambda: worker.find().get("jids"),
        lambda: bool(worker.api(cmd="ping", jid=worker.jid)),
        lambda: list(worker.find(app=worker.app)),
    ):
        with pytest.raises(UsageError, match="await"):
            misuse()
    # where it happens in practice: a sync callback on the loop, such as a timer's
    errors: list[Exception] = []
    fired = asyncio.Event()

    def tick() -> None:
        try:
            worker.find()["jids"]
        except Exception as exc:
            errors.append(exc)
        fired.set()

    SetTimeout(tick, 10).start()
    await asyncio.wait_for(fired.wait(), 10)
    assert [type(e) for e in errors] == [UsageError] and "`await App.find(...)`" in str(errors[0])
    gc.collect()  # the refused calls were closed: no "coroutine was never awaited" warning (an error here)
    # awaited, the same calls work
    assert (await worker.find())["jids"] == [worker.jid]
    assert (await worker.api(cmd="ping", jid=worker.jid))["code"] == 0


async def test_a_sync_handler_can_call_find_and_api_without_await(make_app, unique_app):
    app = unique_app("synccall")
    worker = await make_app(app, "pysync")

    def lookup(specs: APISpecs) -> dict[str, Any]:
        # runs in a thread: find/api block until the worker's loop has the answer
        found = worker.find()
        pong = worker.api(cmd="ping", jid=found["jids"][0])
        return {"jids": found["jids"], "pong": pong}

    worker.nexus.API("lookup")(lookup)
    reply = await worker.api(app=app, cmd="lookup")
    assert reply == {"code": 0, "jids": [worker.jid], "pong": {"code": 0, "pong": True}}


def test_a_worker_written_as_the_qe_docs_write_theirs_runs_unchanged(
    qe_nexus: Nexus, qe_worker, unique_app, tmp_path: Path
) -> None:
    app = unique_app("docs")
    block = qe_nexus.new_block(tmp_path, app)
    shutil.copy(BLOCKS / "docs_style.py", block / "docs_style.py")
    port = free_port()
    # the code gives no rest= (App.rest alone turns it on, port 8000); the port here avoids a clash
    worker = qe_worker(block, f"rest={port}", script="docs_style.py")
    assert http_get(f"http://127.0.0.1:{port}/") == (200, {"served": "rest", "serial": 8})
    assert http_get(f"http://127.0.0.1:{port}/items/5") == (200, {"item_id": 5})
    ping = run_qe(qe_nexus, "call", app, "ping")
    assert json.loads(ping.stdout) == {"code": 0, "pong": True}
    assert run_qe(qe_nexus, "direct", app, '{"hello": 1}').returncode == 0
    worker.wait_output("{'hello': 1}")  # msgreceiver got it
    worker.wait_output("interval cleared.")


async def test_app_rest_with_no_rest_given_serves_on_8000_and_rest_false_refuses_it(make_app, unique_app) -> None:
    worker = await make_app(unique_app("rest8k"), "pyrest8k", start=False)
    assert worker.rest is not None
    assert worker._rest.port == 8000
    off = await make_app(unique_app("restoff"), "pyrestoff", start=False, rest=False)
    with pytest.raises(ConfigError, match=r"rest=False"):
        off.rest  # noqa: B018


def test_serial_generator_gives_random_serials_of_the_asked_length() -> None:
    serials = {serial_generator(12) for _ in range(50)}
    assert len(serials) == 50 and all(len(s) == 12 and s.isalnum() for s in serials)
    with pytest.raises(ValueError, match="length"):
        serial_generator(0)
