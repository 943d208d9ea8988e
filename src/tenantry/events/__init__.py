"""Event sources → typed events. S3 notifications delivered through SQS first (`s3`)."""
