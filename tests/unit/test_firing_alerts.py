"""Grouping Alertmanager's answer by tenant (pure): only the tenants asked for, the
platform's own alerts to nobody, silenced ones left out, most severe first."""

from __future__ import annotations

import pytest

from tenantry.monitoring.firing import AlertmanagerUnavailableError, group


def alert(tenant: str | None, name: str, severity: str, state: str = "active",
          since: str = "2026-11-29T10:00:00Z") -> dict:  # fmt: skip
    labels = {"alertname": name, "severity": severity}
    if tenant is not None:
        labels["tenant"] = tenant
    return {"labels": labels, "annotations": {"summary": f"{name}!"}, "startsAt": since,
            "status": {"state": state}}  # fmt: skip


def test_alerts_go_to_the_tenants_asked_for_most_severe_first() -> None:
    payload = [
        alert("payments", "Slow", "warning"),
        alert("payments", "Down", "critical", since="2026-11-29T11:00:00Z"),
        alert("checkout", "Stuck", "critical"),
        alert(None, "PlatformDiskFull", "critical"),  # the platform's own
        alert("payments", "Muted", "critical", state="suppressed"),
        alert("payments", "New", "info", state="unprocessed"),  # firing, not yet routed
    ]
    found = group(payload, ["payments"])
    assert list(found) == ["payments"]
    assert [a.name for a in found["payments"].alerts] == ["Down", "Slow", "New"]
    assert found["payments"].total == 3
    assert found["payments"].alerts[0].summary == "Down!"


def test_a_tenant_without_alerts_has_an_empty_list() -> None:
    assert group([], ["payments"])["payments"].total == 0


def test_many_alerts_are_counted_beyond_those_listed() -> None:
    found = group([alert("payments", f"A{i}", "warning") for i in range(50)], ["payments"])
    assert (len(found["payments"].alerts), found["payments"].total) == (20, 50)


@pytest.mark.parametrize("payload", [{"error": "x"}, "text", None])
def test_an_answer_that_is_not_a_list_is_refused(payload: object) -> None:
    with pytest.raises(AlertmanagerUnavailableError, match="other than a list of alerts"):
        group(payload, ["payments"])


def test_malformed_entries_are_skipped() -> None:
    assert group([1, {"labels": "x"}, {}], ["payments"])["payments"].total == 0
