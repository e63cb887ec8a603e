"""The manager page server (imports Starlette and uvicorn: never imported by workers)."""

from ._server import DEFAULT_MANAGER_PORT, LOOPBACK, ManagerServer, manager_state_path, read_manager_state

__all__ = ["DEFAULT_MANAGER_PORT", "LOOPBACK", "ManagerServer", "manager_state_path", "read_manager_state"]
