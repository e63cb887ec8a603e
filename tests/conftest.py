from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from qe.bridge import App
from qe.testing import Nexus

_names = itertools.count(1)


@pytest.fixture(scope="session", autouse=True)
def private_data_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Nothing a test does may touch the real per-user data directory."""
    os.environ["QE_HOME"] = str(tmp_path_factory.mktemp("qe-default-home"))


@pytest.fixture
def unique_app() -> Callable[[str], str]:
    """Each test gets its own app names, so tests never see each other's workers."""

    def make(prefix: str = "app") -> str:
        return f"{prefix}{os.getpid() % 1000}-{next(_names)}"

    return make


def run_qe(nexus: Nexus, *args: str, timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``qe`` command line as a user would, against ``nexus``."""
    return subprocess.run(
        [sys.executable, "-m", "qe", *args],
        env=nexus.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


@pytest.fixture
async def make_app(qe_nexus: Nexus) -> AsyncIterator[Callable[..., Any]]:
    """Start in-process workers (``await make_app(app, resource=...)``), stopped after the test."""
    apps: list[App] = []

    async def make(app: str, resource: str = "pytest", *, start: bool = True, **kwargs: Any) -> App:
        key = kwargs.pop("key", None) or qe_nexus.new_app(app).secret
        kwargs.setdefault("autostart_nexus", False)  # never start a Nexus of our own in a test
        worker = App(resource=resource, key=key, nexus=qe_nexus.url, autostart=False, **kwargs)
        apps.append(worker)
        if start:
            await worker.start()
        return worker

    yield make
    for worker in apps:
        await worker.stop()


@pytest.fixture(scope="session")
def evox(qe_nexus: Nexus, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The environment manager's shared evox for the session, made by `qe env create` as a user would."""
    from manager_kit import EvoxKit, qe

    location = tmp_path_factory.mktemp("envs") / "evox"
    env = dict(qe_nexus.env, QE_EVOX=str(location))
    created = qe(env, "env", "create")
    assert created.returncode == 0, created.stderr
    return EvoxKit(location, env, created)
