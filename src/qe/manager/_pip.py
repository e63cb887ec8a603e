"""Run pip (and small probes) inside an environment, streaming its output as progress."""

from __future__ import annotations

import json
import os
import subprocess
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from ._errors import EnvError

__all__ = ["Progress", "missing_requirements", "pip_install", "run_streaming", "stream_to"]

Progress = Callable[[str], None]
PROBE_TIMEOUT = 60.0

# Which of these requirements are not satisfied in the environment running this script?
_MISSING = """
import json, sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
out = []
for text in json.load(sys.stdin):
    try:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        version = metadata.version(req.name)
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            out.append(text)
    except Exception:
        out.append(text)
print(json.dumps(out))
"""


def stream_to(progress: Progress | None) -> Progress:
    return progress if progress is not None else (lambda _line: None)


def _quiet_env() -> dict[str, str]:
    return dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONUNBUFFERED="1")


def run_streaming(args: Sequence[str], progress: Progress, *, keep: int = 40) -> tuple[int, list[str]]:
    """Run ``args``, passing each output line to ``progress``; returns (exit code, last lines)."""
    tail: deque[str] = deque(maxlen=keep)
    try:
        proc = subprocess.Popen(
            list(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=_quiet_env(),
        )
    except OSError as exc:
        return 127, [f"{args[0]}: {exc.strerror or exc}"]
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            line = raw.rstrip()
            if line:
                tail.append(line)
                progress(line)
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
    return code, list(tail)


def _reason(tail: list[str]) -> str:
    """The line of pip's output that says what went wrong."""
    for line in reversed(tail):
        if line.startswith("ERROR:") and "pip's dependency resolver" not in line:
            return line.removeprefix("ERROR:").strip()
    return tail[-1] if tail else "no output"


def pip_install(python: Path, args: Sequence[str], progress: Progress | None = None) -> None:
    """``pip install ARGS`` in the environment of ``python``; one-line :class:`EnvError` on failure."""
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--progress-bar", "off"]
    code, tail = run_streaming([*cmd, *args], stream_to(progress))
    if code != 0:
        raise EnvError(f"pip install {' '.join(args)} failed: {_reason(tail)}")


def missing_requirements(python: Path, requirements: Sequence[str]) -> list[str]:
    """The requirements (pip syntax) not satisfied in the environment of ``python``."""
    if not requirements:
        return []
    try:
        out = subprocess.run(
            [str(python), "-c", _MISSING],
            input=json.dumps(list(requirements)),
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return list(requirements)
    return [str(r) for r in result]
