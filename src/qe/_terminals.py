"""``terminal.sh`` / ``terminal.bat`` in a block folder: a shell there with an environment active.

The manager writes them on every run (``qe run/start/open``, the page). A worker run as a
plain script (``python run.py``, VS Code's ▶) writes the missing ones itself, the guide's
"run run.py once to generate terminal.bat": that path is stdlib only (no ``qe.manager``, no
web stack) and costs two ``stat`` calls once the files exist.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from ._config import BLOCK_CONFIG, BLOCK_PREFIX

__all__ = ["env_bin", "script_block_folder", "write_missing_terminals", "write_terminal_bat", "write_terminal_sh"]

log = logging.getLogger("qe.worker")

SH = "terminal.sh"
BAT = "terminal.bat"


def env_bin(env: Path) -> Path:
    """The folder of the environment's executables: ``Scripts`` on Windows, ``bin`` elsewhere."""
    return env / ("Scripts" if os.name == "nt" else "bin")


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def write_terminal_sh(folder: Path, env: Path) -> Path:
    """``terminal.sh``: an interactive shell in ``folder`` with ``env`` active, or ``terminal.sh -c CMD``."""
    sh = folder / SH
    sh.write_text(
        "#!/bin/sh\n"
        "# A shell in this block folder with the shared environment active (written by qe):\n"
        "# 'pip install pillow' here installs into it, for every block.\n"
        "# With arguments they go to the shell instead: ./terminal.sh -c 'pip list'\n"
        'cd "$(dirname "$0")" || exit 1\n'
        f"VIRTUAL_ENV={_sh_quote(str(env))}\n"
        f'PATH={_sh_quote(str(env_bin(env)))}:"$PATH"\n'
        "export VIRTUAL_ENV PATH\n"
        "unset PYTHONHOME\n"
        'if [ "$#" -gt 0 ]; then exec "${SHELL:-/bin/sh}" "$@"; fi\n'
        f'echo "{env.name} is active here: $VIRTUAL_ENV"\n'
        'exec "${SHELL:-/bin/sh}" -i\n'
    )
    sh.chmod(0o755)
    return sh


def write_terminal_bat(folder: Path, env: Path) -> Path:
    """``terminal.bat``: a ``cmd`` window in ``folder`` with ``env`` active (Windows layout)."""
    bat = folder / BAT
    activate = env / "Scripts" / "activate.bat"  # the Windows layout, where .bat files run
    bat.write_bytes(
        (
            "@echo off\r\n"
            "rem A shell in this block folder with the shared environment active (written by qe):\r\n"
            "rem 'pip install pillow' here installs into it, for every block.\r\n"
            'cd /d "%~dp0"\r\n'
            f'cmd /k ""{activate}""\r\n'
        ).encode()
    )
    return bat


def script_block_folder() -> Path | None:
    """The block folder of a worker run as ``python <folder>/run.py``, else ``None``.

    Only a script run by path (not ``-m``, not a console script such as ``pytest``) in a block
    folder (``wpy*``, or one holding ``qe.toml``) counts: nothing is written elsewhere.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        return None
    file = getattr(main, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py"):
        return None
    folder = Path(file).resolve().parent
    if folder.name.startswith(BLOCK_PREFIX) or (folder / BLOCK_CONFIG).is_file():
        return folder
    return None


def _running_env() -> Path:
    """The environment running this worker when it is a venv (evox, run the intended way), else evox."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix)
    from .manager._location import evox_location  # rare (not a venv) and only when a file is missing

    return evox_location()


def write_missing_terminals(folder: Path | None = None) -> list[Path]:
    """Write the block's missing terminals; never raises (a read-only folder is logged at debug)."""
    written: list[Path] = []
    try:
        folder = script_block_folder() if folder is None else folder
        if folder is None:
            return written
        writers = ((SH, write_terminal_sh), (BAT, write_terminal_bat))
        missing = [(name, write) for name, write in writers if not (folder / name).exists()]
        if not missing:
            return written
        env = _running_env()
        for name, write in missing:
            try:
                written.append(write(folder, env))
            except OSError as exc:
                log.debug("could not write %s in %s: %s", name, folder, exc)
    except Exception as exc:  # a convenience: it must never stop a worker
        log.debug("could not write the block's terminals: %s", exc, exc_info=True)
    return written
