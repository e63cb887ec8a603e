"""The one exception tree of the project.

    QEError                      code   wire text
    ├── BadRequest               400    "bad request: <why>"
    │   ├── InvalidName          400    "invalid <kind> '<value>': <rule>"
    │   └── InvalidBody          400    "invalid body: <why>"
    ├── NotAuthorized            401    "not authorized: <why>"
    ├── Forbidden                403    "forbidden"
    ├── UnknownCommand           404    "unknown command: <cmd>"
    ├── DuplicateResource        409    "resource '<res>' is already online ..."
    ├── PayloadTooLarge          413    "payload too large: <size> > <max> bytes"
    ├── Busy                     429    "busy: ..."
    ├── HandlerFailed            500    "<Type>: <message>"
    ├── NoWorkerOnline           503    "no worker online: <app>"
    ├── CallTimeout              504    "timeout: no answer from <target> within <s> s"
    ├── NexusUnavailable         502    "nexus unavailable: <why>"
    ├── ConfigError              2      "<what is wrong in the configuration>"
    └── UsageError               3      "<how the SDK was misused, and what to do instead>"

Every error maps to the wire as ``{"code": <code>, "error": <text>}`` in exactly one
place (:meth:`QEError.to_wire`) and back (:func:`error_from_wire`).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BadRequest",
    "Busy",
    "CallTimeout",
    "ConfigError",
    "DuplicateResource",
    "Forbidden",
    "HandlerFailed",
    "InvalidBody",
    "InvalidName",
    "NexusUnavailable",
    "NoWorkerOnline",
    "NotAuthorized",
    "PayloadTooLarge",
    "QEError",
    "RemoteError",
    "UnknownCommand",
    "UsageError",
    "error_from_wire",
]


class QEError(Exception):
    """Base of every error the platform raises; ``code`` is stable and numeric."""

    code: ClassVar[int] = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.code, "error": self.message}


class BadRequest(QEError):
    code = 400


class InvalidName(BadRequest):
    def __init__(self, kind: str, value: object, rule: str) -> None:
        super().__init__(f"invalid {kind} {value!r}: {rule}")
        self.kind = kind
        self.value = value
        self.rule = rule


class InvalidBody(BadRequest):
    def __init__(self, why: str) -> None:
        super().__init__(f"invalid body: {why}")


class NotAuthorized(QEError):
    code = 401


class Forbidden(QEError):
    code = 403

    def __init__(self, message: str = "forbidden") -> None:
        super().__init__(message)


class UnknownCommand(QEError):
    code = 404

    def __init__(self, cmd: str) -> None:
        super().__init__(f"unknown command: {cmd}")
        self.cmd = cmd


class DuplicateResource(QEError):
    code = 409


class PayloadTooLarge(QEError):
    code = 413

    def __init__(self, size: int, max_payload: int) -> None:
        super().__init__(f"payload too large: {size} > {max_payload} bytes")
        self.size = size
        self.max_payload = max_payload


class Busy(QEError):
    code = 429


class HandlerFailed(QEError):
    code = 500


class NexusUnavailable(QEError):
    code = 502


class NoWorkerOnline(QEError):
    code = 503

    def __init__(self, target: str) -> None:
        super().__init__(f"no worker online: {target}")
        self.target = target


class CallTimeout(QEError):
    code = 504

    def __init__(self, target: str, timeout: float) -> None:
        super().__init__(f"timeout: no answer from {target} within {timeout:g} s")
        self.target = target
        self.timeout = timeout


class ConfigError(QEError):
    code = 2


class UsageError(QEError):
    """The SDK was used where it cannot work (e.g. blocking inside the running event loop).

    Raised locally, never sent over the wire.
    """

    code = 3


_BY_CODE: dict[int, type[QEError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        NotAuthorized,
        Forbidden,
        UnknownCommand,
        DuplicateResource,
        PayloadTooLarge,
        Busy,
        HandlerFailed,
        NexusUnavailable,
        NoWorkerOnline,
        CallTimeout,
        ConfigError,
    )
}


class RemoteError(QEError):
    """An error code this version does not know, carried as it came."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.remote_code = code

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.remote_code, "error": self.message}


def error_from_wire(reply: dict[str, Any]) -> QEError:
    """Turn a wire error ``{"code": c, "error": text}`` back into an exception.

    The text is kept exactly as the other side wrote it.
    """
    code = reply.get("code")
    text = str(reply.get("error", "error"))
    cls = _BY_CODE.get(code) if isinstance(code, int) else None
    if cls is None:
        return RemoteError(code if isinstance(code, int) else 1, text)
    err = cls.__new__(cls)
    QEError.__init__(err, text)
    return err
