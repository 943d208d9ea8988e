"""Publish → S3 event → SQS → deployer → staging, on the real S3/SQS server, real cluster,
real Helm, and the ledger."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, Secret

from tenantry import aws, errors, helm
from tenantry.artifacts import index, package, publishing, store
from tenantry.aws import wiring
from tenantry.deploy import deployer as deploying
from tenantry.kube import localcluster
from tenantry.kube.client import Kube
from tenantry.ledger import Ledger
from tenantry.secretstore import external
from tenantry.secretstore import store as secret_store
from tenantry.spec import repository
from tenantry.tenancy import reconcile
from tests.conftest import CHARTS
from tests.waiting import wait_for

REGISTRY = "registry.acme.example"


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=Dev", "-c", "user.email=dev@example.com", *args],
        check=True, capture_output=True,
    )  # fmt: skip


def descriptor(version: str, *, replicas: int = 1, image_tag: str = "1") -> dict:
    return {
        "name": "web", "version": version, "image": f"{REGISTRY}/echo/web:{image_tag}",
        "replicas": replicas,
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
    }  # fmt: skip


def wait_namespace_gone(name: str, timeout_s: float = 90) -> None:
    """Namespace deletion finishes asynchronously; the next module re-creates it."""
    for found in localcluster.list_clusters():
        if not found.reachable():
            continue
        with found.connect() as kube:

            def gone(kube: Kube = kube) -> bool:
                try:
                    kube.get(Namespace, name)
                except errors.NotFoundError:
                    return True
                return False

            wait_for(gone, f"namespace {name} to be deleted in {found.name}", timeout_s=timeout_s,
                     poll_s=0.25)  # fmt: skip


def offboard(root: Path) -> None:
    """Apply the platform under ``root``/platform with no tenants; wait for the pruning."""
    empty = root / "empty"
    shutil.copytree(
        root / "platform", empty, ignore=shutil.ignore_patterns(".git", "tenants", "services")
    )
    (empty / "tenants").mkdir()
    reconcile.apply_all(repository.load(empty), force=True)
    wait_namespace_gone("echo")


class Platform:
    """A platform repository wired to the local S3/SQS server and the session cluster."""

    def __init__(self, root: Path, cluster: str) -> None:
        self.root = root
        suffix = secrets.token_hex(3)
        self.bucket = f"charts-{suffix}"
        self.queue = f"events-{suffix}"
        platform = {
            "name": "it",
            "environments": [{"name": "staging", "clusters": [{"name": cluster, "local": cluster}]}],
            "defaults": {"quota": {"cpu": "4", "memory": "4Gi", "pods": "20"},
                         "container": {"requests": {"cpu": "50m", "memory": "32Mi"},
                                       "limits": {"cpu": "100m", "memory": "64Mi"}}},
            "registries": [REGISTRY],
            "artifacts": {"bucket": self.bucket, "endpoint": "local"},
            "queue": {"name": self.queue, "maxReceiveCount": 2, "visibilityTimeoutS": 10},
        }  # fmt: skip
        (root / "tenants").mkdir(parents=True)
        (root / "platform.yaml").write_text(yaml.safe_dump(platform))
        (root / "tenants" / "echo.yaml").write_text(
            yaml.safe_dump(
                {"name": "echo", "owners": {"users": ["e"]}, "environments": ["staging"]}
            )
        )
        self.write("1.0.0")
        git(root, "init", "-q", "-b", "main")
        self.commit("first")

    def write(self, version: str, **kwargs: object) -> None:
        path = self.root / "services" / "echo" / "web" / "service.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(descriptor(version, **kwargs)))  # type: ignore[arg-type]

    def commit(self, message: str) -> None:
        git(self.root, "add", ".")
        git(self.root, "commit", "-q", "--allow-empty", "-m", message)

    def load(self) -> repository.Repository:
        return repository.load(self.root)


@pytest.fixture(scope="module")
def onboarded(
    cluster: localcluster.LocalCluster, aws_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Tenant echo onboarded once for the module (namespace deletion is slow to finish)."""
    root = tmp_path_factory.mktemp("onboarding")
    reconcile.apply_all(Platform(root / "platform", cluster.name).load())
    yield root
    offboard(root)


@pytest.fixture
def platform(
    cluster: localcluster.LocalCluster, onboarded: Path, tmp_path: Path
) -> Iterator[Platform]:
    """A fresh bucket and queue per test; the release is removed after it."""
    p = Platform(tmp_path / "platform", cluster.name)
    wiring.setup(aws.clients(p.load().platform), p.load().platform)
    yield p
    helm.uninstall(helm.Target(kubeconfig=cluster.kubeconfig, namespace="echo"), release="web")


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    yield opened
    opened.close()


def publish(p: Platform, ledger: Ledger) -> list[publishing.Published]:
    repo = p.load()
    return publishing.publish(
        repo, list(repo.services), clients=aws.clients(repo.platform), ledger=ledger,
        origin=publishing.provenance(repo.root),
    )  # fmt: skip


def worker(p: Platform, ledger: Ledger, name: str = "w1") -> deploying.Deployer:
    repo = p.load()
    clients = aws.clients(repo.platform)
    return deploying.Deployer(
        repo, clients=clients, queue_url=wiring.queue_url(clients, p.queue), ledger=ledger,
        options=deploying.Options(worker=name, wait_s=1, deploy_timeout_s=20,
                                  max_receive_count=2, visibility_timeout_s=10),
    )  # fmt: skip


def drain(d: deploying.Deployer, *, until: int, attempts: int = 40) -> list[deploying.Outcome]:
    """Handle messages until ``until`` outcomes arrived (bounded); S3's test events and
    busy hand-backs are not counted."""
    outcomes: list[deploying.Outcome] = []

    def keep(outcome: deploying.Outcome) -> None:
        if outcome.result not in ("ignored", "busy"):
            outcomes.append(outcome)

    d.on_outcome = keep
    for _ in range(attempts):
        if len(outcomes) >= until:
            break
        d.poll_once()
    return outcomes


def released(cluster: localcluster.LocalCluster) -> dict:
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace="echo")
    (release,) = helm.list_releases(target)
    return release


def test_publish_then_the_s3_event_deploys_to_staging_as_the_tenant(
    platform: Platform, ledger: Ledger, cluster: localcluster.LocalCluster
) -> None:
    (published,) = publish(platform, ledger)
    assert (published.key, published.result) == ("echo/web-1.0.0.tgz", "published")

    outcomes = drain(worker(platform, ledger), until=1)

    assert [o.result for o in outcomes] == ["deployed"]
    assert released(cluster)["chart"] == "web-1.0.0"
    (deployment,) = ledger.history(tenant="echo", service="web")
    assert (deployment.version, deployment.result, deployment.digest) == (
        "1.0.0",
        "succeeded",
        published.digest,
    )
    # The bucket is a Helm repository that helm itself reads.
    repo = platform.load()
    idx = store.read_index(aws.clients(repo.platform), platform.bucket, "echo")
    (entry,) = idx["entries"]["web"]
    assert entry["digest"] == published.digest and entry["urls"] == ["web-1.0.0.tgz"]


@pytest.fixture
def bucket_only(aws_server: str, tmp_path: Path) -> Platform:
    """A platform repository with a fresh bucket and queue, no cluster: publishing only."""
    p = Platform(tmp_path / "platform", "not-deployed-to")
    wiring.setup(aws.clients(p.load().platform), p.load().platform)
    return p


def test_a_non_ascii_author_is_published_and_read_back_by_name(
    bucket_only: Platform, ledger: Ledger, tmp_path: Path
) -> None:
    author = "José Müller <jose@acme.example>"
    bucket_only.write("1.0.1")
    subprocess.run(
        ["git", "-C", str(bucket_only.root), "-c", "user.name=José Müller",
         "-c", "user.email=jose@acme.example", "commit", "-q", "-am", "bump"],
        check=True, capture_output=True,
    )  # fmt: skip

    (published,) = publish(bucket_only, ledger)

    assert published.result == "published"
    clients = aws.clients(bucket_only.load().platform)
    # On the wire the name is an RFC 2047 encoded-word (S3 metadata must be ASCII)...
    raw = clients.s3.head_object(Bucket=bucket_only.bucket, Key=published.key)["Metadata"]
    assert raw["author"].isascii() and raw["author"].startswith("=?utf-8?")
    # ...and everything Tenantry reads back has the real name.
    assert store.head(clients, bucket_only.bucket, published.key)["author"] == author
    fetched = store.fetch(clients, bucket_only.bucket, published.key)
    assert fetched.metadata["author"] == author
    (row,) = ledger.publications(tenant="echo", service="web")
    assert row.author == author
    archive = tmp_path / "web-1.0.1.tgz"
    archive.write_bytes(fetched.data)
    assert helm.show_chart(archive)["annotations"]["tenantry.dev/author"] == author
    # Publishing the same content again finds the stored version by its decoded metadata.
    assert [p.result for p in publish(bucket_only, ledger)] == ["unchanged"]


def test_a_symlink_in_a_teams_chart_is_refused_before_anything_is_uploaded(
    bucket_only: Platform, ledger: Ledger, tmp_path: Path
) -> None:
    service_dir = bucket_only.root / "services" / "echo" / "web"
    (service_dir / "service.yaml").unlink()
    shutil.copytree(CHARTS / "good", service_dir / "chart")
    bucket_only.commit("own chart")
    repo = bucket_only.load()
    clients = aws.clients(repo.platform)
    link = service_dir / "chart" / "templates" / "secret.yaml"
    link.symlink_to("/etc/passwd")
    message = (
        r"services/echo/web/chart/templates/secret\.yaml: \(symlink\): is a symbolic link "
        r"\(to /etc/passwd\).*\(replace the link with the file's content\)"
    )

    # Loading the repository refuses it (publish, lint and verify all load it first)...
    with pytest.raises(errors.SpecError, match=message):
        publish(bucket_only, ledger)
    # ...and so does packaging a repository loaded before the link appeared.
    with pytest.raises(errors.SpecError, match=message):
        publishing.publish(
            repo, list(repo.services), clients=clients, ledger=ledger,
            origin=publishing.provenance(repo.root),
        )  # fmt: skip
    with pytest.raises(errors.SpecError, match=message):
        package.package(
            repo.service("echo/web"), provenance=publishing.provenance(repo.root),
            workdir=tmp_path / "work",
        )  # fmt: skip
    assert "Contents" not in clients.s3.list_objects_v2(Bucket=bucket_only.bucket)
    assert ledger.publications(tenant="echo", service="web") == []

    # Without the link the same chart publishes as before.
    link.unlink()
    (published,) = publish(bucket_only, ledger)
    assert (published.key, published.result) == ("echo/web-0.1.0.tgz", "published")


def test_versions_are_immutable(platform: Platform, ledger: Ledger) -> None:
    publish(platform, ledger)
    assert [p.result for p in publish(platform, ledger)] == ["unchanged"]
    platform.write("1.0.0", replicas=2)
    platform.commit("same version, different content")
    with pytest.raises(
        store.ImmutableVersionError,
        match=r"echo/web 1\.0\.0 is already published with different content",
    ):
        publish(platform, ledger)


def test_parallel_publishers_keep_every_index_entry(
    platform: Platform, ledger: Ledger, tmp_path: Path
) -> None:
    repo = platform.load()
    clients = aws.clients(repo.platform)
    service = repo.service("echo/web")
    origin = publishing.provenance(repo.root)
    count = 24
    packages = []
    for i in range(count):
        platform.write(f"2.0.{i}")
        packages.append(package.package(repository.load(platform.root).service("echo/web"),
                                        provenance=origin, workdir=tmp_path / f"p{i}"))  # fmt: skip
    assert service
    errors_: list[BaseException] = []
    barrier = threading.Barrier(count)

    def one(pkg: package.Package) -> None:
        try:
            barrier.wait()
            store.publish(aws.clients(repo.platform), platform.bucket, pkg)
        except BaseException as e:  # collected and asserted below
            errors_.append(e)

    threads = [threading.Thread(target=one, args=(pkg,)) for pkg in packages]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors_ == []
    idx = store.read_index(clients, platform.bucket, "echo")
    assert sorted(e["version"] for e in idx["entries"]["web"]) == sorted(
        f"2.0.{i}" for i in range(count)
    )
    assert all(index.contains(idx, "web", f"2.0.{i}") for i in range(count))


def test_a_duplicate_event_deploys_once_and_an_older_version_is_skipped(
    platform: Platform, ledger: Ledger, cluster: localcluster.LocalCluster
) -> None:
    publish(platform, ledger)
    platform.write("1.1.0")
    platform.commit("1.1.0")
    publish(platform, ledger)
    d = worker(platform, ledger)
    first = drain(d, until=2)
    assert sorted(o.result for o in first) == ["deployed", "deployed"], first
    clients = aws.clients(platform.load().platform)
    queue = wiring.queue_url(clients, platform.queue)
    for key in ("echo/web-1.1.0.tgz", "echo/web-1.0.0.tgz"):  # a duplicate, then an old one
        body = {"Records": [{"eventName": "ObjectCreated:Put", "eventTime": "2026-01-01T00:00:00Z",
                             "s3": {"bucket": {"name": platform.bucket}, "object": {"key": key}}}]}  # fmt: skip
        clients.sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))
    outcomes = drain(d, until=2)
    assert [(o.result, o.reason) for o in outcomes] == [
        ("skipped", "duplicate: 1.1.0 is already released"),
        ("skipped", "out of order: 1.0.0 is older than the released 1.1.0"),
    ]
    assert released(cluster)["chart"] == "web-1.1.0"
    assert [r.version for r in ledger.history(tenant="echo", service="web")] == ["1.1.0", "1.0.0"]


def test_bad_messages_are_recorded_and_never_deployed(platform: Platform, ledger: Ledger) -> None:
    clients = aws.clients(platform.load().platform)
    queue = wiring.queue_url(clients, platform.queue)
    clients.s3.put_object(Bucket=platform.bucket, Key="echo/web-9.9.9.tgz", Body=b"not a chart",
                          Metadata={"sha256": "0" * 64})  # fmt: skip
    for body in ("not json", json.dumps({"Records": [{"eventName": "ObjectRemoved:Delete",
                 "s3": {"bucket": {"name": platform.bucket}, "object": {"key": "x/y-1.0.0.tgz"}}}]}),
                 json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": platform.bucket},
                 "object": {"key": "ghost/api-1.0.0.tgz"}}}]})):  # fmt: skip
        clients.sqs.send_message(QueueUrl=queue, MessageBody=body)
    outcomes = drain(worker(platform, ledger), until=4)  # the upload's event and the 3 sent
    results = sorted((o.result, o.reason.split(":")[0]) for o in outcomes)
    assert ("rejected", "echo/web-9.9.9.tgz") in results
    assert ("invalid", "not JSON") in results
    assert ("invalid", "ObjectRemoved") in results
    # An unknown service is never dropped: kept for a later try (the change naming it
    # may not have reached this worker yet), then the dead-letter queue.
    assert any(r == "unmatched" and "ghost/api is not a service" in reason
               and "attempt 1 of 2; retried in 2 s" in reason for r, reason in
               [(o.result, o.reason) for o in outcomes])  # fmt: skip
    assert ledger.history(tenant="echo", service="web") == []


def test_an_archive_nobody_published_is_refused_whatever_its_metadata_says(
    platform: Platform, ledger: Ledger, cluster: localcluster.LocalCluster, tmp_path: Path
) -> None:
    repo = platform.load()
    # A real chart with a matching sha256 in its own metadata — what anyone who can write
    # to the bucket can produce — but no publication in the ledger.
    pkg = package.package(repo.service("echo/web"), workdir=tmp_path,
                          provenance=publishing.provenance(repo.root))  # fmt: skip
    clients = aws.clients(repo.platform)
    clients.s3.put_object(Bucket=platform.bucket, Key=pkg.key, Body=pkg.path.read_bytes(),
                          Metadata={"sha256": pkg.digest})  # fmt: skip
    outcomes = drain(worker(platform, ledger), until=1)
    assert [(o.result, o.reason) for o in outcomes] == [(
        "rejected", f"{pkg.key}: sha256 {pkg.digest} was never published with `tenantry "
        "publish` (not in the ledger); refused",
    )]  # fmt: skip
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace="echo")
    assert helm.list_releases(target) == []


def test_a_service_added_after_the_worker_started_is_deployed(
    platform: Platform, ledger: Ledger, cluster: localcluster.LocalCluster
) -> None:
    d = worker(platform, ledger)  # reads the repository now: echo/web only
    added = platform.root / "services" / "echo" / "api" / "service.yaml"
    added.parent.mkdir(parents=True)
    added.write_text(yaml.safe_dump({**descriptor("0.1.0"), "name": "api"}))
    platform.commit("echo/api")
    repo = platform.load()
    publishing.publish(repo, [repo.service("echo/api")], clients=aws.clients(repo.platform),
                       ledger=ledger, origin=publishing.provenance(repo.root))  # fmt: skip
    outcomes = drain(d, until=1)
    assert [(o.result, o.reason) for o in outcomes] == [("deployed", "first release")]
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace="echo")
    assert [r["chart"] for r in helm.list_releases(target)] == ["api-0.1.0"]
    helm.uninstall(target, release="api")


def test_a_chart_that_never_becomes_ready_rolls_back_and_lands_in_the_dead_letter_queue(
    platform: Platform, ledger: Ledger, cluster: localcluster.LocalCluster
) -> None:
    publish(platform, ledger)
    d = worker(platform, ledger)
    assert [o.result for o in drain(d, until=1)] == ["deployed"]
    # 1.2.0's pods crash-loop (kwok keeps pods labelled never-ready unready).
    chart = platform.root / "services" / "echo" / "web"
    (chart / "service.yaml").unlink()
    shutil.copytree(CHARTS / "never-ready", chart / "chart")
    values = yaml.safe_load((chart / "chart" / "values.yaml").read_text())
    values.update(tenant="echo", image=f"{REGISTRY}/echo/web:2")
    (chart / "chart" / "values.yaml").write_text(yaml.safe_dump(values))
    chart_yaml = yaml.safe_load((chart / "chart" / "Chart.yaml").read_text())
    chart_yaml.update(version="1.2.0")
    (chart / "chart" / "Chart.yaml").write_text(yaml.safe_dump(chart_yaml))
    platform.commit("1.2.0 never ready")
    publish(platform, ledger)

    outcomes = drain(d, until=2, attempts=80)

    assert [o.result for o in outcomes] == ["failed", "dead-letter"]
    assert "will retry" in outcomes[0].reason
    assert "moved to the dead-letter queue" in outcomes[1].reason
    # The last good release still serves.
    assert released(cluster)["chart"] == "web-1.0.0"
    # SQS moves a message past maxReceiveCount to the dead-letter queue on the next receive.
    d.poll_once()
    clients = aws.clients(platform.load().platform)
    dlq = wiring.queue_url(clients, f"{platform.queue}-dlq")
    moved = clients.sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=2, MaxNumberOfMessages=10)
    # S3 URL-encodes keys in notifications (echo%2Fweb-1.2.0.tgz); the deployer decodes them.
    assert any("web-1.2.0.tgz" in m["Body"] for m in moved.get("Messages", []))


def test_the_clusters_not_the_ledger_say_what_runs(
    platform: Platform, ledger: Ledger, cluster: localcluster.LocalCluster
) -> None:
    publish(platform, ledger)
    d = worker(platform, ledger)
    assert [o.result for o in drain(d, until=1)] == ["deployed"]
    # The release disappears (a rebuilt cluster, a hand uninstall); the ledger still has it.
    helm.uninstall(helm.Target(kubeconfig=cluster.kubeconfig, namespace="echo"), release="web")
    clients = aws.clients(platform.load().platform)
    body = {"Records": [{"eventName": "ObjectCreated:Put", "eventTime": "2026-01-01T00:00:00Z",
                         "s3": {"bucket": {"name": platform.bucket}, "object": {"key": "echo/web-1.0.0.tgz"}}}]}  # fmt: skip
    clients.sqs.send_message(
        QueueUrl=wiring.queue_url(clients, platform.queue), MessageBody=json.dumps(body)
    )
    assert [(o.result, o.reason) for o in drain(d, until=1)] == [("deployed", "first release")]
    assert released(cluster)["chart"] == "web-1.0.0"


def test_a_service_reading_a_secret_key_without_a_value_waits_for_one_then_deploys(
    platform: Platform, ledger: Ledger, cluster: localcluster.LocalCluster
) -> None:
    path = platform.root / "services" / "echo" / "web" / "service.yaml"
    described = yaml.safe_load(path.read_text())
    described["secrets"] = {"DB_PASSWORD": {"name": "db", "key": "password"}}
    path.write_text(yaml.safe_dump(described))
    platform.commit("web reads db/password")
    publish(platform, ledger)
    d = worker(platform, ledger)

    (failed,) = drain(d, until=1)
    assert failed.result == "failed"
    assert "echo/web reads db/password, which has no value in staging" in failed.reason
    assert "tenantry secrets set echo/db password --env staging" in failed.reason
    assert helm.list_releases(helm.Target(kubeconfig=cluster.kubeconfig, namespace="echo")) == []

    repo = platform.load()
    secret_store.set_key(repo, ledger, tenant=repo.tenant("echo"), environment="staging",
                         name="db", key="password", value=b"pw", actor="e")  # fmt: skip
    # The same message, delivered again after its visibility timeout, now deploys.
    assert [o.result for o in drain(d, until=1, attempts=80)] == ["deployed"]
    with Kube.connect(cluster.kubeconfig) as admin:
        deployment = admin.get(Deployment, "web", namespace="echo")
    template = deployment.spec.template  # type: ignore[union-attr]
    annotations = template.metadata.annotations  # type: ignore[union-attr]
    assert annotations["tenantry.dev/secret-versions"] == "db/password=1"
    (env,) = [e for e in template.spec.containers[0].env or []  # type: ignore[union-attr]
              if e.name == "DB_PASSWORD"]  # fmt: skip
    assert env.valueFrom.secretKeyRef.name == "db"  # type: ignore[union-attr]
    assert env.valueFrom.secretKeyRef.key == "password"  # type: ignore[union-attr]

    # Rotation: the same version is deployed again, and the Deployment rolls its pods.
    rotated = secret_store.set_key(repo, ledger, tenant=repo.tenant("echo"),
                                   environment="staging", name="db", key="password",
                                   value=b"pw2", actor="e")  # fmt: skip
    assert rotated.redeploys == ("echo/web 1.0.0: queued",)
    outcomes: list[deploying.Outcome] = []
    d.on_outcome = outcomes.append
    assert d.request_once()
    assert [(o.result, o.reason) for o in outcomes] == [
        ("deployed", "1.0.0 again: a secret key it reads changed")]  # fmt: skip
    with Kube.connect(cluster.kubeconfig) as admin:
        rolled = admin.get(Deployment, "web", namespace="echo")
    assert rolled.spec.template.metadata.annotations[  # type: ignore[union-attr]
        "tenantry.dev/secret-versions"] == "db/password=2"  # fmt: skip
    assert rolled.metadata.generation > deployment.metadata.generation  # type: ignore[union-attr,operator]


def _secret(cluster: localcluster.LocalCluster, name: str) -> dict[str, bytes] | None:
    with Kube.connect(cluster.kubeconfig) as admin:
        try:
            found = admin.get(Secret, name, namespace="echo")
        except errors.NotFoundError:
            return None
    return {k: base64.b64decode(v) for k, v in (found.data or {}).items()}


def test_values_kept_in_aws_secrets_manager_are_written_there_first_and_synced_to_clusters(
    platform: Platform, ledger: Ledger, cluster: localcluster.LocalCluster
) -> None:
    prefix = f"t-{secrets.token_hex(3)}/"
    data = yaml.safe_load((platform.root / "platform.yaml").read_text())
    data["environments"][0]["secrets"] = {"store": "aws-secrets-manager", "endpoint": "local",
                                          "prefix": prefix}  # fmt: skip
    (platform.root / "platform.yaml").write_text(yaml.safe_dump(data))
    repo = platform.load()
    echo = repo.tenant("echo")
    sm = aws.secrets_manager(repo.platform.environment("staging").secrets, field="test")
    kept = f"{prefix}echo/staging/api"

    secret_store.set_key(repo, ledger, tenant=echo, environment="staging", name="api",
                         key="token", value=b"first", actor="e")  # fmt: skip
    assert json.loads(sm.get_secret_value(SecretId=kept)["SecretString"]) == {"token": "first"}
    assert _secret(cluster, "api") == {"token": b"first"}

    # AWS's rotation (or a person with access to Secrets Manager) changes it there.
    sm.put_secret_value(SecretId=kept, SecretString=json.dumps({"token": "rotated",
                                                                "url": "https://db"}))  # fmt: skip
    synced = secret_store.sync(repo, ledger, tenant=echo, environment="staging", actor="e")
    assert [(c.row.name, c.row.key, c.row.action, c.row.version) for c in synced] == [
        ("api", "token", "sync", 2), ("api", "url", "sync", 1)]  # fmt: skip
    assert _secret(cluster, "api") == {"token": b"rotated", "url": b"https://db"}
    assert secret_store.sync(repo, ledger, tenant=echo, environment="staging", actor="e") == []

    # Bytes that are not text: Secrets Manager keeps text, so nothing is written anywhere.
    with pytest.raises(errors.UsageError, match="not UTF-8 text"):
        secret_store.set_key(repo, ledger, tenant=echo, environment="staging", name="api",
                             key="token", value=b"\xff\xfe", actor="e")  # fmt: skip
    assert _secret(cluster, "api") == {"token": b"rotated", "url": b"https://db"}

    # Gone from Secrets Manager: gone from the cluster at the next sync.
    sm.delete_secret(SecretId=kept, ForceDeleteWithoutRecovery=True)
    removed = secret_store.sync(repo, ledger, tenant=echo, environment="staging", actor="e")
    assert {(c.row.key, c.row.action) for c in removed} == {
        ("token", "sync-delete"), ("url", "sync-delete")}  # fmt: skip
    assert _secret(cluster, "api") is None
    assert all(r.name != "api" for r in ledger.secret_keys(tenant="echo", environment="staging"))


def test_where_the_operator_runs_an_external_secret_is_made_and_checked_against_its_crd(
    platform: Platform, ledger: Ledger, cluster: localcluster.LocalCluster
) -> None:
    prefix = f"t-{secrets.token_hex(3)}/"
    data = yaml.safe_load((platform.root / "platform.yaml").read_text())
    staging = data["environments"][0]
    staging["secrets"] = {"store": "aws-secrets-manager", "endpoint": "local", "prefix": prefix}
    staging["clusters"][0]["externalSecrets"] = {"name": "aws", "refreshInterval": "5m"}
    (platform.root / "platform.yaml").write_text(yaml.safe_dump(data))
    repo = platform.load()
    echo = repo.tenant("echo")
    crd = external.crd()

    def set_token() -> secret_store.Change:
        return secret_store.set_key(repo, ledger, tenant=echo, environment="staging",
                                    name="api", key="token", value=b"t", actor="e")  # fmt: skip

    # The cluster does not serve ExternalSecret (no operator): said, naming the cluster.
    with pytest.raises(secret_store.SecretWriteError, match="does not serve ExternalSecret"):
        set_token()
    with Kube.connect(cluster.kubeconfig) as admin:
        admin.apply(crd)
        wait_for(lambda: any(c.type == "Established" and c.status == "True" for c in (
            admin.get(CustomResourceDefinition, crd["metadata"]["name"]).status.conditions  # type: ignore[union-attr]
            or [])), "the ExternalSecret CRD to be served")  # fmt: skip
    try:
        assert "ExternalSecret applied" in set_token().row.clusters
        with Kube.connect(cluster.kubeconfig) as admin:
            made = admin.get(external.kind(), "api", namespace="echo")
            (source,) = made.spec["dataFrom"]  # defaults filled in by the CRD's schema
            assert source["extract"]["key"] == f"{prefix}echo/staging/api"
            assert made.spec["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "aws"}
            assert made.spec["refreshInterval"] == "5m"
        assert _secret(cluster, "api") is None  # the operator's to write, not Tenantry's

        gone = secret_store.delete_key(repo, ledger, tenant=echo, environment="staging",
                                       name="api", key="token", actor="e")  # fmt: skip
        assert "ExternalSecret deleted" in gone.row.clusters
        with Kube.connect(cluster.kubeconfig) as admin:
            assert external.names(admin, tenant="echo") == []
    finally:
        with Kube.connect(cluster.kubeconfig) as admin:
            admin.delete(CustomResourceDefinition, crd["metadata"]["name"])
