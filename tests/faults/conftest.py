"""Faults injected for real — processes SIGKILLed, servers stopped and restarted — each
test bounded in time. Every test records its outcome with the ``reliability`` fixture
(fault, when, what happened, releases lost/doubled/half-done, time to recover) before
asserting on it, so the table in docs/reliability.md (written by `bench/faults.py`)
shows what happened even when a test fails.

Rows go, one JSON object per line, to the file named by ``TENANTRY_RELIABILITY_REPORT``
(a file in the session's temporary directory when unset).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

REPORT_ENV = "TENANTRY_RELIABILITY_REPORT"


@dataclass(frozen=True)
class Outcome:
    """One row of the reliability table."""

    fault: str
    when: str
    happened: str
    lost: int
    doubled: int
    half_done: int
    recovery_s: float | None  # None: nothing needed recovering


Record = Callable[[Outcome], None]


@pytest.fixture(scope="session")
def _report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(os.environ.get(REPORT_ENV) or tmp_path_factory.mktemp("faults") / "report.jsonl")


@pytest.fixture
def reliability(_report: Path, request: pytest.FixtureRequest) -> Record:
    """Append this test's outcome to the report (call it before asserting)."""

    def record(outcome: Outcome) -> None:
        with _report.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"test": request.node.nodeid, **asdict(outcome)}) + "\n")

    return record
