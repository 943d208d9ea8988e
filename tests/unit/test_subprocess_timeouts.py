"""Tool builds and the throwaway PostgreSQL end with an error naming the command when
they hang (pure: subprocess is faked, nothing runs)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tenantry import errors
from tenantry.local import postgres
from tenantry.tools import install


def _hangs(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    assert kwargs.get("timeout"), "every call needs a timeout"
    raise subprocess.TimeoutExpired(argv, kwargs["timeout"])


def test_a_hanging_postgres_program_is_an_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(postgres.subprocess, "run", _hangs)
    with pytest.raises(errors.TenantryError, match="initdb did not finish within 120 s") as e:
        postgres._run("/usr/lib/postgresql/17/bin/initdb", "-D", "/tmp/data")
    assert e.value.fix


def test_a_hanging_go_command_is_a_tool_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(install.subprocess, "run", _hangs)
    with pytest.raises(errors.ToolError, match="`go env GOVERSION` did not finish within") as e:
        install._run(["go", "env", "GOVERSION"], timeout_s=install.GO_QUERY_TIMEOUT_S)
    assert e.value.fix


class _HangingBuild:
    """A `go build` that prints one package and then waits until its group is killed."""

    pid = 4242
    killed = threading.Event()

    def __init__(self, argv: list[str], **kwargs: Any) -> None:
        # Its own process group, so the compilers it starts are killed with it.
        assert kwargs.get("process_group") == 0
        self.stderr = self._lines()

    def _lines(self) -> Iterator[str]:
        yield "k8s.io/api/core/v1\n"
        assert self.killed.wait(timeout=10), "the build was not killed"

    def wait(self) -> int:
        return -9


def _killpg(pid: int, sig: int) -> None:
    assert pid == _HangingBuild.pid
    _HangingBuild.killed.set()


def test_a_build_that_outlives_its_timeout_is_killed_and_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(install.subprocess, "Popen", _HangingBuild)
    monkeypatch.setattr(install.os, "killpg", _killpg)
    lines: list[str] = []
    with pytest.raises(errors.ToolError, match="`go build of kubernetes` did not finish within"):
        install._stream_stderr(
            ["go", "build"],
            what="go build of kubernetes",
            timeout_s=0.05,
            cwd=tmp_path,
            env={},
            on_line=lines.append,
        )
    assert lines == ["k8s.io/api/core/v1"]
