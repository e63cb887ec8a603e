"""The worker SDK: what ``from libs.bridge import APISpecs, App`` gives a block.

from qe.bridge import App, APISpecs, startup
"""

from .._errors import (
    BadRequest,
    Busy,
    CallTimeout,
    ConfigError,
    DuplicateResource,
    Forbidden,
    HandlerFailed,
    InvalidBody,
    InvalidName,
    NexusUnavailable,
    NotAuthorized,
    NoWorkerOnline,
    PayloadTooLarge,
    QEError,
    RemoteError,
    UnknownCommand,
    UsageError,
)
from ._app import App, AppState
from ._compat import NexusAPISpecs, NexusMessageSpecs, serial_generator
from ._runner import startup
from ._specs import APISpecs, MessageSpecs
from ._timers import SetInterval, SetIntervalSafe, SetTimeout, SetTimeoutSafe, clearInterval, setInterval, setTimeout

__all__ = [
    "APISpecs",
    "App",
    "AppState",
    "BadRequest",
    "Busy",
    "CallTimeout",
    "ConfigError",
    "DuplicateResource",
    "Forbidden",
    "HandlerFailed",
    "InvalidBody",
    "InvalidName",
    "MessageSpecs",
    "NexusAPISpecs",
    "NexusMessageSpecs",
    "NexusUnavailable",
    "NoWorkerOnline",
    "NotAuthorized",
    "PayloadTooLarge",
    "QEError",
    "RemoteError",
    "SetInterval",
    "SetIntervalSafe",
    "SetTimeout",
    "SetTimeoutSafe",
    "UnknownCommand",
    "UsageError",
    "clearInterval",
    "serial_generator",
    "setInterval",
    "setTimeout",
    "startup",
]
