"""The supervisor of one block's background run: ``python -m qe.manager._watch FOLDER RUNDIR PYTHON``.

It starts ``PYTHON run.py`` in FOLDER, copies its output into the rotating block log,
records the state (running, online, how it ended), and on SIGTERM (Windows: Ctrl+Break)
stops the worker: a polite signal, then a kill after :data:`STOP_GRACE` seconds.
Only the standard library and the small log/state modules are imported here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import FrameType

from ._logs import RotatingLog
from ._runstate import RunState, RunStatus, stop_signal, write_run_state

STOP_GRACE = 12.0
ONLINE_MARK = " is online"


def main(argv: list[str]) -> int:
    folder, rundir, python = Path(argv[0]), Path(argv[1]), argv[2]
    state_path = rundir / "state.json"
    log = RotatingLog(rundir / "block.log")
    started = time.time()
    log.write(f"--- qe: starting {folder.name} with {python} at {time.strftime('%Y-%m-%d %H:%M:%S')} ---")
    kwargs: dict[str, object] = {}
    if os.name == "nt":
        kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PYTHONHOME", None)
    try:
        proc = subprocess.Popen(
            [python, "-u", "run.py"],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            **kwargs,  # type: ignore[call-overload]
        )
    except OSError as exc:
        message = f"could not start {python}: {exc.strerror or exc}"
        log.write(f"--- qe: {message} ---")
        log.close()
        failed = RunState(RunStatus.CRASHED, os.getpid(), 0, python, started, time.time(), 127, False, message)
        write_run_state(state_path, failed)
        return 1
    state = RunState(RunStatus.RUNNING, os.getpid(), proc.pid, python, started)
    write_run_state(state_path, state)
    stopping = threading.Event()

    def on_stop(_signum: int, _frame: FrameType | None) -> None:
        if stopping.is_set():
            return
        stopping.set()
        try:
            proc.send_signal(stop_signal())
        except OSError:
            return
        killer = threading.Timer(STOP_GRACE, proc.kill)
        killer.daemon = True
        killer.start()

    signal.signal(signal.SIGTERM, on_stop)
    if os.name == "nt":
        signal.signal(getattr(signal, "SIGBREAK"), on_stop)  # noqa: B009 - Windows only
    else:
        signal.signal(signal.SIGINT, on_stop)
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        log.write(line)
        if not state.online_seen and ONLINE_MARK in line:
            state = replace(state, online_seen=True)
            write_run_state(state_path, state)
    code = proc.wait()
    if stopping.is_set():
        status, message = RunStatus.STOPPED, "stopped on request"
    elif code == 0:
        status, message = RunStatus.EXITED, "ended by itself (exit code 0)"
    else:
        status, message = RunStatus.CRASHED, f"crashed with exit code {code}"
    log.write(f"--- qe: {folder.name} {message} ---")
    log.close()
    write_run_state(state_path, replace(state, status=status, ended=time.time(), exit_code=code, message=message))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
