"""Helm's Go SDK in one long-lived helper process (``tenantry-helmd``, built from the
pinned helm module like the helm CLI), for callers that run many releases: the deployer.

A helm CLI run pays for its process, the kubeconfig and API discovery every time; the
helper keeps one client per cluster, namespace and identity and runs several releases at
once, with the CLI's actions and defaults (`helm upgrade --install --wait
--rollback-on-failure`). Requests and answers are JSON lines on its standard input and
output (see the helper's source, ``tools/go/helm/helmd``). Errors are `HelmError`s worded
as the CLI words them, so callers read them the same way.

Like the CLI run it replaces, the helper dies with the process that started it
(``setpriv --pdeathsig``): a worker killed mid-deploy leaves no helm running on unowned.
The kernel sends that signal when the *thread* that started the child ends, so the helper
is always started by a thread of its own that lives as long as this object, never by
whichever worker thread happened to need it first.
It is started on first use, and again after it exited; after ``IDLE_S`` with nothing to
do it is ended (so a caller that never says `close` leaves nothing running for long).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

from tenantry import errors
from tenantry.helm import _POLL_S, _SETPRIV, Release, Target
from tenantry.tools import install

BINARY = "tenantry-helmd"
# A helper with nothing in flight for this long is ended (started again when needed).
IDLE_S = 30.0

_log = logging.getLogger(__name__)


class Helmd:
    """One helper process, shared by the threads of one caller."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._pending: dict[int, Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._used = time.monotonic()
        self._spawns: queue.SimpleQueue[Future[subprocess.Popen[str]]] | None = None

    def _spawner(self, spawns: queue.SimpleQueue[Future[subprocess.Popen[str]]]) -> None:
        """Start each helper asked for: from this thread, which never ends (see above)."""
        while True:
            future = spawns.get()
            argv = [str(install.binary(BINARY))]
            if _SETPRIV is not None:
                argv = [_SETPRIV, "--pdeathsig", "KILL", *argv]
            try:
                future.set_result(subprocess.Popen(
                    argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True, bufsize=1,
                ))  # fmt: skip
            except Exception as e:  # the caller raises it
                future.set_exception(e)

    @property
    def pid(self) -> int | None:
        """The helper's pid while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _running(self) -> subprocess.Popen[str]:
        """The helper, started if it is not running. Called with the lock held."""
        if self._proc is not None:
            if self._proc.poll() is None:
                return self._proc
            assert self._proc.stdin is not None
            with contextlib.suppress(OSError):
                self._proc.stdin.close()  # it exited: its readers close the rest
        if self._spawns is None:  # the first helper: its parent thread too
            self._spawns = queue.SimpleQueue()
            threading.Thread(target=self._spawner, args=(self._spawns,), daemon=True,
                             name="helmd-parent").start()  # fmt: skip
        spawned: Future[subprocess.Popen[str]] = Future()
        self._spawns.put(spawned)
        proc = spawned.result()
        assert proc.stdout is not None and proc.stderr is not None
        threading.Thread(target=self._read, args=(proc,), daemon=True, name="helmd").start()
        threading.Thread(target=_drain, args=(proc.stderr,), daemon=True).start()
        threading.Thread(target=self._end_when_idle, args=(proc,), daemon=True).start()
        self._proc = proc
        return proc

    def _end_when_idle(self, proc: subprocess.Popen[str]) -> None:
        """Close the helper's input once it has had nothing to do for ``IDLE_S``: under the
        lock, so no request can be sent to a helper that is ending."""
        while proc.poll() is None:
            time.sleep(min(IDLE_S, 5.0))
            with self._lock:
                if self._proc is not proc:
                    return
                if not self._pending and time.monotonic() - self._used > IDLE_S:
                    self._proc = None
                    assert proc.stdin is not None
                    with contextlib.suppress(OSError):
                        proc.stdin.close()
                    return

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                answer = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                future = self._pending.pop(int(answer.get("id", 0)), None)
            if future is not None:
                future.set_result(answer)
        proc.stdout.close()
        proc.wait()
        with self._lock:  # it exited: nothing in flight will be answered
            if self._proc is proc:
                lost, self._pending = self._pending, {}
            else:
                lost = {}
        for future in lost.values():
            future.set_result({"error": f"{BINARY} exited with code {proc.returncode}"})

    def _send(self, request: dict[str, Any]) -> Future[dict[str, Any]] | None:
        """Send ``request``; the future of its answer (None for a cancel, which has none)."""
        future: Future[dict[str, Any]] | None = None
        with self._lock:
            proc = self._running()
            self._used = time.monotonic()
            if request["op"] != "cancel":
                request["id"] = next(self._ids)
                future = Future()
                self._pending[request["id"]] = future
            assert proc.stdin is not None
            try:
                proc.stdin.write(json.dumps(request) + "\n")
                proc.stdin.flush()
            except OSError as e:
                if future is not None:
                    self._pending.pop(request["id"], None)
                raise errors.HelmError(f"{BINARY} does not take requests: {e}") from e
        return future

    def upgrade_install(
        self,
        target: Target,
        *,
        release: str,
        chart: str | Path,
        values: Mapping[str, Any] | None = None,
        wait: bool = True,
        rollback_on_failure: bool = False,
        timeout_s: float = 300.0,
        abort_if: Callable[[], str | None] | None = None,
    ) -> Release:
        """`tenantry.helm.upgrade_install`, through the helper."""
        action = f"helm upgrade --install {release} in {target.namespace}"
        identity = target.identity
        future = self._send({
            "op": "upgrade", "kubeconfig": str(target.kubeconfig), "context": target.context or "",
            "namespace": target.namespace, "asUser": identity.user if identity else "",
            "asGroups": list(identity.groups) if identity else [], "release": release,
            "chart": str(chart), "values": dict(values or {}), "wait": wait,
            "timeoutS": timeout_s, "rollbackOnFailure": rollback_on_failure,
        })  # fmt: skip
        assert future is not None
        deadline = time.monotonic() + timeout_s + 30
        while True:
            with contextlib.suppress(TimeoutError):
                answer = future.result(timeout=_POLL_S)
                break
            reason = abort_if() if abort_if else None
            if reason or time.monotonic() > deadline:
                self._cancel(future)
                if reason:
                    raise errors.HelmError(f"{action} stopped: {reason}", stderr=reason)
                raise errors.HelmError(
                    f"{action} did not finish in {timeout_s:.0f}s",
                    fix="raise --timeout or check what the release is waiting for",
                )
        if "error" in answer:
            detail = f"Error: {answer['error']}"
            raise errors.HelmError(f"{action} failed: {detail}", stderr=detail)
        return Release.from_json(answer["release"])

    def _cancel(self, future: Future[dict[str, Any]]) -> None:
        """Stop the request and wait for its end (the helper answers it with an error)."""
        with self._lock:
            ids = [i for i, f in self._pending.items() if f is future]
        for request_id in ids:
            with contextlib.suppress(errors.HelmError):
                self._send({"op": "cancel", "target": request_id})
        with contextlib.suppress(TimeoutError):
            future.result(timeout=60)

    def close(self) -> None:
        """Let the requests in flight finish, then end the helper."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _drain(stream: IO[str]) -> None:
    """Log what the helper says (helm's warnings); read so it never blocks on the pipe."""
    with stream:
        for line in stream:
            _log.warning("%s: %s", BINARY, line.rstrip())
