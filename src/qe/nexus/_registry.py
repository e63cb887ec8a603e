"""The registry: users, apps (owner, partners) and keys, kept in one JSON file.

Only public halves of keys are stored. Every change is made under a file lock and written
atomically; the process that changes it also re-renders the NATS config and asks a running
nats-server to reload it (see :mod:`qe.nexus._server`), so new keys work at once and
revoked ones stop without a restart.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from .._errors import BadRequest, ConfigError, QEError
from .._keys import AppKey, generate_key, read_key_file, write_secret_file
from .._names import check_app, check_uid

__all__ = ["SYSTEM_APP", "SYSTEM_UID", "NexusPaths", "Registry"]

log = logging.getLogger("qe.nexus.registry")

SYSTEM_APP = "qe"  # the app of the CLI and the control plane
SYSTEM_UID = "system"  # the control plane's uid; no person may take it
_SCHEMA = 1
CLI_LABEL = "cli"  # the local owner's CLI key (owner.key): never revoked by app-wide commands
DEFAULT_KEY_CONNECTIONS = 256  # open connections one key may hold (``qe key limit`` changes it)


@dataclass(frozen=True)
class NexusPaths:
    """Where one Nexus keeps its state (under the per-user data directory)."""

    home: Path

    @property
    def root(self) -> Path:
        return self.home / "nexus"

    @property
    def registry(self) -> Path:
        return self.root / "registry.json"

    @property
    def lock(self) -> Path:
        return self.root / "registry.lock"

    @property
    def up_lock(self) -> Path:
        return self.root / "up.lock"

    @property
    def nats_conf(self) -> Path:
        return self.root / "nats.conf"

    @property
    def jetstream(self) -> Path:
        return self.root / "jetstream"

    @property
    def tls(self) -> Path:
        """The local CA and the server certificate (``qe up --tls``)."""
        return self.root / "tls"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def control_key(self) -> Path:
        return self.root / "nexusd.key"

    @property
    def system_key(self) -> Path:
        """The control plane's key in nats-server's system account (connection events, kicks)."""
        return self.root / "system.key"

    @property
    def owner_key(self) -> Path:
        """The local owner's key for the ``qe`` app, used by the CLI."""
        return self.root / "owner.key"


def local_owner_name() -> str:
    try:
        name = getpass.getuser().lower()
    except Exception:  # no user name on some containers
        name = "owner"
    name = re.sub(r"[^a-z0-9-]", "-", name).strip("-")[:40] or "owner"
    return "owner" if name == SYSTEM_UID else name


class Registry:
    """Load with :meth:`open`; change inside :meth:`edit` (locked, atomic)."""

    def __init__(self, paths: NexusPaths, data: dict[str, Any]) -> None:
        self.paths = paths
        self.data = data
        self.loaded_mtime = self.file_mtime()  # the file version self.data was read from (or written as)

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def open(cls, paths: NexusPaths) -> Registry:
        """Load the registry, creating it (local owner, CLI and control-plane keys) on first use."""
        paths.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(paths.lock), timeout=10):
            if not paths.registry.exists():
                cls._bootstrap(paths)
            data = cls._read(paths)
            if not data.get("system") or not paths.system_key.exists():
                # registries made before connection limits: add the system-account key
                system = generate_key(SYSTEM_APP, SYSTEM_UID)
                write_secret_file(paths.system_key, system.secret)
                data["system"] = system.public
                cls._write(paths, data)
            return cls(paths, data)

    @staticmethod
    def _read(paths: NexusPaths) -> dict[str, Any]:
        try:
            data = json.loads(paths.registry.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"the registry {paths.registry} cannot be read: {exc}") from None
        if not isinstance(data, dict) or data.get("schema") != _SCHEMA:
            raise ConfigError(f"the registry {paths.registry} has an unknown format")
        return data

    @classmethod
    def _bootstrap(cls, paths: NexusPaths) -> None:
        owner = local_owner_name()
        now = time.time()
        data: dict[str, Any] = {
            "schema": _SCHEMA,
            "owner": owner,
            "users": {owner: {"created": now}},
            "apps": {SYSTEM_APP: {"owner": owner, "partners": [], "created": now}},
            "keys": {},
            "control": "",
        }
        cli = generate_key(SYSTEM_APP, owner)
        control = generate_key(SYSTEM_APP, SYSTEM_UID)
        data["keys"][cli.public] = {"app": SYSTEM_APP, "uid": owner, "created": now, "label": CLI_LABEL}
        data["control"] = control.public
        write_secret_file(paths.owner_key, cli.secret)
        write_secret_file(paths.control_key, control.secret)
        cls._write(paths, data)

    @staticmethod
    def _write(paths: NexusPaths, data: dict[str, Any]) -> None:
        tmp = paths.registry.with_name("registry.json.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, paths.registry)

    @contextmanager
    def edit(self) -> Iterator[dict[str, Any]]:
        """Change the registry under its lock; written when the block ends without error."""
        with FileLock(str(self.paths.lock), timeout=10):
            data = self._read(self.paths)
            yield data
            self._write(self.paths, data)
            self.data = data
            self.loaded_mtime = self.file_mtime()

    def reload(self) -> None:
        mtime = self.file_mtime()
        self.data = self._read(self.paths)
        self.loaded_mtime = mtime

    def file_mtime(self) -> float:
        try:
            return self.paths.registry.stat().st_mtime
        except OSError:
            return 0.0

    def refresh(self) -> bool:
        """Reload if another process changed the file since it was read (one ``stat`` otherwise).

        False when the new file cannot be read: that is logged, and the last good data is kept.
        """
        if self.file_mtime() == self.loaded_mtime:
            return True
        try:
            self.reload()
        except QEError as exc:
            log.error("%s", exc)
            return False
        return True

    # -- queries ---------------------------------------------------------------------------

    @property
    def owner(self) -> str:
        return str(self.data["owner"])

    def app(self, name: str) -> dict[str, Any] | None:
        app = self.data["apps"].get(name)
        return app if isinstance(app, dict) else None

    def role(self, app: str, uid: str) -> str:
        info = self.app(app) or {}
        if uid == info.get("owner"):
            return "owner"
        if uid in info.get("partners", []):
            return "partner"
        return "user"

    def keys(self) -> dict[str, dict[str, Any]]:
        return dict(self.data["keys"])

    def cli_key(self) -> AppKey:
        return read_key_file(self.paths.owner_key)

    def control_key(self) -> AppKey:
        return read_key_file(self.paths.control_key)

    def system_key(self) -> AppKey:
        return read_key_file(self.paths.system_key)

    def connection_limit(self, public: str) -> int | None:
        """How many connections the key ``public`` may hold at once (None: not an app key)."""
        info = self.data["keys"].get(public)
        if not isinstance(info, dict):
            return None
        limit = info.get("max_connections", DEFAULT_KEY_CONNECTIONS)
        return limit if isinstance(limit, int) and limit > 0 else DEFAULT_KEY_CONNECTIONS

    # -- changes ---------------------------------------------------------------------------

    def add_user(self, uid: str) -> None:
        check_uid(uid)
        if uid == SYSTEM_UID:
            raise BadRequest(f"the uid {SYSTEM_UID!r} is reserved for the control plane")
        with self.edit() as data:
            if uid in data["users"]:
                raise BadRequest(f"user {uid!r} already exists")
            data["users"][uid] = {"created": time.time()}

    def add_app(self, app: str, owner: str | None = None) -> bool:
        """Register ``app`` owned by ``owner`` (default: the local owner). False if it exists."""
        check_app(app)
        with self.edit() as data:
            owner = owner or data["owner"]
            if owner not in data["users"]:
                raise BadRequest(f"unknown user {owner!r} (add it with 'qe user add {owner}')")
            existing = data["apps"].get(app)
            if existing is not None:
                if existing["owner"] != owner:
                    raise BadRequest(f"app {app!r} already exists and belongs to {existing['owner']!r}")
                return False
            data["apps"][app] = {"owner": owner, "partners": [], "created": time.time()}
            return True

    def create_key(self, app: str, uid: str | None = None, label: str = "") -> AppKey:
        """A new key for ``app`` held by ``uid`` (default: the app's owner)."""
        with self.edit() as data:
            info = data["apps"].get(app)
            if info is None:
                raise BadRequest(f"unknown app {app!r} (create it with 'qe new {app}' or 'qe app add {app}')")
            uid = uid or info["owner"]
            if uid not in data["users"]:
                raise BadRequest(f"unknown user {uid!r}")
            key = generate_key(app, uid)
            data["keys"][key.public] = {"app": app, "uid": uid, "created": time.time(), "label": label}
            return key

    def set_partner(self, app: str, uid: str, *, partner: bool) -> bool:
        """Make ``uid`` a partner of ``app`` (or no longer one). False if nothing changed."""
        check_app(app)
        check_uid(uid)
        with self.edit() as data:
            info = data["apps"].get(app)
            if info is None:
                raise BadRequest(f"unknown app {app!r}")
            partners: list[str] = list(info.get("partners", []))
            if partner:
                if uid not in data["users"]:
                    raise BadRequest(f"unknown user {uid!r} (add it with 'qe user add {uid}')")
                if uid == info["owner"]:
                    raise BadRequest(f"{uid!r} owns {app!r}; an owner cannot also be a partner")
                if uid in partners:
                    return False
                partners.append(uid)
            else:
                if uid not in partners:
                    return False
                partners.remove(uid)
            info["partners"] = sorted(partners)
            return True

    def set_connection_limit(self, app: str, uid: str | None, limit: int) -> int:
        """Let each key of ``app`` held by ``uid`` (default: the owner) hold ``limit`` connections.

        Returns how many keys changed; the control plane closes connections beyond the limit.
        """
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1_000_000:
            raise BadRequest("a connection limit is a whole number from 1 to 1000000")
        with self.edit() as data:
            info = data["apps"].get(app)
            if info is None:
                raise BadRequest(f"unknown app {app!r}")
            uid = uid or info["owner"]
            changed = 0
            for k in data["keys"].values():
                if k["app"] == app and k["uid"] == uid:
                    k["max_connections"] = limit
                    changed += 1
            if not changed:
                raise BadRequest(f"{uid}@{app} has no key (create one with 'qe key create {app} --uid {uid}')")
            return changed

    def app_keys(self, app: str, uid: str | None = None) -> dict[str, dict[str, Any]]:
        """The public keys of ``app`` (held by ``uid`` if given) and what is known of them."""
        return {
            pub: dict(info)
            for pub, info in self.data["keys"].items()
            if info["app"] == app and (uid is None or info["uid"] == uid)
        }

    def rotate_key(self, app: str, uid: str | None = None, label: str = "") -> tuple[AppKey, int]:
        """A new key for ``app``/``uid`` and the revocation of its other keys, in one locked edit."""
        with self.edit() as data:
            info = data["apps"].get(app)
            if info is None:
                raise BadRequest(f"unknown app {app!r}")
            uid = uid or info["owner"]
            if uid not in data["users"]:
                raise BadRequest(f"unknown user {uid!r}")
            key = generate_key(app, uid)
            doomed = [
                pub
                for pub, k in data["keys"].items()
                if k["app"] == app and k["uid"] == uid and k.get("label") != CLI_LABEL
            ]
            limits = [data["keys"][pub]["max_connections"] for pub in doomed if "max_connections" in data["keys"][pub]]
            for pub in doomed:
                del data["keys"][pub]
            data["keys"][key.public] = {"app": app, "uid": uid, "created": time.time(), "label": label}
            if limits:  # the new key keeps the limit its predecessors had
                data["keys"][key.public]["max_connections"] = max(limits)
            return key, len(doomed)

    def revoke_keys(
        self, app: str, uid: str | None = None, keep: str | None = None, *, public: str | None = None
    ) -> int:
        """Remove the keys of ``app`` (held by ``uid``, or only the key ``public``, if given),
        except the public key ``keep`` and the local CLI key."""
        with self.edit() as data:
            doomed = [
                pub
                for pub, info in data["keys"].items()
                if info["app"] == app
                and (uid is None or info["uid"] == uid)
                and (public is None or pub == public)
                and pub != keep
                and info.get("label") != CLI_LABEL
            ]
            for pub in doomed:
                del data["keys"][pub]
            return len(doomed)
