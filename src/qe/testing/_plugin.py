"""The pytest fixtures of the test kit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ._nexus import Nexus, WorkerProcess

__all__ = ["qe_nexus", "qe_worker"]


@pytest.fixture(scope="session")
def qe_nexus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nexus]:
    """One real Nexus for the test session."""
    nexus = Nexus(tmp_path_factory.mktemp("qe-home")).start()
    try:
        yield nexus
    finally:
        nexus.stop()


@pytest.fixture
def qe_worker(qe_nexus: Nexus) -> Iterator[Callable[..., WorkerProcess]]:
    """``qe_worker(block_dir, "resource=pyw2", wait=True)`` runs the block's run.py."""
    started: list[WorkerProcess] = []

    def start(folder: Path, *args: str, wait: bool = True, script: str = "run.py") -> WorkerProcess:
        worker = WorkerProcess(folder, list(args), qe_nexus.env, script)
        started.append(worker)
        if wait:
            worker.wait_online()
        return worker

    yield start
    for worker in started:
        worker.stop()
