"""Local stand-ins for the external services alerts and logs go to, speaking their wire
formats: Slack incoming webhooks, the PagerDuty Events API v2, SMTP, and Splunk's HTTP
Event Collector (HEC).

They exist so the local platform and the tests can watch an alert or a log line arrive
at the exact endpoint a real deployment would use; they are never used for the systems
that can run here (Prometheus, Alertmanager, the collector). Everything received is
appended to ``<dir>/<kind>.jsonl`` and served back at ``GET /received/<kind>`` (and
counted at ``GET /count/<kind>``), so a restarted receiver still knows what arrived.

Run: ``python -m tenantry.local.receivers --dir D --http-port P --smtp-port S``.
"""

from __future__ import annotations

import argparse
import contextlib
import email
import email.policy
import gzip
import json
import signal
import socketserver
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

KINDS = ("slack", "pagerduty", "email", "hec")
PAGERDUTY_ACTIONS = ("trigger", "acknowledge", "resolve")
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")


class Store:
    """What arrived, one JSON line per message, per kind."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._counts = {kind: self._count_file(kind) for kind in KINDS}

    def _count_file(self, kind: str) -> int:
        path = self.directory / f"{kind}.jsonl"
        return path.read_bytes().count(b"\n") if path.exists() else 0

    def add(self, kind: str, records: list[dict[str, Any]]) -> None:
        """Append ``records`` (already received: they must not be lost)."""
        now = time.time()
        lines = "".join(json.dumps({"received": now, **r}) + "\n" for r in records)
        with self._lock, (self.directory / f"{kind}.jsonl").open("a") as out:
            out.write(lines)
            self._counts[kind] += len(records)

    def count(self, kind: str) -> int:
        """How many records of ``kind`` arrived (kept in memory: no file read)."""
        with self._lock:
            return self._counts[kind]

    def read(self, kind: str) -> list[dict[str, Any]]:
        """Every record of ``kind`` so far."""
        path = self.directory / f"{kind}.jsonl"
        with self._lock:
            text = path.read_text() if path.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line]


def hec_events(body: bytes) -> Iterator[dict[str, Any]]:
    """The events of a HEC request body: JSON objects one after another, not an array.

    >>> list(hec_events(b'{"event": "a"}{"event": "b"}'))
    [{'event': 'a'}, {'event': 'b'}]
    """
    text = body.decode()
    decoder = json.JSONDecoder()
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return
        event, position = decoder.raw_decode(text, position)
        if not isinstance(event, dict) or "event" not in event:
            raise ValueError("each HEC event must be an object with an 'event' field")
        yield event


def pagerduty_errors(event: Any) -> list[str]:
    """What the Events API v2 would reject in ``event`` (empty when it is valid)."""
    if not isinstance(event, dict):
        return ["Event object is invalid"]
    errors = []
    if not event.get("routing_key"):
        errors.append("'routing_key' is missing or blank")
    if event.get("event_action") not in PAGERDUTY_ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    if event.get("event_action") == "trigger":
        payload = event.get("payload") or {}
        for field in ("summary", "source"):
            if not payload.get(field):
                errors.append(f"'payload.{field}' is missing or blank")
        if payload.get("severity") not in PAGERDUTY_SEVERITIES:
            errors.append("'payload.severity' must be critical, error, warning or info")
    elif not event.get("dedup_key"):
        errors.append("'dedup_key' is required for acknowledge and resolve")
    return errors


class _Http(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests carry webhook paths and tokens: nothing to print

    def _reply(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            data = gzip.decompress(data)
        return data

    def do_GET(self) -> None:
        if self.path.startswith("/received/"):
            kind = self.path.removeprefix("/received/")
            if kind in KINDS:
                self._reply(200, self.server.store.read(kind))
                return
        if self.path.startswith("/count/") and self.path.removeprefix("/count/") in KINDS:
            self._reply(200, {"count": self.server.store.count(self.path.removeprefix("/count/"))})
            return
        if self.path.startswith("/services/collector/health"):
            self._reply(200, {"text": "HEC is healthy", "code": 17})
            return
        self._reply(404, {"message": "not found"})

    def do_POST(self) -> None:
        body = self._body()
        if self.path.startswith("/slack/"):
            self._slack(body)
        elif self.path == "/v2/enqueue":
            self._pagerduty(body)
        elif self.path.startswith("/services/collector"):
            self._hec(body)
        else:
            self._reply(404, {"message": "not found"})

    def _slack(self, body: bytes) -> None:
        # Slack answers a bad payload with 400 and a plain-text reason.
        try:
            message = json.loads(body)
        except ValueError:
            self._reply(400, "invalid_payload", "text/plain")
            return
        if not isinstance(message, dict) or not (message.get("text") or message.get("attachments")
                                                 or message.get("blocks")):  # fmt: skip
            self._reply(400, "no_text", "text/plain")
            return
        self.server.store.add("slack", [{"path": self.path, "message": message}])
        self._reply(200, "ok", "text/plain")

    def _pagerduty(self, body: bytes) -> None:
        try:
            event = json.loads(body)
        except ValueError:
            self._reply(400, {"status": "invalid event", "message": "Event object is invalid",
                              "errors": ["Invalid JSON"]})  # fmt: skip
            return
        problems = pagerduty_errors(event)
        if problems:
            self._reply(400, {"status": "invalid event", "message": "Event object is invalid",
                              "errors": problems})  # fmt: skip
            return
        dedup_key = event.get("dedup_key") or f"tenantry-{time.time_ns()}"
        self.server.store.add("pagerduty", [{"event": event}])
        self._reply(202, {"status": "success", "message": "Event processed",
                          "dedup_key": dedup_key})  # fmt: skip

    def _hec(self, body: bytes) -> None:
        token = self.headers.get("Authorization", "").removeprefix("Splunk ").strip()
        if not token:
            self._reply(401, {"text": "Token is required", "code": 2})
            return
        if self.server.hec_tokens and token not in self.server.hec_tokens:
            self._reply(403, {"text": "Invalid token", "code": 4})
            return
        try:
            events = list(hec_events(body))
        except ValueError:
            self._reply(400, {"text": "Invalid data format", "code": 6})
            return
        if not events:
            self._reply(400, {"text": "No data", "code": 5})
            return
        try:
            self.server.store.add("hec", events)
        except OSError:
            self._reply(503, {"text": "Server is busy", "code": 9})
            return
        self._reply(200, {"text": "Success", "code": 0})


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, store: Store, hec_tokens: frozenset[str]) -> None:
        super().__init__(("127.0.0.1", port), _Http)
        self.store = store
        self.hec_tokens = hec_tokens


class _Smtp(socketserver.StreamRequestHandler):
    """Enough of RFC 5321 for a mail client: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT."""

    server: _SmtpServer

    def _say(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self._say("220 tenantry-receivers ESMTP ready")
        sender, recipients = "", list[str]()
        while line := self.rfile.readline(65536):
            command = line.decode(errors="replace").rstrip("\r\n")
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self._say("250-tenantry-receivers")
                self._say("250-8BITMIME")
                self._say("250 SIZE 10485760")
            elif verb == "HELO":
                self._say("250 tenantry-receivers")
            elif verb == "MAIL":
                sender, recipients = _address(command), []
                self._say("250 OK")
            elif verb == "RCPT":
                recipients.append(_address(command))
                self._say("250 OK")
            elif verb == "DATA":
                if not recipients:
                    self._say("503 need RCPT before DATA")
                    continue
                self._say("354 end data with <CR><LF>.<CR><LF>")
                self._receive(sender, recipients)
                sender, recipients = "", []
                self._say("250 OK: queued")
            elif verb in ("RSET", "NOOP"):
                if verb == "RSET":
                    sender, recipients = "", []
                self._say("250 OK")
            elif verb == "QUIT":
                self._say("221 bye")
                return
            else:
                self._say("502 command not implemented")

    def _receive(self, sender: str, recipients: list[str]) -> None:
        lines = []
        while (line := self.rfile.readline(1 << 20)) not in (b".\r\n", b".\n", b""):
            lines.append(line[1:] if line.startswith(b"..") else line)  # undo dot-stuffing
        raw = b"".join(lines)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        body = message.get_body(("plain", "html"))
        self.server.store.add("email", [{
            "from": sender,
            "to": recipients,
            "subject": str(message.get("Subject", "")),
            "body": body.get_content() if body is not None else "",
        }])  # fmt: skip


def _address(command: str) -> str:
    _, _, rest = command.partition(":")
    return rest.strip().split(" ", 1)[0].strip("<>")


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, store: Store) -> None:
        super().__init__(("127.0.0.1", port), _Smtp)
        self.store = store


def serve(directory: Path, http_port: int, smtp_port: int, hec_tokens: frozenset[str]) -> None:
    """Serve until SIGTERM or SIGINT."""
    store = Store(directory)
    http = _HttpServer(http_port, store, hec_tokens)
    servers: list[socketserver.BaseServer] = [http]
    if smtp_port:
        servers.append(_SmtpServer(smtp_port, store))
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    for server in servers:
        with contextlib.suppress(OSError):
            server.shutdown()
            server.server_close()


def main() -> None:
    """Entry point of ``python -m tenantry.local.receivers``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="where received messages go")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--smtp-port", type=int, default=0, help="0: no SMTP server")
    parser.add_argument("--hec-token-file", type=Path, help="accepted HEC tokens, one per line")
    args = parser.parse_args()
    tokens: frozenset[str] = frozenset()
    if args.hec_token_file:
        tokens = frozenset(t for t in args.hec_token_file.read_text().split() if t)
    serve(args.dir, args.http_port, args.smtp_port, tokens)


if __name__ == "__main__":
    main()
