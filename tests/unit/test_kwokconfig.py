"""What a local cluster is made of, decided without starting one."""

from __future__ import annotations

from pathlib import Path

from tenantry.kube import kwokconfig

BINARIES = kwokconfig.Binaries(
    kube_apiserver=Path("/t/kube-apiserver"),
    kube_controller_manager=Path("/t/kube-controller-manager"),
    kube_scheduler=Path("/t/kube-scheduler"),
    kubectl=Path("/t/kubectl"),
    etcd=Path("/t/etcd"),
    kwok=Path("/t/kwok"),
)
VERSIONS = kwokconfig.Versions(kubernetes="v1.36.3", etcd="v3.6.16", kwok="v0.8.0")


def test_configuration_uses_binary_runtime_on_loopback_with_rbac_and_admission() -> None:
    options = kwokconfig.kwokctl_configuration(BINARIES, VERSIONS)["options"]
    assert options["runtime"] == "binary"
    assert options["bindAddress"] == "127.0.0.1"
    assert options["kubeAuthorization"] is True
    assert options["kubeAdmission"] is True
    assert options["etcdVersion"] == "3.6.16"
    assert options["kubeApiserverBinary"] == "/t/kube-apiserver"
    assert options["kwokControllerBinary"] == "/t/kwok"


def test_admission_plugins_include_what_tenancy_relies_on() -> None:
    config = kwokconfig.kwokctl_configuration(BINARIES, VERSIONS)
    patch = next(p for p in config["componentsPatches"] if p["name"] == "kube-apiserver")
    plugins = dict((a["key"], a["value"]) for a in patch["extraArgs"])["enable-admission-plugins"]
    for required in (
        "NamespaceLifecycle",
        "LimitRanger",
        "ServiceAccount",
        "ResourceQuota",
        "PodSecurity",
        "ValidatingAdmissionPolicy",
    ):
        assert required in plugins.split(",")


def test_the_busiest_control_plane_processes_collect_garbage_less_often() -> None:
    patches = {
        p["name"]: p
        for p in kwokconfig.kwokctl_configuration(BINARIES, VERSIONS)["componentsPatches"]
    }
    for component in ("kube-apiserver", "kube-controller-manager", "etcd"):
        assert {"name": "GOGC", "value": "200"} in patches[component]["extraEnvs"]
    assert "extraArgs" not in patches["etcd"]


def test_node_manifest_is_kwok_managed_with_the_requested_shape() -> None:
    node = kwokconfig.node_manifest("c-node-0", kwokconfig.NodeShape(cpu="4", memory="8Gi"))
    assert node["metadata"]["annotations"][kwokconfig.KWOK_NODE_ANNOTATION] == "fake"
    assert node["status"]["allocatable"] == {"cpu": "4", "memory": "8Gi", "pods": "110"}


def test_node_names_are_unique_per_cluster() -> None:
    assert kwokconfig.node_names("a", 3) == ["a-node-0", "a-node-1", "a-node-2"]


def test_tenantry_stages_beat_kwoks_defaults_and_select_their_pods() -> None:
    stages = {
        s["metadata"]["name"]: s["spec"]
        for s in (
            kwokconfig.never_ready_stage(),
            kwokconfig.slow_ready_stage(),
            kwokconfig.helm_test_stage(),
        )
    }
    assert all(spec["weight"] == 10000 for spec in stages.values())
    never = stages["tenantry-pod-never-ready"]["selector"]["matchExpressions"][0]
    assert never == {
        "key": '.metadata.labels["tenantry.dev/simulate"]',
        "operator": "In",
        "values": ["never-ready"],
    }
    assert "CrashLoopBackOff" in stages["tenantry-pod-never-ready"]["next"]["statusTemplate"]
    assert stages["tenantry-pod-slow-ready"]["delay"] == {
        "durationMilliseconds": kwokconfig.SLOW_READY_MS
    }
    assert "phase: Succeeded" in stages["tenantry-helm-test-succeeds"]["next"]["statusTemplate"]


def test_a_token_file_becomes_the_api_servers_token_auth_file_and_can_be_read_back() -> None:
    config = kwokconfig.kwokctl_configuration(
        BINARIES, VERSIONS, token_file=Path("/s/people/tokens.csv")
    )
    patch = next(p for p in config["componentsPatches"] if p["name"] == "kube-apiserver")
    args = {a["key"]: a["value"] for a in patch["extraArgs"]}
    assert args["token-auth-file"] == "/s/people/tokens.csv"
    assert "enable-admission-plugins" in args
    assert kwokconfig.token_file_of(config) == Path("/s/people/tokens.csv")


def test_without_a_token_file_the_api_server_gets_no_token_flag() -> None:
    config = kwokconfig.kwokctl_configuration(BINARIES, VERSIONS)
    patch = next(p for p in config["componentsPatches"] if p["name"] == "kube-apiserver")
    assert "token-auth-file" not in {a["key"] for a in patch["extraArgs"]}
    assert kwokconfig.token_file_of(config) is None
