"""TLS for the Nexus: a local certificate authority generated on first use, and client contexts.

``qe up --tls`` without ``--tls-cert``/``--tls-key`` uses ``<home>/nexus/tls/``:

- ``ca.pem``: a self-signed CA certificate. Clients trust it (``tls_ca`` in ``qe.toml`` or
  ``QE_TLS_CA``); it is public and may be copied to other machines.
- ``ca-key.pem`` (0600): the CA's private key, used only to sign the server certificate.
- ``server.pem`` / ``server-key.pem`` (0600): the certificate nats-server presents, valid for
  localhost, 127.0.0.1, ::1, this machine's name and the listen address. It is re-issued
  when a new name is needed or it nears its end.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._errors import ConfigError
from ._keys import write_secret_file

__all__ = ["TLSFiles", "client_context", "ensure_local_ca"]

CA_DAYS = 3650
SERVER_DAYS = 397
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class TLSFiles:
    cert: Path
    key: Path
    ca: Path | None = None


def _names(extra: str | None) -> list[str]:
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    if extra and extra not in {"0.0.0.0", "::", ""}:
        names.append(extra)
    return list(dict.fromkeys(n for n in names if n))


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    general: list[x509.GeneralName] = []
    for name in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(general)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_secret_file(path, pem.decode())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _make_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"QE Nexus local CA ({socket.gethostname()})")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(folder / "ca-key.pem", key)
    (folder / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _load_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((folder / "ca-key.pem").read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"the Nexus CA in {folder} cannot be read ({exc}); remove the folder to create a new one"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"the Nexus CA key in {folder} is not an EC key")
    return cert, key


def _server_cert_ok(path: Path, names: list[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    have = {str(v) for v in san.get_values_for_type(x509.DNSName)}
    have |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    wanted = {str(ipaddress.ip_address(n)) if _is_ip(n) else n for n in names}
    return wanted <= have and cert.not_valid_after_utc - _now() > RENEW_BEFORE


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def ensure_local_ca(folder: Path, host: str | None = None) -> TLSFiles:
    """The CA and server certificate in ``folder``, created (or re-issued) as needed."""
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "ca.pem").exists():
        ca_cert, ca_key = _load_ca(folder)
    else:
        ca_cert, ca_key = _make_ca(folder)
    names = _names(host)
    files = TLSFiles(folder / "server.pem", folder / "server-key.pem", folder / "ca.pem")
    if _server_cert_ok(files.cert, names) and files.key.exists():
        return files
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qe-nexus")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(files.key, key)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


def client_context(ca: Path | None) -> ssl.SSLContext:
    """A verifying client context: trusts ``ca`` if given, else the system's authorities."""
    try:
        return ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS CA file {ca}: {exc}") from None
