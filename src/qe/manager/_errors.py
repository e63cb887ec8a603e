"""The manager's errors: branches of the project's one tree (:mod:`qe._errors`).

    QEError
    ├── EnvError       424   the shared environment cannot be created or changed
    │                        (no usable interpreter, pip failed, a foreign folder in the way)
    ├── BlockError     422   a block cannot be run, stopped or opened (no run.py, already
    │                        running, VS Code missing, ...)
    └── ConfigError      2
        └── PortInUse    2   the manager page's port is taken

Each message is one line a person can act on; the CLI prints it as ``qe: <message>`` and the
page shows it as is.
"""

from __future__ import annotations

from .._errors import ConfigError, QEError

__all__ = ["BlockError", "EnvError", "PortInUse"]


class EnvError(QEError):
    code = 424


class BlockError(QEError):
    code = 422


class PortInUse(ConfigError):
    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"port {port} on {host} is in use (is a manager already running? choose another with --port)")
        self.host = host
        self.port = port
