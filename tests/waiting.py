"""One way for tests to wait: poll a check until it holds, and fail the test — naming what
it waited for — when time runs out. Never a wait that gives up and carries on."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str, *, timeout_s: float = 60,
             poll_s: float = 0.1) -> T:  # fmt: skip
    """The first truthy value of ``check()``; `AssertionError` naming ``what`` after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(poll_s)
