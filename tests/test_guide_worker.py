"""The guide's minimal worker, scaffolded and run as a user would: `qe new`, `python run.py`, `qe call`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_qe
from qe.testing import Nexus, WorkerProcess, wait_until

GUIDE = Path(__file__).resolve().parents[2] / "shared" / "seed"

# The python block under "Minimal Structure" in the user's guide, verbatim (CI has no ../shared).
GUIDE_MINIMAL_STRUCTURE = """\
from libs.startup import startup
startup()
import asyncio
from libs.bridge import APISpecs, App as app

App = app(resource="python", public=True, rest=False)

async def api(specs: APISpecs):
    if specs.cmd == "ping":
        return {"pong": True}

#TODO Codes

App.xmpp.onapi = api

loop = asyncio.get_event_loop()
loop.run_forever()
"""


def test_qe_new_writes_a_block_whose_run_py_is_the_guide_verbatim(qe_nexus: Nexus, tmp_path: Path, unique_app) -> None:
    app = unique_app("new")
    result = run_qe(qe_nexus, "new", app, "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    block = tmp_path / f"wpy{app}"
    run_py = (block / "run.py").read_text()
    assert "from libs.startup import startup" in run_py
    assert 'App = app(resource="python", public=True, rest=False)' in run_py
    assert run_py.rstrip().endswith("loop.run_forever()")
    for name in ("libs/startup.py", "libs/bridge.py", "qe.toml", "requirements.txt", ".vscode/launch.json"):
        assert (block / name).is_file(), name
    settings = json.loads((block / ".vscode" / "settings.json").read_text())
    assert settings["python.defaultInterpreterPath"]
    key_file = block / "qe.key"
    assert key_file.stat().st_mode & 0o077 == 0, "the key file must be readable by its owner only"
    assert "qe.key" in (block / ".gitignore").read_text()
    assert key_file.read_text().strip() not in result.stdout + result.stderr, "the key must never be printed"
    assert key_file.read_text().strip() not in (block / "qe.toml").read_text(), "the config file holds no key"


def test_the_seed_guide_minimal_structure_is_what_qe_new_writes(qe_nexus: Nexus, tmp_path: Path, unique_app) -> None:
    block = qe_nexus.new_block(tmp_path, unique_app("verb"))
    assert (block / "run.py").read_text().rstrip("\n") == GUIDE_MINIMAL_STRUCTURE.rstrip("\n")
    if GUIDE.is_dir():  # beside a checkout of the project: the constant is still the guide's block
        guide = next(GUIDE.glob("*.txt")).read_text()
        code = guide.split("Minimal Structure", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
        assert code == GUIDE_MINIMAL_STRUCTURE


def test_python_run_py_answers_qe_call_ping(qe_nexus: Nexus, qe_worker, tmp_path: Path, unique_app) -> None:
    app = unique_app("ping")
    worker = qe_worker(qe_nexus.new_block(tmp_path, app))
    result = run_qe(qe_nexus, "call", app, "ping")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"code": 0, "pong": True}
    assert "Traceback" not in worker.output


def test_an_unknown_command_is_a_clear_error_and_a_nonzero_exit(
    qe_nexus: Nexus, qe_worker, tmp_path, unique_app
) -> None:
    app = unique_app("unk")
    qe_worker(qe_nexus.new_block(tmp_path, app))
    result = run_qe(qe_nexus, "call", app, "launch", '{"x": 1}')
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"code": 404, "error": "unknown command: launch"}


def test_qe_find_lists_the_online_block(qe_nexus: Nexus, qe_worker, tmp_path, unique_app) -> None:
    app = unique_app("find")
    worker = qe_worker(qe_nexus.new_block(tmp_path, app))
    result = run_qe(qe_nexus, "find", app, "--json")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    owner = qe_nexus.registry.owner
    assert reply["jids"] == [f"{owner}@{app}/python"]
    assert reply["blocks"][0]["pid"] == worker.proc.pid


def test_ctrl_c_and_sigterm_stop_the_worker_cleanly(qe_nexus: Nexus, qe_worker, tmp_path, unique_app) -> None:
    app = unique_app("sig")
    block = qe_nexus.new_block(tmp_path, app)
    for sig in (signal.SIGINT, signal.SIGTERM):
        worker = qe_worker(block)
        worker.signal(sig)
        assert worker.wait() == 0
        assert "Traceback" not in worker.output
        assert "stopped" in worker.output
        # a clean stop leaves find at once
        reply = json.loads(run_qe(qe_nexus, "find", app, "--json").stdout)
        assert reply["jids"] == []


def test_the_guide_loop_runs_without_deprecation_warnings(qe_nexus: Nexus, tmp_path, unique_app) -> None:
    block = qe_nexus.new_block(tmp_path, unique_app("warn"))
    env = dict(qe_nexus.env, PYTHONWARNINGS="error")
    worker = WorkerProcess(block, [], env)
    try:
        worker.wait_online()
        worker.signal(signal.SIGINT)
        assert worker.wait() == 0
        assert "Warning" not in worker.output
    finally:
        worker.stop()


def test_a_second_block_with_the_same_resource_is_refused(qe_nexus: Nexus, qe_worker, tmp_path, unique_app) -> None:
    app = unique_app("dup")
    block = qe_nexus.new_block(tmp_path, app)
    first = qe_worker(block)
    second = qe_worker(block, wait=False)
    assert second.wait() != 0
    assert "resource 'python' is already online" in second.output
    assert "Traceback" not in second.output
    assert first.proc.poll() is None
    # with another resource the same block runs beside it
    third = qe_worker(block, "resource=pyworker2")
    assert third.proc.poll() is None


def test_a_resource_without_the_py_prefix_is_refused_quoting_the_rule(qe_nexus: Nexus, qe_worker, tmp_path, unique_app):
    block = qe_nexus.new_block(tmp_path, unique_app("pfx"))
    worker = qe_worker(block, "resource=worker1", wait=False)
    assert worker.wait() != 0
    assert "must start with 'py'" in worker.output
    assert "Traceback" not in worker.output


def test_a_worker_starts_the_local_nexus_when_it_is_not_running(tmp_path: Path, unique_app) -> None:
    nexus = Nexus(tmp_path / "home")  # registered, never started
    app = unique_app("auto")
    block = nexus.new_block(tmp_path, app)
    worker = WorkerProcess(block, [], nexus.env)
    try:
        worker.wait_online(timeout=30)
        assert nexus.running()
        result = run_qe(nexus, "call", app, "ping")
        assert json.loads(result.stdout) == {"code": 0, "pong": True}
    finally:
        worker.stop()
        nexus.stop()


def test_qe_up_detach_status_and_down_manage_the_background_nexus(tmp_path: Path) -> None:
    nexus = Nexus(tmp_path / "home")
    port = str(nexus.port)
    up = run_qe(nexus, "up", "--detach", "--port", port)
    assert up.returncode == 0, up.stderr
    assert f"nats://127.0.0.1:{port}" in up.stdout
    status = run_qe(nexus, "status", "--json")
    assert json.loads(status.stdout)["running"] is True
    again = run_qe(nexus, "up", "--port", port)
    assert again.returncode != 0 and "already running" in again.stderr
    down = run_qe(nexus, "down")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert run_qe(nexus, "status").returncode == 3


def test_qe_up_on_a_port_in_use_says_so_in_one_line_and_leaves_nothing_running(tmp_path: Path) -> None:
    import socket

    nexus = Nexus(tmp_path / "home")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", nexus.port))
        taken.listen()
        up = run_qe(nexus, "up", "--port", str(nexus.port), "--no-manager")
    assert up.returncode == 1, up
    assert f"port {nexus.port} is already in use" in up.stderr
    assert "Traceback" not in up.stderr + up.stdout
    assert not nexus.running()


def test_qe_up_in_the_foreground_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    nexus = Nexus(tmp_path / "home")
    proc = subprocess.Popen(
        [sys.executable, "-m", "qe", "up", "--port", str(nexus.port)],
        env=nexus.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(nexus.running, 20, what="the Nexus to start")
        nats_pid = nexus.nats_pid()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out
        assert "Nexus is up" in out and "Traceback" not in out
        assert not nexus.running()
        wait_until(lambda: not Path(f"/proc/{nats_pid}").exists(), 5, what="nats-server to exit")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_nexus_never_accepts_an_unauthenticated_connection(qe_nexus: Nexus) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", qe_nexus.port), timeout=5) as sock:
        info = sock.recv(4096)
        assert info.startswith(b"INFO ") and b'"auth_required":true' in info
        sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        answer = sock.recv(4096)
    assert b"Authorization Violation" in answer
    assert b"PONG" not in answer


IN_A_VENV = sys.prefix != sys.base_prefix
MODULES_PROBE = """\
import asyncio, sys
from libs.bridge import App as app

App = app(resource="python", public=True, rest=False)
loaded = {m.split(".")[0] for m in sys.modules} & {"starlette", "uvicorn", "fastapi"}
App.on("__connect", lambda: print("web stack:", sorted(loaded), "manager:", "qe.manager" in sys.modules, flush=True))
asyncio.get_event_loop().run_forever()
"""


@pytest.mark.skipif(not IN_A_VENV, reason="the terminals name the venv running the block; the tests run in .venv")
def test_running_run_py_once_writes_terminals_that_open_the_block_folder_in_its_venv(
    qe_nexus: Nexus, qe_worker, tmp_path: Path, unique_app
) -> None:
    block = qe_nexus.new_block(tmp_path, unique_app("term"))
    venv = Path(sys.prefix)
    assert not (block / "terminal.sh").exists() and not (block / "terminal.bat").exists()
    qe_worker(block)  # plain `python run.py`, as VS Code's play button runs it
    bat = (block / "terminal.bat").read_text()
    assert 'cd /d "%~dp0"' in bat, "terminal.bat opens in the block folder"
    assert str(venv / "Scripts" / "activate.bat") in bat
    sh = block / "terminal.sh"
    assert str(venv) in sh.read_text()
    # from elsewhere, with the venv nowhere on PATH: the shell is in the block folder, the venv active
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHELL": "/bin/sh"}
    shell = subprocess.run(
        ["bash", str(sh), "-c", 'pwd; python -c "import sys; print(sys.prefix)"'],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.splitlines() == [str(block), str(venv)]


def test_terminals_already_in_the_block_are_left_as_they_are(
    qe_nexus: Nexus, qe_worker, tmp_path: Path, unique_app
) -> None:
    block = qe_nexus.new_block(tmp_path, unique_app("keep"))
    (block / "terminal.sh").write_text("#!/bin/sh\necho mine\n")
    (block / "terminal.bat").write_bytes(b"@echo mine\r\n")
    qe_worker(block)
    assert (block / "terminal.sh").read_text() == "#!/bin/sh\necho mine\n"
    assert (block / "terminal.bat").read_bytes() == b"@echo mine\r\n"


def test_a_worker_that_cannot_write_its_terminals_still_serves(
    qe_nexus: Nexus, qe_worker, tmp_path: Path, unique_app
) -> None:
    app = unique_app("rofs")
    block = qe_nexus.new_block(tmp_path, app)
    # unwritable even for root: a link into a folder that does not exist
    (block / "terminal.bat").symlink_to(tmp_path / "no-such-folder" / "terminal.bat")
    worker = qe_worker(block)
    assert json.loads(run_qe(qe_nexus, "call", app, "ping").stdout) == {"code": 0, "pong": True}
    assert (block / "terminal.sh").is_file(), "what can be written still is"
    assert not (block / "terminal.bat").exists()
    assert "Traceback" not in worker.output and "terminal" not in worker.output


def test_writing_the_terminals_loads_neither_the_web_stack_nor_the_manager(
    qe_nexus: Nexus, qe_worker, tmp_path: Path, unique_app
) -> None:
    block = qe_nexus.new_block(tmp_path, unique_app("light"))
    (block / "modules.py").write_text(MODULES_PROBE)
    worker = qe_worker(block, script="modules.py")
    worker.wait_output("web stack:")
    assert (block / "terminal.sh").is_file()
    assert "web stack: [] manager: " + str(not IN_A_VENV) in worker.output


def test_no_top_level_libs_package_is_installed(tmp_path: Path) -> None:
    """`libs` belongs to each block folder (it re-exports qe.bridge): an installed one would clash with it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run(
        [sys.executable, "-c", "import importlib.util; print(importlib.util.find_spec('libs'))"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert probe.stdout.strip() == "None"
