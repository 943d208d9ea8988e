"""The ledger: the record of every action (who, what, which version, where, result).

A SQLite file under the state directory by default; PostgreSQL when
``TENANTRY_DATABASE_URL`` names one (several deployer replicas share it). The
schema is owned by the Alembic migrations in ``migrations/``, applied on open.
Nothing secret is ever written here: actors, versions, digests and reasons only.

Leases give one deployer at a time the right to deploy a release; each new holder
gets a larger fencing token, so a holder whose lease lapsed can tell it lost.
"""

from tenantry.ledger.database import (
    INTERVALS_READ,
    Claim,
    Ledger,
    Released,
    RequestClaim,
    Requested,
    default_url,
    now,
    unavailable,
)

__all__ = [
    "INTERVALS_READ", "Claim", "Ledger", "Released", "RequestClaim", "Requested", "default_url",
    "now", "unavailable",
]  # fmt: skip
