"""A small demo application that stands in for a cluster's ingress on the local platform.

Pods in the local (kwok) clusters run no containers, so live traffic for a service
on a cluster is served by one of these processes instead: it answers ``GET /`` with
its version, ``/healthz`` for the router's health checks, and ``/metrics`` with the
request counter and latency histogram a real service exposes
(``http_requests_total``, ``http_request_duration_seconds``). Its version, error
rate and latency can be changed while it runs (``POST /admin`` with JSON
``{"version": "1.5.0", "error_rate": 0.2, "latency_ms": 50, "healthy": false}``), so
a test — or a newcomer — can make a canary good or bad.

Run: ``python -m tenantry.local.demoapp --port P --service S --cluster C --version V``.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class State:
    """What the app is now, and what it has served."""

    def __init__(self, service: str, cluster: str, version: str) -> None:
        self.service, self.cluster, self.version = service, cluster, version
        self.error_rate = 0.0
        self.latency_ms = 0.0
        self.healthy = True
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.buckets = [0] * len(BUCKETS)
        self.duration_sum = 0.0
        self.duration_count = 0

    def record(self, code: int, seconds: float) -> None:
        with self.lock:
            self.requests[str(code)] = self.requests.get(str(code), 0) + 1
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.buckets[i] += 1
            self.duration_sum += seconds
            self.duration_count += 1

    def metrics(self) -> str:
        labels = f'service="{self.service}",cluster="{self.cluster}",version="{self.version}"'
        lines = ["# TYPE http_requests_total counter"]
        with self.lock:
            for code, count in sorted(self.requests.items()):
                lines.append(f'http_requests_total{{{labels},code="{code}"}} {count}')
            lines.append("# TYPE http_request_duration_seconds histogram")
            for bound, count in zip(BUCKETS, self.buckets, strict=True):
                lines.append(
                    f'http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {count}'
                )
            lines.append(
                f'http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {self.duration_count}'
            )
            lines.append(f"http_request_duration_seconds_sum{{{labels}}} {self.duration_sum}")
            lines.append(f"http_request_duration_seconds_count{{{labels}}} {self.duration_count}")
        return "\n".join(lines) + "\n"


def _handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            return

        def _reply(self, code: int, body: str, content_type: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._reply(200 if state.healthy else 503, "ok" if state.healthy else "down")
            elif self.path == "/metrics":
                self._reply(200, state.metrics(), "text/plain; version=0.0.4")
            elif self.path == "/admin":
                self._reply(200, json.dumps(self._describe()), "application/json")
            else:
                started = time.monotonic()
                if state.latency_ms:
                    time.sleep(state.latency_ms / 1000)
                code = 500 if random.random() < state.error_rate else 200  # noqa: S311
                self._reply(code, f"{state.service} {state.version} on {state.cluster}\n")
                state.record(code, time.monotonic() - started)

        def do_POST(self) -> None:
            if self.path != "/admin":
                self._reply(404, "not found")
                return
            change = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            for key in ("version", "error_rate", "latency_ms", "healthy"):
                if key in change:
                    setattr(state, key, change[key])
            self._reply(200, json.dumps(self._describe()), "application/json")

        def _describe(self) -> dict[str, Any]:
            return {"service": state.service, "cluster": state.cluster,
                    "version": state.version, "error_rate": state.error_rate,
                    "latency_ms": state.latency_ms, "healthy": state.healthy}  # fmt: skip

    return Handler


def main() -> None:
    """Entry point of ``python -m tenantry.local.demoapp``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--version", required=True)
    args = parser.parse_args()
    state = State(args.service, args.cluster, args.version)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(state))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
