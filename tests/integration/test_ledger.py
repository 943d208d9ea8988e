"""The ledger on SQLite and on a real PostgreSQL: migrations, records, leases with fencing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect

from tenantry.ledger import INTERVALS_READ, Ledger, Requested, now, tables
from tests.waiting import wait_for


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    opened = Ledger.open(url)
    with opened.engine.begin() as connection:  # a clean slate on the shared server
        for table in reversed(tables.Base.metadata.sorted_tables):
            connection.execute(table.delete())
    yield opened
    opened.close()


def test_migrations_create_every_table_and_are_idempotent(ledger: Ledger) -> None:
    names = set(inspect(ledger.engine).get_table_names())
    assert {
        "publications",
        "events",
        "deployments",
        "promotions",
        "leases",
        "alembic_version",
    } <= names
    Ledger.open(str(ledger.engine.url.render_as_string(hide_password=False))).close()


def deployment(version: str, result: str = "running", cluster: str = "c1") -> tables.Deployment:
    return tables.Deployment(
        tenant="t", service="s", version=version, digest=f"d{version}", environment="staging",
        cluster=cluster, actor="test", result=result, reason="", started=now(),
    )  # fmt: skip


def test_released_is_the_newest_succeeded_deployment(ledger: Ledger) -> None:
    first = ledger.add(deployment("1.0.0"))
    ledger.finish_deployment(first.id, result="succeeded")
    second = ledger.add(deployment("1.1.0"))
    ledger.finish_deployment(second.id, result="failed", reason="CrashLoopBackOff")
    released = ledger.released(tenant="t", service="s", environment="staging")
    assert released is not None and (released.version, released.digest) == ("1.0.0", "d1.0.0")
    assert [(d.version, d.result) for d in ledger.history(tenant="t", service="s")] == [
        ("1.1.0", "failed"), ("1.0.0", "succeeded"),
    ]  # fmt: skip


def test_a_lease_has_one_holder_and_a_growing_fencing_token(ledger: Ledger) -> None:
    assert ledger.acquire("t/s/staging", holder="a", ttl_s=30) == 1
    assert ledger.acquire("t/s/staging", holder="b", ttl_s=30) is None
    assert ledger.renew("t/s/staging", holder="a", token=1, ttl_s=30)
    ledger.release("t/s/staging", holder="a", token=1)
    assert ledger.acquire("t/s/staging", holder="b", ttl_s=0.2) == 2
    assert not ledger.renew("t/s/staging", holder="a", token=1, ttl_s=30)
    time.sleep(0.3)  # b's lease lapses (a state change, not a timing assertion)
    assert ledger.acquire("t/s/staging", holder="c", ttl_s=30) == 3
    assert not ledger.renew("t/s/staging", holder="b", token=2, ttl_s=30)


def test_concurrent_acquirers_get_the_lease_exactly_once(ledger: Ledger) -> None:
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def contend(name: str) -> None:
        barrier.wait()
        if ledger.acquire("t/s/production", holder=name, ttl_s=30) is not None:
            winners.append(name)

    threads = [threading.Thread(target=contend, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def _race(count: int, attempt: object) -> list[object]:
    """Run ``attempt`` in ``count`` threads released at once; their results."""
    results: list[object] = []
    go = threading.Barrier(count)

    def run() -> None:
        go.wait()
        results.append(attempt())  # type: ignore[operator]

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def operation(kind: str = "approve", service: str = "s") -> tables.Operation:
    return tables.Operation(
        kind=kind, tenant="t", service=service, environment="production", params="{}",
        requested_by="bob", status="queued", result="", progress="", created=now(),
    )  # fmt: skip


def test_of_concurrent_approvals_one_wins_and_queues_the_only_operation(ledger: Ledger) -> None:
    row = ledger.add(tables.Promotion(
        tenant="t", service="s", version="1.0.0", digest="d", environment="production",
        requested_by="alice", requested_at=now(), status="pending", reason="",
    ))  # fmt: skip
    won = _race(4, lambda: ledger.transition_promotion(
        row.id, from_status="pending", enqueue=operation(), status="approved", approved_by="bob",
    ))  # fmt: skip
    assert sorted(won) == [False, False, False, True]  # type: ignore[type-var]
    with ledger.session() as session:
        assert session.query(tables.Operation).count() == 1


def test_each_queued_operation_is_claimed_by_exactly_one_worker(ledger: Ledger) -> None:
    queued = [ledger.add(operation(service=f"s{n}")).id for n in range(5)]
    claimed = _race(8, lambda: ledger.claim_operation(worker="w"))
    got = sorted(c.operation.id for c in claimed if c is not None)  # type: ignore[attr-defined]
    assert got == queued
    assert ledger.claim_operation(worker="late") is None
    ledger.add_progress(queued[0], "step 1")
    ledger.add_progress(queued[0], "step 2")
    assert ledger.finish_operation(queued[0], token=1, status="succeeded", result="done")
    done = ledger.operation(queued[0])
    assert done is not None
    assert (done.status, done.progress, done.worker) == ("succeeded", "step 1\nstep 2\n", "w")


def test_operations_on_one_service_run_one_at_a_time(ledger: Ledger) -> None:
    first, second = ledger.add(operation()).id, ledger.add(operation("rollback")).id
    claim = ledger.claim_operation(worker="w1")
    assert claim is not None and claim.operation.id == first
    assert ledger.claim_operation(worker="w2") is None  # s has a live operation
    ledger.finish_operation(first, token=claim.token, status="succeeded", result="")
    after = ledger.claim_operation(worker="w2")
    assert after is not None and after.operation.id == second


def test_a_lapsed_claim_is_taken_over_and_the_old_holder_is_fenced_off(ledger: Ledger) -> None:
    number = ledger.add(operation()).id
    old = ledger.claim_operation(worker="w1", ttl_s=0.2)
    assert old is not None and (old.token, old.taken_from) == (1, None)
    assert ledger.claim_operation(worker="w2", ttl_s=30) is None  # still held
    assert ledger.renew_operation(number, token=old.token, ttl_s=0.2)
    # w1 stops renewing (it died): once its lease has lapsed, w2 takes over.
    new = wait_for(lambda: ledger.claim_operation(worker="w2", ttl_s=30),
                   "the lapsed operation to be claimable", timeout_s=10, poll_s=0.05)  # fmt: skip
    assert (new.operation.id, new.token, new.taken_from) == (number, 2, "w1")
    assert not ledger.renew_operation(number, token=old.token, ttl_s=30)
    assert not ledger.finish_operation(number, token=old.token, status="failed", result="late")
    assert ledger.finish_operation(number, token=new.token, status="succeeded", result="done")
    done = ledger.operation(number)
    assert done is not None and (done.status, done.worker) == ("succeeded", "w2")


def test_deploys_left_running_are_marked_interrupted(ledger: Ledger) -> None:
    left = ledger.add(deployment("1.0.0"))
    finished = ledger.add(deployment("0.9.0"))
    ledger.finish_deployment(finished.id, result="succeeded")
    assert ledger.interrupt_deployments(tenant="t", service="s", environment="staging",
                                        reason="interrupted: w1 died") == 1  # fmt: skip
    results = {d.id: d.result for d in ledger.deployments()}
    assert (results[left.id], results[finished.id]) == ("interrupted", "succeeded")


def test_current_releases_are_the_newest_succeeded_per_cluster(ledger: Ledger) -> None:
    for version, result, cluster in (
        ("1.0.0", "succeeded", "c1"), ("1.1.0", "succeeded", "c1"), ("1.2.0", "failed", "c1"),
        ("1.0.0", "succeeded", "c2"),
    ):  # fmt: skip
        ledger.finish_deployment(ledger.add(deployment(version, cluster=cluster)).id, result=result)
    other = ledger.add(tables.Deployment(
        tenant="u", service="s", version="9.0.0", digest="d", environment="staging",
        cluster="c1", actor="test", result="running", reason="", started=now(),
    ))  # fmt: skip
    ledger.finish_deployment(other.id, result="succeeded")
    every = [(d.tenant, d.cluster, d.version) for d in ledger.current_releases()]
    assert every == [("t", "c1", "1.1.0"), ("t", "c2", "1.0.0"), ("u", "c1", "9.0.0")]
    assert [d.tenant for d in ledger.current_releases(tenants=["u"])] == ["u"]
    assert ledger.current_releases(tenants=["t"], service="other") == []
    assert ledger.current_releases(tenants=[]) == []


def rollout(version: str) -> tables.Canary:
    return tables.Canary(
        tenant="t", service="s", version=version, step=0, weight=10, passes=0, failures=0,
        status="running", reason="", updated=now(),
    )  # fmt: skip


def test_canary_intervals_are_the_newest_of_one_rollout_oldest_first(ledger: Ledger) -> None:
    first, second = ledger.add(rollout("1.0.0")), ledger.add(rollout("1.1.0"))
    ledger.add_canary_interval(first.id, step=0, weight=10, verdict="pass", reason="ok",
                               canary_requests=40.0, canary_success_rate=100.0,
                               canary_p99_s=0.012, primary_requests=160.0,
                               primary_success_rate=99.5, primary_p99_s=0.01)  # fmt: skip
    for n in range(INTERVALS_READ + 5):
        ledger.add_canary_interval(second.id, step=n, weight=10, verdict="no-data",
                                   reason=f"interval {n}")  # fmt: skip
    (only,) = ledger.canary_intervals(first.id)
    assert (only.verdict, only.canary_requests, only.canary_success_rate) == ("pass", 40.0, 100.0)
    assert (only.canary_p99_s, only.primary_success_rate, only.primary_p99_s) == (
        0.012, 99.5, 0.01,
    )  # fmt: skip
    kept = ledger.canary_intervals(second.id)
    assert [i.step for i in kept] == list(range(5, INTERVALS_READ + 5))  # bounded, oldest first
    assert [i.step for i in ledger.canary_intervals(second.id, limit=3)] == [
        INTERVALS_READ + 2, INTERVALS_READ + 3, INTERVALS_READ + 4,
    ]  # fmt: skip
    # No data stays None, never 0: a quiet interval is not a perfect one.
    assert kept[0].canary_success_rate is None and kept[0].canary_requests is None
    assert ledger.canary_intervals(first.id + second.id + 1) == []


def ask(ledger: Ledger, version: str = "1.0.0", *, source: str = "resync", by: str = "resync",
        unpark: bool = False) -> Requested:  # fmt: skip
    return ledger.request_deploy(tenant="t", service="s", version=version, digest="d",
                                 source=source, requested_by=by, unpark=unpark)  # fmt: skip


def test_concurrent_deploy_requests_for_one_release_fold_into_one(ledger: Ledger) -> None:
    got = _race(6, lambda: ask(ledger))
    outcomes = sorted(r.outcome for r in got)  # type: ignore[attr-defined]
    assert outcomes == ["folded"] * 5 + ["queued"]
    assert len({r.request.id for r in got}) == 1  # type: ignore[attr-defined]
    other = ask(ledger, "1.1.0")  # another version is another release
    assert other.outcome == "queued"
    assert len(ledger.deploy_requests()) == 2


def test_a_deploy_request_is_claimed_once_and_closing_it_lets_the_release_be_asked_again(
    ledger: Ledger,
) -> None:
    first = ask(ledger).request
    claimed = _race(4, lambda: ledger.claim_request(worker="w", ttl_s=30))
    won = [c for c in claimed if c is not None]
    assert len(won) == 1 and won[0].request.id == first.id  # type: ignore[attr-defined]
    assert ask(ledger).outcome == "folded"  # running is open too
    assert ledger.finish_request(first.id, token=won[0].token, status="succeeded")  # type: ignore[attr-defined]
    assert ledger.open_request("t", "s", "1.0.0") is None
    again = ask(ledger, source="retry", by="alice")
    assert again.outcome == "queued" and again.request.id != first.id


def test_failed_attempts_back_off_then_park_until_a_retry_unparks(ledger: Ledger) -> None:
    number = ask(ledger).request.id
    claim = ledger.claim_request(worker="w", ttl_s=30)
    assert claim is not None
    assert ledger.fail_request_attempt(number, token=claim.token, error="boom", max_attempts=2,
                                       delay_s=3600) == "queued"  # fmt: skip
    assert ledger.claim_request(worker="w", ttl_s=30) is None  # its backoff is not over
    with ledger.session() as session:  # the backoff passes
        session.get_one(tables.DeployRequest, number).next_attempt = now()
    claim = ledger.claim_request(worker="w", ttl_s=30)
    assert claim is not None and claim.token == 2
    assert ledger.fail_request_attempt(number, token=claim.token, error="boom again",
                                       max_attempts=2, delay_s=0) == "parked"  # fmt: skip
    parked = ledger.deploy_request(number)
    assert parked is not None
    assert (parked.status, parked.attempts, parked.last_error) == ("parked", 2, "boom again")
    assert ledger.claim_request(worker="w", ttl_s=30) is None  # parked is never claimed
    assert ask(ledger).outcome == "folded"  # the resync does not queue a parked release
    retried = ask(ledger, source="retry", by="alice", unpark=True)
    assert (retried.outcome, retried.request.id, retried.request.status) == (
        "unparked", number, "queued",
    )  # fmt: skip
    assert (retried.request.attempts, retried.request.requested_by) == (0, "alice")
    claim = ledger.claim_request(worker="w", ttl_s=30)
    assert claim is not None and claim.request.id == number


def test_a_lapsed_request_claim_is_taken_over_and_the_old_holder_fenced_off(
    ledger: Ledger,
) -> None:
    number = ask(ledger).request.id
    old = ledger.claim_request(worker="w1", ttl_s=0.2)
    assert old is not None and old.taken_from is None
    assert ledger.claim_request(worker="w2", ttl_s=30) is None  # still held
    new = wait_for(lambda: ledger.claim_request(worker="w2", ttl_s=30),
                   "the lapsed request to be claimable", timeout_s=10, poll_s=0.05)  # fmt: skip
    assert (new.request.id, new.token, new.taken_from) == (number, old.token + 1, "w1")
    assert not ledger.renew_request(number, token=old.token, ttl_s=30)
    assert not ledger.finish_request(number, token=old.token, status="failed", error="late")
    assert ledger.fail_request_attempt(number, token=old.token, error="late", max_attempts=1,
                                       delay_s=0) is None  # fmt: skip
    assert ledger.finish_request(number, token=new.token, status="skipped")


def test_a_recent_running_deploy_of_a_version_is_in_flight(ledger: Ledger) -> None:
    row = ledger.add(deployment("1.0.0"))
    since = row.started - timedelta(seconds=60)
    assert ledger.in_flight(tenant="t", service="s", version="1.0.0", environment="staging",
                            since=since)  # fmt: skip
    # Another version, a stale row (started before ``since``), or a finished one: not.
    assert not ledger.in_flight(tenant="t", service="s", version="1.1.0",
                                environment="staging", since=since)  # fmt: skip
    assert not ledger.in_flight(tenant="t", service="s", version="1.0.0",
                                environment="staging", since=now() + timedelta(seconds=60))  # fmt: skip
    ledger.finish_deployment(row.id, result="interrupted")
    assert not ledger.in_flight(tenant="t", service="s", version="1.0.0",
                                environment="staging", since=since)  # fmt: skip
