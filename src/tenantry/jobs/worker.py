"""The job worker: claim an operation, carry it out under a lease, record how it ended.

Runs beside the SQS consumer in every `tenantry deployer` process (a thread), so the
platform's workers, not people's terminals, do production work. A claim is a
conditional update on the operation's fencing token (`Ledger.claim_operation`): two
workers never run one operation. While it works, a heartbeat renews the claim's lease
(`tenantry.ledger.fence`); every action (a helm run, a canary weight, a saved step)
first checks the lease is still held, so a worker that lost it stops before acting.
A worker that dies (SIGKILL, a lost machine) stops renewing: within one lease period
another worker claims the operation and carries on — a canary from its stored step,
clusters that already run the version not deployed again — after marking the deploys
the dead worker left running as interrupted. Every progress line is appended to the
operation, which is what ``GET /api/v1/operations/{id}`` and its event stream show.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

from tenantry import errors
from tenantry.aws import Clients
from tenantry.deploy import promotion
from tenantry.ledger import Claim, Ledger, fence, tables
from tenantry.ledger import unavailable as ledger_unavailable
from tenantry.spec.repository import Repository

_log = logging.getLogger(__name__)

# How often an idle worker looks for queued operations: the delay between an approval
# and its deploy starting.
POLL_S = 0.25
# How long to wait before asking an unavailable ledger again.
LEDGER_RETRY_S = 2.0
# How long a claim holds without a renewal: the longest a dead worker's operation waits
# before another takes it over.
LEASE_TTL_S = 30.0


class Worker:
    """Carries out queued operations, one at a time."""

    def __init__(
        self,
        repo: Repository,
        ledger: Ledger,
        clients: Clients | None,
        *,
        name: str,
        lease_ttl_s: float = LEASE_TTL_S,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.repo = repo
        self.ledger = ledger
        self.clients = clients
        self.name = name
        self.lease_ttl_s = lease_ttl_s
        self._log = log

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set; the operation in hand is finished first."""
        while not stop.is_set():
            try:
                worked = self.run_once()
            except Exception as e:
                if not ledger_unavailable(e):
                    raise
                # The ledger is down (a database restart): nothing can be claimed or
                # recorded. An operation in hand keeps its lease until it lapses, then any
                # worker — this one too — takes it over from where it stopped.
                self._log(f"the ledger is unavailable ({type(e).__name__}); retrying")
                stop.wait(LEDGER_RETRY_S)
                continue
            if not worked:
                stop.wait(POLL_S)

    def run_once(self) -> bool:
        """Claim and carry out one operation; False when none was waiting."""
        claim = self.ledger.claim_operation(worker=self.name, ttl_s=self.lease_ttl_s)
        if claim is None:
            return False
        operation = claim.operation
        self._log(f"operation {operation.id} ({operation.kind} {operation.tenant}/"
                  f"{operation.service} in {operation.environment}) claimed")  # fmt: skip
        if claim.taken_from is not None:
            self._take_over(claim)
        held = fence.Held(f"operation {operation.id}", ttl_s=self.lease_ttl_s,
                          renew=lambda: self.ledger.renew_operation(
                              operation.id, token=claim.token, ttl_s=self.lease_ttl_s))  # fmt: skip
        with held:
            try:
                status, result = self._carry_out(operation, held.check)
            except fence.LeaseLost as e:
                # Another worker has (or will have) the operation: record nothing more.
                self._log(f"operation {operation.id}: {e}")
                return True
            except errors.TenantryError as e:
                status, result = "failed", str(e)
            except Exception as e:
                if ledger_unavailable(e):
                    raise  # not the operation's failure: taken over once the ledger is back
                # A bug or an unexpected library error must not leave the operation running
                # (and its promotion approved) forever, nor kill this worker's thread.
                _log.exception("operation %s failed unexpectedly", operation.id)
                status, result = "failed", f"unexpected {type(e).__name__}: {e}"
            if held.lost:
                self._log(f"operation {operation.id}: lease lost before recording {status}")
                return True
            if status == "failed" and operation.kind == "approve":
                self._fail_promotion(operation, result)
            self.ledger.add_progress(operation.id, f"{status}: {result}")
            self.ledger.finish_operation(operation.id, token=claim.token, status=status,
                                         result=result)  # fmt: skip
        self._log(f"operation {operation.id}: {status}: {result}")
        return True

    def _take_over(self, claim: Claim) -> None:
        """Carry on after a worker that stopped renewing its lease (it died or lost the
        ledger). Operations on one service run one at a time, so a deploy of it still
        marked running was that worker's and nobody is finishing it."""
        operation = claim.operation
        self.ledger.add_progress(
            operation.id, f"taken over by {self.name}: {claim.taken_from} stopped renewing its "
            "lease; carrying on from where it stopped",
        )  # fmt: skip
        self.ledger.interrupt_deployments(
            tenant=operation.tenant, service=operation.service,
            environment=operation.environment,
            reason=f"interrupted: worker {claim.taken_from} stopped; {self.name} took over "
            f"operation {operation.id}",
        )  # fmt: skip

    def _fail_promotion(self, operation: tables.Operation, reason: str) -> None:
        """An approval that did not finish leaves its promotion ``failed`` — which owners
        may approve again (a retry) or cancel — never ``approved`` or ``deploying``."""
        number = json.loads(operation.params).get("promotion")
        if isinstance(number, int):
            self.ledger.transition_promotion(number, from_status=("approved", "deploying"),
                                             status="failed", reason=reason)  # fmt: skip

    def _carry_out(self, operation: tables.Operation, guard: Callable[[], None]) -> tuple[str, str]:
        params = json.loads(operation.params)

        def progress(line: str) -> None:
            self.ledger.add_progress(operation.id, line)

        if operation.kind == "approve":
            done = promotion.deploy_approved(
                self.repo, self.ledger, self.clients, promotion_id=int(params["promotion"]),
                log=progress, guard=guard,
            )  # fmt: skip
            return ("succeeded" if done.status == "deployed" else "failed"), (
                done.reason or f"promotion {done.promotion} deployed"
            )
        if operation.kind == "rollback":
            plan = promotion.RollbackPlan(**params["plan"])
            done = promotion.rollback(
                self.repo, self.ledger, self.clients, plan=plan, by=operation.requested_by,
                log=progress, guard=guard,
            )  # fmt: skip
            return ("failed" if done.status == "failed" else "succeeded"), done.reason
        return "failed", f"unknown operation kind {operation.kind!r}"
