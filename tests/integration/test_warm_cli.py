"""The warm process (`tenantry.cli.warm`): a command it serves prints, exits and takes
Ctrl-C exactly as in its own process; a caller that dies ends its command; it refuses
and stops once a module it imported changed; it ends with what it was started for.

Real processes throughout: the warm process as `tenantry verify` starts it, and the
`tenantry` command as people run it. `lint` is the served command here (no cluster
needed); the e2e workflow verifies on the warm cluster through it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tenantry.cli import output
from tests.waiting import wait_for

EXAMPLE = Path(__file__).parents[2] / "examples" / "platform-repo"


@dataclass
class Warm:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    alive: Path
    log: Path
    state: Path

    def served(self) -> list[str]:
        return re.findall(r"pid (\d+): tenantry (\S+)", self.log.read_text())


@pytest.fixture
def warm(tmp_path: Path) -> Iterator[Warm]:
    state = tmp_path / "state"
    alive = tmp_path / "cluster"
    alive.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "TENANTRY_WARM"}
    env["TENANTRY_STATE_DIR"] = str(state)
    log = tmp_path / "warm.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "tenantry.cli.warm", "--while-exists", str(alive)],
            env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: (state / "warm" / "cli.sock").exists() or process.poll() is not None,
                 "the warm process to listen")  # fmt: skip
        assert process.poll() is None, log.read_text()
        yield Warm(process, env, alive, log, state)
    finally:
        process.kill()
        process.wait()


def tenantry(
    env: dict[str, str], *args: str, warm: bool = True, **popen: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenantry", *args],
        env={**env, "TENANTRY_WARM": "1" if warm else "0"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_served_command_prints_and_exits_as_in_its_own_process(
    warm: Warm, tmp_path: Path
) -> None:
    cases = [
        ("lint", "--repo", str(EXAMPLE)),  # passes
        ("-o", "json", "lint", "--repo", str(EXAMPLE)),
        ("lint", "--repo", str(tmp_path / "nowhere")),  # a problem Tenantry explains: 1
        ("lint", "--no-such-option"),  # usage: 2
    ]
    for args in cases:
        served = tenantry(warm.env, *args)
        alone = tenantry(warm.env, *args, warm=False)
        assert (served.returncode, _timeless(served.stdout), served.stderr) == (
            alone.returncode, _timeless(alone.stdout), alone.stderr,
        ), args  # fmt: skip
    assert [command for _, command in warm.served()] == ["lint"] * len(cases)
    assert json.loads(tenantry(warm.env, "-o", "json", "lint", "--repo", str(EXAMPLE)).stdout)


def _timeless(text: str) -> str:
    """Output without the checks' durations (and the table padding they change)."""
    return re.sub(r"\s+", " ", re.sub(r"─+", "─", re.sub(r"\d+\.\d+", "N", text)))


def _blocked_on_fifo(warm: Warm, tmp_path: Path) -> tuple[subprocess.Popen[str], int, int]:
    """A served `lint` blocked reading its platform.yaml (a FIFO nobody writes yet): the
    caller, the child's pid, and the FIFO's write end (held open, so it stays blocked)."""
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    fifo = repo / "platform.yaml"
    if not fifo.exists():
        os.mkfifo(fifo)
    before = len(warm.served())
    # The caller must take Ctrl-C as a terminal's process does, even when this test runs
    # with SIGINT ignored (a CI job started in the background): a signal this process
    # handles is the default again in a program it starts; an ignored one stays ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        caller = subprocess.Popen(
            [sys.executable, "-m", "tenantry", "lint", "--repo", str(repo)],
            env=warm.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)

    def reader_waiting() -> int | None:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO:  # ENXIO: nobody has it open for reading yet
                raise
            return None

    writer = wait_for(reader_waiting, "the served command to open platform.yaml")
    child = int(wait_for(lambda: warm.served()[before:], "the warm process's log")[0][0])
    return caller, child, writer


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # exited; the warm process reaps it within a second


def test_ctrl_c_reaches_the_command_and_a_caller_that_dies_ends_it(
    warm: Warm, tmp_path: Path
) -> None:
    caller, child, writer = _blocked_on_fifo(warm, tmp_path)
    with _ended(caller, writer):
        caller.send_signal(signal.SIGINT)
        _, stderr = caller.communicate(timeout=60)
    assert caller.returncode == 130, stderr  # as an interrupted `tenantry` exits
    assert "Traceback" not in stderr
    wait_for(lambda: _gone(child), "the interrupted command to exit")

    caller, child, writer = _blocked_on_fifo(warm, tmp_path)
    with _ended(caller, writer):
        caller.kill()
        caller.communicate(timeout=60)
        wait_for(lambda: _gone(child), "the command of a killed caller to exit")
    assert warm.process.poll() is None  # the warm process itself serves on


@contextlib.contextmanager
def _ended(caller: subprocess.Popen[str], writer: int) -> Iterator[None]:
    """Whatever the test found, the caller is gone and the FIFO closed after it."""
    try:
        yield
    finally:
        os.close(writer)
        if caller.poll() is None:
            caller.kill()
        caller.communicate()


def test_after_a_module_it_imported_changed_it_refuses_and_stops(warm: Warm) -> None:
    module = Path(output.__file__)
    before = module.stat()
    os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    try:
        done = tenantry(warm.env, "lint", "--repo", str(EXAMPLE))
        assert warm.process.wait(timeout=30) == 0
    finally:
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert done.returncode == 0, done.stderr  # run in its own process instead
    assert warm.served() == []
    assert f"refused: {module} changed since it was imported, stopping" in warm.log.read_text()


def test_it_ends_with_what_it_was_started_for_and_a_planted_socket_is_ignored(
    warm: Warm,
) -> None:
    warm.alive.rmdir()
    assert warm.process.wait(timeout=30) == 0
    directory = warm.state / "warm"
    assert not (directory / "cli.sock").exists() and not (directory / "cli.pid").exists()

    # Not a socket this user made: the command runs in its own process.
    (directory / "cli.sock").write_text("not a socket")
    with contextlib.suppress(FileNotFoundError):
        done = tenantry(warm.env, "lint", "--repo", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert directory.stat().st_mode & 0o777 == 0o700
