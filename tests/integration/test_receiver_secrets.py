"""Receiver secrets read from a real cluster's Secrets and written for Alertmanager only."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

from tenantry.kube.client import Kube
from tenantry.monitoring import secret_store
from tenantry.observability import secrets
from tenantry.spec import models


def test_secrets_are_read_from_the_monitoring_namespace(admin: Kube, namespace: str) -> None:
    admin.apply({"apiVersion": "v1", "kind": "Secret",
                 "metadata": {"name": "payments-alerts", "namespace": namespace},
                 "stringData": {"webhook-url": "https://hooks.slack.com/services/T/B/x"}})  # fmt: skip
    read = secret_store.cluster_reader(admin, namespace)
    ref = models.SecretRef(name="payments-alerts", key="webhook-url")
    assert read(ref) == "https://hooks.slack.com/services/T/B/x"
    assert read(ref.model_copy(update={"key": "other"})) is None
    assert read(ref.model_copy(update={"name": "absent"})) is None


def test_a_value_that_is_not_text_is_a_problem_not_a_crash(admin: Kube, namespace: str) -> None:
    admin.apply({"apiVersion": "v1", "kind": "Secret",
                 "metadata": {"name": "payments-pagerduty", "namespace": namespace},
                 "data": {"routing-key": base64.b64encode(b"\xff\xfe key").decode()}})  # fmt: skip
    ref = models.SecretRef(name="payments-pagerduty", key="routing-key")
    need = secrets.Need(owner="payments", kind="pagerduty", ref=ref,
                        file="tenants/payments.yaml", field="alerts.pagerduty")  # fmt: skip
    values, problems = secrets.resolve([need], secret_store.cluster_reader(admin, namespace))
    assert values == {}
    assert [p.message for p in problems] == [
        "Secret 'payments-pagerduty' key 'routing-key' is not UTF-8 text (set it with kubectl "
        "create secret generic --from-literal=KEY=VALUE)"
    ]


def test_secret_files_are_private_and_stale_ones_removed(tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    secret_store.write(directory, {"payments-slack": "https://a", "old-slack": "https://b"})
    secret_store.write(directory, {"payments-slack": "https://c"})
    assert sorted(p.name for p in directory.iterdir()) == ["payments-slack"]
    assert (directory / "payments-slack").read_text() == "https://c"
    assert stat.S_IMODE((directory / "payments-slack").stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
