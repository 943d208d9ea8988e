"""The CLI as the server's client: where the server is, the person's token, and calls.

The server URL and token come from, in order: ``TENANTRY_SERVER`` / ``TENANTRY_TOKEN``;
the client config `tenantry login` writes (``$XDG_CONFIG_HOME/tenantry/client.yaml``,
mode 0600); for the URL alone, the local platform's server when `tenantry up` runs one.
The token is never printed, logged or passed on a command line.

The server's refusals become `TenantryError`s carrying its message and fix, so every
command reports them the same way (one line, a ``fix:`` line, exit code 1).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import yaml

from tenantry import errors
from tenantry.local import server as local_server


class ServerError(errors.TenantryError):
    """The server refused a call or could not be reached; the message is its own."""

    def __init__(self, message: str, *, status: int = 0, fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.status = status


def config_file() -> Path:
    """The client config: ``$XDG_CONFIG_HOME/tenantry/client.yaml``."""
    base = os.environ.get("XDG_CONFIG_HOME")
    return (Path(base) if base else Path.home() / ".config") / "tenantry" / "client.yaml"


def _stored() -> dict[str, str]:
    path = config_file()
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        return {}
    except (OSError, yaml.YAMLError) as e:
        raise errors.TenantryError(f"cannot read {path}: {e}",
                                   fix="run `tenantry login` again") from e  # fmt: skip
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise errors.TenantryError(
            f"{path} holds a token and may be read by others",
            fix=f"chmod 600 {path} (or run `tenantry login` again)",
        )
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def store(server: str, token: str) -> Path:
    """Write the client config with mode 0600 (created so, never widened after)."""
    path = config_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump({"server": server, "token": token}, out)
    temporary.replace(path)
    return path


def forget() -> bool:
    """Remove the client config; False if there was none."""
    path = config_file()
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


def server_url() -> str | None:
    """Where the server is, or None if nothing says."""
    url = os.environ.get("TENANTRY_SERVER") or _stored().get("server")
    return url.rstrip("/") if url else local_server.url()


@dataclass(frozen=True)
class Client:
    """Calls to one server with one person's token."""

    url: str
    token: str

    @classmethod
    def from_environment(cls) -> Client:
        """The server and token from the environment, the config, or the local platform."""
        url = server_url()
        if url is None:
            raise errors.TenantryError(
                "no Tenantry server is configured",
                fix="run `tenantry login --server URL` (or set TENANTRY_SERVER), "
                "or start the local platform with `tenantry up`",
            )
        token = os.environ.get("TENANTRY_TOKEN") or _stored().get("token")
        if not token:
            raise errors.TenantryError(
                f"no token for {url}",
                fix="run `tenantry login` (token on stdin), or set TENANTRY_TOKEN",
            )
        return cls(url, token)

    def _http(self, timeout_s: float = 60.0) -> httpx2.Client:
        return httpx2.Client(
            base_url=self.url, timeout=timeout_s, trust_env=False,
            headers={"Authorization": f"Bearer {self.token}"},
        )  # fmt: skip

    def call(self, method: str, path: str, *, body: Any = None, **params: Any) -> Any:
        """One API call; the decoded JSON answer, or `ServerError` with the server's words."""
        query = {k: v for k, v in params.items() if v is not None}
        try:
            with self._http() as http:
                response = http.request(method, f"/api/v1{path}", json=body, params=query)
        except httpx2.HTTPError as e:
            raise ServerError(
                f"the Tenantry server at {self.url} did not answer: {e}",
                fix="check the URL (`tenantry status`) and that it runs",
            ) from e
        if response.status_code >= 400:
            raise _refusal(response)
        return response.json()

    def follow(self, operation: int) -> Iterator[tuple[str, Any]]:
        """The operation's server-sent events: ("progress", line) … then ("end", view)."""
        try:
            with (
                self._http(timeout_s=3600) as http,
                http.stream("GET", f"/api/v1/operations/{operation}/events") as response,
            ):
                if response.status_code >= 400:
                    response.read()
                    raise _refusal(response)
                event = ""
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        yield event, json.loads(line.removeprefix("data: "))
        except httpx2.HTTPError as e:
            raise ServerError(f"lost the Tenantry server at {self.url}: {e}",
                              fix=f"the work goes on; `tenantry operation {operation}` "
                              "shows it") from e  # fmt: skip


def _refusal(response: httpx2.Response) -> ServerError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    status = response.status_code
    if isinstance(body, dict) and isinstance(body.get("detail"), list):  # 422 from FastAPI
        fields = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in body["detail"]
        )
        return ServerError(f"the server refused the request: {fields}", status=status)
    message = str(body.get("error") if isinstance(body, dict) else "") or response.reason_phrase
    fix = body.get("fix") if isinstance(body, dict) else None
    if status == 401:
        fix = fix or "run `tenantry login` with a current token"
    return ServerError(f"{message} (HTTP {status})", status=status, fix=fix)
