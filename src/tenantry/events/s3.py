"""S3 event notifications (as SQS delivers them) → typed events (pure).

Handles what S3 really sends: the ``s3:TestEvent`` it posts when a notification is
configured, several records per message, and object keys URL-encoded with ``+``
for spaces. Anything else is `Invalid` with a reason — recorded, never deployed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import unquote_plus

# <tenant>/<service>-<version>.tgz; the version is SemVer, so it starts with digits.
_KEY = re.compile(
    r"^(?P<tenant>[a-z0-9]([-a-z0-9]*[a-z0-9])?)/"
    r"(?P<service>[a-z0-9]([-a-z0-9]*?[a-z0-9])?)-"
    r"(?P<version>\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?)\.tgz$"
)


@dataclass(frozen=True)
class ChartCreated:
    """A chart archive was written to the bucket."""

    bucket: str
    key: str
    tenant: str
    service: str
    version: str
    event_time: str


@dataclass(frozen=True)
class TestEvent:
    """S3's probe when a notification is configured; nothing to do."""


@dataclass(frozen=True)
class Invalid:
    """A message or record that is not a chart upload; ``reason`` says why."""

    reason: str
    key: str = ""


Event = ChartCreated | TestEvent | Invalid


def parse_key(bucket: str, raw_key: str, event_time: str = "") -> ChartCreated | Invalid:
    """A decoded object key as a chart upload, or why it is not one."""
    key = unquote_plus(raw_key)
    # fullmatch: `$` also matches before a final newline, and "…-1.0.0.tgz\n" is
    # another object than the chart the event would then name.
    match = _KEY.fullmatch(key)
    if not match:
        return Invalid(f"{key!r} is not <tenant>/<service>-<semver>.tgz", key=key)
    return ChartCreated(
        bucket=bucket,
        key=key,
        tenant=match["tenant"],
        service=match["service"],
        version=match["version"],
        event_time=event_time,
    )


def parse(body: str) -> list[Event]:
    """Every event in one SQS message body."""
    try:
        message = json.loads(body)
    except (ValueError, TypeError, RecursionError):
        # ValueError covers JSONDecodeError and integers beyond Python's digit limit;
        # RecursionError arrays nested thousands deep. Neither may kill a worker.
        return [Invalid(f"not JSON: {body[:120]!r}")]
    if not isinstance(message, dict):
        return [Invalid("not a JSON object")]
    if message.get("Event") == "s3:TestEvent":
        return [TestEvent()]
    records = message.get("Records")
    if not isinstance(records, list) or not records:
        return [Invalid(f"no Records in message: {body[:120]!r}")]
    events: list[Event] = []
    for record in records:
        try:
            name = str(record["eventName"])
            bucket = str(record["s3"]["bucket"]["name"])
            key = str(record["s3"]["object"]["key"])
        except (KeyError, TypeError):
            events.append(Invalid("record without eventName, s3.bucket.name or s3.object.key"))
            continue
        if not name.startswith("ObjectCreated:"):
            events.append(Invalid(f"{name} is not an object creation", key=key))
            continue
        events.append(parse_key(bucket, key, str(record.get("eventTime", ""))))
    return events
