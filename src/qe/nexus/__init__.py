"""The embedded Nexus: nats-server, its config, the registry and the control plane."""

from ._control import ControlPlane
from ._registry import NexusPaths, Registry
from ._server import NatsProcess, ServerSettings, find_nats_server, write_config
from ._supervisor import NexusState, apply_registry, read_state, run_nexus, start_detached, stop_nexus

__all__ = [
    "ControlPlane",
    "NatsProcess",
    "NexusPaths",
    "NexusState",
    "Registry",
    "ServerSettings",
    "apply_registry",
    "find_nats_server",
    "read_state",
    "run_nexus",
    "start_detached",
    "stop_nexus",
    "write_config",
]
