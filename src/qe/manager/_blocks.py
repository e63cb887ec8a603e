"""Blocks of a project folder (the ``wpy*`` folders), and what the manager writes into them:
the VS Code interpreter setting and the ``terminal.sh`` / ``terminal.bat`` launchers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .._config import BLOCK_CONFIG, BLOCK_PREFIX
from .._terminals import write_terminal_bat, write_terminal_sh
from ._errors import BlockError
from ._location import env_python

__all__ = [
    "BLOCK_PREFIX",
    "Block",
    "discover_blocks",
    "open_in_vscode",
    "point_vscode",
    "resolve_block",
    "vscode_command",
    "write_terminals",
]

SCRIPT = "run.py"
_RESOURCE = re.compile(r"""resource\s*=\s*["']([^"']+)["']""")


@dataclass(frozen=True)
class Block:
    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def script(self) -> Path:
        return self.folder / SCRIPT

    @property
    def runnable(self) -> bool:
        return self.script.is_file()

    @property
    def app(self) -> str:
        try:
            config = tomllib.loads((self.folder / BLOCK_CONFIG).read_text())
            return str(config.get("app") or self.name.removeprefix(BLOCK_PREFIX))
        except (OSError, tomllib.TOMLDecodeError):
            return self.name.removeprefix(BLOCK_PREFIX)

    @property
    def resource(self) -> str | None:
        """The resource named in ``run.py`` (``App(resource="...")``), for display."""
        try:
            match = _RESOURCE.search(self.script.read_text(errors="replace"))
        except OSError:
            return None
        return match[1] if match else None

    def check_runnable(self) -> None:
        if not self.folder.is_dir():
            raise BlockError(f"{self.folder} does not exist")
        if not self.runnable:
            raise BlockError(f"{self.folder} is not a block: it has no {SCRIPT}")


def discover_blocks(project: Path) -> list[Block]:
    """The ``wpy*`` folders of ``project``, sorted by name."""
    try:
        entries = sorted(project.iterdir())
    except OSError:
        return []
    return [Block(p.resolve()) for p in entries if p.is_dir() and p.name.startswith(BLOCK_PREFIX)]


def resolve_block(ref: str, project: Path) -> Block:
    """A block named by path, by folder name (``wpytest``) or by app (``test``) in ``project``."""
    for candidate in (Path(ref), project / ref, project / f"{BLOCK_PREFIX}{ref}"):
        if candidate.is_dir():
            block = Block(candidate.resolve())
            block.check_runnable()
            return block
    raise BlockError(f"no block {ref!r} in {project} (expected a folder {BLOCK_PREFIX}<app> holding {SCRIPT})")


def point_vscode(block: Block, env: Path) -> Path:
    """Make ``.vscode/settings.json`` use the environment's interpreter (other settings kept)."""
    path = block.folder / ".vscode" / "settings.json"
    try:
        settings = json.loads(path.read_text())
        if not isinstance(settings, dict):
            settings = {}
    except (OSError, ValueError):
        settings = {}
    wanted = {"python.defaultInterpreterPath": str(env_python(env)), "python.terminal.activateEnvironment": True}
    if any(settings.get(k) != v for k, v in wanted.items()):
        settings.update(wanted)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=2) + "\n")
    return path


def write_terminals(block: Block, env: Path) -> tuple[Path, Path]:
    """``terminal.sh`` and ``terminal.bat``: a shell in the block folder with the environment active."""
    return write_terminal_sh(block.folder, env), write_terminal_bat(block.folder, env)


def vscode_command() -> str:
    """The ``code`` command, or a clear :class:`BlockError` saying how to get it."""
    code = shutil.which("code")
    if code is None:
        raise BlockError(
            "VS Code's 'code' command was not found: install VS Code (code.visualstudio.com) and put 'code' on PATH "
            "(VS Code: Command Palette > Shell Command: Install 'code' command in PATH)"
        )
    return code


def open_in_vscode(folder: Path) -> None:
    """``code <folder>``, with a clear message when VS Code's command is not installed."""
    code = vscode_command()
    proc = subprocess.Popen(
        [code, str(folder)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=sys.platform != "win32",
    )
    # `code` hands the folder to VS Code and exits; reap it so no zombie stays behind
    threading.Thread(target=proc.wait, name="qe-code-reaper", daemon=True).start()
