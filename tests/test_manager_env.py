"""`qe env ...` and `qe run`: the shared evox environment, made and changed as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from manager_kit import EvoxKit, make_wheel, qe
from qe.manager import EnvError, choose_interpreter
from qe.testing import Nexus

TINY_RUN = """\
import sys
import qetinya
print("imported", qetinya.VALUE, "from", sys.prefix)
"""


def test_env_create_makes_evox_with_python_312_and_the_sdk(evox: EvoxKit) -> None:
    assert f"created in {evox.location}" in evox.created.stdout
    assert "creating evox with Python 3.12" in evox.created.stderr
    out = subprocess.run(
        [str(evox.python), "-c", "import sys, qe.bridge; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "(3, 12)"


def test_env_create_again_installs_nothing(evox: EvoxKit) -> None:
    site = next(evox.location.glob("lib*/python*/site-packages"), evox.location / "Lib" / "site-packages")
    before = sorted(p.name for p in site.iterdir())
    again = qe(evox.env, "env", "create")
    assert again.returncode == 0, again.stderr
    assert "nothing to install" in again.stdout
    assert "Successfully installed" not in again.stderr
    assert sorted(p.name for p in site.iterdir()) == before


def test_env_status_shows_interpreter_version_location_size_and_packages(evox: EvoxKit) -> None:
    result = qe(evox.env, "env", "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["exists"] is True
    assert status["version"].startswith("3.12.")
    assert Path(status["location"]) == evox.location
    assert Path(status["python"]) == evox.python
    assert status["size"] > 1_000_000
    assert "qe-python-worker" in {p["name"] for p in status["packages"]}


def test_a_package_installed_with_qe_env_install_is_importable_from_a_block_run(
    evox: EvoxKit, qe_nexus: Nexus, tmp_path: Path, unique_app
) -> None:
    wheel = make_wheel(tmp_path / "wheels", "qetinya", value="shared")
    installed = qe(evox.env, "env", "install", str(wheel))
    assert installed.returncode == 0, installed.stderr
    assert "installed into evox" in installed.stdout
    block = qe_nexus.new_block(tmp_path, unique_app("tiny"))
    (block / "run.py").write_text(TINY_RUN)
    ran = qe(evox.env, "run", block.name, "--dir", str(tmp_path))
    assert ran.returncode == 0, ran.stderr
    assert f"imported shared from {evox.location}" in ran.stdout


def test_qe_run_installs_what_is_missing_of_the_block_requirements_once(
    evox: EvoxKit, qe_nexus: Nexus, tmp_path: Path, unique_app
) -> None:
    make_wheel(tmp_path / "wheels", "qetinyb", value="from requirements")
    block = qe_nexus.new_block(tmp_path, unique_app("req"))
    (block / "requirements.txt").write_text("# extra libraries\nqetinyb==1.0\n")
    (block / "run.py").write_text("import qetinyb\nprint('imported', qetinyb.VALUE)\n")
    env = dict(evox.env, PIP_FIND_LINKS=str(tmp_path / "wheels"))
    first = qe(env, "run", str(block))
    assert first.returncode == 0, first.stderr
    assert "installing wpy" in first.stderr and "qetinyb==1.0" in first.stderr
    assert "imported from requirements" in first.stdout
    second = qe(env, "run", str(block))
    assert second.returncode == 0, second.stderr
    assert "installing" not in second.stderr, "nothing is missing any more"


def test_running_a_block_once_writes_terminals_and_points_vscode_at_evox(
    evox: EvoxKit, qe_nexus: Nexus, tmp_path: Path, unique_app
) -> None:
    block = qe_nexus.new_block(tmp_path, unique_app("term"))
    (block / "run.py").write_text("print('ran')\n")
    assert qe(evox.env, "run", str(block)).returncode == 0
    settings = json.loads((block / ".vscode" / "settings.json").read_text())
    assert Path(settings["python.defaultInterpreterPath"]) == evox.python
    assert "activate.bat" in (block / "terminal.bat").read_text()
    shell = subprocess.run(
        ["sh", str(block / "terminal.sh")],
        input="command -v python; pwd; exit\n",
        env=dict(os.environ, SHELL="/bin/sh"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lines = shell.stdout.splitlines()
    assert str(evox.python) in lines, shell.stdout + shell.stderr
    assert str(block) in lines, "the shell starts in the block folder"


def test_qe_env_terminal_opens_a_shell_with_evox_active(evox: EvoxKit, tmp_path: Path) -> None:
    result = qe(dict(evox.env, SHELL="/bin/sh"), "env", "terminal", cwd=tmp_path, input="command -v pip; exit\n")
    assert result.returncode == 0, result.stderr
    assert str(evox.location / "bin" / "pip") in result.stdout.splitlines()


def test_a_failed_pip_install_is_one_clear_line(evox: EvoxKit, tmp_path: Path) -> None:
    result = qe(evox.env, "env", "install", str(tmp_path / "nope-1.0-py3-none-any.whl"))
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("qe: pip install ") and "No such file" in message, result.stderr


def test_a_missing_interpreter_is_one_clear_line_and_leaves_nothing(qe_nexus: Nexus, tmp_path: Path) -> None:
    location = tmp_path / "evox-missing"
    result = qe(dict(qe_nexus.env, QE_EVOX=str(location)), "env", "create", "--python", "/nonexistent/python3.12")
    assert result.returncode == 1
    assert result.stderr.strip() == "qe: Python interpreter not found or not working: /nonexistent/python3.12"
    assert not location.exists()


def test_a_failed_creation_is_rolled_back(qe_nexus: Nexus, tmp_path: Path) -> None:
    location = tmp_path / "evox-broken"
    env = dict(qe_nexus.env, QE_EVOX=str(location), QE_SDK_SPEC=str(tmp_path / "no-such-sdk"))
    result = qe(env, "env", "create")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("qe: pip install "), result.stderr
    assert "rolling back" in result.stderr
    assert not location.exists(), "a failed creation leaves nothing behind"


def test_qe_env_remove_deletes_the_environment(qe_nexus: Nexus, tmp_path: Path) -> None:
    location = tmp_path / "evox-gone"
    # a quick environment: the "SDK" is a tiny wheel (QE_SDK_SPEC), so no dependencies to fetch
    env = dict(qe_nexus.env, QE_EVOX=str(location), QE_SDK_SPEC=str(make_wheel(tmp_path, "qetinyc")))
    assert qe(env, "env", "create").returncode == 0
    assert (location / "pyvenv.cfg").is_file()
    removed = qe(env, "env", "remove", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert not location.exists()
    status = qe(env, "env", "status")
    assert status.returncode == 3
    assert "not created" in status.stdout


def _link(folder: Path, name: str, target: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).symlink_to(target)


@pytest.mark.skipif(sys.platform == "win32", reason="symlinked interpreters")
def test_without_python_312_the_newest_is_chosen_with_a_notice(tmp_path: Path) -> None:
    me = f"python3.{sys.version_info[1]}"
    _link(tmp_path / "bin", me, getattr(sys, "_base_executable", sys.executable))
    choice = choose_interpreter(search_path=str(tmp_path / "bin"), pyenv_root=tmp_path / "no-pyenv")
    assert choice.interpreter.version[:2] == sys.version_info[:2]
    if sys.version_info[:2] == (3, 12):
        assert choice.notice is None
    else:
        assert choice.notice is not None
        assert f"Python 3.12 was not found; using Python {choice.interpreter.short}" in choice.notice


def test_without_any_usable_python_the_error_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(EnvError, match=r"no Python >= 3.11 found on this machine: install Python 3.12"):
        choose_interpreter(search_path=str(tmp_path / "empty"), pyenv_root=tmp_path / "no-pyenv")


def test_qe_new_points_vscode_at_evox(evox: EvoxKit, tmp_path: Path, unique_app) -> None:
    app = unique_app("vsc")
    assert qe(evox.env, "new", app, "--dir", str(tmp_path)).returncode == 0
    settings = json.loads((tmp_path / f"wpy{app}" / ".vscode" / "settings.json").read_text())
    assert Path(settings["python.defaultInterpreterPath"]) == evox.python


def test_the_worker_sdk_does_not_load_the_web_stack() -> None:
    code = "import sys, qe.bridge; print(sorted({m.split('.')[0] for m in sys.modules} & {'starlette', 'uvicorn'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_first_qe_run_creates_evox_and_then_runs_the_block_in_it(
    qe_nexus: Nexus, tmp_path: Path, unique_app
) -> None:
    location = tmp_path / "evox-first"
    # a quick environment: the "SDK" is a tiny wheel (QE_SDK_SPEC), and run.py only reports where it runs
    env = dict(qe_nexus.env, QE_EVOX=str(location), QE_SDK_SPEC=str(make_wheel(tmp_path / "w", "qetinyr")))
    block = qe_nexus.new_block(tmp_path, unique_app("first"))
    (block / "run.py").write_text("import sys, qetinyr\nprint('ran in', sys.prefix, qetinyr.VALUE)\n")
    assert not location.exists()

    ran = qe(env, "run", str(block))
    assert ran.returncode == 0, ran.stderr
    assert "creating evox" in ran.stderr
    assert f"ran in {location} tiny" in ran.stdout
    assert (location / "pyvenv.cfg").is_file()
