"""The state of a block's background run, as its supervisor writes it (``state.json``).

Only the supervisor process writes the file (atomically); readers turn a run whose
supervisor is gone into ``crashed``.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._config import data_home
from .._process import pid_alive

__all__ = ["RunState", "RunStatus", "read_run_state", "run_dir", "stop_signal", "write_run_state"]


class RunStatus(enum.StrEnum):
    STOPPED = "stopped"  # never started, or stopped on request
    STARTING = "starting"
    RUNNING = "running"
    EXITED = "exited"  # ended by itself with exit code 0
    CRASHED = "crashed"  # ended by itself with another exit code (or its supervisor died)


@dataclass(frozen=True)
class RunState:
    status: RunStatus = RunStatus.STOPPED
    supervisor_pid: int = 0
    pid: int = 0
    python: str = ""
    started: float = 0.0  # wall clock (shown to people as uptime), not used for intervals
    ended: float = 0.0
    exit_code: int | None = None
    online_seen: bool = False  # the worker logged "<jid> is online"
    message: str = ""

    @property
    def active(self) -> bool:
        return self.status in {RunStatus.STARTING, RunStatus.RUNNING}

    def uptime(self, now: float | None = None) -> float:
        return max(0.0, (now or time.time()) - self.started) if self.active and self.started else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data


def run_dir(folder: Path) -> Path:
    """Where a block's run state and logs live: ``<data home>/manager/runs/<name>-<hash>``."""
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:10]
    return data_home() / "manager" / "runs" / f"{folder.name}-{digest}"


def stop_signal() -> int:
    """The polite stop: SIGTERM, or Ctrl+Break for a Windows process group."""
    return int(getattr(signal, "CTRL_BREAK_EVENT", signal.SIGTERM)) if os.name == "nt" else int(signal.SIGTERM)


def read_run_state(folder: Path) -> RunState:
    try:
        data = json.loads((run_dir(folder) / "state.json").read_text())
        state = RunState(**{**data, "status": RunStatus(data["status"])})
    except (OSError, ValueError, TypeError, KeyError):
        return RunState()
    if state.active and not pid_alive(state.supervisor_pid):
        return RunState(
            **{**asdict(state), "status": RunStatus.CRASHED, "message": "its supervisor ended unexpectedly"}
        )
    return state


def write_run_state(path: Path, state: RunState) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state.as_dict()))
    os.replace(tmp, path)
