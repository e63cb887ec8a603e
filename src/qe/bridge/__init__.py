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
)
from ._app import App, AppState
from ._runner import startup
from ._specs import APISpecs

NexusAPISpecs = APISpecs  # the name used by the later QE worker docs

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
    "NexusAPISpecs",
    "NexusUnavailable",
    "NoWorkerOnline",
    "NotAuthorized",
    "PayloadTooLarge",
    "QEError",
    "RemoteError",
    "UnknownCommand",
    "startup",
]
