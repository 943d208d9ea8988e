"""A lease this process holds, kept alive by a heartbeat, checked before every action.

The ledger's leases carry a fencing token (`Ledger.acquire`, `Ledger.renew`); this is
the holder's side. A heartbeat thread renews the lease every third of its time to
live. A renewal the ledger refuses (another holder took it) marks the lease lost at
once; renewals that fail with errors (the database is down) are retried, and once no
renewal has succeeded for a whole time to live the lease counts as lost too, because
another worker may now take it. `check` raises `LeaseLost` from then on, so the work
stops before its next action rather than racing the new holder.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tenantry import errors

_log = logging.getLogger(__name__)


class LeaseLost(errors.TenantryError):
    """This worker no longer holds the lease; another may be doing the work."""


class Held:
    """A held lease: ``with Held(...) as held:`` beats; ``held.check()`` before acting."""

    def __init__(self, what: str, *, renew: Callable[[], bool], ttl_s: float) -> None:
        self.what = what
        self._renew = renew
        self.ttl_s = ttl_s
        self._renewed = time.monotonic()
        self._refused = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"lease {what}")

    def __enter__(self) -> Held:
        self._renewed = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def lost(self) -> bool:
        """Whether the lease may be another's now."""
        return self._refused or time.monotonic() - self._renewed > self.ttl_s

    def check(self) -> None:
        """`LeaseLost` when the lease may be another's: call before every action."""
        if self.lost:
            raise LeaseLost(
                f"lost the lease on {self.what} (not renewed within {self.ttl_s:g} s); "
                "stopping before the next step — another worker takes the work over",
                fix="check that the ledger database is reachable from every worker",
            )

    def _beat(self) -> None:
        while not self._done.wait(self.ttl_s / 3):
            try:
                if not self._renew():
                    self._refused = True
                    _log.warning("the lease on %s was taken by another holder", self.what)
                    return
                self._renewed = time.monotonic()
            except Exception:  # the database may be down: keep trying until the TTL passes
                _log.warning("renewing the lease on %s failed; retrying", self.what,
                             exc_info=True)  # fmt: skip
