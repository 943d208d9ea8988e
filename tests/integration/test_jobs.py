"""Production operations end in a state that says so: a worker that hits an unexpected
error fails the operation and its promotion (which owners may then approve again or
cancel) and goes on working — on a real ledger (SQLite)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from tenantry.aws import Clients
from tenantry.deploy import promotion
from tenantry.jobs import worker
from tenantry.ledger import Ledger, now, tables
from tenantry.spec import repository

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"


@pytest.fixture
def repo(tmp_path: Path) -> repository.Repository:
    root = tmp_path / "platform"
    shutil.copytree(EXAMPLE, root)
    data = yaml.safe_load((root / "platform.yaml").read_text())
    data.pop("traffic")  # a plain canary-then-primary deploy, no live-traffic analysis
    (root / "platform.yaml").write_text(yaml.safe_dump(data))
    return repository.load(root)


def test_an_unexpected_error_fails_the_operation_and_the_promotion_which_can_be_retried(
    repo: repository.Repository, tmp_path: Path
) -> None:
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger:
        row = ledger.add(tables.Promotion(
            tenant="payments", service="api", version="1.4.0", digest="d" * 64,
            environment="production", requested_by="alice@acme.example", requested_at=now(),
            status="pending", reason="",
        ))  # fmt: skip
        promotion.approve(repo, ledger, promotion_id=row.id, by="bob@acme.example")
        # Something that is no S3 client at all: the deploy breaks with an AttributeError,
        # the kind of error nothing in Tenantry raises on purpose.
        broken = worker.Worker(repo, ledger, cast(Clients, cast(Any, object())), name="w1")

        assert broken.run_once() is True
        (operation,) = _operations(ledger)
        assert (operation.status, operation.worker) == ("failed", "w1")
        assert operation.result.startswith("unexpected AttributeError")
        failed = ledger.promotion(row.id)
        assert failed is not None and failed.status == "failed"
        assert failed.reason.startswith("unexpected AttributeError")
        assert broken.run_once() is False  # the worker goes on: nothing else queued

        # Owners may approve a failed promotion again (a retry) ...
        again, retry = promotion.approve(repo, ledger, promotion_id=row.id,
                                         by="bob@acme.example")  # fmt: skip
        assert (again.status, again.reason, retry.status) == ("approved", "", "queued")
        broken.run_once()
        # ... or cancel it once it failed.
        cancelled = promotion.decline(repo, ledger, promotion_id=row.id, by="alice@acme.example",
                                      status="cancelled", reason="bad build")  # fmt: skip
        assert cancelled.status == "cancelled"
        with pytest.raises(promotion.PromotionError, match="is cancelled, not pending or failed"):
            promotion.approve(repo, ledger, promotion_id=row.id, by="bob@acme.example")


def _operations(ledger: Ledger) -> list[tables.Operation]:
    with ledger.session() as session:
        return list(session.query(tables.Operation).order_by(tables.Operation.id))
