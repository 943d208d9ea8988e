"""A warm process for the commands people run again and again while they work:
`tenantry verify`, `lint` and `render`.

Starting Python and importing what those commands need (pydantic and the spec models,
lightkube, httpx, typer) takes 0.5 to 0.7 s: a fifth of a warm `tenantry verify`, most of
a `tenantry lint`. So after a verification on the warm local cluster, `tenantry verify`
leaves a *warm process* behind: it has imported all of that and waits on a Unix socket
in the state directory. The next such command hands it its arguments, working
directory, environment and its three standard streams (the file descriptors
themselves); the warm process forks a child that runs the command exactly as the
command's own process would have: same code, same output on the same terminal or pipe,
same files, same exit status. The command's process forwards Ctrl-C and termination
to the child and exits with its status.

Who may use it, and when it refuses (the command then simply runs in its own process):
- only the same user: the socket is 0600 in a 0700 directory, and the warm process
  checks the caller's uid (SO_PEERCRED) while the caller checks the socket's owner;
- only the same Python and the same Tenantry (interpreter and package paths);
- only while no module it imported has changed on disk: after an upgrade or an edit it
  refuses and exits, and the next verification starts a new one.

It exits on its own after 15 idle minutes, or within a second once the cluster it was
started for is deleted (`tenantry down`, `tenantry cluster delete verify`).
``TENANTRY_WARM=0`` turns it off.

This module imports only the standard library and `tenantry.paths` at load: the
command's process must not pay for the imports it is trying to avoid.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import tenantry
from tenantry import paths
from tenantry.cli import argv as arguments

SERVED = frozenset({"verify", "lint", "render"})
ENV = "TENANTRY_WARM"
IDLE_S = 15 * 60
_REQUEST_LIMIT = 1 << 20
_TICK_S = 1.0
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# What a verification imports on first use rather than at load (the HTTP/2 and TLS
# stack of the first API connection, the first impersonated client's resources): found
# by diffing sys.modules around one verify. Only a hint: a name that no longer exists
# is skipped, and anything missed is imported by the child as it would be anyway.
_FIRST_USE = (
    "anyio", "anyio.streams.tls", "anyio.to_thread", "encodings.idna", "h11", "h2.connection",
    "hpack", "hyperframe", "httpcore2", "truststore", "lightkube.resources.policy_v1",
    "pydantic.type_adapter", "rich._emoji_codes", "typer._click.decorators",
)  # fmt: skip


def directory() -> Path:
    return paths.state_dir() / "warm"


def socket_path() -> Path:
    return directory() / "cli.sock"


def pid_path() -> Path:
    return directory() / "cli.pid"


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0"


# The command's side.


def run(argv: list[str]) -> int | None:
    """Run ``argv`` in the warm process and return its exit status; None when there is
    no warm process or it refuses (then the caller runs the command itself)."""
    if not enabled():
        return None
    try:
        sock = _connect()
    except OSError:
        return None
    if sock is None:
        return None
    with sock:
        request = {
            "argv": argv,
            "cwd": str(Path.cwd()),
            "env": dict(os.environ),
            "python": sys.executable,
            "package": _package(),
            "streams": [_encoding(sys.stdin), _encoding(sys.stdout), _encoding(sys.stderr)],
        }
        try:
            socket.send_fds(sock, [b"F"], [0, 1, 2])
            sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError:
            return None
        with sock.makefile("rb") as reader:
            started = _message(reader)
            if started is None or "pid" not in started:
                return None  # refused (or gone before it began): nothing ran
            child = int(started["pid"])
            # What would have reached the command reaches it (an ignored signal stays ignored:
            # a background job's Ctrl-C, nohup's hangup).
            previous = {sig: signal.signal(sig, _forward_to(child)) for sig in _FORWARDED
                        if signal.getsignal(sig) != signal.SIG_IGN}  # fmt: skip
            try:
                finished = _message(reader)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
    if finished is None or "exit" not in finished:
        sys.stderr.write(
            f"tenantry: the warm process running this command (pid {child}) ended without "
            f"an exit status; run it again, or with {ENV}=0 to run it in its own process\n"
        )
        return 1
    return int(finished["exit"])


def _connect() -> socket.socket | None:
    path = socket_path()
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return None
    # Only a socket this user made: not a symlink, not another user's.
    if not stat.S_ISSOCK(found.st_mode) or found.st_uid != os.getuid():
        return None
    for fd in (0, 1, 2):
        os.fstat(fd)  # a closed standard stream cannot be handed over (OSError)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    return sock


def _package() -> str:
    return os.path.realpath(tenantry.__file__)


def _encoding(stream: Any) -> list[str]:
    return [getattr(stream, "encoding", None) or "utf-8",
            getattr(stream, "errors", None) or "strict"]  # fmt: skip


def _forward_to(child: int) -> Any:
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    return forward


def _message(reader: io.BufferedReader) -> dict[str, Any] | None:
    line = reader.readline(_REQUEST_LIMIT)
    if not line.endswith(b"\n"):
        return None
    try:
        decoded = json.loads(line)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


# Starting one.


def running() -> int | None:
    """The warm process's pid, if one is running for this state directory."""
    try:
        pid = int(pid_path().read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"tenantry.cli.warm" in cmdline and socket_path().exists() else None


def start(*, while_exists: Path) -> int | None:
    """Start a warm process that lives while ``while_exists`` does; its pid, or None
    when one already runs or warm processes are turned off."""
    if not enabled() or running() is not None:
        return None
    directory().mkdir(parents=True, exist_ok=True, mode=0o700)
    log = (directory() / "cli.log").open("ab")
    with log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tenantry.cli.warm", "--while-exists", str(while_exists)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            cwd=directory(),  # not the caller's: it may be deleted while this lives on
        )  # fmt: skip
    return proc.pid


# The warm process's side.


def serve(*, while_exists: Path, idle_s: float = IDLE_S) -> None:
    """Import what the served commands need, then answer until idle, replaced, or
    ``while_exists`` is gone."""
    from tenantry.cli import app

    app.build(app.modules_for("verify"))  # the served commands' module and its imports
    for name in _FIRST_USE:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    loaded = _fingerprint()
    # What the imports made lives as long as the process: out of the collector's sight,
    # a child's full collections scan only its own objects (50-80 ms less each), and
    # its pages stay shared with this process.
    gc.freeze()
    home = directory()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    home.chmod(0o700)
    path = socket_path()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = home / f".cli.sock.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        staging.unlink()
    previous_umask = os.umask(0o077)
    try:
        listener.bind(str(staging))
    finally:
        os.umask(previous_umask)
    listener.listen(16)
    listener.settimeout(_TICK_S)
    staging.replace(path)  # a newer warm process replaces an older one's socket
    ours = path.stat().st_ino
    pid_path().write_text(f"{os.getpid()}\n")
    _log(f"pid {os.getpid()} serves {', '.join(sorted(SERVED))} while {while_exists} exists")
    last_used = time.monotonic()
    try:
        while while_exists.exists() and time.monotonic() - last_used < idle_s:
            if _inode(path) != ours:
                return
            _reap()
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            last_used = time.monotonic()
            if not _handle(conn, listener, loaded):
                return
    finally:
        listener.close()
        if _inode(path) == ours:
            path.unlink()
            with contextlib.suppress(FileNotFoundError):
                pid_path().unlink()


def _fingerprint() -> dict[str, int]:
    """Every imported module's file and when it last changed."""
    found = {}
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file:
            found[file] = _mtime(file)
    return found


def _mtime(file: str) -> int:
    try:
        return Path(file).stat().st_mtime_ns
    except OSError:
        return -1


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] != 0:
            pass


def _stale(loaded: dict[str, int]) -> str | None:
    changed = [file for file, mtime in loaded.items() if _mtime(file) != mtime]
    return f"{changed[0]} changed since it was imported" if changed else None


def _handle(conn: socket.socket, listener: socket.socket, loaded: dict[str, int]) -> bool:
    """Answer one command; False when this warm process must stop serving."""
    fds: list[int] = []
    with conn:
        try:
            uid = struct.unpack("3i", conn.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]  # fmt: skip
            if uid != os.getuid():
                return True
            conn.settimeout(5.0)
            _, fds, _, _ = socket.recv_fds(conn, 1, 3)
            request = _message(conn.makefile("rb"))
        except OSError:
            request = None
        if request is None or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            return True
        stale = _stale(loaded)
        other = (request.get("python"), request.get("package")) != (sys.executable, _package())
        if stale or other:
            refusal = stale or "another Python or another Tenantry"
            _log(f"refused: {refusal}" + (", stopping" if stale else ""))
            with contextlib.suppress(OSError):
                _send(conn, {"refused": refusal})
            for fd in fds:
                os.close(fd)
            return not stale
        child = os.fork()
        if child == 0:
            _run_child(conn, listener, fds, request)
        for fd in fds:
            os.close(fd)
    command = arguments.command_of(arguments.hoist_output_option(list(request["argv"])))
    _log(f"pid {child}: tenantry {command}")  # the command only: arguments may be private
    return True


def _log(line: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}", flush=True)


def _run_child(
    conn: socket.socket, listener: socket.socket, fds: list[int], request: dict[str, Any]
) -> None:
    """In the forked child: become the command's process, run it, report its status.
    Never returns (the warm process's own stack must not unwind here)."""
    code = 1
    finishing = threading.Event()
    try:
        listener.close()
        conn.settimeout(None)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        time.tzset()  # the caller's TZ, for the times it prints
        sys.argv = ["tenantry", *request["argv"]]
        # As in a new Python process, whatever the warm process inherited.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN if sig == signal.SIGPIPE else signal.SIG_DFL)
        _bind_streams(request["streams"])
        _send(conn, {"pid": os.getpid()})
        threading.Thread(target=_watch, args=(conn, finishing), daemon=True).start()
        code = _main()
    except BaseException:  # the child must always report and exit
        import traceback

        traceback.print_exc()
    finally:
        finishing.set()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        with contextlib.suppress(OSError):
            _send(conn, {"exit": code})
        os._exit(code)


def _bind_streams(encodings: list[list[str]]) -> None:
    """Standard streams on the caller's descriptors, buffered as Python buffers its own:
    stdout by line on a terminal, else in blocks; stderr by line."""
    (in_enc, in_err), (out_enc, out_err), (err_enc, err_err) = encodings
    sys.stdin = open(0, encoding=in_enc, errors=in_err, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1,  # noqa: SIM115
                      encoding=out_enc, errors=out_err, closefd=False)  # fmt: skip
    sys.stderr = open(2, "w", buffering=1, encoding=err_enc, errors=err_err,  # noqa: SIM115
                      closefd=False)  # fmt: skip
    from tenantry.cli import output

    output.bind_streams()


def _main() -> int:
    from tenantry.cli import app

    try:
        app.main()
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        sys.stderr.write(f"{e.code}\n")
        return 1
    return 0


def _watch(conn: socket.socket, finishing: threading.Event) -> None:
    """Interrupt the command when its process is gone (killed, its terminal closed), as
    the end of that process would have ended it."""
    with contextlib.suppress(OSError):
        conn.recv(1)
    if not finishing.is_set():
        os.kill(os.getpid(), signal.SIGINT)


def _cli() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tenantry.cli.warm", description=__doc__)
    parser.add_argument("--while-exists", type=Path, required=True)
    parser.add_argument("--idle-s", type=float, default=IDLE_S)
    args = parser.parse_args()
    serve(while_exists=args.while_exists, idle_s=args.idle_s)


if __name__ == "__main__":
    _cli()
