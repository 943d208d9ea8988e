"""`verify` where pods really run: on a real node (kubelet, containerd, runc), a container that
exits, an image that cannot be pulled, a readiness probe that never passes and an OOM kill
each fail with the kubelet's own reason, the exit code and the container's last log lines;
a good service passes and its pods answer on their pod IPs; `--kubeconfig` verifies in an
existing cluster named by its kubeconfig file.

One verification cluster for the module, made the way `tenantry verify --fresh-cluster`
makes it (a real node, its kwok node cordoned), deleted at the end. A machine that cannot
run containers skips these with the reason, like test_real_nodes.py.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube.resources.core_v1 import Namespace, Node, Pod

from tenantry import helm
from tenantry.images import build as images
from tenantry.kube import localcluster, realnode
from tenantry.kube.client import Identity
from tenantry.ledger import Ledger
from tenantry.secretstore import store
from tenantry.spec import repository
from tenantry.tenancy import objects
from tenantry.verify import run as verification
from tenantry.verify.results import Check, ServiceReport
from tests import real_nodes
from tests.conftest import CHARTS
from tests.waiting import wait_for

pytestmark = [pytest.mark.slow, real_nodes.needed]

# Each case is the app chart (tests/data/charts/app) with these values.
CASES: dict[str, dict[str, Any]] = {
    "good": {"replicas": 2},
    "crash": {"args": ["-exit", "3"]},
    # Allowed (a registry path the tenant may use) but not the tenant's own: nothing
    # loads it, and the kubelet's pull fails as it does for an image nobody pushed.
    "missing": {"image": "registry.acme.example/shared/missing:1.0.0"},
    "never-ready": {"env": {"APP_READY": "false"}},
    "oom": {"args": ["-eat-memory"], "memory": "64Mi"},
    "tested": {"helmTest": {"env": {}}},
    "test-fails": {"helmTest": {"env": {"APP_READY": "false"}}},
    "reads-secret": {"secretEnv": [{"env": "DB_PASSWORD", "name": "db", "key": "password"}]},
}


def _write_repo(root: Path, cases: dict[str, dict[str, Any]]) -> repository.Repository:
    platform = {
        "name": "it",
        "environments": [{"name": "staging", "clusters": [{"name": "staging", "local": "unused"}]}],
        "defaults": {
            "quota": {"cpu": "2", "memory": "2Gi", "pods": "10"},
            "container": {"requests": {"cpu": "50m", "memory": "64Mi"},
                          "limits": {"cpu": "100m", "memory": "128Mi"}},
        },
        "registries": ["registry.acme.example"],
    }  # fmt: skip
    (root / "platform.yaml").write_text(yaml.safe_dump(platform))
    (root / "tenants").mkdir()
    tenant = {
        "name": "alpha",
        "owners": {"users": ["a"]},
        "environments": ["staging"],
        "registries": ["registry.acme.example/alpha", "registry.acme.example/shared"],
    }
    (root / "tenants" / "alpha.yaml").write_text(yaml.safe_dump(tenant))
    for case, overrides in cases.items():
        chart = root / "services" / "alpha" / case / "chart"
        shutil.copytree(CHARTS / "app", chart)
        meta = yaml.safe_load((chart / "Chart.yaml").read_text())
        (chart / "Chart.yaml").write_text(yaml.safe_dump({**meta, "name": case}))
        values = yaml.safe_load((chart / "values.yaml").read_text())
        values["image"] = f"registry.acme.example/alpha/{case}:1.0.0"
        (chart / "values.yaml").write_text(yaml.safe_dump({**values, **overrides}))
    return repository.load(root)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> repository.Repository:
    return _write_repo(tmp_path_factory.mktemp("verify-real-repo"), CASES)


@pytest.fixture(scope="module")
def cluster(state_dir: Path) -> Iterator[verification.Cluster]:
    with verification.verification_cluster(fresh=True, name="vr") as made:
        yield made


DEFAULT = verification.Options(timeout_s=60)


def verify(
    repo: repository.Repository,
    cluster: verification.Cluster,
    case: str,
    *,
    options: verification.Options = DEFAULT,
) -> ServiceReport:
    return verification.verify_service(
        repo, repo.service(f"alpha/{case}"), cluster=cluster, options=options
    )


def check(report: ServiceReport, name: str) -> Check:
    return next(c for c in report.checks if c.name == name)


def assert_namespace_gone(cluster: verification.Cluster) -> None:
    with cluster.connect() as admin:
        wait_for(
            lambda: not admin.list(Namespace, labels={verification.VERIFICATION_LABEL: "true"}),
            "the verification namespaces to be deleted",
        )


def test_the_verification_cluster_runs_pods_on_its_real_node_only(
    cluster: verification.Cluster,
) -> None:
    assert cluster.local is not None and cluster.simulated == ""
    assert "pods run on its real node" in cluster.describe()
    with cluster.connect() as admin:
        nodes = admin.list(Node)
    kinds = {
        (n.metadata.labels or {}).get(realnode.REAL_NODE_LABEL, "kwok"): bool(
            n.spec and n.spec.unschedulable
        )
        for n in nodes
        if n.metadata
    }
    # kwok would turn any pod Running and Ready: its node takes none.
    assert kinds == {"real": False, "kwok": True}


def test_a_good_service_passes_and_its_pods_answer_on_their_pod_ips(
    repo: repository.Repository, cluster: verification.Cluster
) -> None:
    answers: list[str] = []

    def ask_each_pod(namespace: str) -> None:
        with cluster.connect() as admin:
            for pod in admin.list(Pod, namespace=namespace):
                assert pod.spec is not None and pod.status is not None
                assert pod.spec.nodeName == f"{cluster.name}-real-0"
                url = f"http://{pod.status.podIP}:{images.APP_PORT}/"
                with urllib.request.urlopen(url, timeout=5) as response:
                    answers.append(response.read().decode())

    report = verify(
        repo, cluster, "good", options=verification.Options(timeout_s=60, on_ready=ask_each_pod)
    )

    assert report.passed, report
    assert check(report, "images").detail.startswith(
        "loaded registry.acme.example/alpha/good:1.0.0 into "
    )
    assert "Deployment/good 2/2 ready" in check(report, "rollout").detail
    assert "simulated" not in check(report, "rollout").detail
    assert len(answers) == 2
    assert all(re.fullmatch(r"good 1\.0\.0 on good-[a-z0-9]+-[a-z0-9]+\n", a) for a in answers)
    assert_namespace_gone(cluster)


def test_a_container_that_exits_fails_with_its_exit_code_and_last_log_line(
    repo: repository.Repository, cluster: verification.Cluster
) -> None:
    report = verify(repo, cluster, "crash")
    install = check(report, "install")
    assert install.status == "failed"
    # The kubelet reports it waiting in CrashLoopBackOff, or between restarts terminated.
    assert re.search(r"container app: (CrashLoopBackOff|terminated: Error)", install.detail)
    assert "Error, exit code 3" in install.detail
    assert re.search(r"last log lines \((previous|current) container\):\n"
                     r"    exiting with code 3 as asked", install.detail), install.detail  # fmt: skip
    assert "deadline" not in install.detail  # stopped early, not timed out
    assert check(report, "rollout").status == "skipped"
    assert_namespace_gone(cluster)


def test_an_image_nobody_loaded_fails_with_the_kubelets_pull_error(
    repo: repository.Repository, cluster: verification.Cluster
) -> None:
    report = verify(repo, cluster, "missing")
    assert check(report, "images").detail == (
        "left to the kubelet to pull: registry.acme.example/shared/missing:1.0.0"
    )
    install = check(report, "install")
    assert install.status == "failed"
    assert re.search(r"container app: (ErrImagePull|ImagePullBackOff)", install.detail)
    # containerd's own words, through the kubelet.
    assert (
        'failed to pull and unpack image "registry.acme.example/shared/missing:1.0.0"'
        in install.detail
    )
    assert re.search(r'event Failed( \(x\d+\))?: Failed to pull image '
                     r'"registry\.acme\.example/shared/missing:1\.0\.0"', install.detail)  # fmt: skip
    assert "log lines" not in install.detail  # it never started
    assert_namespace_gone(cluster)


def test_a_readiness_probe_that_never_passes_fails_with_the_probes_answer(
    repo: repository.Repository, cluster: verification.Cluster
) -> None:
    report = verify(repo, cluster, "never-ready", options=verification.Options(timeout_s=15))
    install = check(report, "install")
    assert install.status == "failed"
    assert (
        "container app: running but never ready: "
        "Readiness probe failed: HTTP probe failed with statuscode: 503"
    ) in install.detail
    assert "never-ready 1.0.0 listening on :8080" in install.detail
    # The probe's answer leads; helm's own timeout message only follows it.
    assert install.detail.index("Readiness probe failed") < install.detail.find("helm:")
    assert_namespace_gone(cluster)


def test_an_oom_kill_fails_with_oomkilled_its_exit_code_and_limit(
    repo: repository.Repository, cluster: verification.Cluster
) -> None:
    report = verify(repo, cluster, "oom")
    install = check(report, "install")
    assert install.status == "failed"
    assert "OOMKilled, exit code 137" in install.detail
    assert "(memory limit 64Mi)" in install.detail
    assert re.search(r"    holding \d+ MiB", install.detail), install.detail
    assert_namespace_gone(cluster)


def tenantry(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenantry", *args],
        cwd=cwd, capture_output=True, text=True, env=dict(os.environ), timeout=300, check=False,
    )  # fmt: skip


def test_helm_test_runs_a_real_test_pod_on_the_real_node(
    repo: repository.Repository, cluster: verification.Cluster
) -> None:
    passed = verify(repo, cluster, "tested")
    assert passed.passed, passed
    assert "self-test: GET /: 200 tested 1.0.0 on tested-test" in check(passed, "helm test").detail

    # The test pod told to fail (its pods are fine): kwok would call it Succeeded.
    failed = verify(repo, cluster, "test-fails")
    assert check(failed, "rollout").status == "passed"
    test = check(failed, "helm test")
    assert test.status == "failed"
    assert "self-test: GET /ready answered 503" in test.detail, test.detail


def test_verify_in_an_existing_cluster_named_by_its_kubeconfig_file(
    cluster: verification.Cluster, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    _write_repo(root, {"good": {}})
    # What the user's CI does: its image is in the cluster before verify runs.
    assert cluster.local is not None
    localcluster.load_images(cluster.local, ["registry.acme.example/alpha/good:1.0.0"])
    kubeconfig = tmp_path / "kubeconfig.yaml"
    shutil.copy(cluster.kubeconfig, kubeconfig)  # any path, not the local cluster's own
    context = yaml.safe_load(kubeconfig.read_text())["current-context"]

    done = tenantry("-o", "json", "verify", "--all", "--repo", str(root),
                    "--kubeconfig", str(kubeconfig), "--context", context, cwd=tmp_path)  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"in context {context} of {kubeconfig}" in done.stderr
    rows = {row["check"]: row for row in json.loads(done.stdout)}
    assert rows["install"]["result"] == "passed"
    assert rows["images"]["result"] == "skipped"
    assert "Deployment/good 1/1 ready" in rows["rollout"]["detail"]
    assert_namespace_gone(cluster)


def test_a_missing_kubeconfig_or_context_is_a_clear_usage_error(
    cluster: verification.Cluster, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    _write_repo(root, {"good": {}})
    missing = tenantry("verify", "--all", "--repo", str(root),
                       "--kubeconfig", str(tmp_path / "nope.yaml"), cwd=tmp_path)  # fmt: skip
    assert missing.returncode == 2
    assert f"kubeconfig {tmp_path / 'nope.yaml'} does not exist" in missing.stderr

    no_context = tenantry("verify", "--all", "--repo", str(root), "--kubeconfig",
                          str(cluster.kubeconfig), "--context", "elsewhere", cwd=tmp_path)  # fmt: skip
    assert no_context.returncode == 2
    assert "has no context 'elsewhere'" in no_context.stderr
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    assert f"one of: {config['contexts'][0]['name']}" in no_context.stderr


def test_a_warm_cluster_made_without_a_real_node_is_replaced_by_one_with_it(
    state_dir: Path,
) -> None:
    name = f"vw-{secrets.token_hex(3)}"
    localcluster.create(name, nodes=1)  # as a machine that could not run containers made it
    try:
        with verification.verification_cluster(fresh=False, name=name) as warm:
            assert warm.name == name and warm.simulated == ""
            assert warm.local is not None
            assert localcluster.real_node_names(warm.local) == [f"{name}-real-0"]
    finally:
        localcluster.delete(name)


def test_a_service_reading_a_secret_runs_on_placeholders_and_fails_where_a_key_is_missing(
    repo: repository.Repository, cluster: verification.Cluster
) -> None:
    # The real value lives only in each environment's clusters; the pods run here all the
    # same, on a made-up one (a missing Secret would keep them from starting at all).
    passed = verify(repo, cluster, "reads-secret")
    assert passed.passed, passed
    assert "placeholder values for secret db" in check(passed, "dry-run").detail
    assert check(passed, "secrets").status == "skipped"
    assert "reads db (password); not checked: no Tenantry server" in check(passed, "secrets").detail

    # Asked where values are set: one environment lacks the key, and nothing is installed.
    known = verification.Options(timeout_s=60, known_keys=lambda tenant: {"staging": set()})
    failed = verify(repo, cluster, "reads-secret", options=known)
    secrets_check = check(failed, "secrets")
    assert secrets_check.status == "failed"
    assert "no value in the environment for db/password in staging" in secrets_check.detail
    assert "tenantry secrets set alpha/db password --env staging" in secrets_check.detail
    assert check(failed, "install").status == "skipped"
    assert_namespace_gone(cluster)

    found = verification.Options(
        timeout_s=60, known_keys=lambda tenant: {"staging": {("db", "password")}}
    )
    assert check(verify(repo, cluster, "reads-secret", options=found), "secrets").status == "passed"


def test_an_owners_value_reaches_the_environment_of_pods_on_a_real_node(
    cluster: verification.Cluster, tmp_path: Path
) -> None:
    """The verification cluster's real node as a platform's staging environment: the value
    an owner sets is in the running container's environment (the app answers with its
    APP_VERSION, here read from the Secret)."""
    root = tmp_path / "repo"
    root.mkdir()
    _write_repo(root, {"app": {"secretEnv": [
        {"env": "APP_VERSION", "name": "db", "key": "password"}]}})  # fmt: skip
    platform = yaml.safe_load((root / "platform.yaml").read_text())
    platform["environments"][0]["clusters"] = [{"name": cluster.name, "local": cluster.name}]
    (root / "platform.yaml").write_text(yaml.safe_dump(platform))
    repo = repository.load(root)
    # Onboarded as `tenants apply` would, without its pruning: this cluster also holds
    # other tests' throwaway verification namespaces of the same tenant.
    alpha = repo.tenant("alpha")
    with cluster.connect() as admin:
        for manifest in (*objects.platform_objects(repo.platform),
                         *objects.tenant_objects(alpha, repo.platform, environment="staging")):  # fmt: skip
            admin.apply(manifest)
    assert cluster.local is not None
    value = f"v-{secrets.token_hex(8)}"
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace="alpha",
                         identity=Identity.service_account("alpha", objects.DEPLOYER_SA))  # fmt: skip
    try:
        with Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger:
            store.set_key(repo, ledger, tenant=repo.tenant("alpha"), environment="staging",
                          name="db", key="password", value=value.encode(), actor="a")  # fmt: skip
        localcluster.load_images(cluster.local, ["registry.acme.example/alpha/app:1.0.0"])
        helm.upgrade_install(target, release="app", chart=root / "services/alpha/app/chart",
                             wait=True, timeout_s=60)  # fmt: skip
        with cluster.connect() as admin:
            (pod,) = admin.list(Pod, namespace="alpha")
        assert pod.spec is not None and pod.status is not None
        assert pod.spec.nodeName == f"{cluster.name}-real-0"
        url = f"http://{pod.status.podIP}:{images.APP_PORT}/"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.read().decode().startswith(f"app {value} on app-")
    finally:
        helm.uninstall(target, release="app")
        with cluster.connect() as admin:
            admin.delete(Namespace, "alpha")
