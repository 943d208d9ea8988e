"""Dashboard sessions: an opaque random id in a cookie, everything else on the server.

The browser holds only the session id (HttpOnly, SameSite=Strict, Secure over TLS). The
person's token stays in this process's memory so every request is proven again through
the same `identity.Reviewer` as the API (a revoked token ends the session); it is never
written to a cookie, a page or a log. Each session has its own CSRF token, which every
state-changing form carries and `check_csrf` compares in constant time.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "tenantry_session"
# How long a session lasts after sign-in; then the person signs in again.
TTL_S = 8 * 3600.0
# The most sessions kept; the oldest go first past it (memory stays bounded).
_MAX = 10_000


@dataclass(frozen=True)
class Session:
    """One signed-in browser."""

    id: str
    token: str  # never leaves the server
    csrf: str
    username: str
    expires: float


class Sessions:
    """The server's sessions, in memory: a restart signs everyone out, which is safe."""

    def __init__(self, *, ttl_s: float = TTL_S, clock: Callable[[], float] = time.time) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    def start(self, token: str, username: str) -> Session:
        """A new session for a token already proven to belong to ``username``."""
        session = Session(id=secrets.token_urlsafe(32), token=token,
                          csrf=secrets.token_urlsafe(32), username=username,
                          expires=self._clock() + self._ttl_s)  # fmt: skip
        with self._lock:
            if len(self._by_id) >= _MAX:
                self._by_id.pop(next(iter(self._by_id)))
            self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session ``session_id``; None when unknown or expired (then forgotten)."""
        if not session_id:
            return None
        with self._lock:
            session = self._by_id.get(session_id)
            if session is not None and session.expires <= self._clock():
                del self._by_id[session_id]
                return None
            return session

    def end(self, session_id: str) -> None:
        """Sign out: the id stops working at once."""
        with self._lock:
            self._by_id.pop(session_id, None)


def check_csrf(session: Session, sent: str | None) -> bool:
    """Whether a form carried this session's CSRF token."""
    return bool(sent) and secrets.compare_digest(session.csrf.encode(), (sent or "").encode())
