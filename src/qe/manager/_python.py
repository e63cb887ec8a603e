"""Find the interpreter ``evox`` is made with: Python 3.12 if the machine has one, else the
newest available >= 3.11 (with a one-line notice saying which and why).

Candidates: an explicit ``--python`` / ``QE_EVOX_PYTHON``; else ``python3.12`` and friends on
PATH, pyenv's versions, the Windows ``py`` launcher, and the interpreter running ``qe``. Each
candidate is run once to learn its real version (a pyenv shim for a missing version fails
and is skipped) and whether it can make environments (``venv`` + ``ensurepip``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ._errors import EnvError

__all__ = ["MINIMUM", "PREFERRED", "Choice", "Interpreter", "choose_interpreter", "probe_interpreter"]

PREFERRED = (3, 12)
MINIMUM = (3, 11)
PROBE_TIMEOUT = 15.0
PYTHON_VAR = "QE_EVOX_PYTHON"

_PROBE = (
    "import json, sys\n"
    "try:\n    import ensurepip, venv\n    ok = True\nexcept ImportError:\n    ok = False\n"
    "print(json.dumps([list(sys.version_info[:3]), sys.executable, ok]))"
)
_VERSIONED = re.compile(r"python(\d)\.(\d+)(?:\.exe)?$")


@dataclass(frozen=True)
class Interpreter:
    path: Path
    version: tuple[int, int, int]
    can_venv: bool

    @property
    def short(self) -> str:
        return ".".join(map(str, self.version))


@dataclass(frozen=True)
class Choice:
    interpreter: Interpreter
    notice: str | None  # set when it is not the preferred version


def probe_interpreter(path: str | Path) -> Interpreter | None:
    """Run ``path`` once; None if it does not run (missing, broken, a shim without a version)."""
    try:
        out = subprocess.run(
            [str(path), "-c", _PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False
        )
        version, executable, ok = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return Interpreter(Path(executable), (int(version[0]), int(version[1]), int(version[2])), bool(ok))


def _named(search_path: str | None, pyenv_root: Path | None) -> Iterator[Path]:
    """Interpreters whose file name says their version (python3.X), newest names first."""
    minors = [PREFERRED[1], *range(20, MINIMUM[1] - 1, -1)]
    seen: set[int] = set()
    for minor in minors:
        if minor in seen:
            continue
        seen.add(minor)
        found = shutil.which(f"python3.{minor}", path=search_path)
        if found:
            yield Path(found)
        if pyenv_root is not None:
            for version_dir in sorted((pyenv_root / "versions").glob(f"3.{minor}.*"), reverse=True):
                exe = version_dir / "bin" / f"python3.{minor}"
                if exe.is_file():
                    yield exe


def _windows_launcher() -> Iterator[Path]:
    launcher = shutil.which("py")
    if os.name != "nt" or launcher is None:
        return
    try:
        out = subprocess.run([launcher, "-0p"], capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return
    for line in out.stdout.splitlines():
        parts = line.split()
        if parts and parts[-1].lower().endswith("python.exe"):
            yield Path(parts[-1])


def _generic(search_path: str | None) -> Iterator[Path]:
    for name in ("python3", "python"):
        found = shutil.which(name, path=search_path)
        if found:
            yield Path(found)
    if search_path is None:
        yield Path(getattr(sys, "_base_executable", sys.executable))


def _default_pyenv_root() -> Path | None:
    root = os.environ.get("PYENV_ROOT")
    path = Path(root) if root else Path.home() / ".pyenv"
    return path if (path / "versions").is_dir() else None


def choose_interpreter(
    explicit: str | None = None, *, search_path: str | None = None, pyenv_root: Path | None = None
) -> Choice:
    """Pick the interpreter for a new environment, or raise :class:`EnvError` saying why not.

    ``search_path`` and ``pyenv_root`` replace PATH and ``~/.pyenv`` (tests use them).
    """
    explicit = explicit or os.environ.get(PYTHON_VAR) or None
    if explicit:
        found = probe_interpreter(explicit)
        if found is None:
            raise EnvError(f"Python interpreter not found or not working: {explicit}")
        _check_usable(found)
        return Choice(found, None)
    if search_path is None and pyenv_root is None:
        pyenv_root = _default_pyenv_root()
    usable: dict[Path, Interpreter] = {}
    unusable: list[Interpreter] = []
    for path in _candidates(search_path, pyenv_root):
        match = _VERSIONED.search(path.name)
        if match and (int(match[1]), int(match[2])) < MINIMUM:
            continue
        found = probe_interpreter(path)
        if found is None or found.version[:2] < MINIMUM:
            continue
        if not found.can_venv:
            unusable.append(found)
            continue
        usable.setdefault(found.path, found)
        if found.version[:2] == PREFERRED:
            return Choice(found, None)
    if usable:
        best = max(usable.values(), key=lambda i: i.version)
        want = ".".join(map(str, PREFERRED))
        return Choice(best, f"Python {want} was not found; using Python {best.short} ({best.path}), the newest >= 3.11")
    if unusable:
        raise EnvError(
            f"Python {unusable[0].short} ({unusable[0].path}) cannot create environments (no venv/ensurepip); "
            "install the python3-venv package or Python 3.12 from python.org"
        )
    raise EnvError("no Python >= 3.11 found on this machine: install Python 3.12 (python.org) or pass --python PATH")


def _candidates(search_path: str | None, pyenv_root: Path | None) -> Iterator[Path]:
    yield from _named(search_path, pyenv_root)
    yield from _windows_launcher()
    yield from _generic(search_path)


def _check_usable(found: Interpreter) -> None:
    if found.version[:2] < MINIMUM:
        raise EnvError(f"Python {found.short} ({found.path}) is too old: evox needs Python >= 3.11")
    if not found.can_venv:
        raise EnvError(f"Python {found.short} ({found.path}) cannot create environments (no venv/ensurepip)")
