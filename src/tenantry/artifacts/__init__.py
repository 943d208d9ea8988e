"""Charts as artifacts: packaged with provenance (`package`), kept in an S3 bucket laid
out as one Helm repository per tenant (`store`), indexed (`index`, pure)."""
