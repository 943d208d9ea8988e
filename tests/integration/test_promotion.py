"""Production stays manual: a healthy staging version, approved by someone else, goes to
the canary cluster and then the primary; and rolls back. Real clusters, S3/SQS, Helm."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from lightkube.resources.apps_v1 import Deployment

from tenantry import aws, helm
from tenantry.aws import wiring
from tenantry.deploy import promotion
from tenantry.kube import localcluster
from tenantry.kube.client import Kube
from tenantry.ledger import Ledger
from tenantry.spec import repository
from tenantry.tenancy import reconcile
from tests.conftest import CHARTS
from tests.integration.test_delivery import Platform, drain, offboard, publish, worker


@pytest.fixture(scope="module")
def production(state_dir: Path) -> Iterator[tuple[str, str]]:
    """Two more real clusters: the production primary and canary."""
    suffix = secrets.token_hex(2)
    primary, canary = f"prod-primary-{suffix}", f"prod-canary-{suffix}"
    localcluster.create(primary, nodes=1)
    localcluster.create(canary, nodes=1)
    yield primary, canary
    localcluster.delete(primary)
    localcluster.delete(canary)


def production_platform(root: Path, staging: str, production: tuple[str, str]) -> Platform:
    p = Platform(root, staging)
    data = yaml.safe_load((p.root / "platform.yaml").read_text())
    primary, canary = production
    data["environments"].append({"name": "production", "clusters": [
        {"name": primary, "local": primary, "role": "primary"},
        {"name": canary, "local": canary, "role": "canary"}]})  # fmt: skip
    (p.root / "platform.yaml").write_text(yaml.safe_dump(data))
    tenant = yaml.safe_load((p.root / "tenants" / "echo.yaml").read_text())
    tenant["environments"] = ["staging", "production"]
    (p.root / "tenants" / "echo.yaml").write_text(yaml.safe_dump(tenant))
    p.commit("production")
    return p


@pytest.fixture(scope="module")
def onboarded(
    cluster: localcluster.LocalCluster, production: tuple[str, str], aws_server: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:  # fmt: skip
    """Tenant echo onboarded once into all three clusters (namespace deletion is slow)."""
    root = tmp_path_factory.mktemp("onboarding")
    reconcile.apply_all(production_platform(root / "platform", cluster.name, production).load())
    yield root
    offboard(root)


@pytest.fixture
def platform(
    cluster: localcluster.LocalCluster, production: tuple[str, str], onboarded: Path, tmp_path: Path
) -> Iterator[Platform]:
    """A fresh bucket and queue per test; the releases are removed after it."""
    p = production_platform(tmp_path / "platform", cluster.name, production)
    wiring.setup(aws.clients(p.load().platform), p.load().platform)
    yield p
    for name in (cluster.name, *production):
        kubeconfig = localcluster.get(name).kubeconfig
        helm.uninstall(helm.Target(kubeconfig=kubeconfig, namespace="echo"), release="web")


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    yield opened
    opened.close()


def chart_in(cluster_name: str) -> str:
    cluster = localcluster.get(cluster_name)
    (release,) = helm.list_releases(helm.Target(kubeconfig=cluster.kubeconfig, namespace="echo"))
    return str(release["chart"])


def approve_and_deploy(
    repo: repository.Repository, ledger: Ledger, *, promotion_id: int, by: str
) -> promotion.Result:
    """What the server and a worker do between them: approve, then deploy."""
    promotion.approve(repo, ledger, promotion_id=promotion_id, by=by)
    return promotion.deploy_approved(repo, ledger, aws.clients(repo.platform),
                                     promotion_id=promotion_id)  # fmt: skip


def ship_to_staging(p: Platform, ledger: Ledger, version: str) -> None:
    p.write(version)
    p.commit(version)
    publish(p, ledger)
    assert [o.result for o in drain(worker(p, ledger), until=1)] == ["deployed"]


def test_promotion_needs_a_healthy_staging_version_and_another_approver(
    platform: Platform, ledger: Ledger, production: tuple[str, str]
) -> None:
    repo = platform.load()
    ship_to_staging(platform, ledger, "1.0.0")

    with pytest.raises(
        promotion.PromotionError, match=r"0\.9\.0 is not what staging runs \(staging has 1\.0\.0\)"
    ):
        promotion.request(
            repo, ledger, ref="echo/web", version="0.9.0", environment="production", by="alice"
        )
    row = promotion.request(
        repo, ledger, ref="echo/web", version="1.0.0", environment="production", by="alice"
    )
    assert row.status == "pending"
    with pytest.raises(
        promotion.PromotionError, match=r"alice requested promotion \d+ and cannot also approve it"
    ):
        promotion.approve(repo, ledger, promotion_id=row.id, by="alice")

    result = approve_and_deploy(repo, ledger, promotion_id=row.id, by="bob")

    assert (result.status, result.reason) == ("deployed", "")
    primary, canary = production
    assert chart_in(canary) == chart_in(primary) == "web-1.0.0"
    prod = [
        d
        for d in reversed(ledger.history(tenant="echo", service="web"))
        if d.environment == "production"
    ]
    assert [(d.cluster, d.result, d.actor) for d in prod] == [
        (canary, "succeeded", f"bob (approved #{row.id})"),
        (primary, "succeeded", f"bob (approved #{row.id})"),
    ]
    again = ledger.promotion(row.id)
    assert again is not None and (again.status, again.approved_by) == ("deployed", "bob")


def test_an_unhealthy_staging_version_cannot_be_promoted(
    platform: Platform, ledger: Ledger, cluster: localcluster.LocalCluster
) -> None:
    ship_to_staging(platform, ledger, "1.0.0")
    with Kube.connect(cluster.kubeconfig) as kube:
        deployment = kube.get(Deployment, "web", namespace="echo").to_dict()
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        kube.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": "echo"},
                    "spec": {"selector": deployment["spec"]["selector"], "template": {"metadata": {
                        "labels": {**labels, "tenantry.dev/simulate": "never-ready"}},
                        "spec": deployment["spec"]["template"]["spec"]}}})  # fmt: skip
    with pytest.raises(promotion.PromotionError, match="is not healthy in staging: Deployment web"):
        promotion.request(
            platform.load(),
            ledger,
            ref="echo/web",
            version="1.0.0",
            environment="production",
            by="alice",
        )


def test_rollback_returns_production_to_the_previous_version(
    platform: Platform, ledger: Ledger, production: tuple[str, str]
) -> None:
    repo = platform.load()
    clients = aws.clients(repo.platform)
    for version in ("1.0.0", "1.1.0"):
        ship_to_staging(platform, ledger, version)
        row = promotion.request(
            platform.load(),
            ledger,
            ref="echo/web",
            version=version,
            environment="production",
            by="alice",
        )
        assert approve_and_deploy(repo, ledger, promotion_id=row.id, by="bob").status == "deployed"
    primary, canary = production
    assert chart_in(primary) == "web-1.1.0"

    plan = promotion.plan_rollback(repo, ledger, ref="echo/web", environment="production",
                                   to_version=None)  # fmt: skip
    result = promotion.rollback(repo, ledger, clients, plan=plan, by="carol")

    assert (result.status, result.reason) == ("rolled-back", "1.1.0 → 1.0.0")
    assert chart_in(primary) == chart_in(canary) == "web-1.0.0"
    with pytest.raises(promotion.PromotionError, match=r"9\.9\.9 never succeeded in production"):
        promotion.plan_rollback(repo, ledger, ref="echo/web", environment="production",
                                to_version="9.9.9")  # fmt: skip


def test_a_service_with_its_own_chart_reaches_production_when_traffic_is_set(
    platform: Platform, ledger: Ledger, production: tuple[str, str]
) -> None:
    """No route for live traffic, so no canary analysis — but canary cluster, then primary."""
    data = yaml.safe_load((platform.root / "platform.yaml").read_text())
    data["traffic"] = {"router": "haproxy", "scrapeIntervalS": 1, "canary": {"intervalS": 2}}
    (platform.root / "platform.yaml").write_text(yaml.safe_dump(data))
    own_chart(platform, "2.0.0")
    publish(platform, ledger)
    assert [o.result for o in drain(worker(platform, ledger), until=1)] == ["deployed"]
    repo = platform.load()
    row = promotion.request(repo, ledger, ref="echo/web", version="2.0.0",
                            environment="production", by="alice")  # fmt: skip
    progress: list[str] = []
    promotion.approve(repo, ledger, promotion_id=row.id, by="bob")
    result = promotion.deploy_approved(repo, ledger, aws.clients(repo.platform),
                                       promotion_id=row.id, log=progress.append)  # fmt: skip
    assert (result.status, result.reason) == ("deployed", "")
    assert progress[0] == ("echo/web has its own chart: no live-traffic route, so no canary "
                           "analysis; the canary cluster is deployed first, then the primary")  # fmt: skip
    primary, canary = production
    assert chart_in(canary) == chart_in(primary) == "web-2.0.0"
    prod = [d.cluster for d in reversed(ledger.history(tenant="echo", service="web"))
            if d.environment == "production"]  # fmt: skip
    assert prod == [canary, primary]


def own_chart(p: Platform, version: str) -> None:
    """Switch echo/web from a descriptor to the team's own chart at ``version``."""
    service = p.root / "services" / "echo" / "web"
    (service / "service.yaml").unlink()
    shutil.copytree(CHARTS / "good", service / "chart")
    values = yaml.safe_load((service / "chart" / "values.yaml").read_text())
    values.update(tenant="echo", image="registry.acme.example/echo/web:1")
    (service / "chart" / "values.yaml").write_text(yaml.safe_dump(values))
    meta = yaml.safe_load((service / "chart" / "Chart.yaml").read_text())
    meta.update(name="web", version=version)
    (service / "chart" / "Chart.yaml").write_text(yaml.safe_dump(meta))
    p.commit(f"own chart {version}")
