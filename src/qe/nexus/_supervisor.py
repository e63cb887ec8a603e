"""``qe up``: run nats-server and the control plane together, and manage them in the background.

Foreground: start nats-server (restarted if it dies), connect the control plane, write the
state file, print the addresses, and on Ctrl+C/SIGTERM stop the control plane then the server.
Background (``--detach``): the same process started in its own session, its output in the
Nexus log; the caller returns when the state file says it is ready.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .._errors import ConfigError, NexusUnavailable
from .._process import pid_alive
from .._tls import client_context
from ..bridge._client import NexusClient
from ._connlimits import ConnectionLimits
from ._control import CONTROL_IDENTITY, ControlPlane
from ._registry import NexusPaths, Registry
from ._server import NatsProcess, ServerSettings, reload_server, write_config

__all__ = ["NexusState", "apply_registry", "read_state", "run_nexus", "start_detached", "stop_nexus"]

log = logging.getLogger("qe.nexus")

DETACH_TIMEOUT = 30.0
RESTART_LIMIT = 5
RELOAD_TIMEOUT = 5.0


@dataclass
class NexusState:
    pid: int
    nats_pid: int
    url: str
    home: str
    started: float
    server: dict[str, Any]

    def alive(self) -> bool:
        return pid_alive(self.pid)

    @property
    def settings(self) -> ServerSettings:
        return ServerSettings(**self.server)

    def client_ca(self) -> Path | None:
        """The CA file a local client trusts to reach this Nexus over TLS (None: not needed)."""
        return self.settings.client_ca(NexusPaths(Path(self.home)))


def read_state(paths: NexusPaths) -> NexusState | None:
    """The running Nexus of this data directory, or None (a stale state file is removed)."""
    try:
        state = NexusState(**json.loads(paths.state.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if not state.alive():
        paths.state.unlink(missing_ok=True)
        return None
    return state


async def run_nexus(
    paths: NexusPaths,
    settings: ServerSettings,
    *,
    announce: Callable[[NexusState], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM when ``stop`` is None)."""
    try:
        lock = FileLock(str(paths.up_lock), timeout=0)
        paths.root.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        running = read_state(paths)
        where = f" at {running.url} (pid {running.pid})" if running else ""
        raise NexusUnavailable(f"a Nexus is already running for {paths.home}{where}; stop it with 'qe down'") from None
    try:
        await _run_locked(paths, settings, announce, stop)
    finally:
        lock.release()


async def _run_locked(
    paths: NexusPaths,
    settings: ServerSettings,
    announce: Callable[[NexusState], None] | None,
    stop: asyncio.Event | None,
) -> None:
    settings.check()
    registry = Registry.open(paths)
    write_config(registry, settings, paths)
    server = NatsProcess(settings, paths)
    await asyncio.to_thread(server.start)
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    client = NexusClient(
        CONTROL_IDENTITY, registry.control_key(), (settings.url,), name="qe-nexusd", tls_ca=settings.client_ca(paths)
    )
    tls = client_context(settings.client_ca(paths)) if settings.tls else None
    limits = ConnectionLimits(registry, (settings.url,), tls=tls)
    control = ControlPlane(registry, client, limits)
    watchdog: asyncio.Task[None] | None = None
    try:
        await client.connect()
        await control.start()
        await limits.start()
        state = NexusState(os.getpid(), server.pid or 0, settings.url, str(paths.home), time.time(), asdict(settings))
        tmp = paths.state.with_name("state.json.tmp")
        tmp.write_text(json.dumps(asdict(state)))
        os.replace(tmp, paths.state)
        if announce is not None:
            announce(state)
        watchdog = loop.create_task(_watch_server(server, paths, state), name="nexus:watchdog")
        await stop.wait()
        log.info("stopping the Nexus")
    finally:
        if watchdog is not None:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
        await limits.stop()
        await control.stop()
        await client.close()
        await asyncio.to_thread(server.stop)
        paths.state.unlink(missing_ok=True)


async def _watch_server(server: NatsProcess, paths: NexusPaths, state: NexusState) -> None:
    """Restart nats-server if it dies; clients reconnect by themselves."""
    restarts = 0
    while True:
        await asyncio.sleep(0.2)
        if server.alive():
            continue
        restarts += 1
        if restarts > RESTART_LIMIT:
            log.error("nats-server keeps exiting (%s); giving up", server.tail())
            os.kill(os.getpid(), signal.SIGTERM)
            return
        log.warning("nats-server exited (%s); restarting", server.tail(2))
        try:
            await asyncio.to_thread(server.start)
        except NexusUnavailable as exc:
            log.error("%s", exc)
            continue
        state.nats_pid = server.pid or 0
        paths.state.write_text(json.dumps(asdict(state)))


def apply_registry(registry: Registry) -> bool:
    """After a registry change: re-render the running server's config and reload it.

    Returns once nats-server has applied it (new keys work, connections of removed keys are
    closed), or False when no Nexus runs (the config is rendered when it starts).
    """
    state = read_state(registry.paths)
    if state is None:
        return False
    write_config(registry, state.settings, registry.paths)
    server_log = registry.paths.logs / "nats-server.log"
    offset = server_log.stat().st_size if server_log.exists() else 0
    reload_server(state.nats_pid)
    _wait_reloaded(server_log, offset)
    return True


def _wait_reloaded(server_log: Path, offset: int, timeout: float = RELOAD_TIMEOUT) -> None:
    """Return once nats-server logs that it applied the new config (keys work, revoked ones are cut)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(server_log, "rb") as fh:
                fh.seek(offset)
                text = fh.read().decode(errors="replace")
        except OSError:
            text = ""
        if "Reloaded server configuration" in text:
            return
        for line in text.splitlines():
            if "Failed to reload" in line:
                raise ConfigError(f"nats-server refused the new configuration: {line.split('] ', 2)[-1]}")
        time.sleep(0.02)
    raise NexusUnavailable(f"nats-server did not confirm the configuration reload within {timeout:g} s")


def start_detached(paths: NexusPaths, settings: ServerSettings, extra_args: list[str] | None = None) -> NexusState:
    """Start ``qe up`` in the background and wait until it is ready."""
    running = read_state(paths)
    if running is not None:
        return running
    paths.logs.mkdir(parents=True, exist_ok=True)
    log_path = paths.logs / "nexus.log"
    settings.check()
    args = [sys.executable, "-m", "qe", "up", *settings.up_args()]
    args += extra_args or []
    env = dict(os.environ, QE_HOME=str(paths.home))
    kwargs: dict[str, Any] = {}
    if os.name == "nt":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS  # type: ignore[attr-defined]
    else:
        kwargs["start_new_session"] = True
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            args, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, **kwargs
        )
    # reap it when it ends, so a long-lived starter (a worker) keeps no zombie around
    threading.Thread(target=proc.wait, name="qe-nexus-reaper", daemon=True).start()
    deadline = time.monotonic() + DETACH_TIMEOUT
    while time.monotonic() < deadline:
        state = read_state(paths)
        if state is not None and state.pid == proc.pid:
            return state
        if proc.poll() is not None:
            # lost a race with another starter? then that one is the Nexus
            state = read_state(paths)
            if state is not None:
                return state
            raise NexusUnavailable(f"the Nexus did not start: {_tail(log_path)}")
        time.sleep(0.05)
    raise NexusUnavailable(f"the Nexus did not become ready within {DETACH_TIMEOUT:g} s: {_tail(log_path)}")


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_nexus(paths: NexusPaths, timeout: float = 15.0) -> NexusState | None:
    """Stop the background Nexus of this data directory; returns what was stopped."""
    state = read_state(paths)
    if state is None:
        return None
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(state.pid):
            return state
        time.sleep(0.05)
    if os.name != "nt":
        os.kill(state.pid, signal.SIGKILL)
    if state.nats_pid and pid_alive(state.nats_pid):
        os.kill(state.nats_pid, signal.SIGKILL if os.name != "nt" else signal.SIGTERM)
    paths.state.unlink(missing_ok=True)
    return state
