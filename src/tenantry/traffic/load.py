"""A bounded stream of GETs against a route, as users would send it, recording every
answer: the version that served it (the demo apps answer ``<service> <version> on
<cluster>``), ``"error"`` for a non-200 answer, or ``"failed"`` when no answer came.

Used by ``tenantry traffic load`` (a canary needs traffic to be analysed), the traffic
tests and the traffic benchmark.

Like a browser, a sender retries a GET once when the connection it reused is closed
without any answer: that is how HTTP lets a client know the request was not processed
(RFC 9110 §9.2.2), and what HAProxy does when the server connection it reused dies
before answering — it mirrors the close to the client instead of guessing. Each such
retry is recorded (`retries`); a request that fails again is "failed".
"""

from __future__ import annotations

import collections
import threading
import time

import httpx2


class Load:
    """``threads`` senders, each starting a request at most every ``interval_s``, until
    `stop`."""

    def __init__(
        self, url: str, *, threads: int = 2, interval_s: float = 0.01, timeout_s: float = 5
    ) -> None:
        self.url, self.interval_s, self.timeout_s = url, interval_s, timeout_s
        self.answers: list[tuple[float, str]] = []  # (time.monotonic(), answer)
        self.errors: list[str] = []  # why each "failed" request failed, with its time
        self.retries: list[float] = []  # when a GET was sent again (see the module's doc)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _send(self) -> None:
        with httpx2.Client(timeout=self.timeout_s) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    try:
                        response = client.get(self.url)
                    except httpx2.RemoteProtocolError:
                        self.retries.append(time.monotonic())
                        response = client.get(self.url)
                    answer = response.text.split()[1] if response.status_code == 200 else "error"
                except (httpx2.HTTPError, IndexError) as e:
                    answer = "failed"
                    self.errors.append(f"{time.monotonic():.2f} {type(e).__name__}: {e}")
                self.answers.append((time.monotonic(), answer))
                self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    @property
    def versions(self) -> collections.Counter[str]:
        """How many answers of each kind so far."""
        return collections.Counter(answer for _, answer in self.answers)

    @property
    def failed(self) -> int:
        """Requests that got no answer."""
        return self.versions["failed"]

    def stop(self) -> None:
        """Stop sending and wait for the requests in flight."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + 5)
