"""The SDK's pieces that need no server: settings, names, the dispatcher's answers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import qe.bridge
from qe._config import WorkerSettings
from qe._errors import ConfigError, InvalidName, QEError, error_from_wire
from qe._keys import AppKey, generate_key
from qe._names import check_app, check_resource, parse_jid
from qe._scaffold import write_block
from qe.bridge import APISpecs
from qe.bridge._dispatch import Dispatcher


def test_the_public_surface_is_exactly_what_all_lists() -> None:
    public = {name for name in dir(qe.bridge) if not name.startswith(("_", "@"))}
    assert set(qe.bridge.__all__) == public - {"annotations"}
    assert qe.bridge.__all__ == sorted(qe.bridge.__all__)


@pytest.fixture
def key() -> AppKey:
    return generate_key("emyapp", "alice")


def test_a_key_never_shows_its_seed(key: AppKey) -> None:
    assert key.seed not in repr(key)
    assert key.seed not in str(key)
    assert AppKey.parse(key.secret) == key


@pytest.mark.parametrize("bad", ["", "qe1.app", "qe2.a.b.SUAX", "qe1.App.u.SUAX", "qe1.a.b.not-a-seed", 42])
def test_a_malformed_key_is_refused_without_quoting_it(bad: object) -> None:
    with pytest.raises(ConfigError) as info:
        AppKey.parse(bad)
    if isinstance(bad, str) and bad:
        assert bad.split(".")[-1] not in info.value.message or len(bad.split(".")[-1]) < 5


def test_settings_come_from_file_then_code_then_env_then_args(tmp_path: Path, key: AppKey) -> None:
    (tmp_path / "qe.toml").write_text('app = "emyapp"\nresource = "pyfile"\nnexus = "nats://127.0.0.1:1"\n')
    (tmp_path / "qe.key").write_text(key.secret)
    from_file = WorkerSettings.build({}, argv=[], env={}, block_dir=tmp_path)
    assert (from_file.resource, from_file.nexus) == ("pyfile", ("nats://127.0.0.1:1",))
    from_code = WorkerSettings.build({"resource": "pycode"}, argv=[], env={}, block_dir=tmp_path)
    assert from_code.resource == "pycode"
    env = {"QE_RESOURCE": "pyenv", "QE_NEXUS": "nats://127.0.0.1:2"}
    from_env = WorkerSettings.build({"resource": "pycode"}, argv=[], env=env, block_dir=tmp_path)
    assert (from_env.resource, from_env.nexus) == ("pyenv", ("nats://127.0.0.1:2",))
    from_args = WorkerSettings.build({"resource": "pycode"}, argv=["resource=pyarg", "-v"], env=env, block_dir=tmp_path)
    assert from_args.resource == "pyarg"


def test_the_block_config_qe_new_writes_is_read_and_its_resource_line_works_uncommented(
    tmp_path: Path, key: AppKey
) -> None:
    folder = write_block(tmp_path, key, "nats://127.0.0.1:7999").folder
    settings = WorkerSettings.build({}, argv=[], env={}, block_dir=folder)
    assert (settings.app, settings.resource, settings.nexus) == ("emyapp", "python", ("nats://127.0.0.1:7999",))
    config = folder / "qe.toml"
    config.write_text(config.read_text().replace('# resource = "pyworker1"', 'resource = "pyworker1"'))
    assert WorkerSettings.build({}, argv=[], env={}, block_dir=folder).resource == "pyworker1"
    assert WorkerSettings.build({"resource": "python"}, argv=[], env={}, block_dir=folder).resource == "python"


def test_settings_refuse_a_key_of_another_app(tmp_path: Path, key: AppKey) -> None:
    (tmp_path / "qe.key").write_text(key.secret)
    with pytest.raises(ConfigError, match="belongs to app 'emyapp'"):
        WorkerSettings.build({"app": "other"}, argv=[], env={}, block_dir=tmp_path)


def test_settings_without_a_key_say_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="qe new"):
        WorkerSettings.build({}, argv=[], env={}, block_dir=tmp_path)


@pytest.mark.parametrize("value", ["worker1", "Python", "py_x", "p", "py" + "x" * 40, "", None])
def test_a_resource_must_start_with_py_and_be_a_plain_token(value: object) -> None:
    with pytest.raises(InvalidName) as info:
        check_resource(value)
    assert "must start with 'py'" in info.value.message


@pytest.mark.parametrize("value", ["a.b", "A", "-x", "x*", "x>", "", "a b", 7])
def test_names_that_could_break_a_subject_are_refused(value: object) -> None:
    with pytest.raises(InvalidName):
        check_app(value)


def test_a_jid_names_uid_app_and_resource() -> None:
    ident = parse_jid("alice@emyapp/pyworker1")
    assert (ident.uid, ident.app, ident.resource) == ("alice", "emyapp", "pyworker1")
    assert ident.jid == "alice@emyapp/pyworker1"
    with pytest.raises(InvalidName):
        parse_jid("alice@emyapp")


def test_wire_errors_come_back_as_the_same_exception_types() -> None:
    for code, text in [(404, "unknown command: x"), (503, "no worker online: a"), (504, "timeout: ..."), (777, "new")]:
        err = error_from_wire({"code": code, "error": text})
        assert isinstance(err, QEError)
        assert err.to_wire() == {"code": code, "error": text}


# -- the dispatcher, without a server -------------------------------------------------------------


async def _answer(dispatcher: Dispatcher, data: bytes, uid: str = "alice") -> dict[str, Any]:
    return await dispatcher.answer(data, "caller", uid, "pycaller")


def make_dispatcher(public: bool = True) -> Dispatcher:
    async def publish(subject: str, data: bytes) -> None:
        return None

    dispatcher = Dispatcher(public=public, concurrency=4, publish=publish, max_payload=lambda: 1 << 20)
    dispatcher.roles.update({"owner": "alice", "partners": ["bob"]})
    return dispatcher


async def test_ping_is_answered_even_when_the_handler_forgets_it() -> None:
    dispatcher = make_dispatcher()

    async def api(specs: APISpecs) -> None:
        return None

    dispatcher.fallback = api
    assert await _answer(dispatcher, b'{"cmd": "ping"}') == {"code": 0, "pong": True}
    dispatcher.fallback = None
    assert await _answer(dispatcher, b'{"cmd": "ping"}') == {"code": 0, "pong": True}


async def test_the_handler_sees_the_sender_and_its_role() -> None:
    dispatcher = make_dispatcher()
    seen: list[tuple[str, ...]] = []

    async def api(specs: APISpecs) -> dict[str, Any]:
        seen.append((specs.cmd, specs.app, specs.uid, specs.resource, specs.role, specs.jid))
        return {"body": specs.body}

    dispatcher.fallback = api
    for uid in ("alice", "bob", "carol"):
        reply = await _answer(dispatcher, b'{"cmd": "who", "body": [1, 2]}', uid)
        assert reply == {"code": 0, "body": [1, 2]}
    assert [s[4] for s in seen] == ["owner", "partner", "user"]
    assert seen[0] == ("who", "caller", "alice", "pycaller", "owner", "alice@caller/pycaller")


async def test_a_private_worker_refuses_users_and_never_runs_their_handler() -> None:
    dispatcher = make_dispatcher(public=False)
    ran: list[str] = []

    async def api(specs: APISpecs) -> dict[str, Any]:
        ran.append(specs.uid)
        return {}

    dispatcher.fallback = api
    assert await _answer(dispatcher, b'{"cmd": "x"}', "carol") == {"code": 403, "error": "forbidden"}
    assert await _answer(dispatcher, b'{"cmd": "x"}', "bob") == {"code": 0}
    assert ran == ["bob"]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\xff\xfe", "invalid body: request is not valid JSON"),
        (b"[1, 2]", "invalid body: request must be a JSON object, not list"),
        (b'"text"', "invalid body: request must be a JSON object, not str"),
        (b"{}", "bad request: the request needs a text field 'cmd'"),
        (b'{"cmd": 5}', "bad request: the request needs a text field 'cmd'"),
        (b"[" * 5000 + b"]" * 5000, "invalid body: request is not valid JSON"),
    ],
)
async def test_malformed_requests_get_a_clear_error(data: bytes, error: str) -> None:
    reply = await _answer(make_dispatcher(), data)
    assert reply["code"] == 400
    assert reply["error"].startswith(error)


async def test_handler_failures_and_bad_results_are_errors_not_crashes() -> None:
    dispatcher = make_dispatcher()

    async def api(specs: APISpecs) -> Any:
        if specs.cmd == "boom":
            raise KeyError("missing")
        if specs.cmd == "list":
            return [1]
        return None

    dispatcher.fallback = api
    assert await _answer(dispatcher, b'{"cmd": "boom"}') == {"code": 500, "error": "KeyError: 'missing'"}
    reply = await _answer(dispatcher, b'{"cmd": "list"}')
    assert reply["code"] == 500 and "must return a JSON object" in reply["error"]
    assert await _answer(dispatcher, b'{"cmd": "nope"}') == {"code": 404, "error": "unknown command: nope"}


async def test_per_command_handlers_win_over_onapi_and_sync_ones_run_in_a_thread() -> None:
    import threading

    dispatcher = make_dispatcher()
    main_thread = threading.get_ident()

    def sync_handler(specs: APISpecs) -> dict[str, Any]:
        return {"thread": threading.get_ident() != main_thread}

    async def api(specs: APISpecs) -> dict[str, Any]:
        return {"fallback": True}

    dispatcher.fallback = api
    dispatcher.commands["sync"] = sync_handler
    assert await _answer(dispatcher, b'{"cmd": "sync"}') == {"code": 0, "thread": True}
    assert await _answer(dispatcher, b'{"cmd": "other"}') == {"code": 0, "fallback": True}
    await asyncio.sleep(0)
