"""`qe user|app|key`: registry changes made on the command line, seen as a user sees them (calls, roles)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conftest import run_qe
from qe.bridge import APISpecs, App
from qe.testing import Nexus
from waiting import until_async


async def qe(nexus: Nexus, *args: str) -> tuple[int, str, str]:
    """`qe ...` in a thread, so the in-process workers of the test keep serving meanwhile."""
    result = await asyncio.to_thread(run_qe, nexus, *args)
    return result.returncode, result.stdout, result.stderr


async def ok(nexus: Nexus, *args: str) -> str:
    code, out, err = await qe(nexus, *args)
    assert code == 0, err
    assert "applied to the running Nexus" in err
    return out


async def worker_that_reports_roles(make_app: Any, app: str, **kwargs: Any) -> App:
    worker: App = await make_app(app, "pyroles", **kwargs)

    @worker.nexus.API("who")
    async def who(specs: APISpecs) -> dict[str, Any]:
        return {"role": specs.role, "caller": specs.jid}

    return worker


async def test_a_partner_added_with_qe_app_partners_add_is_seen_as_partner_until_removed(
    qe_nexus: Nexus, make_app, unique_app
):
    app, uid = unique_app("part"), unique_app("bob")
    assert await ok(qe_nexus, "app", "add", app) == f"app {app} added\n"
    worker_key = (await ok(qe_nexus, "key", "create", app)).strip()
    await worker_that_reports_roles(make_app, app, key=worker_key)

    assert await ok(qe_nexus, "user", "add", uid) == f"user {uid} added\n"
    own = f"{uid}-app"
    assert await ok(qe_nexus, "app", "add", own, "--owner", uid) == f"app {own} added\n"
    caller: App = await make_app(own, "pycaller", key=(await ok(qe_nexus, "key", "create", own)).strip())

    async def role_is(expected: str) -> bool:
        reply = await caller.call(app=app, cmd="who")
        assert reply["caller"] == f"{uid}@{own}/pycaller"
        return bool(reply["role"] == expected)

    assert await role_is("user")
    assert await ok(qe_nexus, "app", "partners", "add", app, uid) == f"{uid} is now a partner of {app}\n"
    await until_async(lambda: role_is("partner"), what=f"{uid} to be seen as a partner of {app}")
    assert f"partners {uid}" in (await qe(qe_nexus, "app", "show", app))[1]
    assert await ok(qe_nexus, "app", "partners", "remove", app, uid) == f"{uid} is no longer a partner of {app}\n"
    await until_async(lambda: role_is("user"), what=f"{uid} to be a plain user of {app} again")
    assert await ok(qe_nexus, "app", "partners", "remove", app, uid) == f"{uid} is not a partner of {app}\n"


async def test_a_partner_may_call_the_private_worker_of_the_app(qe_nexus: Nexus, make_app, unique_app):
    app, uid = unique_app("priv"), unique_app("ann")
    await ok(qe_nexus, "app", "add", app)
    await worker_that_reports_roles(make_app, app, key=(await ok(qe_nexus, "key", "create", app)).strip(), public=False)
    await ok(qe_nexus, "user", "add", uid)
    await ok(qe_nexus, "app", "add", f"{uid}-app", "--owner", uid)
    key = (await ok(qe_nexus, "key", "create", f"{uid}-app")).strip()
    caller: App = await make_app(f"{uid}-app", "pycaller", key=key)
    assert (await caller.api(app=app, cmd="who"))["code"] == 403, "a private worker refuses plain users"
    await ok(qe_nexus, "app", "partners", "add", app, uid)

    async def partner_answered() -> bool:
        return bool((await caller.api(app=app, cmd="who")).get("role") == "partner")

    await until_async(partner_answered, what="the private worker to answer its new partner")


async def test_qe_key_create_prints_only_a_key_that_works_for_a_call(qe_nexus: Nexus, make_app, unique_app):
    target, app = unique_app("tgt"), unique_app("kc")
    await worker_that_reports_roles(make_app, target)
    await ok(qe_nexus, "app", "add", app)
    code, out, err = await qe(qe_nexus, "key", "create", app, "--label", "laptop")
    assert code == 0, err
    secret = out.strip()
    assert out.count("\n") == 1 and secret.startswith(f"qe1.{app}.")
    assert secret not in err and "shown only this once" in err
    caller: App = await make_app(app, "pycaller", key=secret)
    reply = await caller.call(app=target, cmd="who")
    assert reply["caller"] == f"{qe_nexus.registry.owner}@{app}/pycaller"
    code, listed, _ = await qe(qe_nexus, "key", "list", app)
    assert code == 0 and "laptop" in listed and secret not in listed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("user", "add", "Bad Name!"), "qe: invalid uid 'Bad Name!': use 1-40 characters"),
        (("app", "add", "no/such"), "qe: invalid app 'no/such': use 1-40 characters"),
        (("app", "add", "{app}", "--owner", "nobody-here"), "qe: unknown user 'nobody-here' (add it with"),
        (("app", "partners", "add", "no-such-app-x", "{app}"), "qe: unknown app 'no-such-app-x'"),
        (("app", "partners", "add", "{app}", "ghost-uid"), "qe: unknown user 'ghost-uid' (add it with"),
        (("app", "partners", "remove", "no-such-app-x", "{app}"), "qe: unknown app 'no-such-app-x'"),
        (("key", "create", "no-such-app-x"), "qe: unknown app 'no-such-app-x' (create it with"),
    ],
)
def test_a_bad_name_is_one_clear_line_and_a_nonzero_exit(qe_nexus: Nexus, unique_app, args, message) -> None:
    app = unique_app("bad")
    qe_nexus.new_app(app)
    result = run_qe(qe_nexus, *(a.format(app=app) for a in args))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr


def test_adding_a_user_twice_says_it_exists(qe_nexus: Nexus, unique_app) -> None:
    uid = unique_app("twice")
    assert run_qe(qe_nexus, "user", "add", uid).returncode == 0
    assert uid in run_qe(qe_nexus, "user", "list").stdout.split()
    again = run_qe(qe_nexus, "user", "add", uid)
    assert again.returncode == 1
    assert again.stderr.strip() == f"qe: user '{uid}' already exists"
