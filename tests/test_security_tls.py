"""Transport security: ``qe up --tls``, ``tls://`` addresses, and no plain-text remote listening."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from conftest import run_qe
from qe._errors import ConfigError, NexusUnavailable
from qe._tls import ensure_local_ca
from qe.bridge._client import NexusClient
from qe.nexus import NexusPaths, ServerSettings
from qe.testing import Nexus, WorkerProcess

PROBE = Path(__file__).parent / "blocks" / "probe.py"


@pytest.fixture(scope="module")
def tls_nexus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nexus]:
    nexus = Nexus(tmp_path_factory.mktemp("tls-home"), tls=True).start()
    try:
        yield nexus
    finally:
        nexus.stop()


def test_a_worker_and_a_call_work_end_to_end_over_tls(tls_nexus: Nexus, tmp_path: Path) -> None:
    assert tls_nexus.url.startswith("tls://")
    block = tls_nexus.new_block(tmp_path, "tlsapp")
    shutil.copy(PROBE, block / "probe.py")
    assert 'tls_ca = "' in (block / "qe.toml").read_text()  # qe new wrote where the CA is

    env = {k: v for k, v in tls_nexus.env.items() if k != "QE_TLS_CA"}  # the block's qe.toml must be enough
    worker = WorkerProcess(block, [], env, "probe.py")
    try:
        worker.wait_online()
        result = subprocess.run(
            [sys.executable, "-m", "qe", "call", "tlsapp", "who"],
            env=env,  # the CLI finds the CA of the running local Nexus by itself
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["resource"] == "pyprobe"
    finally:
        worker.stop()


async def test_plain_text_and_untrusted_clients_are_refused_with_a_clear_error(tls_nexus: Nexus) -> None:
    registry = tls_nexus.registry
    key = registry.cli_key()
    trusted = tls_nexus.client()
    await trusted.connect(reconnect=False)
    await trusted.close()

    untrusted = NexusClient(trusted.identity, key, (tls_nexus.url,))  # the system CAs do not know ours
    with pytest.raises(NexusUnavailable, match="TLS with the Nexus"):
        await untrusted.connect(reconnect=False)

    plain = NexusClient(trusted.identity, key, (tls_nexus.url.replace("tls://", "nats://"),))
    with pytest.raises(NexusUnavailable):
        await plain.connect(reconnect=False)


def test_status_shows_the_ca_and_never_a_key(tls_nexus: Nexus) -> None:
    result = run_qe(tls_nexus, "status", "--json")
    info = json.loads(result.stdout)
    assert info["tls"] is True and info["tls_ca"] == str(tls_nexus.tls_ca)
    assert info["url"].startswith("tls://")
    secret = tls_nexus.registry.cli_key().seed
    assert secret not in result.stdout + result.stderr


def test_remote_listening_without_tls_is_refused_unless_explicitly_allowed(tmp_path: Path) -> None:
    nexus = Nexus(tmp_path / "home")
    result = run_qe(nexus, "up", "--host", "0.0.0.0", "--port", str(nexus.port))
    assert result.returncode != 0
    assert "refusing to listen on 0.0.0.0 without TLS" in result.stderr
    assert not nexus.running()

    with pytest.raises(ConfigError, match="without TLS"):
        ServerSettings(host="10.1.2.3").check()
    ServerSettings(host="10.1.2.3", tls=True).check()
    ServerSettings(host="10.1.2.3", insecure_remote=True).check()
    ServerSettings(host="127.0.0.1").check()
    with pytest.raises(ConfigError, match="go together"):
        ServerSettings(tls=True, tls_cert=str(tmp_path)).check()


def test_the_local_ca_is_made_once_and_its_private_keys_are_owner_only(tmp_path: Path) -> None:
    first = ensure_local_ca(tmp_path / "tls", "127.0.0.1")
    ca = first.ca
    assert ca is not None
    ca_pem = ca.read_bytes()
    again = ensure_local_ca(tmp_path / "tls", "127.0.0.1")
    assert again == first and ca.read_bytes() == ca_pem  # reused, not regenerated
    wider = ensure_local_ca(tmp_path / "tls", "nexus.example.org")  # a new name: new server cert, same CA
    assert ca.read_bytes() == ca_pem
    san = x509.load_pem_x509_certificate(wider.cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "nexus.example.org" in san.value.get_values_for_type(x509.DNSName)
    for secret in (tmp_path / "tls" / "ca-key.pem", wider.key):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_user_provided_certificate_files_are_used_as_given(tmp_path: Path) -> None:
    files = ensure_local_ca(tmp_path / "mine")
    settings = ServerSettings(tls=True, tls_cert=str(files.cert), tls_key=str(files.key))
    settings.check()
    assert settings.tls_files(NexusPaths(tmp_path)) == type(files)(files.cert.resolve(), files.key.resolve())
    assert settings.client_ca(NexusPaths(tmp_path)) is None  # the user's clients trust their own CA
    assert "--tls-cert" in settings.up_args()
