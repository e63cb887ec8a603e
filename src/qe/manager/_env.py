"""The shared ``evox`` environment: create (idempotent, rolled back on failure), status,
install, requirements of a block, remove.

It is a plain ``venv`` (no conda needed) made with Python 3.12 when the machine has one
(see :mod:`._python`), holding the QE SDK (see :mod:`._sdk`) and whatever the blocks need.
Changes are serialised by a lock file next to the environment, so the page and the command
line can act at the same time.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from ._errors import EnvError
from ._location import env_bin, env_python
from ._pip import Progress, missing_requirements, pip_install, run_streaming, stream_to
from ._python import choose_interpreter
from ._sdk import sdk_source

__all__ = ["EnsureResult", "EnvStatus", "Evox", "read_requirements"]

LOCK_TIMEOUT = 900.0
_STATUS = (
    "import json, sys\nfrom importlib import metadata\n"
    "pk = sorted({(d.metadata['Name'] or '?', d.version) for d in metadata.distributions()},"
    " key=lambda p: p[0].lower())\n"
    "print(json.dumps({'version': '.'.join(map(str, sys.version_info[:3])), 'base': sys.base_prefix,"
    " 'packages': pk}))"
)


@dataclass(frozen=True)
class EnsureResult:
    created: bool
    installed: tuple[str, ...]  # what was missing and is now there
    notice: str | None = None  # e.g. "Python 3.12 was not found; using ..."


@dataclass(frozen=True)
class EnvStatus:
    name: str
    location: str
    exists: bool
    python: str | None = None
    version: str | None = None
    base: str | None = None
    size: int = 0
    packages: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "location": self.location,
            "exists": self.exists,
            "python": self.python,
            "version": self.version,
            "base": self.base,
            "size": self.size,
            "packages": [{"name": n, "version": v} for n, v in self.packages],
        }


def read_requirements(path: Path) -> tuple[list[str], bool]:
    """The requirement lines of a requirements file, and whether some cannot be checked
    (options, URLs, paths: those are always handed to pip, which skips what is satisfied)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return [], False
    lines: list[str] = []
    opaque = False
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-", ".", "/", "~")) or "://" in line or "@" in line:
            opaque = True
        lines.append(line)
    return lines, opaque


class Evox:
    """The shared environment at ``location`` (see :func:`evox_location`)."""

    def __init__(self, location: Path, *, python: str | None = None) -> None:
        self.location = location
        self._python_choice = python
        self._lock = FileLock(str(location.with_name(location.name + ".lock")), timeout=LOCK_TIMEOUT)

    def __repr__(self) -> str:
        return f"Evox({str(self.location)!r})"

    @property
    def name(self) -> str:
        return self.location.name

    @property
    def python(self) -> Path:
        return env_python(self.location)

    @property
    def bin(self) -> Path:
        return env_bin(self.location)

    def exists(self) -> bool:
        return self.python.exists() and (self.location / "pyvenv.cfg").is_file()

    # -- changes ---------------------------------------------------------------------------

    def ensure(self, progress: Progress | None = None) -> EnsureResult:
        """Create the environment if needed and install what is missing of the SDK.

        A creation that fails (or is interrupted) removes the half-made folder.
        """
        say = stream_to(progress)
        self.location.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            created, notice = False, None
            if not self.exists():
                notice = self._create(say)
                created = True
            try:
                installed = self._fill_sdk(say)
            except BaseException:
                if created:
                    say(f"rolling back: removing {self.location}")
                    shutil.rmtree(self.location, ignore_errors=True)
                raise
        return EnsureResult(created, installed, notice)

    def _create(self, say: Progress) -> str | None:
        if self.location.exists() and any(self.location.iterdir()):
            raise EnvError(f"{self.location} exists but is not a Python environment; remove it or pick another --evox")
        choice = choose_interpreter(self._python_choice)
        if choice.notice:
            say(choice.notice)
        found = choice.interpreter
        say(f"creating {self.name} with Python {found.short} ({found.path}) in {self.location}")
        try:
            code, tail = run_streaming([str(found.path), "-m", "venv", str(self.location)], say)
            if code != 0 or not self.exists():
                reason = tail[-1] if tail else f"exit code {code}"
                raise EnvError(f"could not create {self.name} with Python {found.short}: {reason}")
        except BaseException:
            shutil.rmtree(self.location, ignore_errors=True)
            raise
        return choice.notice

    def _fill_sdk(self, say: Progress) -> tuple[str, ...]:
        sdk = sdk_source()
        missing = missing_requirements(self.python, sdk.requirements)
        if not missing:
            return ()
        if missing[0] == sdk.requirements[0]:
            say(f"installing the QE SDK: {sdk.describe}")
            pip_install(self.python, sdk.install_args, say)
        else:
            say(f"installing missing packages: {' '.join(missing)}")
            pip_install(self.python, missing, say)
        return tuple(missing)

    def install(self, packages: list[str], progress: Progress | None = None) -> EnsureResult:
        """``pip install PACKAGES`` into the environment (creating it first if needed)."""
        if not packages:
            raise EnvError("name at least one package to install (pip syntax, e.g. pillow or 'numpy>=2')")
        result = self.ensure(progress)
        with self._lock:
            pip_install(self.python, packages, progress)
        return EnsureResult(result.created, (*result.installed, *packages), result.notice)

    def install_requirements(self, path: Path, progress: Progress | None = None) -> tuple[str, ...]:
        """Install what is missing of a block's ``requirements.txt`` (nothing if all is there)."""
        lines, opaque = read_requirements(path)
        if not lines:
            return ()
        with self._lock:
            if opaque:
                pip_install(self.python, ["-r", str(path)], progress)
                return tuple(lines)
            missing = missing_requirements(self.python, lines)
            if missing:
                stream_to(progress)(f"installing {path.parent.name}'s requirements: {' '.join(missing)}")
                pip_install(self.python, [a for line in missing for a in shlex.split(line)], progress)
            return tuple(missing)

    def remove(self) -> bool:
        """Delete the environment; False if there was none."""
        with self._lock:
            if not self.location.exists():
                return False
            if not (self.location / "pyvenv.cfg").is_file():
                raise EnvError(f"{self.location} is not a Python environment; not removing it")
            shutil.rmtree(self.location)
            return True

    # -- reading ---------------------------------------------------------------------------

    def status(self) -> EnvStatus:
        if not self.exists():
            return EnvStatus(self.name, str(self.location), False)
        try:
            out = subprocess.run(
                [str(self.python), "-c", _STATUS], capture_output=True, text=True, timeout=60, check=False
            )
            info = json.loads(out.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            raise EnvError(f"{self.location} holds a broken environment; remove it with 'qe env remove'") from None
        return EnvStatus(
            self.name,
            str(self.location),
            True,
            str(self.python),
            info["version"],
            info["base"],
            _size(self.location),
            [(str(n), str(v)) for n, v in info["packages"]],
        )


def _size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total
