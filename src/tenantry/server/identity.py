"""Who a bearer token belongs to, as the management cluster's API server says (TokenReview).

Identity is proven, never declared: the server sends each token to the TokenReview API
of the cluster platform.yaml names (``server.managementCluster``), so whatever that API
server accepts works — ServiceAccount tokens, OIDC, a static token file — and a token
it no longer accepts stops working here too.

Reviews are cached for ``server.reviewCacheS`` seconds, keyed by the token's SHA-256
(the token itself is never kept), and never past the token's own expiry when it is a
JWT that states one: a cached review may not outlive the token it vouches for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tenantry import errors
from tenantry.kube.client import Kube
from tenantry.server.rights import Person

# The most tokens kept in the cache; the oldest entries go first past it.
_CACHE_MAX = 10_000


class UnauthenticatedError(errors.TenantryError):
    """No token, or one the management cluster does not accept (HTTP 401)."""


class IdentityUnavailableError(errors.TenantryError):
    """The management cluster did not answer, so nobody can be identified now (HTTP 503)."""

    retryable = True


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim (Unix time) of a JWT, read without verifying it; None otherwise.

    Reading it unverified is safe here: it can only shorten how long a review is
    cached, and the review itself is what proves the token.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


def cache_until(token: str, *, now: float, ttl_s: float) -> float:
    """When a review of ``token`` made at ``now`` stops being reused."""
    expiry = jwt_expiry(token)
    return min(now + ttl_s, expiry) if expiry is not None else now + ttl_s


@dataclass(frozen=True)
class _Cached:
    person: Person
    until: float


class Reviewer:
    """Turns bearer tokens into `Person`s through TokenReview, with a short cache."""

    def __init__(
        self,
        connect: Callable[[], Kube],
        *,
        cache_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._connect = connect
        self._cache_s = cache_s
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()
        self._kube: Kube | None = None

    def person(self, token: str) -> Person:
        """Who ``token`` belongs to; `UnauthenticatedError` or `IdentityUnavailableError`."""
        if not token:
            raise UnauthenticatedError(
                "no bearer token", fix="run `tenantry login`, or set TENANTRY_TOKEN"
            )
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached.until > now:
                return cached.person
        person = self._review(token)
        if self._cache_s > 0:
            with self._lock:
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.pop(next(iter(self._cache)))
                until = cache_until(token, now=now, ttl_s=self._cache_s)
                self._cache[key] = _Cached(person, until)
        return person

    def _review(self, token: str) -> Person:
        try:
            kube = self._kube or self._connect()
            self._kube = kube
            reviewed = kube.review_token(token)
        except (errors.KubeError, errors.ClusterError) as e:
            self._kube = None
            raise IdentityUnavailableError(
                f"the management cluster could not review the token: {e.message}",
                fix="check that the management cluster named in platform.yaml answers",
            ) from e
        if reviewed is None:
            raise UnauthenticatedError(
                "the token is unknown, expired or revoked",
                fix="log in again (`tenantry login`) with a current token",
            )
        username, groups = reviewed
        return Person(username=username, groups=frozenset(groups))
