"""What verification reports: checks per service (immutable values)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class Place:
    """Where in a chart one finding of a check is: the template (as helm names it,
    ``<chart>/templates/x.yaml``), the field, and what is wrong there."""

    template: str
    field: str
    message: str


@dataclass(frozen=True)
class Check:
    """One step of verifying one service."""

    name: str
    status: Status
    seconds: float
    detail: str = ""
    places: tuple[Place, ...] = ()


@dataclass(frozen=True)
class ServiceReport:
    """Every check of one service."""

    ref: str
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        """True when no check failed."""
        return all(c.status != "failed" for c in self.checks)

    @property
    def seconds(self) -> float:
        """Total time of the checks."""
        return sum(c.seconds for c in self.checks)
