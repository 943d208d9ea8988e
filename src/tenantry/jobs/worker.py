"""The job worker: claim a queued operation, carry it out, record how it ended.

Runs beside the SQS consumer in every `tenantry deployer` process (a thread), so the
platform's workers, not people's terminals, do production work. A claim is a
conditional update (queued → running): two workers never run one operation. Every
progress line (canary steps, deploys) is appended to the operation, which is what
``GET /api/v1/operations/{id}`` and its event stream show.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

from tenantry import errors
from tenantry.aws import Clients
from tenantry.deploy import promotion
from tenantry.ledger import Ledger, tables
from tenantry.ledger import unavailable as ledger_unavailable
from tenantry.spec.repository import Repository

_log = logging.getLogger(__name__)

# How often an idle worker looks for queued operations: the delay between an approval
# and its deploy starting.
POLL_S = 0.25


class Worker:
    """Carries out queued operations, one at a time."""

    def __init__(
        self,
        repo: Repository,
        ledger: Ledger,
        clients: Clients,
        *,
        name: str,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.repo = repo
        self.ledger = ledger
        self.clients = clients
        self.name = name
        self._log = log

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set; the operation in hand is finished first."""
        while not stop.is_set():
            try:
                worked = self.run_once()
            except Exception as e:
                if not ledger_unavailable(e):
                    raise
                # The ledger database is down or restarting: this thread must outlive it.
                # An operation cut short here keeps its lease only until it lapses; then a
                # worker takes it over from its saved step.
                _log.warning("the ledger database is unavailable (%s); retrying", e)
                worked = False
            if not worked:
                stop.wait(POLL_S)

    def run_once(self) -> bool:
        """Claim and carry out one operation; False when none was queued."""
        operation = self.ledger.claim_operation(worker=self.name)
        if operation is None:
            return False
        self._log(f"operation {operation.id} ({operation.kind} {operation.tenant}/"
                  f"{operation.service} in {operation.environment}) claimed")  # fmt: skip
        try:
            status, result = self._carry_out(operation)
        except errors.TenantryError as e:
            status, result = "failed", str(e)
        except Exception as e:
            # A bug or an unexpected library error must not leave the operation running
            # (and its promotion approved) forever, nor kill this worker's thread.
            _log.exception("operation %s failed unexpectedly", operation.id)
            status, result = "failed", f"unexpected {type(e).__name__}: {e}"
        if status == "failed" and operation.kind == "approve":
            self._fail_promotion(operation, result)
        self.ledger.add_progress(operation.id, f"{status}: {result}")
        self.ledger.finish_operation(operation.id, status=status, result=result)
        self._log(f"operation {operation.id}: {status}: {result}")
        return True

    def _fail_promotion(self, operation: tables.Operation, reason: str) -> None:
        """An approval that did not finish leaves its promotion ``failed`` — which owners
        may approve again (a retry) or cancel — never ``approved`` or ``deploying``."""
        number = json.loads(operation.params).get("promotion")
        if isinstance(number, int):
            self.ledger.transition_promotion(number, from_status=("approved", "deploying"),
                                             status="failed", reason=reason)  # fmt: skip

    def _carry_out(self, operation: tables.Operation) -> tuple[str, str]:
        params = json.loads(operation.params)

        def progress(line: str) -> None:
            self.ledger.add_progress(operation.id, line)

        if operation.kind == "approve":
            done = promotion.deploy_approved(
                self.repo, self.ledger, self.clients, promotion_id=int(params["promotion"]),
                log=progress,
            )  # fmt: skip
            return ("succeeded" if done.status == "deployed" else "failed"), (
                done.reason or f"promotion {done.promotion} deployed"
            )
        if operation.kind == "rollback":
            plan = promotion.RollbackPlan(**params["plan"])
            done = promotion.rollback(
                self.repo, self.ledger, self.clients, plan=plan, by=operation.requested_by,
                log=progress,
            )  # fmt: skip
            return ("failed" if done.status == "failed" else "succeeded"), done.reason
        return "failed", f"unknown operation kind {operation.kind!r}"
