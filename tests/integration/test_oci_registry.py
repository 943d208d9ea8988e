"""Charts in a real OCI registry: the pinned Distribution registry over TLS (the platform's
local CA) with htpasswd, pushed to by `tenantry.artifacts.oci` and read back by a real
``helm pull``; its push notifications reach a loopback HTTP receiver standing for the
Tenantry server."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tenantry import errors, processes
from tenantry.artifacts import index as helm_index
from tenantry.artifacts import oci, package, repositories
from tenantry.artifacts import oci_manifest as om
from tenantry.artifacts.store import DigestMismatchError, ImmutableVersionError
from tenantry.events import registry as events_registry
from tenantry.local import registry
from tenantry.spec import models
from tenantry.tools import install
from tests.waiting import wait_for

SECRET = "test-webhook-secret-not-a-real-one"


@dataclass
class Receiver:
    """A loopback HTTP server standing for the Tenantry server's registry endpoint."""

    url: str
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    # While set, answer 503 (as a Tenantry server that is down would): the registry keeps
    # the events queued and retries.
    unavailable: threading.Event = field(default_factory=threading.Event)
    attempts: int = 0

    def events(self) -> list[dict[str, Any]]:
        return [e for envelope in self.envelopes for e in envelope.get("events", [])]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            found.attempts += 1
            if found.unavailable.is_set():
                self.send_response(503)
            elif self.headers.get("Authorization") != f"Bearer {SECRET}":
                found.refused.append(self.headers.get("Authorization", "(none)"))
                self.send_response(401)
            else:
                found.envelopes.append(json.loads(body))
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    found.url = f"http://127.0.0.1:{server.server_address[1]}/api/v1/events/registry"
    yield found
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def local_registry(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> Iterator[registry.Registry]:
    state = tmp_path_factory.mktemp("registry-state")
    previous = os.environ.get("TENANTRY_STATE_DIR")
    os.environ["TENANTRY_STATE_DIR"] = str(state)
    try:
        yield registry.start(notify_url=receiver.url, notify_secret=SECRET)
    finally:
        registry.stop(forget=True)
        if previous is None:
            os.environ.pop("TENANTRY_STATE_DIR", None)
        else:
            os.environ["TENANTRY_STATE_DIR"] = previous


def _client(reg: registry.Registry, **kwargs: Any) -> oci.Registry:
    return oci.Registry(
        reg.address,
        "charts",
        credentials=kwargs.pop("credentials", oci.credentials_from_file(reg.credentials_file)),
        ca_file=kwargs.pop("ca_file", reg.ca_file),
        **kwargs,
    )


def _package(tmp: Path, version: str, marker: str, *, service: str = "api") -> package.Package:
    """A packaged chart of payments/<service> whose content depends on ``marker``."""
    chart_dir = tmp / f"{service}-{version}-{marker}" / service
    (chart_dir / "templates").mkdir(parents=True)
    (chart_dir / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
        f"data:\n  marker: {marker}\n"
    )
    digest = package.content_digest(chart_dir)
    chart = {
        "apiVersion": "v2", "name": service, "version": version, "appVersion": "2.1",
        "description": "payments/api for the registry test",
        "annotations": {"tenantry.dev/tenant": "payments", "tenantry.dev/content-digest": digest},
    }  # fmt: skip
    (chart_dir / "Chart.yaml").write_text(yaml.safe_dump(chart, sort_keys=False))
    helm = str(install.binary("helm"))
    out = tmp / f"out-{version}-{marker}"
    subprocess.run([helm, "package", str(chart_dir), "-d", str(out)], check=True,
                   capture_output=True)  # fmt: skip
    archive = out / f"{service}-{version}.tgz"
    return package.Package(
        tenant="payments", service=service, version=version, app_version="2.1", path=archive,
        digest=package.sha256_file(archive), content_digest=digest,
        provenance=package.Provenance("3f2a9c1d", "José Müller <jose@acme.example>",
                                      "2026-11-29T17:00:00+00:00"),
    )  # fmt: skip


def helm_cli(
    args: list[str], home: Path, *, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
        "HELM_REGISTRY_CONFIG": str(home / "registry.json"),
    }
    return subprocess.run([str(install.binary("helm")), *args], env=env, input=stdin,
                          capture_output=True, text=True, check=False)  # fmt: skip


def test_a_pushed_chart_is_what_a_real_helm_pulls(
    local_registry: registry.Registry, tmp_path: Path
) -> None:
    pkg = _package(tmp_path, "1.4.0", "first")
    with _client(local_registry) as client:
        pushed = client.push(pkg, source="https://git.acme.example/platform")
        assert pushed.outcome == "published"
        assert pushed.reference == f"oci://{local_registry.address}/charts/payments/api:1.4.0"
        assert pushed.chart_digest == pkg.digest

        user, password = local_registry.credentials_file.read_text().strip().split(":", 1)
        login = helm_cli(["registry", "login", local_registry.address, "--username", user,
                       "--password-stdin", "--ca-file", str(local_registry.ca_file)],
                      tmp_path, stdin=password)  # fmt: skip
        assert login.returncode == 0, login.stderr
        (tmp_path / "pulled").mkdir()
        pulled = helm_cli(["pull", f"oci://{local_registry.address}/charts/payments/api",
                        "--version", "1.4.0", "--ca-file", str(local_registry.ca_file),
                        "-d", str(tmp_path / "pulled")], tmp_path)  # fmt: skip
        assert pulled.returncode == 0, pulled.stderr
        assert pushed.digest in pulled.stdout + pulled.stderr  # helm prints the manifest digest
        assert (tmp_path / "pulled" / "api-1.4.0.tgz").read_bytes() == pkg.path.read_bytes()

        fetched = client.fetch("payments", "api", "1.4.0", digest=pushed.digest)
        assert fetched.data == pkg.path.read_bytes() and fetched.digest == pushed.digest
        assert fetched.provenance == om.Provenance(
            tenant="payments", service="api", version="1.4.0", git_commit="3f2a9c1d",
            author="José Müller <jose@acme.example>", published_at="2026-11-29T17:00:00+00:00",
            content_digest=pkg.content_digest, archive_sha256=pkg.digest,
        )  # fmt: skip
        assert client.versions("payments", "api") == ["1.4.0"]
        assert client.newest("payments", "api") == "1.4.0"
        assert client.versions("payments", "nothing-here") == []


def test_same_version_same_content_is_a_no_op_and_other_content_is_refused(
    local_registry: registry.Registry, tmp_path: Path
) -> None:
    with _client(local_registry) as client:
        first = client.push(_package(tmp_path, "2.0.0", "same"))
        again = client.push(_package(tmp_path / "again", "2.0.0", "same"))
        assert again.outcome == "unchanged" and again.digest == first.digest
        with pytest.raises(ImmutableVersionError, match=r"payments/api 2\.0\.0 is already"):
            client.push(_package(tmp_path, "2.0.0", "other"))
        # The tag still names the first content.
        assert client.fetch("payments", "api", "2.0.0").digest == first.digest


def test_charts_and_the_tenant_index_list_every_version_with_provenance(
    local_registry: registry.Registry, tmp_path: Path
) -> None:
    with _client(local_registry) as client:
        client.push(_package(tmp_path, "0.1.0", "w", service="worker"))
        client.push(_package(tmp_path, "0.2.0", "w2", service="worker"))
        charts = client.charts("payments")
        found = {(c.provenance.service, c.provenance.version) for c in charts}
        assert {("worker", "0.1.0"), ("worker", "0.2.0")} <= found
        assert all(c.digest.startswith("sha256:") and c.metadata["name"] for c in charts)
        assert ("payments", "worker") in client.repositories("payments")
        built = client.index("payments", generated="2026-11-29T18:00:00+00:00")
        worker = built["entries"]["worker"]
        assert [e["version"] for e in worker] == ["0.2.0", "0.1.0"]
        assert worker[0]["urls"] == ["worker-0.2.0.tgz"]
        assert worker[0]["annotations"]["tenantry.dev/git-commit"] == "3f2a9c1d"
        assert client.index("nobody", generated="g")["entries"] == {}


def test_a_wrong_password_is_a_clear_error(
    local_registry: registry.Registry, tmp_path: Path
) -> None:
    wrong = oci.Credentials("tenantry", "not-the-password")
    with (
        _client(local_registry, credentials=wrong) as client,
        pytest.raises(oci.RegistryError) as refused,
    ):
        client.push(_package(tmp_path, "3.0.0", "x"))
    message = str(refused.value)
    assert local_registry.address in message and "401" in message and "tenantry" in message
    assert "not-the-password" not in message
    assert "artifacts.credentials" in (refused.value.fix or "")


def test_an_untrusted_certificate_names_the_ca_fix(local_registry: registry.Registry) -> None:
    with (
        _client(local_registry, ca_file=None) as client,  # the system's CAs only
        pytest.raises(oci.RegistryError, match="not trusted") as refused,
    ):
        client.versions("payments", "api")
    assert "caFile" in (refused.value.fix or "")


def test_a_credentials_file_others_can_read_is_refused(tmp_path: Path) -> None:
    loose = tmp_path / "creds"
    loose.write_text("tenantry:secret\n")
    loose.chmod(0o644)
    with pytest.raises(oci.RegistryError, match=f"{loose} can be read by others") as refused:
        oci.credentials_from_file(loose)
    assert refused.value.fix == f"chmod 600 {loose}"


def test_a_stopped_registry_is_named_and_nothing_is_half_published(
    local_registry: registry.Registry, tmp_path: Path, receiver: Receiver
) -> None:
    pkg = _package(tmp_path, "4.0.0", "down")
    with _client(local_registry) as client:
        assert registry.stop()
        try:
            with pytest.raises(oci.RegistryError) as down:
                client.push(pkg)
            assert f"registry {local_registry.address} is unreachable" in str(down.value)
            assert down.value.retryable
        finally:
            again = registry.start(notify_url=receiver.url, notify_secret=SECRET)
        assert again.address == local_registry.address  # the saved port: same address
        assert "4.0.0" not in client.versions("payments", "api")
        assert client.push(pkg).outcome == "published"


def test_a_manifest_push_notifies_the_endpoint_with_the_secret(
    local_registry: registry.Registry, tmp_path: Path, receiver: Receiver
) -> None:
    with _client(local_registry) as client:
        pushed = client.push(_package(tmp_path, "5.0.0", "event"))

    def arrived() -> dict[str, Any] | None:
        for event in receiver.events():
            if event.get("target", {}).get("tag") == "5.0.0":
                return event
        return None

    event = wait_for(arrived, "the registry's notification of the 5.0.0 push", timeout_s=30)
    assert event["action"] == "push"
    target = event["target"]
    assert target["repository"] == "charts/payments/api"
    assert target["digest"] == pushed.digest
    assert target["mediaType"] == om.MANIFEST_MEDIA_TYPE
    assert receiver.refused == []
    # Only manifest pushes are sent: no blob uploads, no pulls.
    assert {e["target"]["mediaType"] for e in receiver.events()} == {om.MANIFEST_MEDIA_TYPE}
    assert {e["action"] for e in receiver.events()} == {"push"}
    # The server's parser (tenantry.events.registry) reads the real envelope as a chart push.
    parsed = [
        e for envelope in receiver.envelopes for e in events_registry.parse(json.dumps(envelope), "charts")
        if isinstance(e, events_registry.ChartPushed) and e.version == "5.0.0"
    ]  # fmt: skip
    assert [(e.tenant, e.service, e.digest) for e in parsed] == [("payments", "api", pushed.digest)]
    # The secret never reaches the registry's log (it logs endpoint headers at info).
    assert SECRET not in (registry.root() / "process.log").read_text()


def test_connect_resolves_the_local_registry_and_a_credentials_file_in_the_repository(
    local_registry: registry.Registry, tmp_path: Path
) -> None:
    with _client(local_registry) as client:
        client.push(_package(tmp_path, "7.0.0", "connect"))
    spec = models.OciArtifacts(kind="oci", registry="local", prefix="charts")
    with oci.connect(spec, root=tmp_path) as client:  # the local registry's own files
        assert client.address == local_registry.address
        assert "7.0.0" in client.versions("payments", "api")
    (tmp_path / "creds").write_text(local_registry.credentials_file.read_text())
    (tmp_path / "creds").chmod(0o600)
    (tmp_path / "ca.pem").write_bytes(local_registry.ca_file.read_bytes())
    given = models.OciArtifacts.model_validate({
        "kind": "oci", "registry": local_registry.address, "prefix": "charts",
        "credentials": {"file": "creds"}, "caFile": "ca.pem",
    })  # fmt: skip
    with oci.connect(given, root=tmp_path) as client:
        assert client.ca_file == tmp_path / "ca.pem"
        assert "7.0.0" in client.versions("payments", "api")


def test_a_registry_restart_loses_the_events_it_had_not_delivered(
    local_registry: registry.Registry, tmp_path: Path, receiver: Receiver
) -> None:
    """Documented upstream: the notification queue is in memory. The deployer's resync
    (every resyncIntervalS) is what deploys such a version."""
    receiver.unavailable.set()
    try:
        with _client(local_registry) as client:
            client.push(_package(tmp_path, "6.0.0", "lost"))
        tried = receiver.attempts
        wait_for(lambda: receiver.attempts > tried, "the registry trying to deliver 6.0.0")
        assert registry.stop()
    finally:
        receiver.unavailable.clear()
    registry.start(notify_url=receiver.url, notify_secret=SECRET)
    with _client(local_registry) as client:
        client.push(_package(tmp_path, "6.1.0", "after"))
        assert {"6.0.0", "6.1.0"} <= set(client.versions("payments", "api"))  # both stored

    def tags() -> set[str]:
        return {e["target"].get("tag") for e in receiver.events()}

    wait_for(lambda: "6.1.0" in tags(), "the notification of 6.1.0, pushed after the restart")
    # The restarted registry's queue began empty: 6.0.0's event is gone for good.
    assert "6.0.0" not in tags()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def token_registry(local_registry: registry.Registry, tmp_path: Path) -> Iterator[str]:
    """A second registry process answering with a Bearer challenge (token auth), trusting
    tokens signed by a key this fixture holds; its address."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test token issuer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "issuer.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    user, password = local_registry.credentials_file.read_text().strip().split(":", 1)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            query = parse_qs(urlparse(self.path).query)
            access = []
            for scope in query.get("scope", []):
                kind, repo, actions = scope.split(":")
                access.append({"type": kind, "name": repo, "actions": actions.split(",")})
            stamp = int(time.time())
            header = {"alg": "ES256", "typ": "JWT", "x5c": [x5c]}
            claims = {
                "iss": "test-issuer", "sub": user, "aud": query["service"][0],
                "exp": stamp + 300, "nbf": stamp - 10, "iat": stamp,
                "jti": secrets.token_hex(8), "access": access,
            }  # fmt: skip
            signing_input = f"{_b64url(json.dumps(header).encode())}." + _b64url(
                json.dumps(claims).encode()
            )
            r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
            token = f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
            body = json.dumps({"token": token}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = processes.free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
        "http": {
            "addr": f"127.0.0.1:{port}",
            "tls": {
                "certificate": str(registry.root() / "tls" / "server.crt"),
                "key": str(registry.root() / "tls" / "server.key"),
            },
        },
        "auth": {
            "token": {
                "realm": f"http://127.0.0.1:{server.server_address[1]}/token",
                "service": "test-registry",
                "issuer": "test-issuer",
                "rootcertbundle": str(tmp_path / "issuer.crt"),
            }
        },
    }
    (tmp_path / "token-registry.yml").write_text(yaml.safe_dump(config))
    name = "registry-token-test"
    try:
        processes.start(
            name,
            [str(install.binary("registry")), "serve", str(tmp_path / "token-registry.yml")],
            port=port,
        )
        yield f"127.0.0.1:{port}"
    finally:
        processes.stop(name)
        server.shutdown()
        server.server_close()


def test_a_registry_with_token_auth_is_pushed_to_with_a_token_from_its_realm(
    local_registry: registry.Registry, token_registry: str, tmp_path: Path
) -> None:
    """Harbor and GitLab answer 401 with a Bearer challenge naming their token service."""
    creds = oci.credentials_from_file(local_registry.credentials_file)
    pkg = _package(tmp_path, "1.0.0", "token")
    with oci.Registry(
        token_registry, "charts", credentials=creds, ca_file=local_registry.ca_file
    ) as client:
        pushed = client.push(pkg)
        assert client.fetch("payments", "api", "1.0.0").data == pkg.path.read_bytes()
        assert client.push(pkg).digest == pushed.digest
    wrong = oci.Credentials(creds.user, "wrong")
    with (
        oci.Registry(
            token_registry, "charts", credentials=wrong, ca_file=local_registry.ca_file
        ) as client,
        pytest.raises(oci.RegistryError, match=r"refused the credentials .* \(401\)"),
    ):
        client.versions("payments", "api")


def test_fetch_by_the_ledgers_digest_refuses_another_versions_manifest(
    local_registry: registry.Registry, tmp_path: Path
) -> None:
    with _client(local_registry) as client:
        one = client.push(_package(tmp_path, "8.0.0", "a"))
        client.push(_package(tmp_path, "8.1.0", "b"))
        assert client.fetch("payments", "api", "8.0.0", digest=one.digest).digest == one.digest
        with pytest.raises(DigestMismatchError, match=r"is version 8\.0\.0, not 8\.1\.0"):
            client.fetch("payments", "api", "8.1.0", digest=one.digest)
        absent = "sha256:" + "0" * 64
        with pytest.raises(errors.TenantryError, match=f"api:{absent} does not exist"):
            client.fetch("payments", "api", "8.0.0", digest=absent)


def test_an_archive_changed_since_packaging_is_refused_before_any_upload(
    local_registry: registry.Registry, tmp_path: Path
) -> None:
    pkg = _package(tmp_path, "9.0.0", "changed")
    other = _package(tmp_path, "9.0.1", "changed")
    swapped = dataclasses.replace(pkg, path=other.path)  # 9.0.1's archive under 9.0.0's name
    with _client(local_registry) as client:
        with pytest.raises(DigestMismatchError, match=r"Chart\.yaml says version 9\.0\.1"):
            client.push(swapped)
        assert not {"9.0.0", "9.0.1"} & set(client.versions("payments", "api"))


def test_our_config_blob_is_byte_for_byte_helms_and_a_helm_pushed_chart_reads_back(
    local_registry: registry.Registry, tmp_path: Path
) -> None:
    pkg = _package(tmp_path, "10.0.0", "helm")
    user, password = local_registry.credentials_file.read_text().strip().split(":", 1)
    login = helm_cli(["registry", "login", local_registry.address, "--username", user,
                   "--password-stdin", "--ca-file", str(local_registry.ca_file)],
                  tmp_path, stdin=password)  # fmt: skip
    assert login.returncode == 0, login.stderr
    pushed = helm_cli(["push", str(pkg.path), f"oci://{local_registry.address}/helmcheck/payments",
                    "--ca-file", str(local_registry.ca_file)], tmp_path)  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    with (
        _client(local_registry) as ours,
        oci.Registry(local_registry.address, "helmcheck",
                     credentials=oci.credentials_from_file(local_registry.credentials_file),
                     ca_file=local_registry.ca_file) as helms,
    ):  # fmt: skip
        mine = ours.push(pkg)
        theirs = helms.chart("payments", "api", "10.0.0")
        assert theirs is not None
        got_mine = ours._manifest("charts/payments/api", mine.digest)
        got_theirs = helms._manifest("helmcheck/payments/api", theirs.digest)
        assert got_mine is not None and got_theirs is not None
        manifest_mine = om.parse_manifest(got_mine[0], what="ours")
        manifest_theirs = om.parse_manifest(got_theirs[0], what="helm's")
        assert manifest_mine.config == manifest_theirs.config  # same digest: same bytes
        assert manifest_mine.layer == manifest_theirs.layer
        # Every annotation helm writes, we write too (we add provenance on top).
        assert set(manifest_theirs.annotations) <= set(manifest_mine.annotations)
        # A chart helm pushed reads back, its provenance from the chart's own annotations.
        fetched = helms.fetch("payments", "api", "10.0.0")
        assert fetched.data == pkg.path.read_bytes()
        assert fetched.provenance.content_digest == pkg.content_digest


def test_the_server_serves_a_tenants_repository_from_the_registry(
    local_registry: registry.Registry, tmp_path: Path
) -> None:
    pkg = _package(tmp_path, "11.0.0-rc.1", "repo", service="api-2")
    with _client(local_registry) as client:
        client.push(pkg)
        repos = oci.OciRepositories(client, services=lambda tenant: ["api-2", "absent"],
                                    now=lambda: "2026-11-29T18:00:00+00:00")  # fmt: skip
        served = helm_index.served(repos.index_for("payments"))
        entry = served["entries"]["api-2"][0]
        assert (entry["version"], entry["urls"]) == ("11.0.0-rc.1", ["api-2-11.0.0-rc.1.tgz"])
        assert entry["digest"] == pkg.digest
        assert repos.archive("payments", "api-2-11.0.0-rc.1.tgz") == pkg.path.read_bytes()
        with pytest.raises(repositories.ChartNotFoundError):
            repos.archive("payments", "api-2-9.9.9.tgz")
        with pytest.raises(repositories.ChartNotFoundError):
            repos.archive("payments", "../../etc-1.0.0.tgz")
        assert repos.index_for("nobody")["entries"] == {}
    down = oci.Registry("127.0.0.1:1", "charts", credentials=None, ca_file=local_registry.ca_file)
    with down, pytest.raises(repositories.StoreUnavailableError, match=r"127\.0\.0\.1:1 "):
        oci.OciRepositories(down).index_for("payments")


def test_forgetting_the_registry_keeps_the_ca_so_what_trusts_it_still_does(
    local_registry: registry.Registry, tmp_path: Path, receiver: Receiver
) -> None:
    ca = local_registry.ca_file.read_bytes()
    old_login = local_registry.credentials_file.read_text()
    assert registry.stop(forget=True)
    assert sorted(p.name for p in registry.root().iterdir()) == ["ca"]
    again = registry.start(notify_url=receiver.url, notify_secret=SECRET)
    assert again.ca_file.read_bytes() == ca  # same CA, a fresh certificate signed by it
    assert again.credentials_file.read_text() != old_login  # a new password
    for private in ("ca/ca.key", "tls/server.key", "auth/htpasswd", "auth/password",
                    "credentials", "config.yml"):  # fmt: skip
        assert (registry.root() / private).stat().st_mode & 0o777 == 0o600, private
    with _client(again) as client:  # trusted through the kept CA
        assert client.versions("payments", "api") == []  # the storage was forgotten
