"""`tenantry deployer`: S3 event → SQS → deploy to staging, as the tenant, effectively once;
and the ledger's deploy requests (the resync, `tenantry retry`, a dead-letter redrive, a
registry notification) through the very same steps.

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

**Deploy requests** are rows in the ledger (`tables.DeployRequest`): a second thread of
each worker claims the oldest due one (queued, its backoff over; or running under a
lapsed lease) and runs it through the same `_release` as a message's event — lease,
fetch and digest checks, decide, helm as the tenant, record. A failed attempt is queued
again with backoff; after ``max_attempts`` (platform.yaml's ``queue.maxReceiveCount``)
the request is **parked** and stays so until someone retries it (`tenantry retry`).

**The resync** catches what no event announced (a message lost, a registry restarted):
when a worker starts and every ``resyncIntervalS``, one worker — the one that takes the
ledger lease ``resync/staging``, held for an interval — compares the newest published
version of every service (the store's `ChartSource.newest`) with what staging runs (the
ledger) and queues a request for each that is newer and not parked. A lost event costs
at most one interval.

The charts come from a `tenantry.artifacts.source.ChartSource` (the S3 bucket by
default), so another store plugs in without touching these steps.

**Several releases in flight**: a worker carries out up to ``concurrency`` messages and
as many deploy requests at once, receiving as many messages in one call as it has free
slots (at most 10, SQS's limit) and none while every slot is busy, so no message waits
hidden in a worker that cannot start it. Each release is still one lease, one
decision and one helm run: two of them for the same release, in one worker or two,
wait for each other on the lease.

SIGTERM stops taking messages and requests; those in hand are finished first.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Histogram

from tenantry import errors, faults, helm
from tenantry.artifacts import source, store
from tenantry.aws import AwsError, Clients, translate
from tenantry.deploy import decide, release
from tenantry.events import s3
from tenantry.helm.sdk import Helmd
from tenantry.ledger import Ledger, RequestClaim, Requested, fence, now, tables
from tenantry.ledger import unavailable as ledger_unavailable
from tenantry.spec import repository
from tenantry.spec.repository import Repository
from tenantry.tenancy import reconcile
from tenantry.traffic import wiring as traffic_wiring

STAGING = "staging"
# A deploy request's source when a secret key a staging release reads was set or
# deleted: the release is deployed again (same version) so its pods roll.
ROTATION_SOURCE = "secret-rotation"
# How long to hide a message whose release another worker kept busy for too long.
_BUSY_DELAY_S = 2
# How often a waiting worker asks whether the release's lease is free.
_LEASE_POLL_S = 0.25
# How often a worker asks whether the ledger database answers again after an outage.
_LEDGER_POLL_S = 1.0
# How often an idle worker looks for due deploy requests (and whether a resync is due).
REQUEST_POLL_S = 0.5
# The ledger lease whose holder runs the resync; held for one interval, so of several
# workers one scans per interval.
RESYNC_LEASE = "resync/staging"
# How often a worker asks whether the resync is due: what a resync may start late by.
_RESYNC_ASK_S = 1.0

_log = logging.getLogger(__name__)


HelmRuns = Literal["sdk", "cli"]


@dataclass(frozen=True)
class Options:
    """How a deployer works."""

    worker: str
    wait_s: int = 20
    deploy_timeout_s: float = 300.0
    lease_ttl_s: float = 60.0
    max_receive_count: int = 3
    visibility_timeout_s: int = 60
    # Attempts of a deploy request before it is parked (default: max_receive_count).
    max_attempts: int | None = None
    # Seconds between resyncs (default: platform.yaml's artifacts.resyncIntervalS).
    resync_interval_s: float | None = None
    # Messages and deploy requests carried out at once (each its own helm run).
    concurrency: int = 1
    # How helm runs: "sdk", Helm's Go SDK in one helper process for the worker
    # (`tenantry.helm.sdk`); "cli", a helm process per release.
    helm: HelmRuns = "sdk"

    @property
    def attempts(self) -> int:
        """Attempts of a deploy request before it is parked."""
        return self.max_attempts or self.max_receive_count


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
    """What handling one message (or deploy request) did."""

    result: str
    reason: str
    delete: bool


@dataclass(frozen=True)
class Wanted:
    """A release to bring to staging: from an S3 event or a deploy request."""

    tenant: str
    service: str
    version: str
    key: str  # what records name it by: the store's key
    digest: str = ""  # the sha256 the request expects; "" when it named none
    uploaded: str = ""  # when the store got it (ISO 8601), for the lag metric
    # Deploy even what staging already runs: a secret key it reads changed
    # (`ROTATION_SOURCE`), and only a new deploy rolls the pods onto the new value.
    again: bool = False


@dataclass(frozen=True)
class Result:
    """How `_release` ended. ``result``: deployed, skipped, rejected (not the published
    archive), missing (the store lacks it), failed (helm, retried), busy (another worker
    kept the release's lease too long), abandoned (this worker lost the lease)."""

    result: str
    reason: str


class Keeper:
    """What keeps the thing that asked for a release (an SQS message, a deploy request)
    this worker's while `_release` waits for the release's lease and while it deploys."""

    def waiting(self) -> None:
        """Called every lease poll while another worker holds the release."""

    def working(self) -> AbstractContextManager[object]:
        """Held for the whole deploy."""
        return contextlib.nullcontext()

    def check(self) -> None:
        """Raise `fence.LeaseLost` when the asker is no longer this worker's."""


class Deployer:
    """One worker. Several may run against the same queue and ledger."""

    def __init__(
        self,
        repo: Repository,
        *,
        clients: Clients | None,
        queue_url: str | None,
        ledger: Ledger,
        options: Options,
        metrics: Metrics | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        charts: source.ChartSource | None = None,
    ) -> None:
        self.repo = repo
        self.clients = clients
        self.queue_url = queue_url
        self.ledger = ledger
        self.options = options
        self.metrics = metrics or Metrics()
        self.on_outcome = on_outcome
        # The platform's chart store unless another is given.
        self.charts: source.ChartSource = charts or source.for_repository(repo, clients)
        self.helmd = Helmd() if options.helm == "sdk" else None
        self.stopping = threading.Event()
        self._resynced = False
        self._resync_asked = 0.0

    def run(self) -> None:
        """Take and carry out messages and (from a second thread) deploy requests and the
        resync, up to ``concurrency`` at once, until `stop`; those in hand are finished
        first. Without a queue (charts in an OCI registry, whose notifications become
        requests) only the requests and the resync."""
        # Messages and requests have slots of their own: sharing them, a long poll that
        # keeps taking a free slot back would starve the requests.
        concurrency = self.options.concurrency
        try:
            with ThreadPoolExecutor(2 * concurrency, "release") as pool:
                if self.queue_url is None:
                    self.run_requests(pool, threading.BoundedSemaphore(concurrency))
                else:
                    self._run_with_queue(pool, threading.BoundedSemaphore(concurrency))
        finally:
            self.charts.close()
            if self.helmd is not None:
                self.helmd.close()

    def _run_with_queue(self, pool: ThreadPoolExecutor, slots: threading.Semaphore) -> None:
        request_slots = threading.BoundedSemaphore(self.options.concurrency)
        requests = threading.Thread(target=self.run_requests, args=(pool, request_slots),
                                    name="deploy-requests")  # fmt: skip
        requests.start()
        try:
            while not self.stopping.is_set():
                free = _take(slots, most=10, stopping=self.stopping)
                messages: list[dict[str, Any]] = []
                try:
                    messages = self._receive(free) if free else []
                except AwsError as e:
                    # S3 or SQS is unavailable: wait and try again; the messages stay queued.
                    self._note(f"queue or store unavailable: {e}")
                    self.stopping.wait(2.0)
                except Exception as e:
                    if not ledger_unavailable(e):
                        raise
                    self._wait_for_ledger(e)  # no message in hand: wait before receiving one
                finally:
                    for _ in range(free - len(messages)):
                        slots.release()
                for message in messages:
                    pool.submit(self._in_slot, slots, self._handle_received, message)
        finally:
            self.stopping.set()
            requests.join()

    def run_requests(
        self, pool: ThreadPoolExecutor | None = None, slots: threading.Semaphore | None = None
    ) -> None:
        """Resync when due and carry out due deploy requests until `stop`: in ``pool``
        when a slot is free, else one at a time."""
        while not self.stopping.is_set():
            try:
                self.resync_if_due()
                if pool is None or slots is None:
                    if not self.request_once():
                        self.stopping.wait(REQUEST_POLL_S)
                    continue
                if not _take(slots, most=1, stopping=self.stopping):
                    continue
                try:
                    claim = self._claim()
                except BaseException:
                    slots.release()
                    raise
                if claim is None:
                    slots.release()
                    self.stopping.wait(REQUEST_POLL_S)
                    continue
                pool.submit(self._in_slot, slots, self._carry_out, claim)
            except AwsError as e:
                self._note(f"queue or store unavailable: {e}")
                self.stopping.wait(2.0)
            except Exception as e:
                if ledger_unavailable(e):
                    # A request in hand keeps its lease until it lapses; then any worker
                    # (this one too) claims it again.
                    self._wait_for_ledger(e)
                    continue
                # A bug must not silently end this thread while the SQS consumer goes on:
                # say so where the platform team looks, and carry on.
                _log.exception("deploy requests: unexpected error")
                self._note(f"deploy requests or resync failed: {type(e).__name__}: {e}")
                self.stopping.wait(2.0)

    def _in_slot(self, slots: threading.Semaphore, work: Callable[[Any], None], item: Any) -> None:
        """Run ``work(item)`` in a pool thread and free its slot. What the loops above do
        with an error is done here, since no loop sees a pool thread's exceptions."""
        try:
            work(item)
        except AwsError as e:
            self._note(f"queue or store unavailable: {e}")  # the message is delivered again
        except Exception as e:
            if not ledger_unavailable(e):
                _log.exception("releases: unexpected error")
            self._note(f"carrying out a release failed: {type(e).__name__}: {e}")
        finally:
            slots.release()

    def _sqs(self) -> Any:
        """The SQS client; only the message path asks, and only with a queue."""
        if self.clients is None:
            raise errors.UsageError(
                "this deployer consumes no queue (no S3 clients given)",
                fix="give clients and queue_url for an S3 platform",
            )
        return self.clients.sqs

    def stop(self) -> None:
        """Ask `run` to return after the current message (SIGTERM does this)."""
        self.stopping.set()

    def poll_once(self) -> int:
        """Receive and handle at most one message; how many were handled."""
        messages = self._receive(1)
        for message in messages:
            self._handle_received(message)
        return len(messages)

    def _receive(self, most: int) -> list[dict[str, Any]]:
        """Up to ``most`` messages (long-polled)."""
        with translate("receive from the queue"):
            got = self._sqs().receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=most,
                WaitTimeSeconds=self.options.wait_s,
                AttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
        return list(got.get("Messages", []))

    def _handle_received(self, message: dict[str, Any]) -> None:
        outcome = self.handle(message)
        if self.on_outcome:
            self.on_outcome(outcome)

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
                self._sqs().delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)
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
        wanted = Wanted(event.tenant, event.service, event.version, event.key,
                        uploaded=event.event_time)  # fmt: skip
        done = self._release(wanted, _MessageKeeper(self, receipt))
        if done.result == "busy":
            self._hide(receipt, _BUSY_DELAY_S)
            return Outcome("busy", done.reason, delete=False)
        if done.result == "abandoned":
            # The message stays: it is another worker's now, or visible again soon.
            return self._record_event(message_id, event.key, "abandoned", done.reason)
        if done.result == "missing":
            return self._record_event(message_id, event.key, "invalid", done.reason, delete=True)
        if done.result != "failed":  # deployed, skipped, rejected: this message is done
            return self._record_event(message_id, event.key, done.result, done.reason,
                                      delete=True)  # fmt: skip
        if receives >= self.options.max_receive_count:
            # Visible again at once: SQS moves it to the dead-letter queue on the next receive.
            self._hide(receipt, 0)
            reason = (f"{done.reason} (attempt {receives} of {receives}: moved to the "
                      "dead-letter queue; once the cause is fixed: tenantry retry "
                      f"{event.tenant}/{event.service} {event.version})")  # fmt: skip
            self._park(wanted, reason)
            return self._record_event(message_id, event.key, "dead-letter", reason)
        self._hide(receipt, min(2**receives, 60))
        reason = (f"{done.reason} (attempt {receives} of {self.options.max_receive_count}; "
                  "will retry)")  # fmt: skip
        return self._record_event(message_id, event.key, "failed", reason)

    def _park(self, wanted: Wanted, reason: str) -> None:
        """Record a release whose message went to the dead-letter queue as a parked deploy
        request: the resync then leaves it alone (it would fail the same way) until
        someone retries it — `tenantry retry`, or the platform team's redrive."""
        requested = self.ledger.request_deploy(
            tenant=wanted.tenant, service=wanted.service, version=wanted.version,
            digest=wanted.digest, source="s3-event", requested_by=f"deployer:{self.options.worker}",
        )  # fmt: skip
        if requested.outcome == "queued":  # one already open (running, say) is left as it is
            self.ledger.park_request(requested.request.id, error=reason)

    # --- deploy requests (the resync, retries, redrives, registry notifications) -----

    def request_once(self) -> bool:
        """Claim and carry out one due deploy request; False when none was due."""
        claim = self._claim()
        if claim is None:
            return False
        self._carry_out(claim)
        return True

    def _claim(self) -> RequestClaim | None:
        options = self.options
        return self.ledger.claim_request(worker=options.worker, ttl_s=options.lease_ttl_s)

    def _carry_out(self, claim: RequestClaim) -> None:
        try:
            outcome = self.handle_request(claim)
        except Exception as e:
            if ledger_unavailable(e) or isinstance(e, AwsError):
                raise  # not the request's fault: its lease lapses and it is claimed again
            # A bug or an unexpected library error must neither kill this thread nor leave
            # the request running forever: it counts as a failed attempt (then parked).
            _log.exception("deploy request %s failed unexpectedly", claim.request.id)
            reason = f"unexpected {type(e).__name__}: {e}"
            self.ledger.fail_request_attempt(
                claim.request.id, token=claim.token, error=reason,
                max_attempts=self.options.attempts, delay_s=_BUSY_DELAY_S,
            )  # fmt: skip
            outcome = Outcome("failed", reason, delete=False)
        if self.on_outcome:
            self.on_outcome(outcome)

    def handle_request(self, claim: RequestClaim) -> Outcome:
        """Carry out one claimed deploy request through the same steps as an S3 event."""
        row, token, options = claim.request, claim.token, self.options
        ref = f"{row.tenant}/{row.service}"
        key = self.charts.key(row.tenant, row.service, row.version)
        message_id = f"request:{row.id}"
        if not self._knows(ref):
            reason = f"{ref} is not a service of the platform repository; not deployed"
            self.ledger.finish_request(row.id, token=token, status="failed", error=reason)
            return self._record_event(message_id, key, "failed", reason)
        held = fence.Held(f"deploy request {row.id}", ttl_s=options.lease_ttl_s,
                          renew=lambda: self.ledger.renew_request(
                              row.id, token=token, ttl_s=options.lease_ttl_s))  # fmt: skip
        with held:
            wanted = Wanted(row.tenant, row.service, row.version, key, digest=row.digest,
                            again=row.source == ROTATION_SOURCE)  # fmt: skip
            done = self._release(wanted, _RequestKeeper(held))
        if done.result == "abandoned":
            return self._record_event(message_id, key, "abandoned", done.reason)
        if done.result == "busy":
            self.ledger.requeue_request(row.id, token=token, delay_s=_BUSY_DELAY_S)
            return Outcome("busy", done.reason, delete=False)
        if done.result in ("deployed", "skipped"):
            ended = "succeeded" if done.result == "deployed" else "skipped"
            self.ledger.finish_request(row.id, token=token, status=ended, error=done.reason)
            return self._record_event(message_id, key, done.result, done.reason)
        if done.result in ("rejected", "missing"):
            # Trying again cannot help: the store does not hold the published archive.
            self.ledger.finish_request(row.id, token=token, status="failed", error=done.reason)
            return self._record_event(message_id, key, "rejected", done.reason)
        attempt = row.attempts + 1
        delay = min(2**attempt, 60)
        status = self.ledger.fail_request_attempt(
            row.id, token=token, error=done.reason, max_attempts=options.attempts, delay_s=delay
        )
        if status == "parked":
            reason = (f"{done.reason} (attempt {attempt} of {options.attempts}: parked; once "
                      f"the cause is fixed: tenantry retry {ref} {row.version})")  # fmt: skip
            return self._record_event(message_id, key, "parked", reason)
        reason = f"{done.reason} (attempt {attempt} of {options.attempts}; retried in {delay} s)"
        return self._record_event(message_id, key, "failed", reason)

    def resync_if_due(self) -> list[Requested]:
        """Resync when this worker has just started, or when it takes the resync lease
        (free once an interval has passed since any worker's last resync)."""
        interval = self.options.resync_interval_s or self._resync_interval()
        first = not self._resynced
        if not first and time.monotonic() < self._resync_asked + _RESYNC_ASK_S:
            return []  # asked the ledger a moment ago: spare it a write per poll
        self._resync_asked = time.monotonic()
        # Taken for a whole interval and never given back: the lease's expiry is when the
        # next resync is due, whichever worker then takes it.
        token = self.ledger.acquire(RESYNC_LEASE, holder=self.options.worker, ttl_s=interval)
        if token is None and not first:
            return []
        # A worker that starts scans even when another scanned moments ago: it may have
        # been the only one, down while events were lost. Duplicates fold into one.
        self._resynced = True
        return self.resync()

    def resync(self) -> list[Requested]:
        """Queue a deploy request for every service whose newest published version is newer
        than what staging runs and not parked; what was queued (recorded as events)."""
        queued: list[Requested] = []
        for tenant in self.repo.tenants:
            if STAGING not in tenant.environments:
                continue
            names = [s.name for s in self.repo.services if s.tenant == tenant.name]
            if not names:
                continue
            try:
                newest = self.charts.newest(tenant.name)
            except AwsError:
                raise  # the store is down: the caller waits and tries again
            except errors.TenantryError as e:
                # One tenant's unreadable index (corrupt, say) must not stop the others'.
                self._note(f"resync: cannot read {tenant.name}'s published versions: {e}")
                continue
            for name in names:
                listed = newest.get(name)
                if listed is None or not self._behind(tenant.name, name, listed):
                    continue
                requested = self.ledger.request_deploy(
                    tenant=tenant.name, service=name, version=listed.version,
                    digest=listed.digest, source="resync",
                    requested_by=f"resync:{self.options.worker}",
                )  # fmt: skip
                if requested.outcome != "queued":
                    continue  # already open (queued, running, or parked: left alone)
                queued.append(requested)
                reason = (f"resync: {tenant.name}/{name} {listed.version} is newer than what "
                          "staging runs and no event brought it; request "
                          f"{requested.request.id} queued")  # fmt: skip
                _log.info("%s", reason)
                self._record_event("resync", self.charts.key(tenant.name, name, listed.version),
                                   "queued", reason)  # fmt: skip
        return queued

    def _behind(self, tenant: str, service: str, listed: source.Listed) -> bool:
        """Whether staging (per the ledger) runs an older version than ``listed``, which
        `tenantry publish` recorded and no open request (a parked one included) covers."""
        try:
            incoming = decide.semver_key(listed.version)
        except ValueError:
            return False
        running = self.ledger.released(tenant=tenant, service=service, environment=STAGING)
        if running is not None and decide.semver_key(running.version) >= incoming:
            return False
        if not self.ledger.published_digests(tenant=tenant, service=service,
                                             version=listed.version):  # fmt: skip
            # Not published with `tenantry publish`: its own event, if any, was refused and
            # alerted; queueing it every interval would only repeat that.
            return False
        # A deploy of it under way — or left running by a worker that died, whose message
        # SQS delivers again once its visibility lapses — is the event's: queueing it too
        # would only turn that redelivery into a skip. A row older than a deploy and a
        # lease can last is stale, and the resync takes the release on.
        recent = now() - timedelta(seconds=self.options.deploy_timeout_s
                                   + self.options.lease_ttl_s)  # fmt: skip
        if self.ledger.in_flight(tenant=tenant, service=service, version=listed.version,
                                 environment=STAGING, since=recent):  # fmt: skip
            return False
        return self.ledger.open_request(tenant, service, listed.version) is None

    def _resync_interval(self) -> float:
        artifacts = self.repo.platform.artifacts
        return artifacts.resync_interval_s if artifacts is not None else 60.0

    # --- one release, whoever asked for it ---------------------------------------------

    def _release(self, wanted: Wanted, keeper: Keeper) -> Result:
        """Bring ``wanted`` to staging: the release's lease, the archive and its digests,
        the decision, helm into every staging cluster as the tenant, the ledger's record.
        Shared by S3 events and deploy requests, so both are the same steps."""
        lease = f"{wanted.tenant}/{wanted.service}/{STAGING}"
        token = self._wait_for_lease(lease, keeper)
        if token is None:
            return Result("busy", f"another deployer holds {lease}")
        # Holding the lease, nobody else deploys this release: a deploy still marked
        # running was cut short by a worker that died (its lease lapsed).
        self.ledger.interrupt_deployments(
            tenant=wanted.tenant, service=wanted.service, environment=STAGING,
            reason=f"interrupted: its worker stopped; {self.options.worker} took the release over",
        )  # fmt: skip
        try:
            return self._deploy(wanted, keeper, lease, token)
        except fence.LeaseLost as e:
            return Result("abandoned", str(e))
        finally:
            self.ledger.release(lease, holder=self.options.worker, token=token)

    def _deploy(self, wanted: Wanted, keeper: Keeper, lease: str, token: int) -> Result:
        try:
            fetched = self.charts.fetch(wanted.tenant, wanted.service, wanted.version)
        except store.DigestMismatchError as e:
            self._alert_tampered(wanted, str(e))
            return Result("rejected", str(e))
        except source.ChartMissingError as e:
            return Result("missing", e.message)
        published = self.ledger.published_digests(
            tenant=wanted.tenant, service=wanted.service, version=wanted.version
        )
        if fetched.digest not in published or (wanted.digest and fetched.digest != wanted.digest):
            # The digest in the object's own metadata proves nothing: whoever can write to
            # the bucket writes it too. Only what `tenantry publish` recorded is trusted.
            self.metrics.events.labels("unpublished").inc()
            reason = (f"{wanted.key}: sha256 {fetched.digest} was never published with "
                      "`tenantry publish` (not in the ledger); refused")  # fmt: skip
            self._alert_tampered(wanted, reason)
            return Result("rejected", reason)
        recorded = self.ledger.released(
            tenant=wanted.tenant, service=wanted.service, environment=STAGING
        )
        decision = decide.decide(
            incoming=wanted.version,
            incoming_digest=fetched.digest,
            released=recorded.version if recorded else None,
            released_digest=recorded.digest if recorded else None,
        )
        if decision.action == "skip":
            # Before skipping, check the clusters really run what the ledger says (a
            # rebuilt cluster must get the release again). Only here: asking helm costs a
            # process per cluster, and a newer version is deployed either way.
            running = self._running_in_staging(wanted.tenant, wanted.service)
            if recorded is None or running != recorded.version:
                decision = decide.decide(
                    incoming=wanted.version,
                    incoming_digest=fetched.digest,
                    released=running,
                    # What runs came from this store, whose versions are immutable.
                    released_digest=fetched.digest if running == wanted.version else None,
                )
        if (
            decision.action == "skip"
            and wanted.again
            and recorded is not None
            and (recorded.version == wanted.version and recorded.digest == fetched.digest)
        ):
            decision = decide.Decision("deploy", f"{wanted.version} again: a secret key it "
                                       "reads changed")  # fmt: skip
        if decision.action == "skip":
            self.metrics.deploys.labels("skipped", wanted.tenant, wanted.service).inc()
            return Result("skipped", decision.reason)
        self._observe_lag(wanted)
        with (
            tempfile.TemporaryDirectory(prefix="tenantry-deploy-") as workdir,
            keeper.working(),
            self._hold(lease, token) as held,
        ):
            archive = Path(workdir) / f"{wanted.service}-{wanted.version}.tgz"
            archive.write_bytes(fetched.data)

            def guard() -> None:
                held.check()
                keeper.check()

            failure = self._deploy_everywhere(wanted, fetched.digest, archive, guard)
        if failure is None:
            self.metrics.deploys.labels("succeeded", wanted.tenant, wanted.service).inc()
            return Result("deployed", decision.reason)
        self.metrics.deploys.labels("failed", wanted.tenant, wanted.service).inc()
        return Result("failed", failure)

    def _deploy_everywhere(
        self, wanted: Wanted, digest: str, archive: Path, guard: Callable[[], None]
    ) -> str | None:
        tenant = self.repo.tenant(wanted.tenant)
        if STAGING not in tenant.environments:
            return f"tenant {tenant.name} does not use {STAGING}"
        return release.deploy(
            self.repo,
            self.ledger,
            release.Artifact(wanted.tenant, wanted.service, wanted.version, digest, archive),
            environment=STAGING,
            clusters=self.repo.platform.environment(STAGING).clusters,
            actor=f"deployer:{self.options.worker}",
            timeout_s=self.options.deploy_timeout_s,
            observe=self.metrics.duration.observe,
            guard=guard,
            helmd=self.helmd,
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

    def _wait_for_lease(self, lease: str, keeper: Keeper) -> int | None:
        """Wait (keeping the message hidden, or the request claimed) while another worker
        deploys this release.

        Handing the message back instead would spend one of its deliveries, and a
        busy release could push a perfectly good event into the dead-letter queue.
        """
        options = self.options
        deadline = time.monotonic() + options.deploy_timeout_s + options.lease_ttl_s
        while not self.stopping.is_set() and time.monotonic() < deadline:
            token = self.ledger.acquire(lease, holder=options.worker, ttl_s=options.lease_ttl_s)
            if token is not None:
                return token
            keeper.waiting()
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
            self._sqs().change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=seconds
            )

    def _observe_lag(self, wanted: Wanted) -> None:
        if not wanted.uploaded:
            return  # a request: no upload time to measure from
        try:
            uploaded = datetime.fromisoformat(wanted.uploaded.replace("Z", "+00:00"))
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

    def _alert_tampered(self, wanted: Wanted, reason: str) -> None:
        """A chart that is not what `tenantry publish` recorded (a tag moved to other
        content, an archive replaced in the bucket): someone wrote to the store around
        the platform. The platform team and the tenant are alerted; the deploy is refused
        either way, so an alerting failure is only logged."""
        labels = {
            "alertname": "TenantryChartNotAsPublished",
            "tenant": wanted.tenant,
            "service": wanted.service,
            "severity": "critical",
            "notify": "platform",
        }
        try:
            traffic_wiring.provider(self.repo).alert(labels, reason)
        except Exception as e:  # alerting is best effort; the refusal is recorded anyway
            _log.warning("could not alert about %s/%s: %s", wanted.tenant, wanted.service, e)

    def _record_event(
        self, message_id: str, key: str, result: str, reason: str, *, delete: bool = False
    ) -> Outcome:
        self.ledger.add(
            tables.Event(message_id=message_id, key=key, result=result, reason=reason, at=now())
        )
        return Outcome(result, reason, delete)


class _MessageKeeper(Keeper):
    """An SQS message: hidden from other workers while its release waits and deploys."""

    def __init__(self, deployer: Deployer, receipt: str) -> None:
        self.deployer = deployer
        self.receipt = receipt
        self.hidden_until = 0.0

    def waiting(self) -> None:
        if time.monotonic() > self.hidden_until:
            timeout = self.deployer.options.visibility_timeout_s
            self.deployer._hide(self.receipt, timeout)
            self.hidden_until = time.monotonic() + timeout / 3

    def working(self) -> AbstractContextManager[object]:
        return _KeepHidden(self.deployer, self.receipt)


class _RequestKeeper(Keeper):
    """A claimed deploy request: its own lease is renewed by ``held``'s heartbeat."""

    def __init__(self, held: fence.Held) -> None:
        self.held = held

    def check(self) -> None:
        self.held.check()


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


def _take(slots: threading.Semaphore, *, most: int, stopping: threading.Event) -> int:
    """Wait for one free slot (0 once ``stopping`` is set), then take up to ``most``."""
    while not slots.acquire(timeout=0.2):
        if stopping.is_set():
            return 0
    taken = 1
    while taken < most and slots.acquire(blocking=False):
        taken += 1
    return taken


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
