"""Run blocks in ``evox``: prepare (environment, requirements, VS Code, terminals), run in the
foreground, or start/stop in the background under a supervisor process (see :mod:`._watch`)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from .._process import pid_alive
from ._blocks import Block, point_vscode, write_terminals
from ._env import EnsureResult, Evox
from ._errors import BlockError
from ._logs import tail_lines
from ._pip import Progress, stream_to
from ._runstate import RunState, RunStatus, read_run_state, run_dir, stop_signal, write_run_state

__all__ = [
    "LOG_NAME",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "Prepared",
    "block_log",
    "block_state",
    "prepare_block",
    "run_foreground",
    "start_block",
    "stop_block",
    "wait_started",
]

LOG_NAME = "block.log"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 20.0
POLL = 0.05


@dataclass(frozen=True)
class Prepared:
    env: EnsureResult
    requirements: tuple[str, ...]
    terminals: tuple[Path, Path]


def block_state(block: Block) -> RunState:
    return read_run_state(block.folder)


def block_log(block: Block) -> Path:
    return run_dir(block.folder) / LOG_NAME


def prepare_block(block: Block, evox: Evox, progress: Progress | None = None) -> Prepared:
    """Everything a run needs: ``evox`` (created if missing), the block's requirements,
    VS Code pointed at ``evox``, ``terminal.sh``/``terminal.bat`` written."""
    block.check_runnable()
    env = evox.ensure(progress)
    requirements = evox.install_requirements(block.folder / "requirements.txt", progress)
    point_vscode(block, evox.location)
    terminals = write_terminals(block, evox.location)
    return Prepared(env, requirements, terminals)


def run_foreground(block: Block, evox: Evox, progress: Progress | None = None) -> int:
    """``python run.py`` in ``evox`` with this terminal; Ctrl+C reaches the worker, which stops."""
    prepare_block(block, evox, progress)
    proc = subprocess.Popen([str(evox.python), "run.py"], cwd=block.folder)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker gets Ctrl+C from the terminal
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start_block(block: Block, evox: Evox, progress: Progress | None = None) -> RunState:
    """Start the block in the background; returns once its supervisor reports the worker's pid."""
    block.check_runnable()
    folder = run_dir(block.folder)
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / "start.lock"), timeout=STOP_TIMEOUT):
        current = block_state(block)
        if current.active:
            raise BlockError(f"{block.name} is already running (pid {current.pid})")
        prepare_block(block, evox, progress)
        stream_to(progress)(f"starting {block.name}")
        state_path = folder / "state.json"
        state_path.unlink(missing_ok=True)
        kwargs: dict[str, Any] = {}
        if os.name == "nt":
            flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(subprocess, "DETACHED_PROCESS", 0)
            kwargs["creationflags"] = flags
        else:
            kwargs["start_new_session"] = True
        with open(folder / "supervisor.err", "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "qe.manager._watch", str(block.folder), str(folder), str(evox.python)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                **kwargs,
            )
        threading.Thread(target=proc.wait, name="qe-supervisor-reaper", daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            state = block_state(block)
            if state.supervisor_pid == proc.pid and state.status is not RunStatus.STARTING:
                return state
            if proc.poll() is not None and block_state(block).supervisor_pid != proc.pid:
                raise BlockError(f"{block.name} did not start: {_last(folder / 'supervisor.err')}")
            time.sleep(POLL)
        raise BlockError(f"{block.name} did not start within {START_TIMEOUT:g} s: {_last(folder / 'supervisor.err')}")


def wait_started(block: Block, timeout: float) -> RunState:
    """Wait until the worker says it is online, or its run ends, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        state = block_state(block)
        if state.online_seen or not state.active or time.monotonic() >= deadline:
            return state
        time.sleep(POLL)


def stop_block(block: Block, timeout: float = STOP_TIMEOUT) -> RunState | None:
    """Stop a background run (worker first, then its supervisor); None if it was not running."""
    state = block_state(block)
    if not state.active:
        return None
    with contextlib.suppress(OSError):
        os.kill(state.supervisor_pid, stop_signal())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(state.supervisor_pid):
            return block_state(block)
        time.sleep(POLL)
    for pid in (state.pid, state.supervisor_pid):  # did not stop in time: force it
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM if os.name == "nt" else signal.SIGKILL)
    final = RunState(
        RunStatus.STOPPED, state.supervisor_pid, state.pid, state.python, state.started, time.time(),
        None, state.online_seen, f"killed after {timeout:g} s",
    )  # fmt: skip
    write_run_state(run_dir(block.folder) / "state.json", final)
    return final


def _last(path: Path) -> str:
    lines = tail_lines(path, 1)
    return lines[0] if lines else "no output"
