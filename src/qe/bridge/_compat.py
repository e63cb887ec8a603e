"""Names the public QE worker docs import from ``libs.bridge``, so their examples run unchanged."""

from __future__ import annotations

import secrets
import string

from ._specs import APISpecs, MessageSpecs

__all__ = ["NexusAPISpecs", "NexusMessageSpecs", "serial_generator"]

NexusAPISpecs = APISpecs  # the names used by the later QE worker docs
NexusMessageSpecs = MessageSpecs

_SERIAL_ALPHABET = string.ascii_letters + string.digits


def serial_generator(length: int = 16) -> str:
    """A random serial of ``length`` letters and digits (for ids, request tags, file names)."""
    if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= 4096:
        raise ValueError("serial_generator(length): length is a whole number from 1 to 4096")
    return "".join(secrets.choice(_SERIAL_ALPHABET) for _ in range(length))
