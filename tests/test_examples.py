"""Every worker in examples/ runs as a user would run it (in a block folder) and does what it says."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from conftest import run_qe
from qe.bridge._app import request_api
from qe.testing import Nexus, free_port

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example_block(nexus: Nexus, tmp_path: Path, app: str, name: str) -> Path:
    block = nexus.new_block(tmp_path, app)
    shutil.copy(EXAMPLES / name, block / name)
    return block


def qe_json(nexus: Nexus, *args: str) -> dict:
    result = run_qe(nexus, *args)
    return json.loads(result.stdout)


def test_api_worker(qe_nexus: Nexus, qe_worker, tmp_path, unique_app):
    app = unique_app("exapi")
    qe_worker(example_block(qe_nexus, tmp_path, app, "api_worker.py"), script="api_worker.py")
    assert qe_json(qe_nexus, "call", app, "add", '{"a": 2, "b": 3}') == {"code": 0, "sum": 5}
    assert qe_json(qe_nexus, "call", app, "whoami")["role"] == "owner"
    assert qe_json(qe_nexus, "call", app, "ping") == {"code": 0, "pong": True}
    assert qe_json(qe_nexus, "call", app, "nope")["code"] == 404


def test_direct_worker(qe_nexus: Nexus, qe_worker, tmp_path, unique_app):
    app = unique_app("exdm")
    worker = qe_worker(example_block(qe_nexus, tmp_path, app, "direct_worker.py"), script="direct_worker.py")
    result = run_qe(qe_nexus, "direct", app, '{"text": "hello"}')
    assert result.returncode == 0, result.stderr
    worker.wait_output("{'text': 'hello'}")
    assert "direct from " in worker.output and "(owner)" in worker.output
    # nobody online: the sender is told, with a nonzero exit
    missing = run_qe(qe_nexus, "direct", unique_app("exnobody"), "{}")
    assert missing.returncode == 1 and "no worker online" in missing.stderr
    bad = run_qe(qe_nexus, "direct", app, '"just text"')
    assert bad.returncode == 1 and "JSON object or list" in bad.stderr
    jid = f"{qe_nexus.registry.owner}@{app}/pydirect"
    assert run_qe(qe_nexus, "direct", app, "[1, 2]", "--jid", jid).returncode == 0
    worker.wait_output(": [1, 2]")
    listed = run_qe(qe_nexus, "find", app).stdout
    assert jid in listed and "resource pydirect" in listed and "online since" in listed and "in flight 0" in listed


def test_channel_worker_and_qe_send_listen(qe_nexus: Nexus, qe_worker, tmp_path, unique_app):
    app = unique_app("exch")
    listener = subprocess.Popen(
        [sys.executable, "-m", "qe", "listen", "news", "--count", "2"],
        env=qe_nexus.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert listener.stderr is not None
        assert "listening on news" in listener.stderr.readline()
        worker = qe_worker(example_block(qe_nexus, tmp_path, app, "channel_worker.py"), script="channel_worker.py")
        worker.wait_output("news from me: {'hello':")  # its own announcement comes back with itsme
        assert run_qe(qe_nexus, "send", "news", '{"title": "hi"}').returncode == 0
        worker.wait_output("{'title': 'hi'}")
        out, _ = listener.communicate(timeout=20)
    finally:
        listener.kill()
    lines = out.splitlines()
    owner = qe_nexus.registry.owner
    assert lines[0].startswith(f"{owner}@{app}/pychannel ") and '"hello"' in lines[0]
    assert lines[1].startswith(f"{owner}@qe/cli-") and lines[1].endswith('{"title":"hi"}')


def test_find_worker_finds_itself_at_module_level(qe_nexus: Nexus, qe_worker, tmp_path, unique_app):
    app = unique_app("exfind")
    worker = qe_worker(example_block(qe_nexus, tmp_path, app, "find_worker.py"), script="find_worker.py")
    jid = f"{qe_nexus.registry.owner}@{app}/pyfind"
    worker.wait_output("ping:")
    assert f"find: 0 ['{jid}']" in worker.output
    assert "ping: {'code': 0, 'pong': True}" in worker.output


def test_rest_worker(qe_nexus: Nexus, qe_worker, tmp_path, unique_app):
    app = unique_app("exrest")
    port = free_port()
    qe_worker(example_block(qe_nexus, tmp_path, app, "rest_worker.py"), f"rest={port}", script="rest_worker.py")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        home = json.loads(response.read())
    jid = f"{qe_nexus.registry.owner}@{app}/pyrest"
    assert home == {"worker": jid, "online": [jid]}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/ping/{app}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read()) == {"code": 0, "pong": True}


def test_timers_worker(qe_nexus: Nexus, qe_worker, tmp_path, unique_app):
    app = unique_app("extime")
    worker = qe_worker(example_block(qe_nexus, tmp_path, app, "timers_worker.py"), script="timers_worker.py")
    for text in ("interval cleared.", "heartbeat cleared.", "timed out once."):
        worker.wait_output(text)
    # the interval stopped itself at 3 and the decorator form at 2: a later ping shows no more ticks
    assert qe_json(qe_nexus, "call", app, "ping")["code"] == 0
    lines = worker.output.splitlines()
    assert [line for line in lines if line.startswith(("tick", "beat", "timed"))] == [
        line for line in lines if line in ("tick 1", "tick 2", "tick 3", "beat 1", "beat 2", "timed out once.")
    ]
    assert sum(line.startswith("tick") for line in lines) == 3
    assert sum(line.startswith("beat") for line in lines) == 2


def test_progress_worker(qe_nexus: Nexus, qe_worker, tmp_path, unique_app):
    app = unique_app("exprog")
    worker = qe_worker(example_block(qe_nexus, tmp_path, app, "progress_worker.py"), script="progress_worker.py")
    result = run_qe(qe_nexus, "call", app, "train", '{"epochs": 3}')
    assert json.loads(result.stdout) == {"code": 0, "trained": 3}
    assert [line for line in result.stderr.splitlines() if line.startswith("progress")] == [
        f'progress: {{"epoch":{n},"of":3}}' for n in (1, 2, 3)
    ]
    slow = run_qe(qe_nexus, "call", app, "train", '{"epochs": 100, "seconds": 0.2}', "--timeout", "1")
    assert json.loads(slow.stdout)["code"] == 504
    worker.wait_output("training cancelled by the caller")


def test_oscommand_worker_serves_only_its_owner(qe_nexus: Nexus, qe_worker, tmp_path, unique_app):
    app = unique_app("exos")
    qe_worker(example_block(qe_nexus, tmp_path, app, "oscommand_worker.py"), script="oscommand_worker.py")
    ran = qe_json(qe_nexus, "call", app, "run", '{"argv": ["echo", "hi"]}')
    assert ran == {"code": 0, "exit": 0, "stdout": "hi\n", "stderr": ""}
    assert qe_json(qe_nexus, "call", app, "run", '{"argv": ["rm", "-rf", "/"]}')["code"] == 403

    registry = qe_nexus.registry
    stranger = f"exos-user-{app}"[:40]
    registry.add_user(stranger)
    key = qe_nexus.new_app(unique_app("exosu"), owner=stranger)

    async def as_stranger() -> dict:
        client = qe_nexus.client(key, resource="cli-stranger")
        await client.connect(reconnect=False)
        try:
            try:
                return await request_api(client, app, "run", {"argv": ["echo", "x"]}, None, 10, None)
            except Exception as exc:
                return exc.to_wire()  # type: ignore[attr-defined]
        finally:
            await client.close()

    assert asyncio.run(as_stranger()) == {"code": 403, "error": "forbidden"}


def test_serial_worker_with_the_simulated_device(qe_nexus: Nexus, qe_worker, tmp_path, unique_app):
    app = unique_app("exser")
    qe_worker(example_block(qe_nexus, tmp_path, app, "serial_worker.py"), script="serial_worker.py")
    assert qe_json(qe_nexus, "call", app, "query", '{"command": "TEMP?"}') == {"code": 0, "answer": "TEMP 21.5"}
    assert qe_json(qe_nexus, "call", app, "query") == {"code": 0, "answer": "THERMO-1"}
