"""``qe user``, ``qe app``, ``qe key``: edit the registry; a running Nexus applies each change at once.

Every change re-renders ``nats.conf`` and reloads nats-server (no restart): new keys work
at once, and connections of revoked keys are closed by the server during the reload.
A key is printed exactly once, by ``qe key create``/``rotate``, to stdout only; everything
else (the warning to store it, what was applied) goes to stderr, so
``qe key create myapp > myapp.key`` leaves nothing secret on the terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import orjson
import rich_click as click

from .._config import data_home
from .._errors import QEError
from ..nexus import NexusPaths, Registry, apply_registry
from ..nexus._registry import DEFAULT_KEY_CONNECTIONS

__all__ = ["app", "key", "user"]

T = TypeVar("T")


def _fail(message: str, code: int = 1) -> NoReturn:
    click.secho(f"qe: {message}", fg="red", err=True)
    sys.exit(code)


def _note(message: str) -> None:
    click.echo(message, err=True)


def _registry() -> Registry:
    return Registry.open(NexusPaths(data_home()))


def _change(action: Callable[[Registry], T]) -> tuple[Registry, T]:
    """Run one registry change and apply it to the running Nexus; errors become one red line."""
    try:
        registry = _registry()
        result = action(registry)
        applied = apply_registry(registry)
    except QEError as exc:
        _fail(exc.message)
    _note("applied to the running Nexus" if applied else "saved; the Nexus applies it when it starts")
    return registry, result


def _print_key(secret: str, app_name: str, uid: str) -> None:
    click.secho(
        f"New key for {uid}@{app_name}. It is shown only this once: store it now (a block's qe.key "
        "file, mode 0600, or QE_KEY); the Nexus keeps only its public half.",
        fg="yellow",
        err=True,
    )
    click.echo(secret)


# -- users -----------------------------------------------------------------------------------


@click.group()
def user() -> None:
    """Users: the people (uids) who own apps, are partners of apps, or call them."""


@user.command("add")
@click.argument("uid")
def user_add(uid: str) -> None:
    """Add the user UID."""
    _change(lambda r: r.add_user(uid))
    click.echo(f"user {uid} added")


@user.command("list")
def user_list() -> None:
    """List the users."""
    try:
        registry = _registry()
    except QEError as exc:
        _fail(exc.message)
    for uid in sorted(registry.data["users"]):
        click.echo(uid)


# -- apps ------------------------------------------------------------------------------------


@click.group()
def app() -> None:
    """Apps: their owner and partners (who may run their workers and call private ones)."""


@app.command("add")
@click.argument("name")
@click.option("--owner", default=None, help="The owning user (default: the local owner).")
def app_add(name: str, owner: str | None) -> None:
    """Register the app NAME (no key yet: see `qe key create`)."""
    _, created = _change(lambda r: r.add_app(name, owner))
    click.echo(f"app {name} {'added' if created else 'already exists'}")


@app.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def app_show(name: str, as_json: bool) -> None:
    """Show the owner, partners and (public) keys of NAME."""
    try:
        registry = _registry()
    except QEError as exc:
        _fail(exc.message)
    info = registry.app(name)
    if info is None:
        _fail(f"unknown app {name!r}")
    keys = registry.app_keys(name)
    out: dict[str, Any] = {
        "app": name,
        "owner": info["owner"],
        "partners": info.get("partners", []),
        "keys": [{"public": pub, "uid": k["uid"], "label": k.get("label", "")} for pub, k in sorted(keys.items())],
    }
    if as_json:
        click.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"app {name}: owner {out['owner']}, partners {', '.join(out['partners']) or '(none)'}")
    for k in out["keys"]:
        click.echo(f"  key {k['public']}  {k['uid']}  {k['label']}")


@app.group("partners")
def partners() -> None:
    """Partners of an app: like the owner, they may run its workers and call its private ones."""


@partners.command("add")
@click.argument("name")
@click.argument("uid")
def partners_add(name: str, uid: str) -> None:
    """Make UID a partner of the app NAME."""
    _, changed = _change(lambda r: r.set_partner(name, uid, partner=True))
    click.echo(f"{uid} is {'now' if changed else 'already'} a partner of {name}")


@partners.command("remove")
@click.argument("name")
@click.argument("uid")
def partners_remove(name: str, uid: str) -> None:
    """UID is no longer a partner of the app NAME."""
    _, changed = _change(lambda r: r.set_partner(name, uid, partner=False))
    click.echo(f"{uid} is {'no longer' if changed else 'not'} a partner of {name}")


# -- keys ------------------------------------------------------------------------------------


@click.group()
def key() -> None:
    """Keys: one per block (or per person), each for one app and one uid."""


@key.command("create")
@click.argument("app_name", metavar="APP")
@click.option("--uid", default=None, help="Who holds it (default: the app's owner).")
@click.option("--label", default="", help="A note kept with the public key (e.g. the machine).")
def key_create(app_name: str, uid: str | None, label: str) -> None:
    """Create a key for APP and print it once (stdout only)."""
    _, new = _change(lambda r: r.create_key(app_name, uid, label=label))
    _print_key(new.secret, new.app, new.uid)


@key.command("rotate")
@click.argument("app_name", metavar="APP")
@click.option("--uid", default=None, help="Whose keys (default: the app's owner).")
@click.option("--label", default="", help="A note kept with the new public key.")
def key_rotate(app_name: str, uid: str | None, label: str) -> None:
    """Create a new key for APP and revoke the holder's old ones (their connections are closed)."""
    _, (new, revoked) = _change(lambda r: r.rotate_key(app_name, uid, label=label))
    _note(f"revoked {revoked} old key{'s' if revoked != 1 else ''} of {new.uid}@{new.app}")
    _print_key(new.secret, new.app, new.uid)


@key.command("revoke")
@click.argument("app_name", metavar="APP")
@click.option("--uid", default=None, help="Only this user's keys.")
@click.option("--public", "public", default=None, help="Only this key (its public half, from `qe key list`).")
@click.option("--all", "all_keys", is_flag=True, help="Every key of APP (needed when neither --uid nor --public).")
def key_revoke(app_name: str, uid: str | None, public: str | None, all_keys: bool) -> None:
    """Revoke keys of APP; connections using them are closed within seconds."""
    if uid is None and public is None and not all_keys:
        _fail("say which keys: --uid UID, --public KEY or --all", 2)
    _, count = _change(lambda r: r.revoke_keys(app_name, uid, public=public))
    click.echo(f"revoked {count} key{'s' if count != 1 else ''} of {app_name}")


@key.command("limit")
@click.argument("app_name", metavar="APP")
@click.argument("connections", type=click.IntRange(1, 1_000_000))
@click.option("--uid", default=None, help="Whose keys (default: the app's owner).")
def key_limit(app_name: str, connections: int, uid: str | None) -> None:
    """Let each key of APP hold at most CONNECTIONS open connections (default 256).

    Connections beyond it are closed by the Nexus; a worker started beyond it exits with
    "too many connections".
    """
    _, count = _change(lambda r: r.set_connection_limit(app_name, uid, connections))
    click.echo(f"{count} key{'s' if count != 1 else ''} of {app_name} may hold {connections} connections each")


@key.command("list")
@click.argument("app_name", metavar="APP")
def key_list(app_name: str) -> None:
    """List the public halves of APP's keys (the secrets are never stored)."""
    try:
        registry = _registry()
    except QEError as exc:
        _fail(exc.message)
    for pub, info in sorted(registry.app_keys(app_name).items()):
        limit = info.get("max_connections", DEFAULT_KEY_CONNECTIONS)
        click.echo(f"{pub}  {info['uid']}  {info.get('label', '')}  max {limit} connections")
