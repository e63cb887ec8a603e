"""``qe direct``, ``qe send``, ``qe listen``: one-way messages from the command line."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
import rich_click as click

__all__ = ["register"]


def _body(text: str) -> Any:
    from ._main import parse_body

    return parse_body(text)


@click.command()
@click.argument("app")
@click.argument("body")
@click.option("--jid", default=None, help="Send to this one block (uid@app/resource, from `qe find`).")
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(0.01, 600), help="Seconds to wait.")
@click.option("--nexus", default=None, help="Nexus address (default: the running local one).")
def direct(app: str, body: str, jid: str | None, timeout: float, nexus: str | None) -> None:
    """Send a one-way JSON BODY (object or list) to one worker of APP; fails if no worker took it."""
    from ..bridge._dispatch import Roles
    from ..bridge._messaging import Messaging, encode_body
    from ._main import cli_client, run

    payload = _body(body)

    async def go() -> None:
        client = cli_client(nexus)
        await client.connect(reconnect=False)
        try:
            data = encode_body(payload, client.max_payload)
            await Messaging(client, Roles(), lambda: True).send_direct(app, data, jid, timeout)
        finally:
            await client.close()

    run(go)
    click.echo(f"delivered to {jid or app}")


@click.command()
@click.argument("channel")
@click.argument("body")
@click.option("--nexus", default=None, help="Nexus address (default: the running local one).")
def send(channel: str, body: str, nexus: str | None) -> None:
    """Broadcast a JSON BODY (object or list) on CHANNEL."""
    from .._names import check_channel
    from ..bridge._messaging import encode_body
    from ._main import cli_client, run

    payload = _body(body)

    async def go() -> None:
        check_channel(channel)
        client = cli_client(nexus)
        await client.connect(reconnect=False)
        try:
            await client.publish(f"nx.ch.{channel}.{client.identity.tokens}", encode_body(payload, client.max_payload))
        finally:
            await client.close()

    run(go)


@click.command()
@click.argument("channel")
@click.option("--count", "-n", default=0, type=click.IntRange(0), help="Exit after this many messages (0: never).")
@click.option("--nexus", default=None, help="Nexus address (default: the running local one).")
def listen(channel: str, count: int, nexus: str | None) -> None:
    """Print the messages of CHANNEL as they come, one line each: the sender's jid, then the JSON body.

    Stop with Ctrl+C (or `--count`).
    """
    from .._names import check_channel
    from ._main import cli_client, run

    async def go() -> None:
        check_channel(channel)
        client = cli_client(nexus)
        await client.connect(reconnect=False)
        done = asyncio.Event()
        seen = 0

        async def on_message(msg: Any) -> None:
            nonlocal seen
            parts = msg.subject.split(".")
            if len(parts) != 6:
                return
            sender = f"{parts[4]}@{parts[3]}/{parts[5]}"
            try:
                text = orjson.dumps(orjson.loads(msg.data)).decode()
            except orjson.JSONDecodeError:
                text = repr(msg.data[:200])
            click.echo(f"{sender} {text}")
            sys.stdout.flush()
            seen += 1
            if count and seen >= count:
                done.set()

        try:
            await client.nc.subscribe(f"nx.ch.{channel}.>", cb=on_message)
            await client.sync()
            click.echo(f"listening on {channel} (Ctrl+C to stop)", err=True)
            await done.wait()
        finally:
            await client.close()

    run(go)


def register(cli: click.Group) -> None:
    for command in (direct, send, listen):
        cli.add_command(command)
