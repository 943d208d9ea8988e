"""The monitoring appliers: what `tenantry.observability` plans (pure), written to disk
and checked by the real validators (`files`), receiver secrets read from Kubernetes
and stored 0600 (`secret_store`), and prometheus-operator objects checked against
the pinned CRDs in a cluster (`crds`). Kept apart so `observability` imports no
adapter, tool or subprocess."""
