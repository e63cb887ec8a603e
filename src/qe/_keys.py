"""App keys.

A key is one string a block keeps secret: ``qe1.<app>.<uid>.<nkey seed>``. The seed is an
NATS user nkey (32 random bytes, base32: 58 characters). The server only ever holds the
public half, so a stolen server config cannot be used to connect, and the seed itself
never crosses the wire (the client signs the server's nonce).

Keys are never printed: :class:`AppKey` hides the seed in ``repr``/``str``.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

import nkeys

from ._errors import ConfigError
from ._names import check_app, check_uid

__all__ = ["AppKey", "generate_key", "read_key_file", "write_secret_file"]

_VERSION = "qe1"


@dataclass(frozen=True)
class AppKey:
    app: str
    uid: str
    seed: str = field(repr=False)

    @property
    def public(self) -> str:
        """The nkey public key (``U...``): safe to store and log."""
        return str(nkeys.from_seed(self.seed.encode()).public_key.decode())

    @property
    def secret(self) -> str:
        return f"{_VERSION}.{self.app}.{self.uid}.{self.seed}"

    def __str__(self) -> str:
        return f"<key {self.app}/{self.uid} {self.public[:8]}...>"

    @classmethod
    def parse(cls, text: object) -> AppKey:
        """Parse a key string; the error never quotes the key."""
        if not isinstance(text, str):
            raise ConfigError("the key must be a text of the form qe1.<app>.<uid>.<seed>")
        parts = text.strip().split(".")
        if len(parts) != 4 or parts[0] != _VERSION:
            raise ConfigError(
                "this is not a QE key (expected qe1.<app>.<uid>.<seed>, as written by 'qe new' or 'qe key create')"
            )
        _, app, uid, seed = parts
        try:
            check_app(app)
            check_uid(uid)
            nkeys.from_seed(seed.encode())
        except Exception as exc:  # nkeys raises its own hierarchy; never echo the key
            raise ConfigError("this QE key is damaged (its app, uid or seed part does not parse)") from exc
        return cls(app, uid, seed)


def generate_key(app: str, uid: str) -> AppKey:
    seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER).decode()
    return AppKey(check_app(app), check_uid(uid), seed)


def write_secret_file(path: Path, text: str) -> None:
    """Write a file readable by its owner only (created 0600 before any byte is written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_key_file(path: Path) -> AppKey:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the key file {path}: {exc.strerror}") from None
    return AppKey.parse(text)
