"""The guide's `get_event_loop(); run_forever()` on every Python the guide's users have (3.11-3.13).

The current interpreter is covered by test_guide_worker; here each other version found on the
machine gets its own venv with the package installed, runs the scaffolded run.py with
warnings as errors and asyncio debug mode, answers a ping, and stops with exit 0 on Ctrl+C.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_qe
from qe.testing import Nexus, WorkerProcess

ROOT = Path(__file__).resolve().parents[1]


def find_python(version: str) -> str | None:
    candidates = [shutil.which(f"python{version}")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += [str(p / "bin" / f"python{version}") for p in sorted(pyenv.glob(f"{version}.*"))]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            probe = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, check=False
            )
            if probe.returncode == 0:
                return candidate
    return None


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_the_guide_worker_runs_cleanly_on_python(version: str, qe_nexus: Nexus, tmp_path: Path, unique_app) -> None:
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        pytest.skip("the current interpreter is covered by test_guide_worker")
    python = find_python(version)
    if python is None:
        pytest.skip(f"python{version} is not installed on this machine")
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    install = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)],
        capture_output=True,
        check=False,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-2000:]

    app = unique_app("py" + version.replace(".", ""))
    block = qe_nexus.new_block(tmp_path, app)
    env = dict(qe_nexus.env, PYTHONWARNINGS="error", PYTHONASYNCIODEBUG="1")
    worker = WorkerProcess(block, [], env, python=str(bin_dir / "python"))
    try:
        worker.wait_online()
        assert json.loads(run_qe(qe_nexus, "call", app, "ping").stdout) == {"code": 0, "pong": True}
        worker.signal(signal.SIGINT)
        assert worker.wait() == 0
        assert "Warning" not in worker.output and "Traceback" not in worker.output
    finally:
        worker.stop()
