"""Server-side apply of many objects to one cluster, on a bare HTTP/1.1 connection.

Onboarding a thousand tenants into three clusters is tens of thousands of applies on
the same two cores that run the three API servers. Through lightkube and httpx one
apply costs this process about 1.2 ms of CPU (URL parsing and re-parsing, header
models, h11 events, the response decoded into a model nobody reads); written as
bytes on a kept-alive socket and answered by reading just the status line, headers
and body it costs about 0.15 ms. The API server still does the same work, so what
it decides (RBAC, admission, validation, ownership) is unchanged: same endpoint,
same ``application/apply-patch+yaml`` body, field manager ``tenantry``, ``force``.

Only what a bulk apply needs: apply, delete, and the kubeconfigs this can speak for
(a client certificate and/or a static token). For anything else (exec plugins, token
files, auth providers) `open_writer` hands back an ordinary `Kube`, which has the same
two methods. Not thread-safe: one `Applier` per thread.
"""

from __future__ import annotations

import functools
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import msgspec
from lightkube import codecs
from lightkube.config.client_adapter import verify_cluster
from lightkube.core import resource as lk_resource
from lightkube.core.exceptions import LoadResourceError

from tenantry import errors
from tenantry.kube.client import FIELD_MANAGER, Kube, describe, from_status, single_config

_APPLY_QUERY = f"?fieldManager={FIELD_MANAGER}&force=true"
# Responses bigger than this are not expected (the API server echoes one object).
_MAX_RESPONSE = 64 * 1024 * 1024
_encode = msgspec.json.Encoder().encode


class Writer(Protocol):
    """What a bulk apply needs of a connection; `Applier` and `Kube` both have it."""

    def apply(self, manifest: Mapping[str, Any]) -> object:
        """Server-side apply ``manifest`` (field manager ``tenantry``, force)."""
        ...

    def delete(
        self, kind: type[lk_resource.Resource], name: str, *, namespace: str | None = None
    ) -> bool:
        """Delete one object; False if it was already gone."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach one API server: address, TLS, and extra header lines."""

    host: str
    port: int
    base_path: str
    ssl_context: ssl.SSLContext | None
    # Rendered once: ``Host`` and, for a token, ``Authorization`` (so kept out of repr).
    header_lines: bytes = field(repr=False)

    @classmethod
    def of(cls, kubeconfig: Path, context: str | None = None) -> Endpoint | None:
        """The endpoint of a kubeconfig's context, or None when it authenticates in a way
        only lightkube speaks (an exec plugin, a token file, an auth provider, a password)."""
        config = single_config(kubeconfig, context)
        user = config.user
        if user is None or user.exec or user.token_file or user.auth_provider or user.username:
            return None
        url = urlsplit(config.cluster.server)
        if url.scheme not in ("http", "https") or not url.hostname:
            return None
        tls = url.scheme == "https"
        port = url.port or (443 if tls else 80)
        host_header = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
        lines = f"Host: {host_header}:{port}\r\nUser-Agent: tenantry\r\n"
        if user.token:
            lines += f"Authorization: Bearer {user.token}\r\n"
        context_ = verify_cluster(config.cluster, user, config.abs_file, trust_env=False)
        return cls(
            host=url.hostname,
            port=port,
            base_path=url.path.rstrip("/"),
            ssl_context=context_ if tls else None,
            header_lines=lines.encode(),
        )


@dataclass(frozen=True)
class Response:
    """One HTTP response: status code, body, and whether the server closes after it."""

    status: int
    body: bytes
    close: bool


class ResponseReader:
    """Reads HTTP/1.1 responses from a byte source (``recv``), one after another.

    Pure apart from ``recv``: bodies delimited by ``Content-Length``, by chunked
    transfer encoding, or by the end of the connection.
    """

    def __init__(self, recv: Callable[[int], bytes]) -> None:
        self._recv = recv
        self._buffer = bytearray()
        self.received_any = False

    def _fill(self) -> bool:
        data = self._recv(65536)
        if not data:
            return False
        self.received_any = True
        self._buffer += data
        if len(self._buffer) > _MAX_RESPONSE:
            raise ValueError("response too large")
        return True

    def _until(self, marker: bytes) -> bytes:
        start = 0
        while True:
            end = self._buffer.find(marker, start)
            if end >= 0:
                found = bytes(self._buffer[:end])
                del self._buffer[: end + len(marker)]
                return found
            start = max(0, len(self._buffer) - len(marker) + 1)
            if not self._fill():
                raise ConnectionError("connection closed mid-response")

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not self._fill():
                raise ConnectionError("connection closed mid-response")
        found = bytes(self._buffer[:size])
        del self._buffer[:size]
        return found

    def _to_end(self) -> bytes:
        while self._fill():
            pass
        found = bytes(self._buffer)
        self._buffer.clear()
        return found

    def _chunked(self) -> bytes:
        body = bytearray()
        while True:
            size = int(self._until(b"\r\n").split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self._until(b"\r\n"):  # trailers, then the empty line
                    pass
                return bytes(body)
            body += self._exactly(size)
            self._exactly(2)  # the CRLF after each chunk

    def read(self) -> Response:
        """The next whole response (informational 1xx responses are skipped)."""
        while True:
            head = self._until(b"\r\n\r\n").decode("latin-1")
            status_line, _, header_block = head.partition("\r\n")
            version, _, rest = status_line.partition(" ")
            if not version.startswith("HTTP/1."):
                raise ValueError(f"not an HTTP/1.x response: {status_line[:80]!r}")
            status = int(rest[:3])
            headers: dict[str, str] = {}
            for line in header_block.split("\r\n"):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if 100 <= status < 200:
                continue
            close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
            if status in (204, 304):
                body = b""
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                body = self._chunked()
            elif "content-length" in headers:
                body = self._exactly(int(headers["content-length"]))
            else:
                body, close = self._to_end(), True
            return Response(status, body, close)


class _Connection:
    """One kept-alive HTTP/1.1 connection, reopened when the server has closed it."""

    def __init__(self, endpoint: Endpoint, timeout_s: float) -> None:
        self._endpoint = endpoint
        self._timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._reader: ResponseReader | None = None
        self._served = 0

    def _open(self) -> tuple[socket.socket, ResponseReader]:
        endpoint = self._endpoint
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=self._timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if endpoint.ssl_context is not None:
            sock = endpoint.ssl_context.wrap_socket(sock, server_hostname=endpoint.host)
        self._sock, self._reader, self._served = sock, ResponseReader(sock.recv), 0
        return sock, self._reader

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = self._reader = None

    def request(self, method: str, path: str, body: bytes, content_type: str) -> Response:
        head = (
            f"{method} {self._endpoint.base_path}{path} HTTP/1.1\r\n"
            f"Content-Type: {content_type}\r\nAccept: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
        ).encode()
        message = head + self._endpoint.header_lines + b"\r\n" + body
        for attempt in (1, 2):
            if self._sock is None or self._reader is None:
                sock, reader = self._open()
            else:
                sock, reader = self._sock, self._reader
            reused = self._served > 0
            reader.received_any = False
            try:
                sock.sendall(message)
                response = reader.read()
            except (OSError, ConnectionError, ValueError):
                self.close()
                # A kept-alive connection the server had already closed fails before
                # any answer: send again on a new one (apply and delete are idempotent).
                if attempt == 1 and reused and not reader.received_any:
                    continue
                raise
            self._served += 1
            if response.close:
                self.close()
            return response
        raise AssertionError("unreachable")  # the loop returns or raises


@functools.cache
def _path(api_version: str, kind: str) -> tuple[str, bool]:
    """The collection path of a kind (without namespace), and whether it is namespaced."""
    typed = codecs.resource_registry.load(api_version, kind)
    info = lk_resource.api_info(typed)
    return _collection(info, namespaced=issubclass(typed, lk_resource.NamespacedResource))


def _collection(info: lk_resource.ApiInfo, *, namespaced: bool) -> tuple[str, bool]:
    group, version = info.resource.group, info.resource.version
    prefix = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    return f"{prefix}/{{ns}}{info.plural}", namespaced


def _object_path(collection: str, namespaced: bool, name: str, namespace: str | None) -> str:
    where = f"namespaces/{quote(namespace or 'default', safe='')}/" if namespaced else ""
    return collection.format(ns=where) + "/" + quote(name, safe="")


def _error(response: Response, action: str) -> errors.KubeError:
    try:
        status = msgspec.json.decode(response.body)
    except msgspec.DecodeError:
        status = {}
    if not isinstance(status, dict):
        status = {}
    return from_status(
        int(status.get("code") or response.status),
        str(status.get("reason") or ""),
        str(status.get("message") or response.body[:500].decode("utf-8", "replace")),
        action,
    )


class Applier:
    """Applies and deletes on one API server over one kept-alive connection."""

    def __init__(self, endpoint: Endpoint, *, timeout_s: float = 30.0) -> None:
        self._connection = _Connection(endpoint, timeout_s)

    def _send(
        self, method: str, path: str, body: bytes, content_type: str, action: str
    ) -> Response:
        try:
            return self._connection.request(method, path, body, content_type)
        except (OSError, ConnectionError, ValueError) as e:
            raise errors.KubeUnavailableError(
                f"{action}: the API server did not answer: {e}",
                fix="check that the cluster is running (`tenantry cluster list`)",
            ) from e

    def apply(self, manifest: Mapping[str, Any]) -> None:
        """Server-side apply ``manifest`` with field manager ``tenantry`` and force."""
        action = f"apply {describe(manifest)}"
        try:
            collection, namespaced = _path(str(manifest["apiVersion"]), str(manifest["kind"]))
            meta = manifest["metadata"]
            path = _object_path(collection, namespaced, str(meta["name"]), meta.get("namespace"))
        except (KeyError, AttributeError, TypeError, ValueError, LoadResourceError) as e:
            raise errors.InvalidError(
                f"{describe(manifest)}: unknown apiVersion/kind "
                f"{manifest.get('apiVersion')}/{manifest.get('kind')}, or no metadata.name",
                fix="check apiVersion and kind against `kubectl api-resources`",
            ) from e
        body = _encode(manifest)
        response = self._send(
            "PATCH", path + _APPLY_QUERY, body, "application/apply-patch+yaml", action
        )
        if response.status >= 300:
            raise _error(response, action)

    def delete(
        self, kind: type[lk_resource.Resource], name: str, *, namespace: str | None = None
    ) -> bool:
        """Delete one object; False if it was already gone."""
        action = f"delete {kind.__name__}/{name}"
        collection, namespaced = _collection(
            lk_resource.api_info(kind), namespaced=issubclass(kind, lk_resource.NamespacedResource)
        )
        path = _object_path(collection, namespaced, name, namespace)
        response = self._send("DELETE", path, b"", "application/json", action)
        if response.status == 404:
            return False
        if response.status >= 300:
            raise _error(response, action)
        return True

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()


def open_writer(kubeconfig: Path, context: str | None = None) -> Writer:
    """A connection for many applies: an `Applier` where the kubeconfig allows, else `Kube`."""
    endpoint = Endpoint.of(kubeconfig, context)
    if endpoint is None:
        return Kube.connect(kubeconfig, context=context)
    return Applier(endpoint)
