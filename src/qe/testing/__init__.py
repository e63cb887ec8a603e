"""Test kit for QE workers, installed as a pytest plugin (``qe.testing._plugin``, loaded automatically).

Fixtures:

- ``qe_nexus`` (session): a real Nexus (nats-server + control plane) on a free port, in a
  private data directory. ``qe_nexus.new_block(tmp_path, "myapp")`` scaffolds a block,
  ``qe_nexus.env`` is the environment for subprocesses, ``qe_nexus.client()`` a caller.
- ``qe_worker``: start ``python run.py`` in a block folder, wait until it is online; every
  worker started is stopped at the end of the test.

    def test_ping(qe_nexus, qe_worker, tmp_path):
        block = qe_nexus.new_block(tmp_path, "myapp")
        qe_worker(block)
        ...
"""

from typing import Any

from ._nexus import Nexus, WorkerProcess, free_port, wait_until

__all__ = ["Nexus", "WorkerProcess", "free_port", "qe_nexus", "qe_worker", "wait_until"]


def __getattr__(name: str) -> Any:
    # the fixtures need pytest; Nexus and WorkerProcess (used by bench/) do not
    if name in ("qe_nexus", "qe_worker"):
        from . import _plugin

        return getattr(_plugin, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
