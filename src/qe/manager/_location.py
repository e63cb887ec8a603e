"""Where the shared ``evox`` environment lives, and the paths inside it (portable).

The rule, highest precedence first: the ``--evox`` option, the ``QE_EVOX`` environment
variable, then ``evox``. A bare name means ``<data home>/envs/<name>``; anything with a
path separator (or ``~``) is the environment folder itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .._config import data_home
from .._terminals import env_bin
from ._errors import EnvError

__all__ = ["DEFAULT_ENV_NAME", "ENV_VAR", "env_bin", "env_python", "evox_location"]

ENV_VAR = "QE_EVOX"
DEFAULT_ENV_NAME = "evox"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def evox_location(value: str | None = None) -> Path:
    raw = (value or os.environ.get(ENV_VAR) or DEFAULT_ENV_NAME).strip()
    if any(sep in raw for sep in ("/", "\\", os.sep)) or raw.startswith("~"):
        return Path(raw).expanduser().resolve()
    if not _NAME.match(raw):
        raise EnvError(f"invalid environment name {raw!r}: use letters, digits, '.', '_' or '-', or give a path")
    return data_home() / "envs" / raw


def env_python(env: Path) -> Path:
    return env_bin(env) / ("python.exe" if os.name == "nt" else "python")
