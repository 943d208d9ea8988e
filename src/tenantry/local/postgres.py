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


@contextlib.contextmanager
def server() -> Iterator[str]:
    """Run PostgreSQL in a fresh directory for the duration; yields its SQLAlchemy URL.

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
    _run(
        str(binaries / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w",
        "-o", f"-h 127.0.0.1 -p {port} -k {data}", "start",
    )  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        _run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(workdir, ignore_errors=True)
