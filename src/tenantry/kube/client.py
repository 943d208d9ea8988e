"""The Kubernetes adapter: connect, server-side apply, act as a ServiceAccount.

We use lightkube rather than the official client because it gives typed models
for every built-in kind, server-side apply and server-side dry-run as plain
keyword arguments, and an httpx transport we can wrap to add the impersonation
headers (the official client would need a patched ApiClient for each identity).

Everything a tenant does runs through `Kube.connect(..., as_identity=...)`: the
requests carry ``Impersonate-User`` (and groups), so the real API server's RBAC,
quota and admission decide, exactly as they would for the tenant itself.

lightkube's and httpx's exceptions stop here: `translate` turns them into
`tenantry.errors` types that carry the API server's Status reason and message.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import lightkube
import msgspec
from lightkube import codecs, operators
from lightkube.config.client_adapter import verify_cluster
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.core.exceptions import ApiError
from lightkube.core.resource import NamespacedResource, Resource
from lightkube.core.selector import build_selector
from lightkube.generic_resource import GenericGlobalResource, GenericNamespacedResource
from lightkube.models.authentication_v1 import TokenReviewSpec
from lightkube.resources import core_v1
from lightkube.resources.authentication_v1 import TokenReview
from lightkube.types import PatchType

from tenantry import errors

FIELD_MANAGER = "tenantry"

# lightkube's spelling of "every namespace" for list and watch.
ALL_NAMESPACES = "*"

R = TypeVar("R", bound=Resource)


@dataclass(frozen=True)
class Identity:
    """Who a request acts as, through Kubernetes impersonation."""

    user: str
    groups: tuple[str, ...] = ()

    @classmethod
    def service_account(cls, namespace: str, name: str) -> Identity:
        """The identity of ServiceAccount ``namespace/name``.

        No groups are sent: the API server then adds the ServiceAccount's own groups
        itself, and the impersonator needs only ``impersonate`` on that one
        ServiceAccount, not the cluster-wide right to impersonate groups.
        """
        return cls(user=f"system:serviceaccount:{namespace}:{name}")

    def headers(self) -> list[tuple[str, str]]:
        """The impersonation headers; ``Impersonate-Group`` repeats once per group."""
        return [("Impersonate-User", self.user)] + [("Impersonate-Group", g) for g in self.groups]


class _ImpersonatingTransport(httpx2.BaseTransport):
    """Adds impersonation headers to every request before the real transport sends it."""

    def __init__(self, inner: httpx2.BaseTransport, identity: Identity) -> None:
        self._inner = inner
        self._headers = identity.headers()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        names = {name.lower() for name, _ in self._headers}
        kept = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in names]
        request.headers = httpx2.Headers(kept + self._headers)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def single_config(kubeconfig: Path, context: str | None) -> SingleConfig:
    """The cluster, user and namespace of ``context`` (or the current one) in ``kubeconfig``."""
    try:
        config = KubeConfig.from_file(kubeconfig).get(context_name=context)
    except Exception as e:  # lightkube raises ConfigError, OSError or yaml errors here
        raise errors.ClusterError(
            f"cannot read kubeconfig {kubeconfig}: {e}",
            fix="check the path, or run `tenantry cluster kubeconfig NAME` for a local cluster",
        ) from e
    if config is None:
        raise errors.ClusterError(f"kubeconfig {kubeconfig} has no context {context!r}")
    return config


def _status_of(e: ApiError) -> tuple[int, str, str]:
    status = e.status
    return int(status.code or 0), str(status.reason or ""), str(status.message or "")


def from_api_error(e: ApiError, action: str) -> errors.KubeError:
    """The `KubeError` subtype for an API server refusal, keeping its Status verbatim."""
    return from_status(*_status_of(e), action)


def from_status(code: int, reason: str, message: str, action: str) -> errors.KubeError:
    """The `KubeError` subtype for a refusal with Status ``code``, ``reason``, ``message``."""
    kind: type[errors.KubeError]
    fix: str | None = None
    if code == 403 and "exceeded quota" in message:
        kind, fix = errors.QuotaExceededError, "lower the requests or raise the tenant's quota"
    elif code == 403 and "violates PodSecurity" in message:
        kind, fix = (
            errors.AdmissionDeniedError,
            "make the pod meet the namespace's Pod Security level",
        )
    elif code in (403, 422) and "ValidatingAdmissionPolicy" in message:
        kind, fix = errors.AdmissionDeniedError, "change the object to meet the policy quoted above"
    elif code == 403:
        kind, fix = errors.ForbiddenError, "the acting identity lacks the RBAC rule for this"
    elif code == 404:
        kind = errors.NotFoundError
    elif code == 409:
        kind = errors.ConflictError
    elif code in (400, 422):
        kind = errors.InvalidError
    elif code >= 500 or code == 429:
        kind, fix = errors.KubeUnavailableError, "retry; the API server is overloaded or restarting"
    else:
        kind = errors.KubeError
    return kind(
        f"{action}: {reason or code}: {message}",
        code=code,
        reason=reason,
        status_message=message,
        fix=fix,
    )


@contextlib.contextmanager
def translate(action: str) -> Iterator[None]:
    """Turn lightkube and transport errors raised inside the block into `KubeError`s."""
    try:
        yield
    except ApiError as e:
        raise from_api_error(e, action) from e
    except httpx2.HTTPStatusError as e:
        # No Status object in the answer: the path itself is unknown, as for a kind the
        # API server does not serve (a CustomResourceDefinition not installed).
        status = e.response.status_code
        error = errors.NotFoundError if status == 404 else errors.KubeError
        raise error(f"{action}: the API server answered HTTP {status}"
                    + (" (it does not serve this kind)" if status == 404 else ""),
                    code=status) from e  # fmt: skip
    except httpx2.TransportError as e:
        raise errors.KubeUnavailableError(
            f"{action}: the API server did not answer: {e}",
            fix="check that the cluster is running (`tenantry cluster list`)",
        ) from e


# msgspec (under lightkube) builds a model's decoder on its first use and crashes the
# interpreter when two threads build one at once. The first typed read of each kind
# therefore holds this lock; later reads of that kind run in parallel.
_FIRST_DECODE = threading.Lock()
_decoded_kinds: set[type[Resource]] = set()


@contextlib.contextmanager
def _first_decode_guard(kind: type[Resource]) -> Iterator[None]:
    if kind in _decoded_kinds:
        yield
        return
    with _FIRST_DECODE:
        yield
        _decoded_kinds.add(kind)


def describe(manifest: Mapping[str, Any]) -> str:
    """``Kind/namespace/name`` of a manifest, for messages."""
    meta = manifest.get("metadata", {})
    ns = meta.get("namespace")
    return f"{manifest.get('kind')}/{ns + '/' if ns else ''}{meta.get('name')}"


class Kube:
    """One connection to one cluster, optionally acting as an impersonated identity."""

    def __init__(self, client: lightkube.Client, *, identity: Identity | None = None) -> None:
        self.client = client
        self.identity = identity
        # lightkube's overloads are keyed on global vs namespaced resource types, which a
        # manifest loaded at run time cannot satisfy statically; the calls below are checked
        # by the API server instead.
        self._lk: Any = client

    @classmethod
    def connect(
        cls,
        kubeconfig: Path,
        *,
        context: str | None = None,
        as_identity: Identity | None = None,
        timeout_s: float = 30.0,
    ) -> Kube:
        """Connect with a kubeconfig; with ``as_identity`` every request is impersonated."""
        config = single_config(kubeconfig, context)
        transport: httpx2.BaseTransport | None = None
        if as_identity is not None:
            assert config.user is not None
            ssl_context = verify_cluster(config.cluster, config.user, config.abs_file)
            transport = _ImpersonatingTransport(
                httpx2.HTTPTransport(verify=ssl_context), as_identity
            )
        client = lightkube.Client(
            config,
            field_manager=FIELD_MANAGER,
            timeout=httpx2.Timeout(timeout_s),
            transport=transport,
            trust_env=False,
        )
        return cls(client, identity=as_identity)

    @classmethod
    def connect_with_token(
        cls, server: str, token: str, *, ca_file: Path, timeout_s: float = 30.0
    ) -> Kube:
        """Connect as whoever ``token`` belongs to: ``Authorization: Bearer`` on every request.

        For acting as a person with their own credentials (what their kubectl would
        do), rather than as the platform through impersonation.
        """
        # Built in memory: the token never touches a kubeconfig on disk.
        raw = {
            "clusters": [
                {"name": "c", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
            ],
            "users": [{"name": "u", "user": {"token": token}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
        try:
            client = lightkube.Client(
                KubeConfig.from_dict(raw).get(),
                field_manager=FIELD_MANAGER,
                timeout=httpx2.Timeout(timeout_s),
                trust_env=False,
            )
        except Exception as e:  # ConfigError, OSError (CA file), ssl errors
            # Not chained: the cause's repr could carry the configuration, token included.
            raise errors.ClusterError(
                f"cannot connect to {server} with CA {ca_file}: {type(e).__name__}",
                fix="check the server URL and that the CA file exists and is a PEM certificate",
            ) from None
        return cls(client)

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def apply(
        self, manifest: Mapping[str, Any], *, dry_run: bool = False, force: bool = True
    ) -> Resource:
        """Server-side apply ``manifest`` with field manager ``tenantry``.

        ``force`` takes ownership of fields another manager set: the platform's
        desired state wins over hand edits, which is how drift is repaired.
        """
        obj = self.load(manifest)
        with translate(f"apply {describe(manifest)}"):
            result: Resource = self._lk.apply(
                obj, field_manager=FIELD_MANAGER, force=force, dry_run=dry_run
            )
            return result

    def create(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> Resource:
        """Create ``manifest``; fails with `ConflictError` if it exists."""
        obj = self.load(manifest)
        with translate(f"create {describe(manifest)}"):
            result: Resource = self._lk.create(obj, dry_run=dry_run)
            return result

    def merge_patch(
        self, kind: type[R], name: str, patch: Mapping[str, Any], *, namespace: str | None = None
    ) -> R:
        """JSON merge patch one object (a null removes a key); `NotFoundError` if missing.
        For changing one entry of a map other writers also change (a Secret's keys)
        without reading, and so without overwriting, the others."""
        where = f"{namespace}/" if namespace else ""
        with _first_decode_guard(kind), translate(f"patch {kind.__name__}/{where}{name}"):
            obj: R = self._lk.patch(
                kind, name, patch, namespace=namespace, patch_type=PatchType.MERGE,
                field_manager=FIELD_MANAGER,
            )  # fmt: skip
            return obj

    def get(self, kind: type[R], name: str, *, namespace: str | None = None) -> R:
        """Read one object; `NotFoundError` if it does not exist."""
        where = f"{namespace}/" if namespace else ""
        with _first_decode_guard(kind), translate(f"get {kind.__name__}/{where}{name}"):
            obj: R = self._lk.get(kind, name, namespace=namespace)
            return obj

    def list(
        self,
        kind: type[R],
        *,
        namespace: str | None = None,
        labels: Mapping[str, str | operators.SequenceOperator] | None = None,
    ) -> list[R]:
        """List objects of ``kind`` matching ``labels`` (a value, or ``operators.in_``):
        in one namespace, or in all of them."""
        if namespace is None and issubclass(kind, NamespacedResource):
            namespace = ALL_NAMESPACES
        with _first_decode_guard(kind), translate(f"list {kind.__name__}"):
            return list(self._lk.list(kind, namespace=namespace, labels=dict(labels or {})))

    def list_raw(
        self,
        kind: type[Resource],
        *,
        labels: Mapping[str, str | operators.SequenceOperator] | None = None,
        chunk_size: int = 500,
    ) -> builtins.list[dict[str, Any]]:
        """Like `list` in every namespace, but each object as the API server's JSON.

        For reading thousands of objects to compare them: decoding each into a model
        and back into a dict costs more than the request. The items carry no
        ``apiVersion`` or ``kind`` (a list's items never do). Read in pages of
        ``chunk_size``.
        """
        namespace = ALL_NAMESPACES if issubclass(kind, NamespacedResource) else None
        params: dict[str, Any] = {"limit": chunk_size}
        if labels:
            params["labelSelector"] = build_selector(dict(labels))
        items: builtins.list[dict[str, Any]] = []
        with translate(f"list {kind.__name__}"):
            inner = self._lk._client
            request = inner.prepare_request("list", kind, namespace=namespace, params=params)
            while True:
                response = inner.send(inner.build_adapter_request(request))
                inner.raise_for_status(response)
                page = msgspec.json.decode(response.content)
                items += page.get("items") or []
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    return items
                request.params["continue"] = token

    def delete(self, kind: type[Resource], name: str, *, namespace: str | None = None) -> bool:
        """Delete one object; returns False if it was already gone."""
        try:
            with translate(f"delete {kind.__name__}/{name}"):
                self._lk.delete(kind, name, namespace=namespace)
        except errors.NotFoundError:
            return False
        return True

    def delete_all(
        self, kind: type[Resource], *, namespace: str, grace_period_s: int | None = None
    ) -> None:
        """Delete every ``kind`` in ``namespace`` (``grace_period_s`` 0: stop pods now)."""
        with translate(f"delete every {kind.__name__} in {namespace}"):
            self._lk.deletecollection(kind, namespace=namespace, grace_period=grace_period_s)

    def review_token(self, token: str) -> tuple[str, tuple[str, ...]] | None:
        """Ask the API server who ``token`` belongs to (TokenReview): the username and
        groups, or None when it does not accept the token."""
        review = TokenReview(spec=TokenReviewSpec(token=token))
        with _first_decode_guard(TokenReview), translate("create TokenReview"):
            status = self._lk.create(review).status
        if status is None or not status.authenticated or status.user is None:
            return None
        return str(status.user.username or ""), tuple(status.user.groups or ())

    def logs(
        self,
        pod: str,
        *,
        namespace: str,
        container: str,
        previous: bool = False,
        tail_lines: int = 20,
        limit_bytes: int = 64 * 1024,
    ) -> tuple[str, ...]:
        """The last lines ``container`` of ``pod`` logged (the pod log API: the API server
        asks the node's kubelet); ``previous`` for the container before its last restart.

        lightkube's ``log`` has no ``previous``: the request is built the way it builds
        its own, with that parameter added.
        """
        params = {"container": container, "tailLines": tail_lines, "limitBytes": limit_bytes,
                  "previous": previous}  # fmt: skip
        with translate(f"read the log of pod {namespace}/{pod} container {container}"):
            inner = self._lk._client
            request = inner.prepare_request(
                "get", core_v1.PodLog, name=pod, namespace=namespace, params=params
            )
            response = inner.send(inner.build_adapter_request(request))
            inner.raise_for_status(response)
            return tuple(str(line) for line in response.iter_lines())

    @staticmethod
    def load(manifest: Mapping[str, Any]) -> Resource:
        """A lightkube object for a raw manifest, kept as a plain dict.

        lightkube's typed models insist on fields the API server itself would
        default (a Node's ``status.nodeInfo.bootID``, say), so manifests are sent
        untyped and validated where it matters: by the API server.
        """
        try:
            raw_class = _raw_resource(str(manifest["apiVersion"]), str(manifest["kind"]))
        except (KeyError, AttributeError, ValueError) as e:
            raise errors.InvalidError(
                f"{describe(manifest)}: unknown apiVersion/kind "
                f"{manifest.get('apiVersion')}/{manifest.get('kind')}",
                fix="check apiVersion and kind against `kubectl api-resources`",
            ) from e
        obj: Resource = raw_class(dict(manifest))  # type: ignore[call-arg]
        return obj


@functools.cache
def _raw_resource(api_version: str, kind: str) -> type[Resource]:
    # Same API endpoint as lightkube's typed class, but the body stays a dict.
    typed = codecs.resource_registry.load(api_version, kind)
    base: type[Resource] = (
        GenericNamespacedResource
        if issubclass(typed, NamespacedResource)
        else GenericGlobalResource
    )
    return type(kind, (base,), {"_api_info": typed._api_info})
