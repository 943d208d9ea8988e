"""How the layers below the command line find a platform's traffic wiring and S3/SQS
endpoint without importing the local platform (pure: nothing is started or reached)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tenantry import aws, errors
from tenantry.deploy import canary_release
from tenantry.local import traffic as local_traffic
from tenantry.spec import models, repository
from tenantry.spec.repository import Repository
from tenantry.traffic import haproxy, wiring
from tenantry.traffic.router import Endpoint, Route

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"


def on_real_clusters(tmp_path: Path, **traffic: object) -> Repository:
    """The example platform with its production on kubeconfig clusters behind ingresses."""
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)
    data = yaml.safe_load((root / "platform.yaml").read_text())
    production = next(e for e in data["environments"] if e["name"] == "production")
    production["clusters"] = [
        {"name": "eu-1", "kubeconfig": "/k", "role": "primary", "ingress": "eu-1.acme.example:80"},
        {"name": "eu-2", "kubeconfig": "/k", "role": "canary", "ingress": "eu-2.acme.example:80"},
    ]
    data["traffic"].update(traffic)
    (root / "platform.yaml").write_text(yaml.safe_dump(data))
    return repository.load(root)


def test_local_clusters_get_the_registered_provider() -> None:
    # The session fixture registers the local platform, as the tenantry command does.
    assert isinstance(wiring.provider(repository.load(EXAMPLE)), local_traffic.Provider)


def test_local_clusters_without_a_local_platform_plugged_in_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wiring, "_registered", None)
    with pytest.raises(wiring.WiringError, match="no local platform is plugged in"):
        wiring.provider(repository.load(EXAMPLE))


def test_real_clusters_are_wired_by_platform_yaml(tmp_path: Path) -> None:
    repo = on_real_clusters(tmp_path, router="route53",
                            route53={"zoneId": "Z1", "domain": "apps.acme.example."},
                            prometheusUrl="http://prometheus.acme.example:9090")  # fmt: skip
    provider = wiring.provider(repo)
    assert isinstance(provider, wiring.Configured)
    route = provider.route(repo, repo.service("payments/api"))
    assert route == Route("payments-api", (Endpoint("eu-1", "primary", "eu-1.acme.example:80"),
                                           Endpoint("eu-2", "canary", "eu-2.acme.example:80")))  # fmt: skip
    assert (route, "http://payments-api.apps.acme.example/") in provider.routes(repo)
    assert provider.prometheus(repo) == "http://prometheus.acme.example:9090"


HAPROXY = {"directory": "/var/lib/tenantry/router", "listen": ":8080",
           "domain": "apps.acme.example", "stats": "127.0.0.1:8404"}  # fmt: skip


def test_haproxy_on_real_clusters_needs_its_own_section_before_anything_is_deployed(
    tmp_path: Path,
) -> None:
    repo = on_real_clusters(tmp_path, prometheusUrl="http://prometheus.acme.example:9090")
    with pytest.raises(canary_release.CanaryError, match="names no HAProxy") as refused:
        canary_release.wiring(repo, repo.service("payments/api"), "production")
    assert "traffic.haproxy" in str(refused.value)


def test_the_platform_teams_haproxy_serves_every_route_by_host(tmp_path: Path) -> None:
    repo = on_real_clusters(tmp_path, haproxy=HAPROXY,
                            prometheusUrl="http://prometheus.acme.example:9090")  # fmt: skip
    provider = wiring.provider(repo)
    assert isinstance(provider, wiring.Configured)
    route = provider.route(repo, repo.service("payments/api"))
    assert (route, "http://payments-api.apps.acme.example:8080/") in provider.routes(repo)
    router = provider.router(repo)
    assert isinstance(router, haproxy.HAProxy)
    assert router.directory == Path("/var/lib/tenantry/router")
    assert route in router.routes and router.stats == "127.0.0.1:8404"


@pytest.mark.parametrize(("field", "value"), [
    ("directory", "router"),  # relative: to what?
    ("directory", "/var/lib/x\n    stats socket /tmp/open level admin"),  # a config line
    ("listen", "10.0.0.9"),  # no port
    ("domain", "apps.acme.example }; use_backend other"),
    ("domain", "Apps.Acme.Example"),
    ("stats", "127.0.0.1:metrics"),
])  # fmt: skip
def test_a_haproxy_section_that_could_break_its_configuration_is_refused(
    tmp_path: Path, field: str, value: str
) -> None:
    with pytest.raises(errors.SpecError, match=field):
        on_real_clusters(tmp_path, haproxy={**HAPROXY, field: value})


def test_a_named_endpoint_is_resolved_by_whoever_registered_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aws, "_resolvers", {})
    aws.register_endpoint("unit-test", lambda: "http://127.0.0.1:1")
    assert aws.endpoint_for(models.Artifacts(bucket="charts", endpoint="unit-test")) == (
        "http://127.0.0.1:1"
    )
    assert aws.endpoint_for(models.Artifacts(bucket="charts", endpoint="https://s3.example")) == (
        "https://s3.example"
    )
    assert aws.endpoint_for(models.Artifacts(bucket="charts")) is None
    with pytest.raises(errors.TenantryError, match="nothing here resolves"):
        aws.endpoint_for(models.Artifacts(bucket="charts", endpoint="nobody"))


def test_a_named_endpoint_whose_server_is_down_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws, "_resolvers", {})
    aws.register_endpoint("unit-test-down", lambda: None)
    with pytest.raises(errors.TenantryError, match="not running"):
        aws.endpoint_for(models.Artifacts(bucket="charts", endpoint="unit-test-down"))
