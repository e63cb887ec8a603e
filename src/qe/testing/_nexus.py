"""A real Nexus (nats-server + control plane) on a free port, in a private data directory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._keys import AppKey
from .._names import Identity
from .._scaffold import write_block
from ..bridge._client import NexusClient
from ..nexus import NexusPaths, Registry, ServerSettings, apply_registry, read_state, start_detached, stop_nexus

__all__ = ["Nexus", "WorkerProcess", "free_port", "wait_until"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> None:
    """Poll ``predicate`` until it is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@dataclass
class Nexus:
    """One embedded Nexus for tests; start with :meth:`start`, stop with :meth:`stop`."""

    home: Path
    port: int = field(default_factory=free_port)
    tls: bool = False  # serve TLS only, with a generated CA (``tls_ca``)

    @property
    def paths(self) -> NexusPaths:
        return NexusPaths(self.home)

    @property
    def settings(self) -> ServerSettings:
        return ServerSettings(port=self.port, tls=self.tls)

    @property
    def url(self) -> str:
        return self.settings.url

    @property
    def tls_ca(self) -> Path | None:
        """The CA file clients trust (``None`` without TLS)."""
        return self.settings.client_ca(self.paths)

    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocesses (workers, the CLI) that should use this Nexus."""
        env = dict(os.environ, QE_HOME=str(self.home), QE_NEXUS=self.url, PYTHONUNBUFFERED="1")
        if self.tls_ca is not None:
            env["QE_TLS_CA"] = str(self.tls_ca)
        return env

    def start(self) -> Nexus:
        start_detached(self.paths, self.settings, ["--no-manager"])  # tests start their own pages
        return self

    def stop(self) -> None:
        stop_nexus(self.paths)

    def running(self) -> bool:
        return read_state(self.paths) is not None

    def nats_pid(self) -> int:
        state = read_state(self.paths)
        assert state is not None, "the Nexus is not running"
        return state.nats_pid

    def kill_server(self) -> int:
        """Kill nats-server (the supervisor restarts it); returns the killed pid."""
        pid = self.nats_pid()
        os.kill(pid, signal.SIGKILL)
        return pid

    @property
    def registry(self) -> Registry:
        return Registry.open(self.paths)

    def new_app(self, app: str, owner: str | None = None) -> AppKey:
        """Register ``app`` (if new) and return a fresh key for it."""
        registry = self.registry
        registry.add_app(app, owner)
        key = registry.create_key(app, label="test")
        apply_registry(registry)
        return key

    def new_block(self, parent: Path, app: str) -> Path:
        """Scaffold ``parent/wpy<app>`` (as ``qe new`` does) pointing at this Nexus."""
        return write_block(parent, self.new_app(app), self.url, tls_ca=self.tls_ca).folder

    def client(self, key: AppKey | None = None, resource: str = "cli-test") -> NexusClient:
        """An unconnected client: the local owner's CLI identity, or ``key``'s."""
        registry = self.registry
        key = key or registry.cli_key()
        return NexusClient(Identity(key.app, key.uid, resource), key, (self.url,), tls_ca=self.tls_ca)


class WorkerProcess:
    """``python run.py ...`` in a block folder, with its output collected."""

    def __init__(
        self,
        folder: Path,
        args: list[str],
        env: Mapping[str, str],
        script: str = "run.py",
        python: str = sys.executable,
    ) -> None:
        self.folder = folder
        self.log_path = folder / f".worker-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [python, script, *args],
            cwd=folder,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_online(self, timeout: float = 15.0) -> WorkerProcess:
        def online() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.output}")
            return " is online" in self.output

        wait_until(online, timeout, what=f"worker in {self.folder} to come online")
        return self

    def wait_output(self, text: str, timeout: float = 15.0) -> None:
        wait_until(lambda: text in self.output, timeout, what=f"{text!r} in the worker output")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
