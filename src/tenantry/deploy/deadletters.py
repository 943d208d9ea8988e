"""The staging queue's dead-letter queue: what is in it, and the platform team's redrive.

A message lands there after ``maxReceiveCount`` failed deliveries — a tenant published
before it was onboarded, a chart that never became ready. Once the cause is fixed the
platform team redrives it (`tenantry deadletters redrive`, admins, through the server).

**A redrive turns each message into a deploy request** in the ledger rather than moving
it back to the queue:

* it is recorded: the request names who redrove it (``source: redrive``,
  ``requested_by``) beside the dead-lettered attempts, and an event row per message says
  which request it became;
* it unparks the release: the deployer parked the release when its message was
  dead-lettered (so the resync leaves it alone); a message moved back to the queue would
  leave that parked row contradicting a deploy under way;
* it is effectively once: several dead letters for one release (a duplicate event, two
  publishes) fold into one open request, so one deploy;
* it is the same path as `tenantry retry` and as the registry's notifications, which
  have no dead-letter queue at all: one retry semantics for both stores;
* and it needs no right to send to the live queue.

A message that names no chart of a known service (S3's test event, a malformed body,
a service removed meanwhile) cannot become a request: it is left in the dead-letter
queue and reported as kept, with the reason — never deleted unseen.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenantry.aws import Clients, translate, wiring
from tenantry.events import s3
from tenantry.ledger import Ledger, now, tables
from tenantry.spec.repository import Repository

# Bounds of one listing or redrive: SQS hands out at most 10 messages per receive.
_ROUNDS = 20
# How long a redrive keeps a message it is converting hidden from other readers.
_HIDE_S = 60


@dataclass(frozen=True)
class DeadLetter:
    """One message of the dead-letter queue, as far as it names a release."""

    message_id: str
    receives: int
    releases: tuple[str, ...]  # "tenant/service version" of each chart event in it
    problem: str  # why it cannot be redriven; "" when it can


@dataclass(frozen=True)
class Redriven:
    """What the redrive did with one message."""

    message_id: str
    requests: tuple[tuple[str, int, str], ...]  # (release, request id, outcome)
    kept: str  # why it was left in the dead-letter queue; "" when it was turned into requests


def _url(clients: Clients, repo: Repository) -> str:
    return wiring.queue_url(clients, repo.queue().dead_letter_name)


def _read(repo: Repository, body: str) -> tuple[list[s3.ChartCreated], str]:
    """The chart events of a message and, if any part of it cannot become a request, why."""
    charts: list[s3.ChartCreated] = []
    for event in s3.parse(body):
        if isinstance(event, s3.TestEvent):
            return [], "S3's test event: nothing to deploy"
        if isinstance(event, s3.Invalid):
            return [], f"not a chart upload: {event.reason}"
        ref = f"{event.tenant}/{event.service}"
        if not any(s.ref == ref for s in repo.services):
            return [], f"{ref} is not a service of the platform repository"
        charts.append(event)
    return charts, ""


def _receive(clients: Clients, url: str, *, hide_s: int) -> list[dict[str, object]]:
    with translate("receive from the dead-letter queue"):
        got = clients.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=hide_s,
            AttributeNames=["ApproximateReceiveCount"],
        )  # fmt: skip
    return list(got.get("Messages", []))


def listing(clients: Clients, repo: Repository, *, limit: int = 100) -> list[DeadLetter]:
    """The messages in the dead-letter queue (at most ``limit``), left where they are."""
    url = _url(clients, repo)
    seen: dict[str, DeadLetter] = {}
    for _ in range(_ROUNDS):
        # Visibility 0: each message stays visible, so listing never delays a redrive.
        batch = _receive(clients, url, hide_s=0)
        fresh = [m for m in batch if str(m.get("MessageId")) not in seen]
        if not fresh:
            break
        for message in fresh:
            charts, problem = _read(repo, str(message.get("Body", "")))
            attributes = message.get("Attributes", {})
            receives = attributes.get("ApproximateReceiveCount", "0") if isinstance(
                attributes, dict) else "0"  # fmt: skip
            seen[str(message.get("MessageId"))] = DeadLetter(
                str(message.get("MessageId")), int(str(receives)),
                tuple(f"{c.tenant}/{c.service} {c.version}" for c in charts), problem,
            )  # fmt: skip
        if len(seen) >= limit:
            break
    return list(seen.values())[:limit]


def redrive(clients: Clients, repo: Repository, ledger: Ledger, *, by: str) -> list[Redriven]:
    """Turn every redrivable dead letter into a deploy request (``source: redrive``,
    unparking a parked one) and delete it; keep the others, saying why."""
    url = _url(clients, repo)
    done: dict[str, Redriven] = {}
    kept: list[str] = []
    for _ in range(_ROUNDS):
        batch = [m for m in _receive(clients, url, hide_s=_HIDE_S)
                 if str(m.get("MessageId")) not in done]  # fmt: skip
        if not batch:
            break
        for message in batch:
            message_id = str(message.get("MessageId"))
            charts, problem = _read(repo, str(message.get("Body", "")))
            if problem:
                done[message_id] = Redriven(message_id, (), problem)
                kept.append(str(message["ReceiptHandle"]))
                continue
            made = []
            for chart in charts:
                digests = ledger.published_digests(tenant=chart.tenant, service=chart.service,
                                                   version=chart.version)  # fmt: skip
                requested = ledger.request_deploy(
                    tenant=chart.tenant, service=chart.service, version=chart.version,
                    digest=next(iter(digests)) if len(digests) == 1 else "",
                    source="redrive", requested_by=by, unpark=True,
                )  # fmt: skip
                release = f"{chart.tenant}/{chart.service} {chart.version}"
                made.append((release, requested.request.id, requested.outcome))
                ledger.add(tables.Event(
                    message_id=message_id, key=chart.key, result="redriven", at=now(),
                    reason=f"dead letter redriven by {by}: deploy request "
                    f"{requested.request.id} ({requested.outcome})",
                ))  # fmt: skip
            # Deleted only once its requests are in the ledger: a redrive cut short here
            # leaves the message to be redriven again, and the requests fold.
            with translate("delete a redriven dead letter"):
                clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            done[message_id] = Redriven(message_id, tuple(made), "")
    for receipt in kept:  # visible again for the next listing
        with translate("return a kept dead letter"):
            clients.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt,
                                                  VisibilityTimeout=0)  # fmt: skip
    return list(done.values())
