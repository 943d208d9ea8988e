"""Observe → classify → act, for one chart event against what the ledger says (pure).

At-least-once delivery becomes effectively-once here: a duplicate, or an older
version arriving after a newer one, is skipped with its reason; only a newer
version is deployed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Action = Literal["deploy", "skip"]

_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+.*)?$")


def semver_key(version: str) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
    """A sort key with SemVer 2.0 precedence (pre-releases before the release)."""
    match = _SEMVER.match(version)
    if not match:
        raise ValueError(f"{version!r} is not SemVer")
    major, minor, patch, pre = match.groups()
    if pre is None:
        return int(major), int(minor), int(patch), 1, ()
    parts = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return int(major), int(minor), int(patch), 0, parts


@dataclass(frozen=True)
class Decision:
    """What to do, and why."""

    action: Action
    reason: str


def decide(
    *, incoming: str, incoming_digest: str, released: str | None, released_digest: str | None
) -> Decision:
    """Deploy ``incoming`` or skip it, given the newest release that succeeded."""
    if released is None:
        return Decision("deploy", "first release")
    order = (semver_key(incoming) > semver_key(released)) - (
        semver_key(incoming) < semver_key(released)
    )
    if order > 0:
        return Decision("deploy", f"{incoming} is newer than {released}")
    if order == 0 and incoming_digest == released_digest:
        return Decision("skip", f"duplicate: {incoming} is already released")
    if order == 0:
        return Decision(
            "skip",
            f"{incoming} is released with digest {released_digest}, not {incoming_digest}: "
            "versions are immutable, so this archive is not the published one",
        )
    return Decision("skip", f"out of order: {incoming} is older than the released {released}")
