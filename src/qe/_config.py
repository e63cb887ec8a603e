"""Typed settings, built once at the edge and passed down.

A worker's settings come from, lowest to highest precedence:

1. defaults;
2. the block config file ``qe.toml`` (next to the script being run, else the current folder);
3. keyword arguments given to ``App(...)`` in code;
4. environment variables ``QE_APP``, ``QE_RESOURCE``, ``QE_KEY``, ``QE_NEXUS``, ``QE_PUBLIC``,
   ``QE_TLS_CA`` (the CA file that signs a ``tls://`` Nexus's certificate);
5. ``key=value`` command-line arguments (``python run.py resource=pyworker2``).

The key itself comes from ``QE_KEY``/``key=`` or from the key file named by ``key_file``
(default ``qe.key`` in the block folder), which ``qe new`` writes with owner-only permissions.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import platformdirs

from ._errors import ConfigError
from ._keys import AppKey, read_key_file
from ._names import check_app, check_resource

__all__ = [
    "BLOCK_CONFIG",
    "BLOCK_PREFIX",
    "DEFAULT_NATS_PORT",
    "DEFAULT_REST_PORT",
    "WorkerSettings",
    "data_home",
    "is_loopback_url",
]

BLOCK_CONFIG = "qe.toml"
BLOCK_PREFIX = "wpy"  # a block folder is wpy<app>
KEY_FILE = "qe.key"
DEFAULT_NATS_PORT = 7422
DEFAULT_REST_PORT = 8000  # rest=True, or App.rest used with no rest= given
DEFAULT_MAX_PAYLOAD = 1024 * 1024  # nats-server's own default
DEFAULT_CONCURRENCY = 64
DEFAULT_CALL_TIMEOUT = 30.0


def data_home() -> Path:
    """Per-user data directory (``QE_HOME`` overrides it)."""
    env = os.environ.get("QE_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return platformdirs.user_data_path("qe", appauthor=False)


def default_nexus_url() -> str:
    return f"nats://127.0.0.1:{DEFAULT_NATS_PORT}"


def is_loopback_url(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host in {"localhost", "127.0.0.1", "::1"} or host.startswith("127.")


def _bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")


def _rest(value: object) -> int | None:
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_REST_PORT
    text = str(value).strip().lower()
    if text in {"0", "false", "no", "off", ""}:
        return None
    try:
        port = int(text)
    except ValueError:
        raise ConfigError(f"rest must be false or a port number, not {value!r}") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"rest port must be between 1 and 65535, not {port}")
    return port


def _urls(value: object) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    urls = tuple(str(u).strip() for u in items if str(u).strip())
    if not urls:
        raise ConfigError("nexus must name at least one address, e.g. nats://127.0.0.1:7422")
    for url in urls:
        if urlparse(url).scheme not in {"nats", "tls", "ws", "wss"}:
            raise ConfigError(f"nexus address {url!r} must start with nats:// or tls://")
    return urls


_ENV = {
    "app": "QE_APP",
    "resource": "QE_RESOURCE",
    "key": "QE_KEY",
    "nexus": "QE_NEXUS",
    "public": "QE_PUBLIC",
    "rest": "QE_REST",
    "concurrency": "QE_CONCURRENCY",
    "tls_ca": "QE_TLS_CA",
}
_KNOWN = {
    *("app", "resource", "key", "securekey", "key_file", "nexus", "public", "rest", "image", "concurrency", "log"),
    "tls_ca",
}


def block_dir_of_script(argv0: str | None = None) -> Path:
    """The block folder: where the running script lives (``run.py``), else the cwd."""
    script = argv0 if argv0 is not None else (sys.argv[0] if sys.argv else "")
    if script and script not in {"-c", "-m"} and Path(script).exists():
        return Path(script).resolve().parent
    return Path.cwd()


def parse_argv(argv: Sequence[str]) -> dict[str, str]:
    """``key=value`` arguments; other arguments are left for the program."""
    out: dict[str, str] = {}
    for arg in argv:
        name, sep, value = arg.partition("=")
        if sep and name in _KNOWN:
            out[name] = value
    return out


@dataclass(frozen=True)
class WorkerSettings:
    app: str
    resource: str
    key: AppKey = field(repr=False)
    nexus: tuple[str, ...]
    public: bool = True
    rest: int | None = None
    rest_off: bool = False  # rest=False given: App.rest is refused rather than served on the default port
    image: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    tls_ca: Path | None = None
    block_dir: Path = field(default_factory=Path.cwd)
    home: Path = field(default_factory=data_home)

    @classmethod
    def build(
        cls,
        code: Mapping[str, Any],
        *,
        argv: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        block_dir: Path | None = None,
    ) -> WorkerSettings:
        env = os.environ if env is None else env
        argv = sys.argv[1:] if argv is None else argv
        block_dir = block_dir_of_script() if block_dir is None else block_dir

        merged: dict[str, Any] = {}
        cfg_path = block_dir / BLOCK_CONFIG
        if cfg_path.exists():
            try:
                merged.update(tomllib.loads(cfg_path.read_text()))
            except (tomllib.TOMLDecodeError, OSError) as exc:
                raise ConfigError(f"cannot read {cfg_path}: {exc}") from None
        merged.update({k: v for k, v in code.items() if v is not None})
        merged.update({name: env[var] for name, var in _ENV.items() if env.get(var)})
        merged.update(parse_argv(argv))
        if "securekey" in merged and "key" not in merged:
            merged["key"] = merged.pop("securekey")

        key = cls._key(merged, block_dir)
        app = check_app(merged.get("app", key.app))
        if app != key.app:
            raise ConfigError(f"the key belongs to app {key.app!r}, but this block is configured for app {app!r}")
        resource = check_resource(merged.get("resource", "python"))
        try:
            concurrency = int(merged.get("concurrency", DEFAULT_CONCURRENCY))
        except ValueError:
            raise ConfigError("concurrency must be a whole number") from None
        if concurrency < 1:
            raise ConfigError("concurrency must be at least 1")
        rest = _rest(merged.get("rest"))
        return cls(
            app=app,
            resource=resource,
            key=key,
            nexus=_urls(merged.get("nexus", default_nexus_url())),
            public=_bool("public", merged.get("public", True)),
            rest=rest,
            rest_off=rest is None and merged.get("rest") is not None,
            image=merged.get("image"),
            concurrency=concurrency,
            tls_ca=cls._tls_ca(merged, block_dir),
            block_dir=block_dir,
            home=data_home(),
        )

    @staticmethod
    def _tls_ca(merged: Mapping[str, Any], block_dir: Path) -> Path | None:
        """The CA file that signs the Nexus's TLS certificate (relative to the block folder)."""
        value = merged.get("tls_ca")
        if not value:
            return None
        path = Path(str(value)).expanduser()
        path = path if path.is_absolute() else block_dir / path
        if not path.is_file():
            raise ConfigError(f"tls_ca {path} does not exist (it is the Nexus's ca.pem, see 'qe status')")
        return path

    @staticmethod
    def _key(merged: Mapping[str, Any], block_dir: Path) -> AppKey:
        if merged.get("key"):
            return AppKey.parse(merged["key"])
        key_file = Path(str(merged.get("key_file", KEY_FILE))).expanduser()
        if not key_file.is_absolute():
            key_file = block_dir / key_file
        if not key_file.exists():
            raise ConfigError(
                f"no key: {key_file} does not exist and QE_KEY is not set "
                "(create a block with 'qe new <app>' or a key with 'qe key create <app>')"
            )
        return read_key_file(key_file)
