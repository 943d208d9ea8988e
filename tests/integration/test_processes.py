"""Background processes are stopped by their pid — and only while that pid is still theirs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tenantry import paths, processes


def test_a_pid_that_now_belongs_to_another_process_is_never_signalled(state_dir: Path) -> None:
    port = processes.free_port()
    started = processes.start(
        "pid-reuse", [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        port=port,
    )  # fmt: skip
    record = paths.state_dir() / "pid-reuse" / "process.json"
    state = json.loads(record.read_text())
    assert state["started"] == processes.started_at(started.pid)
    try:
        # The process we started is gone and the kernel gave its pid to another one: the
        # same pid with another start time is what `tenantry down` would then find.
        record.write_text(json.dumps({**state, "started": state["started"] - 1}))
        assert processes.running("pid-reuse") is None
        assert processes.stop("pid-reuse", grace_s=0) is False
        assert processes.alive(started.pid)  # left alone
    finally:
        record.write_text(json.dumps(state))
        assert processes.stop("pid-reuse", grace_s=5) is True
    assert not processes.alive(started.pid)
