"""A throwaway PostgreSQL server on loopback, from Debian's packages (tests and benches).

The ledger runs on PostgreSQL when several deployer replicas share it; this starts
a real one in a directory of its own (``initdb`` + ``pg_ctl``), as the ``postgres``
user when run as root (PostgreSQL refuses to run as root), and stops it by its
data directory's pid file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tenantry import errors


def bin_dir() -> Path:
    """The newest installed PostgreSQL's binaries."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise errors.ToolMissingError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)",
            fix="apt-get install -y postgresql (./run test does this)",
        )
    return found[-1].parent


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


# initdb and pg_ctl -w take seconds; this is generous for a loaded CI machine, and
# bounded so a server that never comes up fails the run instead of hanging it.
PG_TIMEOUT_S = 120.0


def _run(*argv: str) -> None:
    """Run a PostgreSQL program; a `TenantryError` naming it if it fails or hangs."""
    name = Path(argv[0]).name
    try:
        done = subprocess.run(
            _as_postgres(list(argv)),
            capture_output=True,
            text=True,
            timeout=PG_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise errors.TenantryError(
            f"{name} did not finish within {PG_TIMEOUT_S:g} s: {' '.join(argv)}",
            fix="see the server log in the data directory; check the machine is not out of "
            "memory or disk",
        ) from e
    except OSError as e:
        raise errors.TenantryError(f"{name} could not run: {e}") from e
    if done.returncode != 0:
        raise errors.TenantryError(f"{name} failed: {done.stderr.strip() or done.stdout}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Instance:
    """A running throwaway PostgreSQL server: its URL, and how to stop and start it again
    (fault tests restart it under the workers using it)."""

    url: str
    data: Path
    port: int

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m fast``, or ``immediate``: no clean shutdown,
        as after a crash) and wait until it has exited. Its data stays."""
        _run(str(bin_dir() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def start(self) -> None:
        """Start the stopped server again on the same port, with the same data."""
        _run(
            str(bin_dir() / "pg_ctl"), "-D", str(self.data), "-l", str(self.data / "server.log"),
            "-w", "-o", f"-h 127.0.0.1 -p {self.port} -k {self.data}", "start",
        )  # fmt: skip


@contextlib.contextmanager
def instance() -> Iterator[Instance]:
    """Run PostgreSQL in a fresh directory for the duration; yields the running `Instance`.

    The directory is made here, not under the caller's temporary directory, because
    the ``postgres`` user must be able to reach it (pytest's are private to root).
    """
    binaries = bin_dir()
    workdir = Path(tempfile.mkdtemp(prefix="tenantry-postgres-"))
    data = workdir / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        shutil.chown(data, "postgres")
    port = _free_port()

    _run(str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    running = Instance(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", data, port)
    running.start()
    try:
        yield running
    finally:
        # Stopped already (a test that stopped it failed before starting it again) is fine.
        if (data / "postmaster.pid").exists():
            running.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def server() -> Iterator[str]:
    """Run PostgreSQL in a fresh directory for the duration; yields its SQLAlchemy URL."""
    with instance() as running:
        yield running.url
