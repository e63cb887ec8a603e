"""Hostile input on every entry point: the SDK's decoder and dispatcher, the control plane, ``qe call``.

Each malformed input gets a clear error (a nonzero integer ``code`` and a text ``error``),
nothing crashes or hangs, and the process keeps serving others afterwards.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_qe
from qe._errors import QEError
from qe._names import check_channel
from qe._wire import decode_object
from qe.bridge import APISpecs, App
from qe.bridge._app import request_find
from qe.bridge._dispatch import Dispatcher
from qe.testing import Nexus
from security_kit import Raw

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def nested(depth: int) -> bytes:
    return b'{"cmd": "echo", "body": ' + b"[" * depth + b"]" * depth + b"}"


hostile_bytes = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(["cmd", "body", "x"]), json_values | st.sampled_from(["echo", "ping", "", "boom"]), max_size=3
    ).map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=1, max_value=5000).map(nested),
    st.sampled_from([b"", b"\x00", b"\xff\xfe", b"{", b'{"cmd": "echo"', b"null", b"[]", b'"cmd"', b"1e999"]),
)


def assert_clear(reply: Any) -> None:
    assert isinstance(reply, dict)
    assert isinstance(reply.get("code"), int)
    if reply["code"] != 0:
        assert isinstance(reply.get("error"), str) and reply["error"]
    orjson.dumps(reply)  # it can go back on the wire


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def make_dispatcher(public: bool = True) -> Dispatcher:
    async def publish(subject: str, data: bytes) -> None:
        raise AssertionError("answer() must not publish")

    dispatcher = Dispatcher(public=public, concurrency=4, publish=publish, max_payload=lambda: 1024 * 1024)

    async def echo(specs: APISpecs) -> dict:
        return {"body": specs.body, "role": specs.role}

    async def boom(specs: APISpecs) -> dict:
        raise ValueError("boom")

    dispatcher.commands.update(echo=echo, boom=boom)
    return dispatcher


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=hostile_bytes, public=st.booleans())
def test_the_dispatcher_answers_any_bytes_with_a_clear_reply(
    loop: asyncio.AbstractEventLoop, data: bytes, public: bool
) -> None:
    reply = loop.run_until_complete(make_dispatcher(public).answer(data, "caller", "someone", "pyx"))
    assert_clear(reply)


@settings(max_examples=200, deadline=None)
@given(data=hostile_bytes)
def test_the_decoder_accepts_only_json_objects_and_says_why(data: bytes) -> None:
    try:
        value = decode_object(data, "request")
    except QEError as exc:
        assert exc.code == 400 and exc.message.startswith("invalid body: request ")
    else:
        assert isinstance(value, dict)


def test_a_deeply_nested_or_huge_body_is_refused_clearly(loop: asyncio.AbstractEventLoop) -> None:
    dispatcher = make_dispatcher()
    deep = loop.run_until_complete(dispatcher.answer(nested(100_000), "a", "u", "pyx"))
    assert deep["code"] == 400 and "invalid body" in deep["error"]
    huge = orjson.dumps({"cmd": "echo", "body": {"x": "y" * 900_000}})
    assert loop.run_until_complete(dispatcher.answer(huge, "a", "u", "pyx"))["code"] == 0


def test_depth_is_limited_for_requests_and_up_to_orjson_for_replies() -> None:
    with pytest.raises(QEError, match="nested deeper than 64 levels"):
        decode_object(nested(100), "request")
    # a reply (a find answer has a brace per block) is not walked, up to orjson's own limit
    assert decode_object(nested(100), "reply", limit_depth=False)["cmd"] == "echo"
    with pytest.raises(QEError, match="reply is not valid JSON"):
        decode_object(nested(2000), "reply", limit_depth=False)


# -- the control plane -------------------------------------------------------------------------

verbs = st.sampled_from(["register", "find", "hb", "bye", "nope", "REGISTER", "find-x"])
resources = st.sampled_from(["pyhostile", "cli-x", "x", "PY", "py_1", "-", "é"])


@pytest.fixture(scope="module")
def attacker_key(qe_nexus: Nexus):
    return qe_nexus.new_app("hostile")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(verb=verbs, resource=resources, data=hostile_bytes)
def test_the_control_plane_answers_malformed_requests_and_stays_alive(
    qe_nexus: Nexus, attacker_key, verb: str, resource: str, data: bytes
) -> None:
    async def go() -> None:
        raw = await Raw(attacker_key).connect(qe_nexus.url)
        try:
            subject = f"nx.sys.{verb}.{attacker_key.app}.{attacker_key.uid}.{resource}"
            if verb in ("hb", "bye"):
                await raw.conn.publish(subject, data)  # one-way: nothing to answer
                await raw.conn.flush()
                return
            reply = orjson.loads((await raw.conn.request(subject, data, timeout=5)).data)
            assert_clear(reply)
            if reply["code"] != 0:
                assert reply["code"] in (400, 409)
        finally:
            await raw.close()

    asyncio.run(go())


async def test_after_the_hostile_requests_find_and_calls_still_work(qe_nexus: Nexus, make_app, unique_app) -> None:
    app = unique_app("alive")
    worker = await make_app(app, resource="pyalive")
    client = qe_nexus.client()
    await client.connect(reconnect=False)
    try:
        found = await request_find(client, app, 5)
        assert found["jids"] == [worker.jid]
        assert (await worker.api(app, "ping"))["pong"] is True
    finally:
        await client.close()


# -- qe call ---------------------------------------------------------------------------------

cli_text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=30)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(app=cli_text | st.sampled_from(["hostile", "-x", "a.b", "A", "*", ">"]), cmd=cli_text, body=cli_text)
def test_qe_call_answers_garbage_arguments_with_a_clear_error(qe_nexus: Nexus, app: str, cmd: str, body: str) -> None:
    result = run_qe(qe_nexus, "call", app, cmd or "x", body, "--timeout", "2", timeout=30)
    assert result.returncode in (1, 2), result
    assert "Traceback" not in result.stderr
    if result.stdout.strip():
        assert_clear(json.loads(result.stdout))
    else:
        assert result.stderr.strip()  # the reason is said


# -- names on every SDK entry point and in the messaging commands ------------------------------

hostile_names = st.one_of(
    cli_text,
    st.sampled_from(["", " ", "a.b", "*", ">", "a>", "nx.api", "py", "é", "x" * 300, "-x", "UPPER", "ok-name"]),
)


@pytest.fixture(scope="module")
def named_worker(loop: asyncio.AbstractEventLoop, qe_nexus: Nexus) -> Iterator[App]:
    key = qe_nexus.new_app("hostilenames")
    worker = App(resource="pynames", key=key.secret, nexus=qe_nexus.url, autostart=False, autostart_nexus=False)
    loop.run_until_complete(worker.start())
    yield worker
    loop.run_until_complete(worker.stop())


def is_clear_refusal(exc: QEError) -> bool:
    return exc.code in (400, 503) and bool(exc.message)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile_names)
def test_every_sdk_entry_point_refuses_a_bad_name_clearly_and_the_worker_keeps_serving(
    loop: asyncio.AbstractEventLoop, named_worker: App, name: str
) -> None:
    async def go() -> None:
        worker = named_worker
        for reply in (
            await worker.api(app=name, cmd="ping", timeout=2),
            await worker.api(jid=name, cmd="ping", timeout=2),
            await worker.find(app=name),
        ):
            assert_clear(reply)
            assert reply["code"] in (0, 400, 503), reply  # a bad name, or no such worker: never a hang
        for attempt in (
            lambda: worker.direct(app=name, body={"x": 1}, timeout=2),
            lambda: worker.direct(jid=name, body={"x": 1}, timeout=2),
            lambda: worker.subscribe(name),
            lambda: worker.sendtochannel(name, {"x": 1}),
            lambda: worker.unsubscribe(name),
        ):
            try:
                await attempt()
            except QEError as exc:
                assert is_clear_refusal(exc), exc.to_wire()
        assert (await worker.api(app="hostilenames", cmd="ping", timeout=5))["pong"] is True

    loop.run_until_complete(asyncio.wait_for(go(), 30))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile_names, body=cli_text | st.sampled_from(["{}", "[1]", "1", "null", '"x"', "{"]))
def test_the_messaging_commands_answer_garbage_arguments_with_a_clear_error(
    qe_nexus: Nexus, name: str, body: str
) -> None:
    commands = [["direct", name, body, "--timeout", "2"], ["send", name, body], ["find", name]]
    try:
        check_channel(name)
    except QEError:
        commands.append(["listen", name, "--count", "1"])  # a valid channel would wait for a message
    for args in commands:
        result = run_qe(qe_nexus, *args, timeout=30)
        assert "Traceback" not in result.stderr, result
        if result.returncode != 0:
            assert result.returncode in (1, 2), result
            assert result.stderr.strip(), result  # the reason is said
