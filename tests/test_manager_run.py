"""`qe start/stop/logs/open <block>`, the errors a user can cause, and `qe up` serving the page."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from manager_kit import EvoxKit, qe
from qe.manager import RotatingLog, tail_lines
from qe.testing import Nexus, free_port, wait_until


def _find(evox: EvoxKit, app: str) -> dict:
    result = qe(evox.env, "find", app, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_qe_start_runs_a_block_in_the_background_and_qe_stop_stops_it(
    evox: EvoxKit, qe_nexus: Nexus, tmp_path: Path, unique_app
) -> None:
    app = unique_app("bg")
    block = qe_nexus.new_block(tmp_path, app)
    started = qe(evox.env, "start", block.name, "--dir", str(tmp_path))
    assert started.returncode == 0, started.stderr
    assert f"{block.name} is running and online" in started.stdout
    try:
        online = _find(evox, app)
        assert online["jids"] == [f"{qe_nexus.registry.owner}@{app}/python"]
        assert online["blocks"][0]["pid"] != os.getpid()
        logs = qe(evox.env, "logs", block.name, "--dir", str(tmp_path))
        assert "is online" in logs.stdout
        again = qe(evox.env, "start", block.name, "--dir", str(tmp_path))
        assert again.returncode == 1
        assert f"{block.name} is already running (pid {online['blocks'][0]['pid']})" in again.stderr
    finally:
        stopped = qe(evox.env, "stop", block.name, "--dir", str(tmp_path))
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped (stopped on request)" in stopped.stdout
    wait_until(lambda: not _find(evox, app)["jids"], 10, what="the block to leave the Nexus")
    assert "is not running" in qe(evox.env, "stop", block.name, "--dir", str(tmp_path)).stdout


@pytest.mark.skipif(sys.platform == "win32", reason="a terminal's Ctrl+C is a POSIX process-group signal here")
def test_qe_run_in_the_foreground_stops_the_worker_cleanly_on_ctrl_c(
    evox: EvoxKit, qe_nexus: Nexus, tmp_path: Path, unique_app
) -> None:
    app = unique_app("fg")
    block = qe_nexus.new_block(tmp_path, app)
    # its own process group, like a terminal's foreground job: Ctrl+C reaches qe and the worker
    proc = subprocess.Popen(
        [sys.executable, "-m", "qe", "run", block.name, "--dir", str(tmp_path)],
        env=evox.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_until(lambda: _find(evox, app)["jids"], 60, what="the block to come online")
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "stopped" in out and "Traceback" not in out
        assert _find(evox, app)["jids"] == []  # it said goodbye: gone from find at once
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_crash_is_shown_with_its_exit_code_and_last_log_lines(
    evox: EvoxKit, qe_nexus: Nexus, tmp_path: Path, unique_app
) -> None:
    block = qe_nexus.new_block(tmp_path, unique_app("crash"))
    (block / "run.py").write_text("print('loading the camera driver')\nraise SystemExit(3)\n")
    started = qe(evox.env, "start", str(block))
    assert started.returncode == 1
    assert f"qe: {block.name} crashed with exit code 3; last log lines:" in started.stderr
    assert "loading the camera driver" in started.stderr
    logs = qe(evox.env, "logs", str(block), "-n", "5")
    assert "loading the camera driver" in logs.stdout
    assert "crashed with exit code 3" in logs.stderr


def test_a_folder_without_run_py_is_one_clear_line(evox: EvoxKit, tmp_path: Path) -> None:
    (tmp_path / "wpyempty").mkdir()
    for command in ("run", "start", "open"):
        result = qe(evox.env, command, "wpyempty", "--dir", str(tmp_path))
        assert result.returncode == 1
        assert result.stderr.strip() == f"qe: {tmp_path / 'wpyempty'} is not a block: it has no run.py"
    missing = qe(evox.env, "run", "nothere", "--dir", str(tmp_path))
    assert missing.stderr.strip().startswith("qe: no block 'nothere' in")


def test_qe_open_without_vscode_says_how_to_get_it(evox: EvoxKit, qe_nexus: Nexus, tmp_path: Path, unique_app) -> None:
    block = qe_nexus.new_block(tmp_path, unique_app("code"))
    env = dict(evox.env, PATH=str(Path(sys.executable).parent))  # no `code` there
    result = qe(env, "open", str(block))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("qe: VS Code's 'code' command was not found: install VS Code")


def test_block_logs_rotate_and_keep_a_bounded_history(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "block.log", max_bytes=1000, backups=2)
    for n in range(200):
        log.write(f"line {n:04d} " + "x" * 40)
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["block.log", "block.log.1", "block.log.2"]
    assert all(p.stat().st_size <= 1000 for p in tmp_path.iterdir())
    assert tail_lines(tmp_path / "block.log", 3)[-1].startswith("line 0199")


def test_qe_up_serves_the_manager_page_and_prints_its_address(tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    env = dict(os.environ, QE_HOME=str(home))
    env.pop("QE_NEXUS", None)
    page_port = free_port()
    up = qe(env, "up", "-d", "--port", str(free_port()), "--manager-port", str(page_port), cwd=project)
    assert up.returncode == 0, up.stderr
    try:
        url = f"http://127.0.0.1:{page_port}/"
        assert f"manager: {url}" in up.stdout
        with urllib.request.urlopen(url + "api/state", timeout=10) as reply:
            assert json.loads(reply.read())["project"] == str(project.resolve())
        taken = qe(env, "manager", "--port", str(page_port), "--dir", str(project))
        assert taken.returncode == 2
        assert (
            taken.stderr.strip()
            == f"qe: port {page_port} on 127.0.0.1 is in use (is a manager already running? choose another with --port)"
        )
    finally:
        assert qe(env, "down").returncode == 0
