"""Why one tenant's monitoring fragment was left out (shared by every planner here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One invalid part of a tenant's monitoring: only that tenant's fragment is skipped."""

    tenant: str
    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message} (tenant {self.tenant}: fragment skipped)"
