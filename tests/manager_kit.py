"""Helpers for the environment manager's tests: the `qe` command with an evox location, tiny wheels."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EvoxKit:
    """The session's shared evox (made once by `qe env create`) and the environment to reach it."""

    location: Path
    env: dict[str, str]
    created: subprocess.CompletedProcess[str]

    @property
    def python(self) -> Path:
        return self.location / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def qe(
    env: Mapping[str, str], *args: str, cwd: Path | None = None, input: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the `qe` command line as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "qe", *args],
        env=dict(env),
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def make_wheel(folder: Path, name: str, version: str = "1.0", value: str = "tiny") -> Path:
    """A pure-Python wheel with module ``name`` holding ``VALUE``: no network, no build backend."""
    folder.mkdir(parents=True, exist_ok=True)
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VALUE = {value!r}\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: qe-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel
