"""Tenants' secrets: values a service needs (a database password) that pass through
neither git, nor logs, nor the ledger, nor a person's write access to production.

``store: tenantry`` (the default): a tenant's owners set and delete keys through the
server; the server writes them as Kubernetes Secrets into every cluster of the
environment, acting as the tenant's deployer, and keeps nothing but who changed which
key when and its version (`tenantry.ledger.tables.SecretChange`). A service's
descriptor maps environment variables to keys (``secrets:`` in service.yaml); the pods
read them from the Secret (`references` finds what a rendered chart reads).
"""
