"""`tenantry deployer`: S3 event → SQS → deploy to staging, as the tenant, effectively once.

For each message (long-polled):

1. parse it (`tenantry.events.s3`); a test event, a malformed message, a key that
   is not a chart, or an unknown tenant/service is recorded and deleted — never
   deployed, never retried;
2. take the release's lease (ledger, fencing token); while another worker holds
   it, wait with the message kept hidden — two workers never deploy the same
   release at once, and waiting spends none of the message's deliveries;
3. download the archive and check its sha256 against the published one;
4. decide against the ledger (`tenantry.deploy.decide`): duplicates and older
   versions are skipped with the reason;
5. `helm upgrade --install --rollback-on-failure --wait` into every staging cluster
   of the tenant, as its deployer ServiceAccount; while it runs, a heartbeat
   extends the message's visibility and another renews the lease
   (`tenantry.ledger.fence`): a worker whose lease lapsed stops before its next
   cluster. Taking a lease marks deploys its dead previous holder left ``running``
   as ``interrupted``;
6. record the outcome, then delete the message. A failure is recorded and the
   message is handed back with backoff; after ``maxReceiveCount`` deliveries SQS
   moves it to the dead-letter queue (the last failure is recorded as such).

An outage of S3/SQS is waited out with the messages left queued; an outage of the
ledger database with the message in hand kept hidden, handled again once the
database answers (so it spends none of its deliveries). Both are logged, and
recorded in the ledger once it can be written to.

SIGTERM stops taking messages; the one in hand is finished first.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from tenantry import errors, faults, helm
from tenantry.artifacts import store
from tenantry.aws import AwsError, Clients, translate
from tenantry.deploy import decide, release
from tenantry.events import s3
from tenantry.ledger import Ledger, fence, now, tables
from tenantry.ledger import unavailable as ledger_unavailable
from tenantry.spec import repository
from tenantry.spec.repository import Repository
from tenantry.tenancy import reconcile

STAGING = "staging"
# How long to hide a message whose release another worker kept busy for too long.
_BUSY_DELAY_S = 2
# How often a waiting worker asks whether the release's lease is free.
_LEASE_POLL_S = 0.25
# How often a worker asks whether the ledger database answers again after an outage.
_LEDGER_POLL_S = 1.0

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    """How a deployer works."""

    worker: str
    wait_s: int = 20
    deploy_timeout_s: float = 300.0
    lease_ttl_s: float = 60.0
    max_receive_count: int = 3
    visibility_timeout_s: int = 60


class Metrics:
    """What `/metrics` serves."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.events = Counter(
            "tenantry_deployer_events_total", "Messages received, by kind.", ["kind"],
            registry=self.registry,
        )  # fmt: skip
        self.deploys = Counter(
            "tenantry_deployer_deploys_total", "Deploys by result, per service.",
            ["result", "tenant", "service"],
            registry=self.registry,
        )  # fmt: skip
        self.duration = Histogram(
            "tenantry_deployer_deploy_seconds", "Time a deploy took.", registry=self.registry
        )
        self.lag = Histogram(
            "tenantry_deployer_event_lag_seconds",
            "From the upload (S3 event time) to the deploy starting.",
            buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300),
            registry=self.registry,
        )


@dataclass(frozen=True)
class Outcome:
    """What handling one message did."""

    result: str
    reason: str
    delete: bool


class Deployer:
    """One worker. Several may run against the same queue and ledger."""

    def __init__(
        self,
        repo: Repository,
        *,
        clients: Clients,
        queue_url: str,
        ledger: Ledger,
        options: Options,
        metrics: Metrics | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.repo = repo
        self.clients = clients
        self.queue_url = queue_url
        self.ledger = ledger
        self.options = options
        self.metrics = metrics or Metrics()
        self.on_outcome = on_outcome
        self.bucket = repo.artifacts().bucket
        self.stopping = threading.Event()

    def run(self) -> None:
        """Take and handle messages until `stop`; a message in hand is finished first."""
        while not self.stopping.is_set():
            try:
                self.poll_once()
            except AwsError as e:
                # S3 or SQS is unavailable: wait and try again; the messages stay queued.
                self._note(f"queue or store unavailable: {e}")
                self.stopping.wait(2.0)
            except Exception as e:
                if not ledger_unavailable(e):
                    raise
                self._wait_for_ledger(e)  # no message in hand: wait before receiving one

    def stop(self) -> None:
        """Ask `run` to return after the current message (SIGTERM does this)."""
        self.stopping.set()

    def poll_once(self) -> int:
        """Receive and handle at most one message; how many were handled."""
        with translate("receive from the queue"):
            got = self.clients.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=1,
                WaitTimeSeconds=self.options.wait_s,
                AttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
        messages = got.get("Messages", [])
        for message in messages:
            outcome = self.handle(message)
            if self.on_outcome:
                self.on_outcome(outcome)
        return len(messages)

    # --- one message ---------------------------------------------------------------

    def handle(self, message: dict[str, Any]) -> Outcome:
        """Handle one SQS message end to end, deleting it only once its outcome is recorded.

        When the ledger database is unavailable midway (its lease or outcome cannot be
        written), the message is kept hidden until the database answers and then handled
        again from the start: handing it back instead would let every worker spend its
        deliveries against a database that is down, into the dead-letter queue."""
        receipt = str(message["ReceiptHandle"])
        while True:
            try:
                return self._handle(message)
            except Exception as e:
                if not ledger_unavailable(e):
                    raise
                with _KeepHidden(self, receipt):
                    waited = self._wait_for_ledger(e)
                if waited is None:  # stopping: SQS delivers the message again later
                    return Outcome("error", f"ledger unavailable: {type(e).__name__}", False)
                self._note(
                    f"ledger unavailable for {waited:.1f} s ({type(e).__name__}) while handling "
                    f"message {message.get('MessageId', '')}; handling it again"
                )

    def _handle(self, message: dict[str, Any]) -> Outcome:
        message_id = str(message.get("MessageId", ""))
        receipt = str(message["ReceiptHandle"])
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        outcomes = []
        for event in s3.parse(str(message.get("Body", ""))):
            outcome = self._event(event, message_id, receipt, receives)
            outcomes.append(outcome)
        final = _combine(outcomes)
        if any(o.result == "deployed" for o in outcomes):
            # Only a recorded deploy reaches this point: S3's test event or a skip would
            # otherwise kill a worker meant to die after deploying, before it ever had.
            faults.point("deploy.after-ledger")
        if final.delete:
            with translate("delete the message"):
                self.clients.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)
        return final

    def _event(self, event: s3.Event, message_id: str, receipt: str, receives: int) -> Outcome:
        if isinstance(event, s3.TestEvent):
            self.metrics.events.labels("test").inc()
            return self._record_event(message_id, "", "ignored", "s3:TestEvent", delete=True)
        if isinstance(event, s3.Invalid):
            self.metrics.events.labels("invalid").inc()
            return self._record_event(message_id, event.key, "invalid", event.reason, delete=True)
        self.metrics.events.labels("chart").inc()
        ref = f"{event.tenant}/{event.service}"
        if not self._knows(ref):
            # Not (yet) in the platform repository this worker has: never dropped, but
            # retried with backoff — the change naming it may not have reached this
            # machine — and after maxReceiveCount it lands in the dead-letter queue.
            last = receives >= self.options.max_receive_count
            delay = 0 if last else min(2**receives, 60)  # last: SQS moves it on next receive
            self._hide(receipt, delay)
            return self._record_event(
                message_id, event.key, "dead-letter" if last else "unmatched",
                f"{ref} is not a service of the platform repository (attempt {receives} of "
                f"{self.options.max_receive_count}; "
                + ("moved to the dead-letter queue)" if last else f"retried in {delay} s)"),
            )  # fmt: skip
        lease = f"{event.tenant}/{event.service}/{STAGING}"
        token = self._wait_for_lease(lease, receipt)
        if token is None:
            self._hide(receipt, _BUSY_DELAY_S)
            return Outcome("busy", f"another deployer holds {lease}", delete=False)
        # Holding the lease, nobody else deploys this release: a deploy still marked
        # running was cut short by a worker that died (its lease lapsed).
        self.ledger.interrupt_deployments(
            tenant=event.tenant, service=event.service, environment=STAGING,
            reason=f"interrupted: its worker stopped; {self.options.worker} took the release over",
        )  # fmt: skip
        try:
            return self._deploy(event, message_id, receipt, receives, lease, token)
        except fence.LeaseLost as e:
            # The message stays: it is another worker's now, or visible again soon.
            return self._record_event(message_id, event.key, "abandoned", str(e), delete=False)
        finally:
            self.ledger.release(lease, holder=self.options.worker, token=token)

    def _deploy(
        self,
        event: s3.ChartCreated,
        message_id: str,
        receipt: str,
        receives: int,
        lease: str,
        token: int,
    ) -> Outcome:
        try:
            fetched = store.fetch(self.clients, self.bucket, event.key)
        except store.DigestMismatchError as e:
            return self._record_event(message_id, event.key, "rejected", str(e), delete=True)
        except AwsError as e:
            if e.code in ("NoSuchKey", "404"):
                return self._record_event(
                    message_id, event.key, "invalid", f"{event.key} no longer exists", delete=True
                )
            raise
        published = self.ledger.published_digests(
            tenant=event.tenant, service=event.service, version=event.version
        )
        if fetched.digest not in published:
            # The digest in the object's own metadata proves nothing: whoever can write to
            # the bucket writes it too. Only what `tenantry publish` recorded is trusted.
            self.metrics.events.labels("unpublished").inc()
            return self._record_event(
                message_id, event.key, "rejected",
                f"{event.key}: sha256 {fetched.digest} was never published with "
                "`tenantry publish` (not in the ledger); refused", delete=True,
            )  # fmt: skip
        recorded = self.ledger.released(
            tenant=event.tenant, service=event.service, environment=STAGING
        )
        decision = decide.decide(
            incoming=event.version,
            incoming_digest=fetched.digest,
            released=recorded.version if recorded else None,
            released_digest=recorded.digest if recorded else None,
        )
        if decision.action == "skip":
            # Before skipping, check the clusters really run what the ledger says (a
            # rebuilt cluster must get the release again). Only here: asking helm costs a
            # process per cluster, and a newer version is deployed either way.
            running = self._running_in_staging(event.tenant, event.service)
            if recorded is None or running != recorded.version:
                decision = decide.decide(
                    incoming=event.version,
                    incoming_digest=fetched.digest,
                    released=running,
                    # What runs came from this store, whose versions are immutable.
                    released_digest=fetched.digest if running == event.version else None,
                )
        if decision.action == "skip":
            self.metrics.deploys.labels("skipped", event.tenant, event.service).inc()
            return self._record_event(
                message_id, event.key, "skipped", decision.reason, delete=True
            )
        self._observe_lag(event)
        with (
            tempfile.TemporaryDirectory(prefix="tenantry-deploy-") as workdir,
            _KeepHidden(self, receipt),
            self._hold(lease, token) as held,
        ):
            archive = Path(workdir) / Path(event.key).name
            archive.write_bytes(fetched.data)
            failure = self._deploy_everywhere(event, fetched.digest, archive, held.check)
        if failure is None:
            self.metrics.deploys.labels("succeeded", event.tenant, event.service).inc()
            return self._record_event(
                message_id, event.key, "deployed", decision.reason, delete=True
            )
        self.metrics.deploys.labels("failed", event.tenant, event.service).inc()
        if receives >= self.options.max_receive_count:
            # Visible again at once: SQS moves it to the dead-letter queue on the next receive.
            self._hide(receipt, 0)
            reason = f"{failure} (attempt {receives} of {receives}: moved to the dead-letter queue)"
            return self._record_event(message_id, event.key, "dead-letter", reason, delete=False)
        self._hide(receipt, min(2**receives, 60))
        reason = f"{failure} (attempt {receives} of {self.options.max_receive_count}; will retry)"
        return self._record_event(message_id, event.key, "failed", reason, delete=False)

    def _deploy_everywhere(
        self, event: s3.ChartCreated, digest: str, archive: Path, guard: Callable[[], None]
    ) -> str | None:
        tenant = self.repo.tenant(event.tenant)
        if STAGING not in tenant.environments:
            return f"tenant {tenant.name} does not use {STAGING}"
        return release.deploy(
            self.repo,
            self.ledger,
            release.Artifact(event.tenant, event.service, event.version, digest, archive),
            environment=STAGING,
            clusters=self.repo.platform.environment(STAGING).clusters,
            actor=f"deployer:{self.options.worker}",
            timeout_s=self.options.deploy_timeout_s,
            observe=self.metrics.duration.observe,
            guard=guard,
        )

    # --- helpers -------------------------------------------------------------------

    def _running_in_staging(self, tenant: str, service: str) -> str | None:
        """The version every staging cluster runs, observed with helm; None if any lacks it.

        The clusters, not the ledger, are the truth: a cluster rebuilt since the last
        deploy must get the release again even though the ledger remembers it.
        """
        versions = set()
        for cluster in self.repo.platform.environment(STAGING).clusters:
            target = reconcile.resolve(cluster, STAGING, self.repo.root)
            releases = helm.list_releases(
                helm.Target(kubeconfig=target.kubeconfig, context=target.context, namespace=tenant)
            )
            found = next((r for r in releases if r.get("name") == service), None)
            if found is None or found.get("status") != "deployed":
                return None
            version = helm.chart_version(str(found.get("chart", "")))
            if version is None:
                return None
            versions.add(version)
        return versions.pop() if len(versions) == 1 else None

    def _wait_for_lease(self, lease: str, receipt: str) -> int | None:
        """Wait (keeping the message hidden) while another worker deploys this release.

        Handing the message back instead would spend one of its deliveries, and a
        busy release could push a perfectly good event into the dead-letter queue.
        """
        options = self.options
        deadline = time.monotonic() + options.deploy_timeout_s + options.lease_ttl_s
        hidden_until = 0.0
        while not self.stopping.is_set() and time.monotonic() < deadline:
            token = self.ledger.acquire(lease, holder=options.worker, ttl_s=options.lease_ttl_s)
            if token is not None:
                return token
            if time.monotonic() > hidden_until:
                self._hide(receipt, options.visibility_timeout_s)
                hidden_until = time.monotonic() + options.visibility_timeout_s / 3
            time.sleep(_LEASE_POLL_S)
        return None

    def _knows(self, ref: str) -> bool:
        """Whether ``ref`` is a service of the platform repository, read again from disk
        when this worker does not know it yet (new tenants and services are picked up
        without a restart). A repository that no longer loads keeps the last good one."""
        if any(s.ref == ref for s in self.repo.services):
            return True
        try:
            self.repo = repository.load(self.repo.root)
        except errors.SpecError as e:
            self._record_event("", "", "error", f"the platform repository does not load: {e}")
            return False
        return any(s.ref == ref for s in self.repo.services)

    def _hold(self, lease: str, token: int) -> fence.Held:
        options = self.options
        return fence.Held(lease, ttl_s=options.lease_ttl_s, renew=lambda: self.ledger.renew(
            lease, holder=options.worker, token=token, ttl_s=options.lease_ttl_s))  # fmt: skip

    def _hide(self, receipt: str, seconds: int) -> None:
        with translate("change the message's visibility"):
            self.clients.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=seconds
            )

    def _observe_lag(self, event: s3.ChartCreated) -> None:
        try:
            uploaded = datetime.fromisoformat(event.event_time.replace("Z", "+00:00"))
        except ValueError:
            return
        self.metrics.lag.observe(max(0.0, (now() - uploaded).total_seconds()))

    def _wait_for_ledger(self, error: BaseException) -> float | None:
        """Wait until the ledger database answers again; the seconds waited, or None
        when this worker was asked to stop first."""
        _log.warning("the ledger database is unavailable (%s: %s); %s waits for it",
                     type(error).__name__, error, self.options.worker)  # fmt: skip
        started = time.monotonic()
        while not self.ledger.reachable():
            if self.stopping.wait(_LEDGER_POLL_S):
                return None
        waited = time.monotonic() - started
        _log.warning("the ledger database answers again after %.1f s", waited)
        return waited

    def _note(self, reason: str) -> None:
        """Record an error event; only logged when the ledger cannot take it either."""
        try:
            self._record_event("", "", "error", reason)
        except Exception as e:
            if not ledger_unavailable(e):
                raise
            _log.warning("%s (not recorded: the ledger database is unavailable too)", reason)

    def _record_event(
        self, message_id: str, key: str, result: str, reason: str, *, delete: bool = False
    ) -> Outcome:
        self.ledger.add(
            tables.Event(message_id=message_id, key=key, result=result, reason=reason, at=now())
        )
        return Outcome(result, reason, delete)


class _KeepHidden:
    """While a deploy runs, keep its message hidden from other workers."""

    def __init__(self, deployer: Deployer, receipt: str) -> None:
        self.deployer = deployer
        self.receipt = receipt
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> _KeepHidden:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join()

    def _beat(self) -> None:
        options = self.deployer.options
        while not self.done.wait(max(1.0, options.visibility_timeout_s / 3)):
            # A failed beat is retried by the next; SQS redelivers only if all of them fail.
            with contextlib.suppress(AwsError):
                self.deployer._hide(self.receipt, options.visibility_timeout_s)


def _combine(outcomes: list[Outcome]) -> Outcome:
    # A message with several records is deleted only when every record may be.
    if not outcomes:
        return Outcome("invalid", "empty message", delete=True)
    keep = [o for o in outcomes if not o.delete]
    if keep:
        return keep[0]
    return (
        outcomes[0]
        if len(outcomes) == 1
        else Outcome(
            ",".join(o.result for o in outcomes), "; ".join(o.reason for o in outcomes), delete=True
        )
    )
