"""`tenantry aws setup`: bucket, queue, dead-letter queue, and the bucket notification.

Idempotent: every call converges the same resources to the same settings, so it is
safe to run on every `tenantry up` and in CI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tenantry import errors
from tenantry.aws import Clients, translate
from tenantry.spec import models

# Only charts trigger deploys; index.yaml and anything else in the bucket do not.
CHART_SUFFIX = ".tgz"


@dataclass(frozen=True)
class Wiring:
    """What `setup` made sure exists."""

    bucket: str
    queue_url: str
    queue_arn: str
    dead_letter_url: str
    dead_letter_arn: str


def queue_url(c: Clients, name: str) -> str:
    """The URL of queue ``name``."""
    with translate(f"get the URL of queue {name}"):
        return str(c.sqs.get_queue_url(QueueName=name)["QueueUrl"])


def _queue(c: Clients, name: str, attributes: dict[str, str]) -> tuple[str, str]:
    with translate(f"create queue {name}"):
        url = str(c.sqs.create_queue(QueueName=name)["QueueUrl"])
        if attributes:
            c.sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        arn = c.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return url, str(arn["Attributes"]["QueueArn"])


def setup(c: Clients, platform: models.Platform) -> Wiring:
    """Create or converge the artifact bucket, the queues and the notification."""
    artifacts = platform.bucket
    if artifacts is None or platform.queue is None:
        raise errors.UsageError(
            "platform.yaml needs both an S3 artifacts and a queue section for the bucket's "
            "events", fix="add artifacts: {bucket: NAME} and queue: {name: NAME}",
        )  # fmt: skip
    bucket, queue = artifacts.bucket, platform.queue
    with translate(f"create bucket {bucket}"):
        existing = {b["Name"] for b in c.s3.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            create: dict[str, object] = {"Bucket": bucket}
            if artifacts.region != "us-east-1":
                create["CreateBucketConfiguration"] = {"LocationConstraint": artifacts.region}
            c.s3.create_bucket(**create)
        c.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    dlq_url, dlq_arn = _queue(c, queue.dead_letter_name, {"MessageRetentionPeriod": "1209600"})
    url, arn = _queue(
        c,
        queue.name,
        {
            "VisibilityTimeout": str(queue.visibility_timeout_s),
            "ReceiveMessageWaitTimeSeconds": "20",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(queue.max_receive_count)}
            ),
            # S3 may send to the queue only for this bucket.
            "Policy": json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "s3.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": "*",
                            "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
                        }
                    ],
                }
            ),
        },
    )
    with translate(f"configure notifications of bucket {bucket}"):
        c.s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "Id": "tenantry-chart-created",
                        "QueueArn": arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {
                            "Key": {"FilterRules": [{"Name": "suffix", "Value": CHART_SUFFIX}]}
                        },
                    }
                ]
            },
        )
    return Wiring(bucket, url, arn, dlq_url, dlq_arn)
