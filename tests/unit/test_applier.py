"""The bulk applier's pure parts: reading HTTP/1.1 responses, paths, kubeconfigs it speaks for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from lightkube.resources.core_v1 import ConfigMap, Namespace
from lightkube.resources.rbac_authorization_v1 import RoleBinding

from tenantry import errors
from tenantry.kube import applier


def source(*pieces: bytes) -> Callable[[int], bytes]:
    """A ``recv`` that hands out ``pieces`` one per call, then the end of the connection."""
    remaining = list(pieces)

    def recv(_size: int) -> bytes:
        return remaining.pop(0) if remaining else b""

    return recv


def test_reads_consecutive_responses_split_anywhere() -> None:
    stream = (
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n"
        b'{"a":1}'
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
    )
    # Every split point, down to one byte at a time.
    reader = applier.ResponseReader(source(*(stream[i : i + 1] for i in range(len(stream)))))
    assert reader.read() == applier.Response(201, b'{"a":1}', close=False)
    assert reader.read() == applier.Response(200, b"{}", close=False)


def test_reads_a_chunked_body_with_extensions_and_trailers() -> None:
    reader = applier.ResponseReader(
        source(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"4;ext=1\r\nabcd\r\n3\r\nefg\r\n",
            b"0\r\nX-Trailer: 1\r\n\r\n",
        )
    )
    assert reader.read() == applier.Response(200, b"abcdefg", close=False)


def test_connection_close_and_a_body_delimited_by_the_end() -> None:
    closing = applier.ResponseReader(
        source(b"HTTP/1.1 422 Unprocessable\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
    )
    assert closing.read().close
    to_end = applier.ResponseReader(source(b"HTTP/1.1 500 Oops\r\n\r\npart one ", b"part two"))
    assert to_end.read() == applier.Response(500, b"part one part two", close=True)


def test_skips_informational_responses_and_204_has_no_body() -> None:
    reader = applier.ResponseReader(
        source(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    )
    assert reader.read() == applier.Response(204, b"", close=False)


@pytest.mark.parametrize(
    "stream",
    [
        b"",  # closed before answering
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # closed mid-body
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",  # mid-chunk
    ],
)
def test_a_connection_closed_mid_response_is_an_error(stream: bytes) -> None:
    with pytest.raises(ConnectionError):
        applier.ResponseReader(source(stream)).read()


def test_not_http_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"not an HTTP/1\.x response"):
        applier.ResponseReader(source(b"SSH-2.0-OpenSSH\r\n\r\n")).read()


def test_object_paths_for_cluster_scoped_and_namespaced_kinds() -> None:
    collection, namespaced = applier._path("v1", "Namespace")
    assert (
        applier._object_path(collection, namespaced, "team-a", None) == "/api/v1/namespaces/team-a"
    )
    collection, namespaced = applier._path("rbac.authorization.k8s.io/v1", "RoleBinding")
    assert (
        applier._object_path(collection, namespaced, "owners", "team-a")
        == "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings/owners"
    )
    # A name is one path segment, whatever it holds (the API server then refuses it).
    assert applier._object_path(collection, namespaced, "a/b c", "x").endswith("/a%2Fb%20c")


def test_apply_refuses_a_manifest_without_a_known_kind_before_sending() -> None:
    endpoint = applier.Endpoint("127.0.0.1", 1, "", None, b"")
    with pytest.raises(errors.InvalidError, match="unknown apiVersion/kind"):
        applier.Applier(endpoint).apply(
            {"apiVersion": "v9", "kind": "Nope", "metadata": {"name": "x"}}
        )


def test_error_statuses_become_the_same_errors_as_through_lightkube() -> None:
    body = b'{"kind":"Status","code":422,"reason":"Invalid","message":"roleRef is immutable"}'
    err = applier._error(applier.Response(422, body, close=False), "apply RoleBinding/a/b")
    assert isinstance(err, errors.InvalidError)
    assert err.message == "apply RoleBinding/a/b: Invalid: roleRef is immutable"
    assert err.status_message == "roleRef is immutable"
    unparsable = applier._error(applier.Response(503, b"upstream down", close=True), "apply X")
    assert isinstance(unparsable, errors.KubeUnavailableError)
    assert "upstream down" in unparsable.message


def _kubeconfig(tmp_path: Path, user: dict, server: str = "https://127.0.0.1:6443") -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))  # fmt: skip
    return path


def test_a_token_kubeconfig_is_spoken_for_with_its_bearer_header(tmp_path: Path) -> None:
    endpoint = applier.Endpoint.of(
        _kubeconfig(tmp_path, {"token": "s3cret"}, "https://[::1]:6443/k8s")
    )
    assert endpoint is not None
    assert (endpoint.host, endpoint.port, endpoint.base_path) == ("::1", 6443, "/k8s")
    assert b"Host: [::1]:6443\r\n" in endpoint.header_lines
    assert b"Authorization: Bearer s3cret\r\n" in endpoint.header_lines
    assert endpoint.ssl_context is not None


@pytest.mark.parametrize(
    "user",
    [
        {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "get-token"}},
        {"tokenFile": "/var/run/token"},
        {"username": "admin", "password": "pw"},
    ],
    ids=["exec", "token-file", "basic"],
)
def test_other_authentication_is_left_to_lightkube(tmp_path: Path, user: dict) -> None:
    assert applier.Endpoint.of(_kubeconfig(tmp_path, user)) is None


def test_deletes_use_the_same_paths_as_applies() -> None:
    for kind, api_version in (
        (Namespace, "v1"),
        (ConfigMap, "v1"),
        (RoleBinding, "rbac.authorization.k8s.io/v1"),
    ):
        by_kind = applier._collection(
            applier.lk_resource.api_info(kind),
            namespaced=issubclass(kind, applier.lk_resource.NamespacedResource),
        )
        assert by_kind == applier._path(api_version, kind.__name__)
