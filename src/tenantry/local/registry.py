"""The local OCI registry: the CNCF Distribution registry (the pinned build) on loopback,
for platforms whose charts live in a registry (``artifacts.kind: oci``, ``registry:
local``).

It runs as a real registry would on premises: TLS only (helm and the deployer trust the
platform's local CA, never ``--plain-http``), htpasswd authentication (one user, a
generated password), filesystem storage, and notifications of manifest pushes to an
endpoint (the Tenantry server's ``/api/v1/events/registry``) authenticated by a shared
secret sent as ``Authorization: Bearer <secret>``.

Everything lives under ``<state dir>/registry/``:

- ``ca/ca.crt``, ``ca/ca.key`` — the platform's local CA, made once and kept (anything
  that trusts it keeps working across restarts); ``tls/server.crt``, ``tls/server.key`` —
  the registry's certificate for 127.0.0.1 and localhost, signed by it;
- ``auth/htpasswd`` (bcrypt: the only hash the registry accepts), ``auth/password`` and
  ``credentials`` (``user:password``, the format `RegistryCredentials.file` reads) — every
  key and secret 0600;
- ``data/`` — the registry's storage; ``port.json`` — the port, chosen once, so later
  commands (and a restart) find the registry at the same address; ``config.yml`` — 0600,
  since it holds the notification secret.

The registry keeps its notification queue in memory: events not yet delivered when it
stops are lost (documented upstream), which is why the deployer's resync exists.
Started and stopped by pid (`tenantry.processes`).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tenantry import errors, paths, processes
from tenantry.artifacts import oci
from tenantry.tools import install

NAME = "registry"
USER = "tenantry"
# Media types of the blobs a chart push uploads (and what the registry reports for any
# blob): their push events are not sent, only the manifest's.
_BLOB_MEDIA_TYPES = (
    "application/octet-stream",
    "application/vnd.cncf.helm.config.v1+json",
    "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
    "application/vnd.cncf.helm.chart.provenance.v1.prov",
)
_BCRYPT_ROUNDS = 4
_CA_DAYS = 3650
_SERVER_DAYS = 825  # the longest validity clients accept for a server certificate


@dataclass(frozen=True)
class Registry:
    """Where the running local registry answers and how to reach it."""

    pid: int
    port: int
    ca_file: Path
    credentials_file: Path

    @property
    def address(self) -> str:
        """``host:port``, as `OciArtifacts.registry` and ``oci://`` references spell it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Its base URL (TLS)."""
        return f"https://{self.address}"


def root() -> Path:
    """The registry's state directory."""
    return paths.state_dir() / NAME


def ca_file() -> Path:
    """The local CA's certificate (what helm's ``--ca-file`` and the deployer trust)."""
    return root() / "ca" / "ca.crt"


def credentials_file() -> Path:
    """The ``user:password`` file (0600) for `RegistryCredentials.file`."""
    return root() / "credentials"


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by its owner only: created 0600, never world-readable for a
    moment, replaced whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tenantry local platform"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])  # fmt: skip


def ensure_ca() -> Path:
    """The platform's local CA, created on first use and kept; its certificate's path."""
    cert_path, key_path = ca_file(), root() / "ca" / "ca.key"
    if cert_path.exists() and key_path.exists():
        return cert_path
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = _name("Tenantry local CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
    # The key first: a certificate without its key would be taken for a whole CA.
    _write_private(key_path, _pem_key(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # A server certificate from an earlier CA would no longer be trusted.
    shutil.rmtree(root() / "tls", ignore_errors=True)
    return cert_path


def _ensure_server_cert() -> tuple[Path, Path]:
    """The registry's certificate for 127.0.0.1 and localhost, signed by the local CA."""
    cert_path, key_path = root() / "tls" / "server.crt", root() / "tls" / "server.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    ca_cert = x509.load_pem_x509_certificate(ensure_ca().read_bytes())
    ca_key = serialization.load_pem_private_key(
        (root() / "ca" / "ca.key").read_bytes(), password=None
    )
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("localhost"),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(key_path, _pem_key(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def ensure_credentials() -> Path:
    """The registry user's password (generated once, 0600), its bcrypt htpasswd line and
    the ``user:password`` credentials file; the credentials file's path."""
    password_file = root() / "auth" / "password"
    if not password_file.exists():
        _write_private(password_file, secrets.token_urlsafe(24).encode())
    password = password_file.read_text().strip()
    htpasswd = root() / "auth" / "htpasswd"
    current = htpasswd.read_bytes() if htpasswd.exists() else b""
    user, _, hashed = current.strip().partition(b":")
    # Re-hashed only when it no longer matches (bcrypt salts: every hash differs).
    if user != USER.encode() or not hashed or not bcrypt.checkpw(password.encode(), hashed):
        # The registry checks the hash on every request, so bcrypt's default cost (12,
        # ~0.3 s here) made each API call that slow. The work factor guards guessable
        # passwords; this one is 192 random bits, which no cost factor adds to.
        salt = bcrypt.gensalt(rounds=_BCRYPT_ROUNDS)
        line = USER.encode() + b":" + bcrypt.hashpw(password.encode(), salt) + b"\n"
        _write_private(htpasswd, line)
    _write_private(credentials_file(), f"{USER}:{password}\n".encode())
    return credentials_file()


def events_secret_file() -> Path:
    """The shared secret the registry's notifications carry to the local Tenantry
    server (generated once, 0600); the server reads it through `endpoint`."""
    path = root() / "auth" / "events-secret"
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(32).encode())
    return path


def _port() -> int:
    """The registry's port: chosen once and saved, so its address never changes."""
    saved = root() / "port.json"
    try:
        return int(json.loads(saved.read_text())["port"])
    except (OSError, ValueError, KeyError, TypeError):
        port = processes.free_port()
        root().mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"port": port}))
        return port


def config(
    *, port: int, cert: Path, key: Path, notify_url: str | None, notify_secret: str | None
) -> dict[str, object]:
    """The registry's configuration (see the Distribution configuration reference)."""
    document: dict[str, object] = {
        "version": 0.1,
        # Not info: at info the registry logs each notification endpoint's headers, which
        # carry the shared secret.
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root() / "data")},
            # Deleting manifests by digest: the platform team's way to take a bad chart out.
            "delete": {"enabled": True},
        },
        "http": {
            "addr": f"127.0.0.1:{port}",
            # Signs upload state handed to clients; random per start is fine for one node.
            "secret": secrets.token_hex(16),
            "tls": {"certificate": str(cert), "key": str(key), "minimumtls": "tls1.2"},
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        "auth": {
            "htpasswd": {
                "realm": "tenantry-local-registry",
                "path": str(root() / "auth" / "htpasswd"),
            }
        },
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
    }
    if notify_url is not None:
        if not notify_secret:
            raise errors.UsageError(
                f"a notification endpoint ({notify_url}) needs a shared secret",
                fix="pass notify_secret, the secret the Tenantry server checks",
            )
        document["notifications"] = {
            "endpoints": [{
                "name": "tenantry",
                "url": notify_url,
                "headers": {"Authorization": [f"Bearer {notify_secret}"]},
                "timeout": "5s",
                "threshold": 3,
                "backoff": "1s",
                # Only manifest pushes: blob uploads, pulls, deletes and mounts say nothing
                # the deployer acts on.
                "ignore": {
                    "mediatypes": list(_BLOB_MEDIA_TYPES),
                    "actions": ["pull", "delete", "mount"],
                },
            }],
        }  # fmt: skip
    return document


def running() -> Registry | None:
    """The registry `start` left running, if it still runs."""
    process = processes.running(NAME)
    if process is None:
        return None
    return Registry(process.pid, process.port, ca_file(), credentials_file())


def start(*, notify_url: str | None = None, notify_secret: str | None = None) -> Registry:
    """Start the local registry (or return the one already running): the CA, certificate,
    credentials and port are made on first use and kept. With ``notify_url``, every
    manifest push is posted there with ``Authorization: Bearer <notify_secret>``.

    A running registry is returned as it is, with whatever notification endpoint it was
    started with: `stop` it first to change that."""
    existing = running()
    if existing:
        return existing
    binary = install.binary("registry")
    cert, key = _ensure_server_cert()
    ensure_credentials()
    port = _port()
    if processes.answers(port):
        raise errors.TenantryError(
            f"the local registry's port 127.0.0.1:{port} is taken by another process",
            fix=f"stop that process, or delete {root() / 'port.json'} to choose a new port "
            "(charts already published keep the old address in the ledger)",
        )
    (root() / "data").mkdir(parents=True, exist_ok=True)
    document = config(
        port=port, cert=cert, key=key, notify_url=notify_url, notify_secret=notify_secret
    )
    config_file = root() / "config.yml"
    _write_private(config_file, yaml.safe_dump(document, sort_keys=False).encode())
    process = processes.start(NAME, [str(binary), "serve", str(config_file)], port=port)
    return Registry(process.pid, process.port, ca_file(), credentials_file())


def stop(*, forget: bool = False, forget_ca: bool = False) -> bool:
    """Stop the registry by its pid; False if none was running. ``forget`` also removes
    its storage, credentials, certificate and port (what `tenantry down` resets) but keeps
    the CA, which whatever was told to trust it goes on trusting; ``forget_ca`` removes
    that too."""
    stopped = processes.stop(NAME)
    if forget and root().exists():
        for entry in root().iterdir():
            if entry.name == "ca" and not forget_ca:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    return stopped


def endpoint() -> oci.Endpoint | None:
    """The running local registry as ``artifacts.registry: local`` means it (None if it
    does not run)."""
    found = running()
    if found is None:
        return None
    return oci.Endpoint(found.address, found.ca_file, found.credentials_file,
                        events_secret_file())  # fmt: skip
