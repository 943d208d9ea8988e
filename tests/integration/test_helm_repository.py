"""Each tenant's Helm repository through the Tenantry server, read by the real helm client
with people's own tokens (proven by the session cluster's TokenReview), charts published
for real to the local S3 server and recorded in the ledger.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
import yaml

from tenantry import aws
from tenantry.artifacts import index, publishing, store
from tenantry.aws import wiring
from tenantry.kube import localcluster
from tenantry.ledger import Ledger
from tenantry.spec import repository
from tests.integration.test_delivery import git
from tests.integration.test_server import stop, tenantry_server

REGISTRY = "registry.acme.example"


def platform_repo(root: Path, cluster: str) -> Path:
    """payments (owner alice, member erin) with its api, checkout (owner carol) with its
    web; dana administers; the session cluster proves who calls."""
    suffix = os.urandom(3).hex()
    platform = {
        "name": "helmrepo",
        "environments": [{"name": "staging", "clusters": [{"name": cluster, "local": cluster}]}],
        "defaults": {"quota": {"cpu": "4", "memory": "4Gi", "pods": "20"},
                     "container": {"requests": {"cpu": "50m", "memory": "32Mi"},
                                   "limits": {"cpu": "100m", "memory": "64Mi"}}},
        "registries": [REGISTRY],
        "artifacts": {"bucket": f"charts-{suffix}", "endpoint": "local"},
        "queue": {"name": f"events-{suffix}"},
        "server": {"managementCluster": cluster, "admins": {"users": ["dana"]}},
    }  # fmt: skip
    (root / "tenants").mkdir(parents=True)
    (root / "platform.yaml").write_text(yaml.safe_dump(platform))
    tenants = {
        "payments": {"owners": {"users": ["alice"]}, "members": {"users": ["erin"]}},
        "checkout": {"owners": {"users": ["carol"]}},
    }
    for name, people in tenants.items():
        (root / "tenants" / f"{name}.yaml").write_text(
            yaml.safe_dump({"name": name, **people, "environments": ["staging"]})
        )
    for tenant, service in (("payments", "api"), ("checkout", "web")):
        path = root / "services" / tenant / service / "service.yaml"
        path.parent.mkdir(parents=True)
        path.write_text(yaml.safe_dump({
            "name": service, "version": "1.0.0", "image": f"{REGISTRY}/{tenant}/{service}:1",
            "resources": {"requests": {"cpu": "50m", "memory": "32Mi"},
                          "limits": {"cpu": "100m", "memory": "64Mi"}},
        }))  # fmt: skip
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "payments and checkout")
    return root


@dataclass(frozen=True)
class Served:
    """The server on the platform, with what was published."""

    url: str
    root: Path
    database: str
    logs: Path
    published: dict[str, publishing.Published]  # by ref
    bucket: str

    def repo(self, tenant: str) -> str:
        return f"{self.url}/helm/{tenant}"


@pytest.fixture(scope="module")
def served(
    cluster: localcluster.LocalCluster, aws_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("helmrepo")
    repo = repository.load(platform_repo(root / "platform", cluster.name))
    wiring.setup(aws.clients(repo.platform), repo.platform)
    database = f"sqlite:///{root / 'ledger.sqlite'}"
    with Ledger.open(database) as ledger:  # migrated before the server opens it
        published = publishing.publish(
            repo, list(repo.services), clients=aws.clients(repo.platform), ledger=ledger,
            origin=publishing.provenance(repo.root),
        )  # fmt: skip
    assert [p.result for p in published] == ["published", "published"]
    url, pid = tenantry_server(repo.root, database, root)
    try:
        yield Served(url, repo.root, database, root, {p.ref: p for p in published},
                     repo.artifacts().bucket)  # fmt: skip
    finally:
        stop(pid)


@dataclass(frozen=True)
class Helm:
    """The real helm client with its own configuration, cache and repositories file."""

    home: Path

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
            "HELM_REPOSITORY_CONFIG": str(self.home / "config" / "repositories.yaml"),
            "HELM_REPOSITORY_CACHE": str(self.home / "cache" / "repository"),
        }
        return subprocess.run(["helm", *args], input=stdin, capture_output=True, text=True,
                              env=env, timeout=120, check=False)  # fmt: skip

    def add(self, name: str, url: str, *, username: str, token: str) -> subprocess.CompletedProcess[str]:  # fmt: skip
        # The token goes on standard input, never in the argument list.
        return self.run("repo", "add", name, url, "--username", username, "--password-stdin",
                        stdin=token + "\n")  # fmt: skip


@pytest.fixture
def helm(tmp_path: Path) -> Helm:
    return Helm(tmp_path / "helm")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("who", ["alice", "erin", "dana"])  # owner, member, admin
def test_a_tenants_people_add_search_and_pull_with_their_token(
    served: Served, helm: Helm, tokens: dict[str, str], tmp_path: Path, who: str
) -> None:
    added = helm.add("payments", served.repo("payments"), username=who, token=tokens[who])
    assert added.returncode == 0, added.stderr
    assert '"payments" has been added' in added.stdout

    found = helm.run("search", "repo", "payments", "-o", "json")
    assert found.returncode == 0, found.stderr
    assert [(c["name"], c["version"]) for c in yaml.safe_load(found.stdout)] == [
        ("payments/api", "1.0.0")
    ]  # checkout's web is in the same bucket, not in payments' repository

    (tmp_path / "out").mkdir()
    pulled = helm.run("pull", "payments/api", "--version", "1.0.0", "-d", str(tmp_path / "out"))
    assert pulled.returncode == 0, pulled.stderr
    archive = tmp_path / "out" / "api-1.0.0.tgz"
    digest = served.published["payments/api"].digest
    assert sha256(archive) == digest
    with Ledger.open(served.database) as ledger:
        assert ledger.published_digests(tenant="payments", service="api", version="1.0.0") == {
            digest
        }


def test_another_tenants_person_is_told_it_does_not_exist(
    served: Served, helm: Helm, tokens: dict[str, str]
) -> None:
    # 404, not 401 or 403: carol is proven (her token is good) but payments is not hers,
    # and, as the API's tenants, another team's repository answers as if it did not exist.
    refused = helm.add("payments", served.repo("payments"), username="carol", token=tokens["carol"])
    assert refused.returncode != 0
    assert "404 Not Found" in refused.stderr, refused.stderr
    # Her own repository works, and lists only her charts.
    assert helm.add("checkout", served.repo("checkout"), username="carol",
                    token=tokens["carol"]).returncode == 0  # fmt: skip
    found = yaml.safe_load(helm.run("search", "repo", "checkout", "-o", "json").stdout)
    assert [c["name"] for c in found] == ["checkout/web"]


def test_the_username_is_ignored_only_the_token_says_who_you_are(
    served: Served, helm: Helm, tokens: dict[str, str]
) -> None:
    claimed = helm.add("payments", served.repo("payments"), username="alice", token=tokens["carol"])
    assert "404 Not Found" in claimed.stderr, claimed.stderr  # carol's rights, not alice's


def test_no_credential_or_a_bad_token_is_401_with_a_basic_challenge(
    served: Served, helm: Helm
) -> None:
    anonymous = helm.run("repo", "add", "payments", served.repo("payments"))
    assert "401 Unauthorized" in anonymous.stderr, anonymous.stderr
    bad = helm.add("payments", served.repo("payments"), username="alice", token="not-a-token")
    assert "401 Unauthorized" in bad.stderr, bad.stderr
    with httpx2.Client(base_url=served.url, timeout=30, trust_env=False) as http:
        for headers in ({}, {"Authorization": "Basic !!"}, {"Authorization": "Bearer nope"}):
            answer = http.get("/helm/payments/index.yaml", headers=headers)
            assert answer.status_code == 401
            assert answer.headers["www-authenticate"] == 'Basic realm="tenantry"'
            assert answer.json()["fix"].startswith("helm repo add NAME URL")
        # Unknown tenants and archives are 401 too before the credential: nothing to probe.
        assert http.get("/helm/nosuch/api-1.0.0.tgz").status_code == 401


def raw_get(url: str, path: str, token: str) -> int:
    """GET ``path`` exactly as written (http.client normalises nothing: no dot segments
    removed, no percent-decoding), as a bearer of ``token``."""
    host = url.removeprefix("http://")
    connection = http.client.HTTPConnection(host, timeout=30)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_file_names_never_leave_the_tenants_repository(
    served: Served, tokens: dict[str, str]
) -> None:
    # An archive in payments' prefix that publish never listed: a well-formed name is not
    # enough, only what the index lists is ever read from the store.
    c = aws.clients(repository.load(served.root).platform)
    c.s3.put_object(Bucket=served.bucket, Key="payments/unlisted-1.0.0.tgz", Body=b"x")
    alice = tokens["alice"]
    # 404 from routing: a decoded "/" never matches a file name, so no handler runs; 400:
    # the handler refuses the name before the index is read; 404 after reading only the
    # index: a well-formed name it does not list (the archive is never fetched).
    expected = {
        "/helm/payments/..%2Fcheckout%2Fweb-1.0.0.tgz": 404,
        "/helm/payments/%2e%2e%2fcheckout%2fweb-1.0.0.tgz": 404,
        "/helm/payments/../checkout/web-1.0.0.tgz": 404,
        "/helm/..%2Fcheckout/web-1.0.0.tgz": 404,
        "/helm/payments/..": 400,
        "/helm/payments/%2e%2e": 400,
        "/helm/payments/api-1.0.0.tgz%22": 400,
        "/helm/payments/api%22-1.0.0.tgz": 400,
        "/helm/payments/'api-1.0.0.tgz'": 400,
        "/helm/payments/api-1.0.0.tgz%00": 400,
        "/helm/payments/unlisted-1.0.0.tgz": 404,
        "/helm/payments/web-1.0.0.tgz": 404,  # checkout's chart, by its own name
        "/helm/checkout/web-1.0.0.tgz": 404,  # not alice's tenant
    }
    assert {path: raw_get(served.url, path, alice) for path in expected} == expected
    assert raw_get(served.url, "/helm/payments/api-1.0.0.tgz", alice) == 200


def test_an_archive_nobody_published_is_not_served(
    served: Served, tokens: dict[str, str], helm: Helm
) -> None:
    # Written straight into the bucket with metadata and index entry that match it: only
    # the ledger, where `tenantry publish` records digests, says it was never published.
    c = aws.clients(repository.load(served.root).platform)
    forged = b"not a chart anyone published"
    digest = hashlib.sha256(forged).hexdigest()
    c.s3.put_object(Bucket=served.bucket, Key="payments/api-6.6.6.tgz", Body=forged,
                    Metadata={store.META_DIGEST: digest})  # fmt: skip
    current = store.read_index(c, served.bucket, "payments")
    entry = {"apiVersion": "v2", "name": "api", "version": "6.6.6", "digest": digest,
             "urls": ["api-6.6.6.tgz"]}  # fmt: skip
    c.s3.put_object(Bucket=served.bucket, Key="payments/index.yaml",
                    Body=index.dump(index.with_entry(current, entry, generated="2026-11-29T00:00:00+00:00")))  # fmt: skip
    try:
        with httpx2.Client(base_url=served.url, timeout=30, trust_env=False,
                           headers={"Authorization": f"Bearer {tokens['alice']}"}) as http:  # fmt: skip
            answer = http.get("/helm/payments/api-6.6.6.tgz")
        assert answer.status_code == 502
        assert "never recorded it in the ledger" in answer.json()["error"]
        assert forged not in answer.content
        assert helm.add("payments", served.repo("payments"), username="alice",
                        token=tokens["alice"]).returncode == 0  # fmt: skip
        pulled = helm.run("pull", "payments/api", "--version", "6.6.6", "-d", str(helm.home))
        assert pulled.returncode != 0 and "502 Bad Gateway" in pulled.stderr, pulled.stderr
    finally:
        c.s3.put_object(Bucket=served.bucket, Key="payments/index.yaml", Body=index.dump(current))


def test_every_call_is_audited_and_no_token_is_in_any_log_line(
    served: Served, helm: Helm, tokens: dict[str, str]
) -> None:
    assert helm.add("payments", served.repo("payments"), username="alice",
                    token=tokens["alice"]).returncode == 0  # fmt: skip
    helm.run("repo", "add", "nobody", served.repo("payments"))
    with Ledger.open(served.database) as ledger:
        rows = [r for r in ledger.audit_log(tenants=None, limit=1000)
                if r.target.startswith("/helm/")]  # fmt: skip
    seen = {(r.actor, r.action, r.tenant, r.target, r.status) for r in rows}
    assert ("alice", "GET /helm/{tenant}/index.yaml", "payments", "/helm/payments/index.yaml",
            200) in seen  # fmt: skip
    assert ("anonymous", "GET /helm/{tenant}/index.yaml", None, "/helm/payments/index.yaml",
            401) in seen  # fmt: skip
    log = (served.logs / "server.log").read_text()
    texts = [log, *(f"{r.actor} {r.action} {r.target} {r.detail}" for r in rows)]
    leaked = [who for who, token in tokens.items() for text in texts if token in text]
    assert leaked == []


def test_a_store_that_does_not_answer_is_503_naming_it(
    cluster: localcluster.LocalCluster, aws_server: str, tokens: dict[str, str],
    tmp_path: Path,
) -> None:  # fmt: skip
    # A platform whose bucket was never created: S3 answers NoSuchBucket for everything.
    root = platform_repo(tmp_path / "platform", cluster.name)
    bucket = repository.load(root).artifacts().bucket
    database = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    Ledger.open(database).close()
    url, pid = tenantry_server(root, database, tmp_path)
    try:
        with httpx2.Client(base_url=url, timeout=30, trust_env=False,
                           headers={"Authorization": f"Bearer {tokens['alice']}"}) as http:  # fmt: skip
            for path in ("/helm/payments/index.yaml", "/helm/payments/api-1.0.0.tgz"):
                answer = http.get(path)
                assert answer.status_code == 503, answer.text
                refusal = answer.json()
                assert f"s3://{bucket}/payments/index.yaml" in refusal["error"]
                assert "NoSuchBucket" in refusal["error"]
                assert "S3 endpoint in platform.yaml" in refusal["fix"]
    finally:
        stop(pid)
