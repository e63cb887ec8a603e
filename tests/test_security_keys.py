"""Keys and roles: rotation and revocation cut connected workers off; roles come from the registry."""

from __future__ import annotations

import stat
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from conftest import run_qe
from qe._errors import Forbidden, NotAuthorized
from qe._keys import AppKey
from qe.bridge import APISpecs, App
from qe.bridge._app import request_api
from qe.bridge._client import ClientState
from qe.nexus import apply_registry
from qe.testing import Nexus
from security_kit import add_user, eventually, eventually_async


@pytest.fixture
def own_nexus(tmp_path: Path) -> Iterator[Nexus]:
    """A Nexus of its own, for tests that rotate and revoke keys."""
    nexus = Nexus(tmp_path / "home").start()
    try:
        yield nexus
    finally:
        nexus.stop()


def worker(nexus: Nexus, key: AppKey | str, resource: str) -> App:
    secret = key.secret if isinstance(key, AppKey) else key
    app = App(resource=resource, key=secret, nexus=nexus.url, autostart=False)

    @app.nexus.API("who")
    async def who(specs: APISpecs) -> dict:
        return {"resource": app.resource, "role": specs.role, "uid": specs.uid}

    return app


async def call(nexus: Nexus, app: str, cmd: str = "who", key: AppKey | None = None) -> dict:
    client = nexus.client(key)
    await client.connect(reconnect=False)
    try:
        return await request_api(client, app, cmd, {}, None, 5, None)
    finally:
        await client.close()


async def test_rotating_a_key_cuts_its_worker_off_within_5_s_and_keeps_the_others(own_nexus: Nexus) -> None:
    old = own_nexus.new_app("rot")
    bystander_key = own_nexus.new_app("bystander")
    rotated, bystander = worker(own_nexus, old, "pyold"), worker(own_nexus, bystander_key, "pyby")
    await rotated.start()
    await bystander.start()
    try:
        result = run_qe(own_nexus, "key", "rotate", "rot")
        assert result.returncode == 0, result.stderr
        new_secret = result.stdout.strip()
        assert AppKey.parse(new_secret).app == "rot" and new_secret != old.secret
        assert "shown only this once" in result.stderr and new_secret not in result.stderr

        await eventually(lambda: rotated.client.state is not ClientState.CONNECTED, 5, "the old key to be cut off")
        assert bystander.client.state is ClientState.CONNECTED
        assert (await call(own_nexus, "bystander"))["resource"] == "pyby"
        with pytest.raises(NotAuthorized):
            await call(own_nexus, "rot", key=old)  # the old key cannot connect again

        async with worker(own_nexus, new_secret, "pynew"):
            assert (await call(own_nexus, "rot"))["resource"] == "pynew"
        assert rotated.client.state is not ClientState.CONNECTED  # it keeps trying, and keeps being refused
    finally:
        await rotated.stop()
        await bystander.stop()


async def test_revoking_one_key_cuts_only_that_keys_connections(own_nexus: Nexus) -> None:
    first, second = own_nexus.new_app("rev"), own_nexus.new_app("rev")
    doomed, kept = worker(own_nexus, first, "pyfirst"), worker(own_nexus, second, "pysecond")
    await doomed.start()
    await kept.start()
    try:
        listed = run_qe(own_nexus, "key", "list", "rev").stdout
        assert first.public in listed and second.public in listed
        assert first.seed not in listed
        result = run_qe(own_nexus, "key", "revoke", "rev", "--public", first.public)
        assert result.returncode == 0, result.stderr
        await eventually(lambda: doomed.client.state is not ClientState.CONNECTED, 5, "the revoked key to be cut off")
        assert kept.client.state is ClientState.CONNECTED
        assert {(await call(own_nexus, "rev"))["resource"] for _ in range(5)} == {"pysecond"}
    finally:
        await doomed.stop()
        await kept.stop()


async def test_the_same_worker_sees_the_owner_a_partner_and_a_user(qe_nexus: Nexus, make_app, unique_app) -> None:
    app = unique_app("roles")
    partner, user = add_user(qe_nexus, unique_app("pat")), add_user(qe_nexus, unique_app("usr"))
    registry = qe_nexus.registry
    registry.add_app(app)
    registry.set_partner(app, partner, partner=True)
    key = registry.create_key(app)
    apply_registry(registry)
    served = await make_app(app, resource="pyroles", key=key.secret)

    @served.nexus.API("who")
    async def who(specs: APISpecs) -> dict:
        return {"role": specs.role, "uid": specs.uid}

    partner_key = qe_nexus.new_app(unique_app("papp"), owner=partner)
    user_key = qe_nexus.new_app(unique_app("uapp"), owner=user)
    assert (await call(qe_nexus, app))["role"] == "owner"
    assert await call(qe_nexus, app, key=partner_key) == {"code": 0, "role": "partner", "uid": partner}
    assert await call(qe_nexus, app, key=user_key) == {"code": 0, "role": "user", "uid": user}


async def test_partner_changes_reach_a_running_worker(qe_nexus: Nexus, make_app, unique_app) -> None:
    app = unique_app("team")
    newcomer = add_user(qe_nexus, unique_app("new"))
    served = await make_app(app, resource="pyteam", public=False)
    caller = qe_nexus.new_app(unique_app("napp"), owner=newcomer)

    @served.nexus.API("who")
    async def who(specs: APISpecs) -> dict:
        return {"role": specs.role}

    assert (await served.api(app, "who"))["role"] == "owner"
    client = qe_nexus.client(caller)
    await client.connect(reconnect=False)

    async def role() -> str | None:
        try:
            return str((await request_api(client, app, "who", {}, None, 5, None))["role"])
        except Forbidden:
            return None

    try:
        assert await role() is None  # a stranger: the private worker refuses
        registry = qe_nexus.registry
        registry.set_partner(app, newcomer, partner=True)
        apply_registry(registry)
        await eventually_async(lambda: _is(role, "partner"), 5, "the worker to see the new partner")
        registry.set_partner(app, newcomer, partner=False)
        apply_registry(registry)
        await eventually_async(lambda: _is(role, None), 5, "the worker to see the partner removed")
    finally:
        await client.close()


async def _is(probe: Callable[[], Awaitable[str | None]], expected: str | None) -> bool:
    return await probe() == expected


def test_key_files_and_the_server_config_are_owner_only(qe_nexus: Nexus, tmp_path: Path, unique_app) -> None:
    block = qe_nexus.new_block(tmp_path, unique_app("files"))
    paths = qe_nexus.paths
    for path in (block / "qe.key", paths.owner_key, paths.control_key, paths.system_key, paths.nats_conf):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o600, f"{path} has mode {oct(mode)}"
