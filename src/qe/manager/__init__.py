"""The environment manager: the shared ``evox`` environment, blocks of a project folder,
running them (foreground, or supervised in the background with logs), VS Code, and the
local web page (:mod:`qe.manager.web`, imported only by the page: workers never load the
web stack)."""

from ._blocks import (
    Block,
    discover_blocks,
    open_in_vscode,
    point_vscode,
    resolve_block,
    vscode_command,
    write_terminals,
)
from ._env import EnsureResult, EnvStatus, Evox, read_requirements
from ._errors import BlockError, EnvError, PortInUse
from ._location import ENV_VAR, env_python, evox_location
from ._logs import RotatingLog, tail_lines
from ._pip import Progress
from ._python import Choice, Interpreter, choose_interpreter
from ._runs import (
    Prepared,
    block_log,
    block_state,
    prepare_block,
    run_foreground,
    start_block,
    stop_block,
    wait_started,
)
from ._runstate import RunState, RunStatus
from ._sdk import SdkSource, sdk_source

__all__ = [
    "ENV_VAR",
    "Block",
    "BlockError",
    "Choice",
    "EnsureResult",
    "EnvError",
    "EnvStatus",
    "Evox",
    "Interpreter",
    "PortInUse",
    "Prepared",
    "Progress",
    "RotatingLog",
    "RunState",
    "RunStatus",
    "SdkSource",
    "block_log",
    "block_state",
    "choose_interpreter",
    "discover_blocks",
    "env_python",
    "evox_location",
    "open_in_vscode",
    "point_vscode",
    "prepare_block",
    "read_requirements",
    "resolve_block",
    "run_foreground",
    "sdk_source",
    "start_block",
    "stop_block",
    "tail_lines",
    "vscode_command",
    "wait_started",
    "write_terminals",
]
