"""Secrets: a key never shows in logs, status, error messages or exceptions."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_qe
from qe._config import WorkerSettings
from qe._errors import ConfigError, NotAuthorized
from qe._keys import AppKey, generate_key
from qe.bridge import App
from qe.testing import Nexus, WorkerProcess, wait_until


def test_a_key_object_never_shows_its_seed() -> None:
    key = generate_key("shop", "alice")
    for text in (repr(key), str(key), f"{key}", repr([key]), repr({"k": key})):
        assert key.seed not in text
    assert key.public[:8] in str(key)


def test_settings_and_apps_do_not_show_the_key(tmp_path: Path) -> None:
    key = generate_key("shop", "alice")
    settings = WorkerSettings.build({"key": key.secret}, argv=[], env={}, block_dir=tmp_path)
    assert key.seed not in repr(settings)
    app = App(key=key.secret, nexus="nats://127.0.0.1:1", autostart=False)
    assert key.seed not in repr(app) and key.seed not in repr(app.settings)


@pytest.mark.parametrize(
    "bad",
    [
        "qe1.shop.alice.SUAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",  # damaged seed
        "qe1.Shop.alice.SUAMLK2ZNL35WSMW37E7UD4VZ7ELPEW7BY5WRBGNRYNP4JMR5GHKLJFXXY",  # bad app
        "qe2.shop.alice.SUAMLK2ZNL35WSMW37E7UD4VZ7ELPEW7BY5WRBGNRYNP4JMR5GHKLJFXXY",  # unknown version
    ],
)
def test_an_unparsable_key_is_not_quoted_in_the_error(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        AppKey.parse(bad)
    seed = bad.rsplit(".", 1)[-1]
    assert seed not in str(info.value) and seed not in repr(info.value)
    assert info.value.__cause__ is None or seed not in str(info.value.__cause__)


def test_a_key_for_another_app_is_refused_without_quoting_it(tmp_path: Path) -> None:
    key = generate_key("shop", "alice")
    with pytest.raises(ConfigError) as info:
        WorkerSettings.build({"key": key.secret, "app": "other"}, argv=[], env={}, block_dir=tmp_path)
    assert key.seed not in str(info.value)


async def test_a_refused_key_raises_not_authorized_without_the_key(qe_nexus: Nexus) -> None:
    stranger = generate_key("qe", "nobody")  # never registered
    client = qe_nexus.client(stranger)
    with pytest.raises(NotAuthorized) as info:
        await client.connect(reconnect=False)
    assert stranger.seed not in str(info.value) and stranger.seed not in repr(info.value)


def test_a_worker_with_a_revoked_key_says_so_and_no_log_holds_a_key(
    qe_nexus: Nexus, tmp_path: Path, unique_app
) -> None:
    app = unique_app("revoked")
    block = qe_nexus.new_block(tmp_path, app)
    key = AppKey.parse((block / "qe.key").read_text())
    result = run_qe(qe_nexus, "key", "revoke", app, "--public", key.public)
    assert result.returncode == 0, result.stderr

    worker = WorkerProcess(block, [], qe_nexus.env)
    try:
        wait_until(lambda: "refused this key" in worker.output, 20, what="the worker to report its refused key")
        assert worker.wait(20) == 1  # it exits: retrying a refused key would not help
    finally:
        worker.stop()
    assert key.seed not in worker.output

    secrets = {
        key.seed,
        qe_nexus.registry.cli_key().seed,
        qe_nexus.registry.control_key().seed,
        qe_nexus.registry.system_key().seed,
    }
    logs = [p for p in qe_nexus.paths.logs.iterdir() if p.is_file()]
    assert logs
    status = run_qe(qe_nexus, "status", "--json")
    for text in [p.read_text(errors="replace") for p in logs] + [status.stdout + status.stderr]:
        for secret in secrets:
            assert secret not in text
    conf = qe_nexus.paths.nats_conf.read_text()
    assert not any(secret in conf for secret in secrets)  # the server holds public keys only
