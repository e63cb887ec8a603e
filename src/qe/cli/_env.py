"""``qe env ...``, ``qe run/start/stop/logs/open <block>`` and ``qe manager``: the environment
manager from the command line (thin: parse, call :mod:`qe.manager`, one line per error)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import webbrowser
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import orjson
import rich_click as click
from rich.console import Console

from .._errors import QEError
from ..manager import (
    Block,
    Evox,
    Progress,
    RunStatus,
    block_log,
    block_state,
    evox_location,
    open_in_vscode,
    prepare_block,
    resolve_block,
    run_foreground,
    start_block,
    stop_block,
    tail_lines,
    vscode_command,
    wait_started,
)
from ..manager._location import env_bin

__all__ = ["ManagerAlongside", "register"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

# progress lines worth keeping on screen; the rest only animate the spinner
_KEEP = ("Successfully installed", "creating ", "installing ", "rolling back", "starting ", "Python 3.12 was not")


def _fail(message: str, code: int = 1) -> NoReturn:
    click.secho(f"qe: {message}", fg="red", err=True)
    sys.exit(code)


def _guard(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except QEError as exc:
        _fail(exc.message, 2 if exc.code == 2 else 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


@contextlib.contextmanager
def _progress(title: str) -> Iterator[Progress]:
    """A spinner with pip's current line; notable lines stay printed."""
    console = Console(stderr=True, highlight=False)
    with console.status(title) as status:

        def say(line: str) -> None:
            if line.startswith(_KEEP):
                console.print(line, style="yellow" if line.startswith("Python 3.12 was not") else None, markup=False)
            status.update(line[:100])

        yield say


def _evox(evox: str | None, python: str | None = None) -> Evox:
    return _guard(lambda: Evox(evox_location(evox), python=python))


def evox_option(fn: F) -> F:
    return click.option(
        "--evox",
        default=None,
        metavar="NAME|PATH",
        help="The shared environment: a name under the data folder or a path (default: $QE_EVOX or evox).",
    )(fn)


def project_option(fn: F) -> F:
    return click.option(
        "--dir",
        "project",
        type=click.Path(file_okay=False, path_type=Path),
        default=".",
        help="The project folder holding the wpy<app> blocks.",
    )(fn)


def _block(ref: str, project: Path) -> Block:
    return _guard(lambda: resolve_block(ref, project))


# -- qe env ----------------------------------------------------------------------------------


@click.group("env")
def env_group() -> None:
    """The shared `evox` environment every block runs in (`pip install` there is shared)."""


@env_group.command("create")
@evox_option
@click.option("--python", default=None, help="Interpreter to build it with (default: Python 3.12 if found).")
def env_create(evox: str | None, python: str | None) -> None:
    """Create `evox` (or fill in what is missing): Python 3.12 and the QE SDK."""
    env = _evox(evox, python)
    with _progress(f"preparing {env.name}") as say:
        result = _guard(lambda: env.ensure(say))
    if result.created:
        click.secho(f"{env.name} created in {env.location}", fg="green")
    elif result.installed:
        click.secho(f"{env.name} completed: installed {' '.join(result.installed)}", fg="green")
    else:
        click.echo(f"{env.name} is up to date: nothing to install ({env.location})")


@env_group.command("status")
@evox_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def env_status(evox: str | None, as_json: bool) -> None:
    """Interpreter, version, location, size and packages of `evox`."""
    env = _evox(evox)
    status = _guard(env.status)
    if as_json:
        click.echo(orjson.dumps(status.as_dict(), option=orjson.OPT_INDENT_2).decode())
    elif not status.exists:
        click.echo(f"{status.name}: not created (it will be at {status.location}; `qe env create` makes it)")
    else:
        click.secho(f"{status.name}: Python {status.version}", fg="green")
        click.echo(f"  python:    {status.python}")
        click.echo(f"  location:  {status.location}")
        click.echo(f"  size:      {status.size / 1048576:.1f} MB")
        click.echo(f"  packages:  {len(status.packages)}")
        for name, version in status.packages:
            click.echo(f"    {name} {version}")
    if not status.exists:
        sys.exit(3)


@env_group.command("install", context_settings={"ignore_unknown_options": True})
@evox_option
@click.argument("packages", nargs=-1, required=True, type=click.UNPROCESSED)
def env_install(evox: str | None, packages: tuple[str, ...]) -> None:
    """`pip install PACKAGES` into `evox` (pip syntax; shared by every block)."""
    env = _evox(evox)
    with _progress(f"pip install {' '.join(packages)}") as say:
        _guard(lambda: env.install(list(packages), say))
    click.secho(f"installed into {env.name}: {' '.join(packages)}", fg="green")


@env_group.command("remove")
@evox_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
def env_remove(evox: str | None, yes: bool) -> None:
    """Delete `evox` (it is made again on the next run)."""
    env = _evox(evox)
    if not env.location.exists():
        click.echo(f"{env.name} does not exist ({env.location})")
        return
    if not yes:
        click.confirm(f"Delete {env.location}?", abort=True)
    _guard(env.remove)
    click.secho(f"{env.name} removed ({env.location})", fg="green")


@env_group.command("terminal")
@evox_option
def env_terminal(evox: str | None) -> None:
    """Open a shell here with `evox` active (`pip install` then goes into it)."""
    env = _evox(evox)
    with _progress(f"preparing {env.name}") as say:
        _guard(lambda: env.ensure(say))
    bin_dir = env_bin(env.location)
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    shell_env = dict(os.environ, VIRTUAL_ENV=str(env.location), PATH=path)
    shell_env.pop("PYTHONHOME", None)
    click.echo(f"{env.name} is active in this shell ({env.location}); `exit` leaves it")
    if os.name == "nt":
        args = [os.environ.get("COMSPEC", "cmd.exe"), "/k", str(bin_dir / "activate.bat")]
    else:
        args = [os.environ.get("SHELL") or "/bin/sh", "-i"]
    sys.exit(subprocess.call(args, env=shell_env))


# -- blocks ----------------------------------------------------------------------------------


@click.command("run")
@click.argument("block")
@project_option
@evox_option
def run_cmd(block: str, project: Path, evox: str | None) -> None:
    """Run BLOCK's run.py in `evox` in the foreground (Ctrl+C stops it).

    BLOCK is a folder, a `wpy<app>` name or an app name in the project folder.
    """
    target = _block(block, project)
    env = _evox(evox)
    with _progress(f"preparing {env.name}") as say:
        _guard(lambda: prepare_block(target, env, say))
    click.secho(f"running {target.folder / 'run.py'} with {env.python} (Ctrl+C stops it)", fg="green", err=True)
    sys.exit(_guard(lambda: run_foreground(target, env)))


@click.command("start")
@click.argument("block")
@project_option
@evox_option
@click.option("--wait", default=20.0, show_default=True, type=click.FloatRange(0, 600), help="Seconds to wait online.")
def start_cmd(block: str, project: Path, evox: str | None, wait: float) -> None:
    """Start BLOCK in the background, supervised (see `qe logs`, `qe stop`)."""
    target = _block(block, project)
    env = _evox(evox)
    with _progress(f"starting {target.name}") as say:
        state = _guard(lambda: start_block(target, env, say))
    state = wait_started(target, wait)
    if state.online_seen and state.active:
        click.secho(f"{target.name} is running and online (pid {state.pid})", fg="green")
    elif state.active:
        click.secho(f"{target.name} is running (pid {state.pid}), not online yet; see `qe logs {target.name}`")
    else:
        _report_end(target, state.message)
        sys.exit(1)
    click.echo(f"  log:  {block_log(target)}")


def _report_end(block: Block, message: str) -> None:
    click.secho(f"qe: {block.name} {message}; last log lines:", fg="red", err=True)
    for line in tail_lines(block_log(block), 10):
        click.echo(f"  {line}", err=True)


@click.command("stop")
@click.argument("block")
@project_option
def stop_cmd(block: str, project: Path) -> None:
    """Stop BLOCK's background run."""
    target = _block(block, project)
    state = _guard(lambda: stop_block(target))
    if state is None:
        click.echo(f"{target.name} is not running")
    else:
        click.secho(f"{target.name} stopped ({state.message})", fg="green")


@click.command("logs")
@click.argument("block")
@project_option
@click.option("--lines", "-n", default=50, show_default=True, type=click.IntRange(1, 100000), help="How many.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl+C stops).")
def logs_cmd(block: str, project: Path, lines: int, follow: bool) -> None:
    """Print the last lines of BLOCK's background log (and its state)."""
    target = _block(block, project)
    state = block_state(target)
    path = block_log(target)
    for line in tail_lines(path, lines):
        click.echo(line)
    if state.status is RunStatus.CRASHED:
        click.secho(f"qe: {target.name} {state.message}", fg="red", err=True)
    if follow:
        with contextlib.suppress(KeyboardInterrupt):
            _follow(path)


def _follow(path: Path) -> None:
    pos = path.stat().st_size if path.exists() else 0
    while True:
        time.sleep(0.25)
        size = path.stat().st_size if path.exists() else 0
        if size < pos:
            pos = 0
        if size > pos:
            with open(path, "rb") as f:
                f.seek(pos)
                data = f.read()
            pos += len(data)
            click.echo(data.decode("utf-8", errors="replace"), nl=False)


@click.command("open")
@click.argument("block")
@project_option
@evox_option
def open_cmd(block: str, project: Path, evox: str | None) -> None:
    """Open BLOCK in VS Code, with its interpreter set to `evox`."""
    target = _block(block, project)
    env = _evox(evox)
    _guard(vscode_command)  # before changing anything
    with _progress(f"preparing {env.name}") as say:
        _guard(lambda: prepare_block(target, env, say))
    _guard(lambda: open_in_vscode(target.folder))
    click.secho(f"opened {target.folder} in VS Code (interpreter: {env.python})", fg="green")


# -- the page --------------------------------------------------------------------------------


@click.command("manager")
@project_option
@evox_option
@click.option("--port", default=None, type=click.IntRange(0, 65535), help="Port on 127.0.0.1 (default 7470; 0: any).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the browser.")
def manager_cmd(project: Path, evox: str | None, port: int | None, open_browser: bool) -> None:
    """Serve the manager page for the project folder on 127.0.0.1 (Ctrl+C stops it)."""
    from ..manager.web import ManagerServer

    env = _evox(evox)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
        async with ManagerServer(project, env, port) as server:
            click.secho(f"QE manager: {server.url}", fg="green", bold=True)
            click.echo(f"  project:  {server.manager.project}")
            click.echo(f"  evox:     {env.location}")
            click.echo("Press Ctrl+C to stop.")
            if open_browser:
                webbrowser.open(server.url)
            await stop.wait()

    _guard(lambda: asyncio.run(serve()))
    click.echo("manager stopped")


class ManagerAlongside:
    """`qe up`'s manager page: started before the Nexus, stopped after it.

    A page that cannot start (port in use) is a one-line warning; the Nexus runs anyway.
    """

    def __init__(self, enabled: bool, port: int | None, project: Path | None = None) -> None:
        self.enabled = enabled
        self.port = port
        self.project = project or Path.cwd()
        self.line = ""

    async def around(self, nexus: Awaitable[None]) -> None:
        server: Any = None
        if self.enabled:
            from ..manager.web import ManagerServer

            try:
                candidate = ManagerServer(self.project, Evox(evox_location()), self.port)
                await candidate.start()
            except QEError as exc:
                self.line = f"  manager: not started: {exc.message}"
            else:
                server = candidate
                self.line = f"  manager: {server.url}"
        try:
            await nexus
        finally:
            if server is not None:
                await server.stop()

    def announce(self) -> None:
        if self.line:
            click.echo(self.line)

    def detached_args(self) -> list[str]:
        """The same choice for the ``qe up`` started in the background."""
        if not self.enabled:
            return ["--no-manager"]
        return ["--manager-port", str(self.port)] if self.port is not None else []

    def announce_detached(self, pid: int) -> None:
        from ..manager.web import read_manager_state

        state = read_manager_state()
        if self.enabled and state is not None and state.get("pid") == pid:
            click.echo(f"  manager: {state['url']}")


def register(cli: click.Group) -> None:
    """Add the manager's commands to the `qe` group."""
    for command in (env_group, run_cmd, start_cmd, stop_cmd, logs_cmd, open_cmd, manager_cmd):
        cli.add_command(command)
