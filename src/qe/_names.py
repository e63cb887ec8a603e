"""Names (app, uid, resource, channel), jids and the subject layout.

Identity is carried by subject tokens and enforced by nats-server permissions, so every
name that becomes a token is validated here, in one place, before it reaches the wire.

Subject layout (sender identity = the last three tokens ``<app>.<uid>.<res>``)::

    nx.api.<to_app>.<app>.<uid>.<res>                         API, any worker of to_app
    nx.dm.<to_app>.<app>.<uid>.<res>                          direct, any worker of to_app
    nx.to.<to_app>.<to_uid>.<to_res>.<kind>.<app>.<uid>.<res> to one named block
    nx.ch.<channel>.<app>.<uid>.<res>                         channel broadcast
    nx.sys.<verb>.<app>.<uid>.<res>                           control plane
    _INBOX.<app>.<uid>.>                                      reply inboxes of a credential
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ._errors import InvalidName

__all__ = [
    "Identity",
    "check_app",
    "check_channel",
    "check_resource",
    "check_uid",
    "parse_jid",
]

_TOKEN = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_TOKEN_RULE = "use 1-40 characters: lower-case letters, digits and '-', starting with a letter or digit"
_RESOURCE = re.compile(r"py[a-z0-9-]{0,38}")
RESOURCE_RULE = (
    "a python worker's resource must start with 'py' (e.g. 'pyworker1'), "
    "then lower-case letters, digits or '-', 2-40 characters"
)
_CHANNEL = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_CHANNEL_RULE = "use 1-64 characters: lower-case letters, digits, '-' and '_'"

# Blocks that are not python workers (the CLI, the control plane) use these resources.
CLI_RESOURCE_PREFIX = "cli-"


def _check(kind: str, value: object, pattern: re.Pattern[str], rule: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise InvalidName(kind, value, rule)
    return value


@functools.lru_cache(maxsize=1024)
def _valid_app(value: str) -> bool:
    return _TOKEN.fullmatch(value) is not None


def check_app(value: object) -> str:
    if isinstance(value, str) and _valid_app(value):  # cached: apps are checked on every call
        return value
    raise InvalidName("app", value, _TOKEN_RULE)


def check_uid(value: object) -> str:
    return _check("uid", value, _TOKEN, _TOKEN_RULE)


def check_resource(value: object) -> str:
    """A python worker's resource: starts with ``py``."""
    return _check("resource", value, _RESOURCE, RESOURCE_RULE)


def check_any_resource(value: object) -> str:
    """Any block's resource (workers, CLI sessions)."""
    return _check("resource", value, _TOKEN, _TOKEN_RULE)


def check_channel(value: object) -> str:
    return _check("channel", value, _CHANNEL, _CHANNEL_RULE)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a block is: app + uid + resource. Its jid is ``uid@app/resource``."""

    app: str
    uid: str
    resource: str

    @property
    def jid(self) -> str:
        return f"{self.uid}@{self.app}/{self.resource}"

    @property
    def tokens(self) -> str:
        return f"{self.app}.{self.uid}.{self.resource}"

    @property
    def inbox_prefix(self) -> str:
        return f"_INBOX.{self.app}.{self.uid}"


def parse_jid(jid: object) -> Identity:
    """``uid@app/resource`` -> Identity, validating each part."""
    if not isinstance(jid, str) or "@" not in jid or "/" not in jid:
        raise InvalidName("jid", jid, "expected 'uid@app/resource' as returned by find")
    uid, _, rest = jid.partition("@")
    app, _, resource = rest.partition("/")
    return Identity(check_app(app), check_uid(uid), check_any_resource(resource))


def identity_from_subject(subject: str, first: int) -> Identity:
    """The sender identity carried by the three tokens starting at ``first``.

    The server only lets a credential publish subjects carrying its own app and uid,
    so these tokens are the authenticated sender.
    """
    parts = subject.split(".")
    return Identity(parts[first], parts[first + 1], parts[first + 2])


def api_subject(to_app: str, me: Identity) -> str:
    return f"nx.api.{to_app}.{me.tokens}"


def to_subject(target: Identity, kind: str, me: Identity) -> str:
    return f"nx.to.{target.app}.{target.uid}.{target.resource}.{kind}.{me.tokens}"


def sys_subject(verb: str, me: Identity) -> str:
    return f"nx.sys.{verb}.{me.tokens}"
