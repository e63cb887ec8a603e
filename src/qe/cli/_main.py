"""The ``qe`` command: parse, build settings, call the SDK, map our errors to a message and exit code."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import orjson
import rich_click as click

from .. import __version__
from .._config import DEFAULT_NATS_PORT, data_home
from .._errors import QEError
from .._names import Identity
from ..nexus import NexusPaths, Registry, ServerSettings, read_state
from . import _env as manager_cmds
from . import _messaging as messaging_cmds
from . import _registry_cmds as registry_cmds

T = TypeVar("T")

click.rich_click.TEXT_MARKUP = "markdown"


def fail(message: str, code: int = 1) -> NoReturn:
    click.secho(f"qe: {message}", fg="red", err=True)
    sys.exit(code)


def paths() -> NexusPaths:
    return NexusPaths(data_home())


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine; our errors become one red line and exit code 1 (no traceback, no key)."""
    try:
        return asyncio.run(coro_fn())  # type: ignore[arg-type]
    except QEError as exc:
        fail(exc.message, 2 if exc.code == 2 else 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)


def print_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def nexus_url(option: str | None) -> str:
    if option:
        return option
    if os.environ.get("QE_NEXUS"):
        return os.environ["QE_NEXUS"]
    state = read_state(paths())
    if state is not None:
        return state.url
    return f"nats://127.0.0.1:{DEFAULT_NATS_PORT}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qe")
def cli() -> None:
    """**QE python-worker platform**: run the Nexus, scaffold blocks, call workers.

    Start with `qe up`, then `qe new <app>` and `python wpy<app>/run.py`.
    """


# -- the Nexus -------------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address nats-server listens on.")
@click.option("--port", default=DEFAULT_NATS_PORT, show_default=True, type=click.IntRange(1, 65535), help="NATS port.")
@click.option("--detach", "-d", is_flag=True, help="Run in the background (stop with `qe down`).")
@click.option("--tls", is_flag=True, help="Serve TLS only (a local CA and certificate are created on first use).")
@click.option("--tls-cert", default="", help="Your server certificate (PEM) instead of the generated one.")
@click.option("--tls-key", default="", help="The private key of --tls-cert (PEM).")
@click.option("--insecure-remote", is_flag=True, help="Allow a non-loopback --host without TLS (plain text).")
@click.option("--manager-port", default=None, type=click.IntRange(0, 65535), help="Manager page port (default 7470).")
@click.option("--no-manager", is_flag=True, help="Do not serve the manager page for this folder.")
def up(
    host: str,
    port: int,
    detach: bool,
    tls: bool,
    tls_cert: str,
    tls_key: str,
    insecure_remote: bool,
    manager_port: int | None,
    no_manager: bool,
) -> None:
    """Start the Nexus: nats-server and the control plane (and the manager page for this folder)."""
    from ..nexus import run_nexus, start_detached
    from ._env import ManagerAlongside

    page = ManagerAlongside(not no_manager, manager_port)

    settings = ServerSettings(
        host=host, port=port, tls=tls, tls_cert=tls_cert, tls_key=tls_key, insecure_remote=insecure_remote
    )
    p = paths()
    if detach:
        try:
            state = start_detached(p, settings, page.detached_args())
        except QEError as exc:
            fail(exc.message)
        click.echo(f"Nexus running in the background (pid {state.pid})")
        page.announce_detached(state.pid)
        click.echo(f"  nats:  {state.url}")
        if state.client_ca() is not None:
            click.echo(f"  CA:    {state.client_ca()}  (clients trust it: tls_ca / QE_TLS_CA)")
        click.echo(f"  data:  {p.home}")
        click.echo(f"  log:   {p.logs / 'nexus.log'}")
        return

    def announce(state: Any) -> None:
        click.secho("Nexus is up", fg="green", bold=True)
        click.echo(f"  nats:  {state.url}")
        if state.client_ca() is not None:
            click.echo(f"  CA:    {state.client_ca()}  (clients trust it: tls_ca / QE_TLS_CA)")
        click.echo(f"  data:  {p.home}")
        page.announce()
        click.echo("Press Ctrl+C to stop.")

    run(lambda: page.around(run_nexus(p, settings, announce=announce)))
    click.echo("Nexus stopped.")


@cli.command()
def down() -> None:
    """Stop the background Nexus."""
    from ..nexus import stop_nexus

    state = stop_nexus(paths())
    if state is None:
        click.echo("no Nexus is running")
        return
    click.echo(f"Nexus stopped (pid {state.pid})")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def status(as_json: bool) -> None:
    """Show whether the Nexus runs, and where."""
    p = paths()
    state = read_state(p)
    info: dict[str, Any] = {"running": state is not None, "home": str(p.home)}
    if state is not None:
        info.update(pid=state.pid, nats_pid=state.nats_pid, url=state.url, started=state.started)
        ca = state.client_ca()
        info.update(tls=state.settings.tls, tls_ca=str(ca) if ca else None)
    if as_json:
        print_json(info)
    elif state is None:
        click.echo(f"Nexus: stopped (data in {p.home})")
    else:
        click.secho(f"Nexus: running (pid {state.pid})", fg="green")
        click.echo(f"  nats:  {state.url}")
        if info["tls_ca"]:
            click.echo(f"  CA:    {info['tls_ca']}")
        click.echo(f"  data:  {p.home}")
    if state is None:
        sys.exit(3)


# -- blocks ----------------------------------------------------------------------------------


@cli.command()
@click.argument("app")
@click.option(
    "--dir", "parent", type=click.Path(file_okay=False, path_type=Path), default=".", help="Where to create wpy<app>/."
)
@click.option("--nexus", "nexus", default=None, help="Nexus address written into the block config.")
def new(app: str, parent: Path, nexus: str | None) -> None:
    """Register APP (creating its key) and write the block folder `wpy<APP>/`."""
    from .._names import check_app
    from .._scaffold import write_block
    from ..nexus import apply_registry

    try:
        check_app(app)
        registry = Registry.open(paths())
        registry.add_app(app)
        key = registry.create_key(app, label="block")
        files = write_block(parent, key, nexus_url(nexus), tls_ca=local_tls_ca())
        apply_registry(registry)
    except QEError as exc:
        fail(exc.message)
    click.secho(f"created {files.folder}", fg="green")
    for name in files.written:
        click.echo(f"  {name}")
    click.echo(f"run it with:  python {files.folder / 'run.py'}")


# -- calls -----------------------------------------------------------------------------------


def cli_client(nexus: str | None) -> Any:
    from ..bridge._client import NexusClient

    registry = Registry.open(paths())
    identity = Identity("qe", registry.owner, f"cli-{os.getpid()}")
    return NexusClient(identity, registry.cli_key(), (nexus_url(nexus),), name="qe-cli", tls_ca=local_tls_ca())


def local_tls_ca() -> Path | None:
    """The CA a TLS Nexus's certificate is signed by: QE_TLS_CA, else the running local Nexus's."""
    if os.environ.get("QE_TLS_CA"):
        return Path(os.environ["QE_TLS_CA"]).expanduser()
    state = read_state(paths())
    return state.client_ca() if state is not None else None


def parse_body(text: str | None) -> Any:
    if text is None:
        return {}
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        fail(f"the body is not valid JSON ({exc.msg}); quote it, e.g. '{{\"x\": 1}}'", 2)


@cli.command()
@click.argument("app")
@click.argument("cmd")
@click.argument("body", required=False)
@click.option("--jid", default=None, help="Call this one block (uid@app/resource, from `qe find`).")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(0.01, 3600), help="Seconds to wait.")
@click.option("--nexus", default=None, help="Nexus address (default: the running local one).")
def call(app: str, cmd: str, body: str | None, jid: str | None, timeout: float, nexus: str | None) -> None:
    """Call CMD on a worker of APP with a JSON BODY; prints the JSON result.

    Progress reports of a long call are shown on stderr as they come; Ctrl+C (or the timeout)
    cancels the call on the worker.
    """
    from ..bridge._app import request_api

    payload = parse_body(body)

    def show_progress(value: Any) -> None:
        click.echo(f"progress: {orjson.dumps(value).decode()}", err=True)

    async def go() -> dict[str, Any]:
        client = cli_client(nexus)
        await client.connect(reconnect=False)
        try:
            try:
                return await request_api(client, app, cmd, payload, jid, timeout, show_progress)
            except QEError as exc:
                return exc.to_wire()
        finally:
            await client.close()

    reply = run(go)
    print_json(reply)
    if reply.get("code") != 0:
        sys.exit(1)


@cli.command()
@click.argument("app")
@click.option("--json", "as_json", is_flag=True, help="Print the full JSON answer.")
@click.option("--nexus", default=None, help="Nexus address (default: the running local one).")
def find(app: str, as_json: bool, nexus: str | None) -> None:
    """List the online blocks of APP."""
    from ..bridge._app import request_find

    async def go() -> dict[str, Any]:
        client = cli_client(nexus)
        await client.connect(reconnect=False)
        try:
            return await request_find(client, app, 5.0)
        finally:
            await client.close()

    reply = run(go)
    if as_json:
        print_json(reply)
        return
    if not reply["blocks"]:
        click.echo(f"no block of {app} is online")
        return
    for block in reply["blocks"]:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(block["since"])) if block.get("since") else "?"
        click.echo(
            f"{block['jid']}  resource {block['resource']}  uid {block['uid']}  pid {block['pid']} on {block['host']}  "
            f"{'public' if block['public'] else 'private'}  online since {since}  in flight {block['inflight']}"
        )


cli.add_command(registry_cmds.user)
cli.add_command(registry_cmds.app)
cli.add_command(registry_cmds.key)
manager_cmds.register(cli)
messaging_cmds.register(cli)


def main() -> None:
    cli(prog_name="qe")
