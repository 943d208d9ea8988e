"""The dashboard's session store and CSRF check (pure: no server, no sockets)."""

from __future__ import annotations

from tenantry.server.dashboard.sessions import Sessions, check_csrf


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_id_is_opaque_and_random() -> None:
    sessions = Sessions()
    one, two = sessions.start("tok-a", "alice"), sessions.start("tok-a", "alice")
    assert one.id != two.id and one.csrf != two.csrf
    assert "tok-a" not in one.id and "alice" not in one.id and len(one.id) >= 40


def test_a_session_expires_and_is_forgotten() -> None:
    clock = Clock()
    sessions = Sessions(ttl_s=60, clock=clock)
    session = sessions.start("tok", "bob")
    clock.now += 59
    assert sessions.get(session.id) == session
    clock.now += 1
    assert sessions.get(session.id) is None
    clock.now -= 30  # an expired session does not come back
    assert sessions.get(session.id) is None


def test_sign_out_ends_the_session_and_unknown_ids_find_nothing() -> None:
    sessions = Sessions()
    session = sessions.start("tok", "bob")
    sessions.end(session.id)
    sessions.end(session.id)  # twice is fine
    assert sessions.get(session.id) is None
    assert sessions.get("") is None and sessions.get(None) is None
    assert sessions.get("made-up") is None


def test_csrf_is_this_sessions_token_only() -> None:
    sessions = Sessions()
    mine, other = sessions.start("a", "alice"), sessions.start("b", "bob")
    assert check_csrf(mine, mine.csrf)
    assert not check_csrf(mine, other.csrf)
    assert not check_csrf(mine, None) and not check_csrf(mine, "")
    assert not check_csrf(mine, mine.csrf + "x")
    assert not check_csrf(mine, "é")  # non-ASCII is refused, not an exception
