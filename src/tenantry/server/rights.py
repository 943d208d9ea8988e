"""Who may do what, decided from the tenant files and platform.yaml (pure).

Rights are never stored anywhere else: a tenant's ``owners`` and ``members`` and the
platform's ``server.admins`` are the whole truth, so a merged change to those files is
the only way to grant or take a right, and it is reviewed like any other change.

    right      members  owners  admins  notes
    read         yes      yes     yes
    request      yes      yes     yes    promotion requests
    cancel      own req   yes     yes    the requester may withdraw their own request
    approve       -       yes     yes    never one's own request, unless selfApproval
    reject        -       yes     yes
    rollback      -       yes     yes
    pause/resume/abort  - yes     yes    a canary in progress
    retry         -       yes     yes    deploy a published version to staging again
                                         (after its cause is fixed; unparks it)
    secrets       -       yes     yes    set and delete keys of the tenant's secrets
                                         (members list names, keys and versions: read)
    audit         -        -      yes    the server's whole audit log
    redrive       -        -      yes    the staging queue's dead-letter queue (list, redrive)

A person of tenant A has no right at all on tenant B. A refusal names the missing
right and who holds it, so the person knows whom to ask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from tenantry.spec import models

Right = Literal[
    "read", "request", "cancel", "approve", "reject", "rollback", "pause", "resume", "abort",
    "retry", "secrets", "audit", "redrive",
]  # fmt: skip
RIGHTS: tuple[Right, ...] = get_args(Right)

_MEMBER_RIGHTS: frozenset[Right] = frozenset({"read", "request"})
# The platform's own rights (the whole audit log, the shared dead-letter queue) are admins'.
_PLATFORM_RIGHTS: frozenset[Right] = frozenset({"audit", "redrive"})
_OWNER_RIGHTS: frozenset[Right] = frozenset(RIGHTS) - _PLATFORM_RIGHTS

Role = Literal["admin", "owner", "member", "none"]


@dataclass(frozen=True)
class Person:
    """A proven identity: the username and groups the management cluster vouched for."""

    username: str
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    """Whether a person may exercise a right, and if not, why and who may."""

    allowed: bool
    reason: str = ""
    holders: str = ""


def _in(person: Person, people: models.People) -> bool:
    return person.username in people.users or bool(person.groups & set(people.groups))


def is_admin(person: Person, platform: models.Platform) -> bool:
    """Whether ``person`` is one of platform.yaml's ``server.admins``."""
    return platform.server is not None and _in(person, platform.server.admins)


def role(person: Person, tenant: models.Tenant | None, platform: models.Platform) -> Role:
    """The strongest role ``person`` has for ``tenant`` (admin for every tenant)."""
    if is_admin(person, platform):
        return "admin"
    if tenant is None:
        return "none"
    if _in(person, tenant.owners):
        return "owner"
    if _in(person, tenant.members):
        return "member"
    return "none"


def _describe(people: models.People) -> str:
    parts = []
    if people.users:
        parts.append("users " + ", ".join(people.users))
    if people.groups:
        parts.append("groups " + ", ".join(people.groups))
    return "; ".join(parts) or "nobody"


def holders(right: Right, tenant: models.Tenant | None, platform: models.Platform) -> str:
    """Who holds ``right`` for ``tenant``, in words."""
    admins = platform.server.admins if platform.server else models.People()
    who = []
    if tenant is not None and right in _MEMBER_RIGHTS:
        who.append(f"members of {tenant.name} ({_describe(tenant.members)})")
    if tenant is not None and right in _OWNER_RIGHTS:
        who.append(f"owners of {tenant.name} ({_describe(tenant.owners)})")
    who.append(f"platform admins ({_describe(admins)})")
    return " and ".join(who)


def decide(
    person: Person,
    right: Right,
    *,
    tenant: models.Tenant | None,
    platform: models.Platform,
    requested_by: str | None = None,
) -> Decision:
    """May ``person`` exercise ``right`` on ``tenant`` (None: the platform as a whole)?

    ``requested_by`` is the requester of the promotion being acted on: it lets the
    requester cancel their own request and stops them approving it.
    """
    who = role(person, tenant, platform)
    subject = f"tenant {tenant.name}" if tenant is not None else "the platform"
    own_request = requested_by is not None and requested_by == person.username
    if right == "approve" and own_request and (tenant is None or not tenant.self_approval):
        return Decision(
            False,
            f"{person.username} requested this promotion and cannot also approve it "
            f"(four eyes: {subject} does not set selfApproval)",
            holders(right, tenant, platform) + ", other than the requester",
        )
    allowed = (
        who == "admin"
        or (who == "owner" and right in _OWNER_RIGHTS)
        or (who == "member" and right in _MEMBER_RIGHTS)
        or (right == "cancel" and who != "none" and own_request)
    )
    if allowed:
        return Decision(True)
    return Decision(
        False,
        f"{person.username} lacks the right {right!r} on {subject}",
        holders(right, tenant, platform),
    )
