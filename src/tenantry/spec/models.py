"""The platform repository's files as typed, immutable, validated models.

``platform.yaml`` says which environments and clusters exist and what every tenant
gets by default; ``tenants/<team>.yaml`` describes one team. Field names are
camelCase in YAML, like Kubernetes objects, and unknown fields are errors (a typo
such as ``quotas:`` must not silently mean "no quota").

Rules that need more than one file (a tenant naming an environment the platform
lacks, duplicate names) live in `tenantry.spec.repository`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Annotated, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from tenantry import errors
from tenantry.spec import quantities

API_VERSION: Final = "tenantry.dev/v1"
PRODUCTION: Final = "production"

_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")

# Namespaces a tenant may never be called: Kubernetes' own, and names that would
# read as the platform's.
RESERVED_NAMES = frozenset(
    {"default", "kube-system", "kube-public", "kube-node-lease", "tenantry", "platform"}
)

# Quota keys a tenant may set, as ResourceQuota spells them.
QUOTA_KEYS = (
    "cpu",
    "memory",
    "pods",
    "services",
    "persistentvolumeclaims",
    "requests.storage",
    "services.loadbalancers",
)


def dns_label_problem(value: str) -> str | None:
    """Why ``value`` cannot name a tenant or a service, or None when it can.

    Stricter than Helm's release names (53 characters, dots allowed) and Kubernetes'
    labels (63), so a name fits all of them, and tame enough to go into PromQL
    selectors, S3 keys and file names as it is.
    """
    # fullmatch: `$` would also accept a trailing newline.
    if len(value) > 40 or not _DNS_LABEL.fullmatch(value):
        return (
            f"{value!r} is not a DNS-1123 label of at most 40 characters "
            "(lowercase letters, digits and '-', starting with a letter)"
        )
    return None


def _dns_label(value: str) -> str:
    if (problem := dns_label_problem(value)) is not None:
        raise ValueError(problem)
    return value


def _quantity(value: str) -> str:
    quantities.parse(value)
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
Quantity = Annotated[str, AfterValidator(_quantity)]
# Splunk index names: lowercase letters, digits, '_' and '-', not starting with '_' or '-'.
SplunkIndex = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,79}$")]
# Where a listener binds: an address (empty: every address) and a port.
BindAddress = Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]*:\d{1,5}$")]
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DnsName = Annotated[str, Field(pattern=rf"^({_LABEL}\.)+{_LABEL}$")]


class Model(BaseModel):
    """Base for every spec model: camelCase YAML, unknown fields refused, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        str_strip_whitespace=True,
    )


class Resources(Model):
    """CPU and memory, as in a container's requests or limits."""

    cpu: Quantity
    memory: Quantity


class ContainerDefaults(Model):
    """What the LimitRange fills in for containers that do not say."""

    requests: Resources
    limits: Resources

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> ContainerDefaults:
        for name in ("cpu", "memory"):
            request = quantities.parse(getattr(self.requests, name))
            limit = quantities.parse(getattr(self.limits, name))
            if limit < request:
                raise ValueError(
                    f"limits.{name} {getattr(self.limits, name)} is below "
                    f"requests.{name} {getattr(self.requests, name)}"
                )
        return self


class Quota(Model):
    """A tenant's ResourceQuota per namespace; unset keys take the platform default."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, str_strip_whitespace=True
    )

    cpu: Quantity | None = None
    memory: Quantity | None = None
    pods: Quantity | None = None
    services: Quantity | None = None
    persistentvolumeclaims: Quantity | None = None
    requests_storage: Quantity | None = Field(default=None, alias="requests.storage")
    services_loadbalancers: Quantity | None = Field(default=None, alias="services.loadbalancers")

    def as_dict(self) -> dict[str, str]:
        """The set keys, spelled as ResourceQuota spells them."""
        return {
            key: value for key, value in self.model_dump(by_alias=True).items() if value is not None
        }

    def merged_over(self, default: Quota) -> Quota:
        """This quota with unset keys taken from ``default``."""
        return Quota.model_validate({**default.as_dict(), **self.as_dict()})


class ExternalSecretsStore(Model):
    """The External Secrets Operator runs in the cluster and reads AWS Secrets Manager
    through this store: tenants' secrets of an environment that keeps them there become
    ExternalSecret objects, which the operator turns into Secrets, instead of Secrets
    Tenantry writes itself."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    kind: Literal["ClusterSecretStore", "SecretStore"] = "ClusterSecretStore"
    refresh_interval: str = Field(default="1h", pattern=r"^\d+(s|m|h)$")


class ClusterRef(Model):
    """One cluster of an environment: a local cluster or a kubeconfig context."""

    name: DnsLabel
    role: Literal["primary", "canary"] = "primary"
    local: DnsLabel | None = None
    kubeconfig: str | None = None
    context: str | None = None
    # Where the cluster's ingress takes live traffic (host:port), for the traffic router;
    # local clusters get one from `tenantry up` (over real pods, or demo apps on kwok).
    ingress: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]+:\d{1,5}$")
    # A local cluster's real nodes (a kubelet with containerd: pods really run), made by
    # `tenantry up`. Unset: one where this machine can run containers, none elsewhere.
    real_nodes: int | None = Field(default=None, ge=0, le=4)
    external_secrets: ExternalSecretsStore | None = None

    @model_validator(mode="after")
    def _one_way_to_reach_it(self) -> ClusterRef:
        if (self.local is None) == (self.kubeconfig is None):
            raise ValueError("set exactly one of `local` (a local cluster) or `kubeconfig`")
        if self.real_nodes is not None and self.local is None:
            raise ValueError("realNodes is for local clusters only (`local:`)")
        return self


class SecretsStore(Model):
    """Where an environment's secret values are kept.

    ``tenantry`` (the default): only in the environment's clusters, set through the
    Tenantry server. ``aws-secrets-manager``: in AWS Secrets Manager, one secret per
    tenant's secret named ``<prefix><tenant>/<environment>/<name>`` holding its keys as
    JSON; set through the server or by AWS itself (rotation), copied into the clusters
    by `tenantry secrets sync`. ``endpoint`` as for artifacts (``local``: the local
    S3/SQS server, which answers for Secrets Manager too; unset: AWS).
    """

    store: Literal["tenantry", "aws-secrets-manager"] = "tenantry"
    prefix: str = Field(default="tenantry/", pattern=r"^[A-Za-z0-9/_+=.@-]{0,200}$")
    endpoint: str | None = None
    region: str = "us-east-1"


class Environment(Model):
    """A stage of delivery (staging, production) and the clusters that serve it."""

    name: DnsLabel
    clusters: tuple[ClusterRef, ...] = Field(min_length=1)
    secrets: SecretsStore = SecretsStore()
    # Whether a tenant's owners and members may write in its namespaces here with their
    # own identity. Unset: yes, except in production, where only the tenant's deployer
    # ServiceAccount (used by the platform) writes, so nobody goes around the approval.
    people_write: bool | None = None

    @property
    def people_may_write(self) -> bool:
        """`people_write`, defaulting to False for ``production`` and True elsewhere."""
        return self.people_write if self.people_write is not None else self.name != PRODUCTION

    @model_validator(mode="after")
    def _one_primary(self) -> Environment:
        primaries = [c.name for c in self.clusters if c.role == "primary"]
        if len(primaries) != 1:
            raise ValueError(f"needs exactly one cluster with role primary, has {primaries}")
        return self


class PlatformNamespaces(Model):
    """The platform's own namespaces whose pods may reach every tenant."""

    ingress: DnsLabel = "tenantry-ingress"
    monitoring: DnsLabel = "tenantry-monitoring"


# How often the deployer workers compare the newest published version of every service
# with what staging runs (and on start): a lost event costs at most this long.
_RESYNC = Field(default=60.0, ge=5, le=86_400)


class Artifacts(Model):
    """The S3 bucket that is the platform's Helm repository (the default kind)."""

    kind: Literal["s3"] = "s3"
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    # ``local`` means the local S3/SQS server `tenantry up` runs; unset means AWS itself.
    endpoint: str | None = None
    region: str = "us-east-1"
    resync_interval_s: float = _RESYNC


class SecretSource(Model):
    """Where a secret is: a file readable by its owner only, or a key of a Secret in the
    platform's monitoring namespace; never the platform repository itself."""

    file: str | None = None
    secret: SecretRef | None = None

    @model_validator(mode="after")
    def _one(self) -> SecretSource:
        if (self.file is None) == (self.secret is None):
            raise ValueError("give exactly one of file: PATH or secret: {name, key}")
        return self


# The registry's credentials: a ``user:password`` line in a file or a Secret's key.
RegistryCredentials = SecretSource


class OciArtifacts(Model):
    """Charts in an OCI registry (on premises: Harbor, GitLab's, the CNCF Distribution
    registry): ``oci://<registry>/<prefix>/<tenant>/<service>:<version>``."""

    kind: Literal["oci"]
    # ``local`` means the registry `tenantry up` runs (TLS from the platform's local CA,
    # htpasswd); else host[:port] of a registry served over TLS.
    registry: str = Field(pattern=r"^(local|[A-Za-z0-9.-]+(:[0-9]{1,5})?)$")
    prefix: str = Field(default="charts", pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$")
    # The registry's ``user:password`` (one line).
    credentials: SecretSource | None = None
    # The CA bundle that signed the registry's certificate (unset: the system's).
    ca_file: str | None = None
    # The shared secret the registry's notifications carry (``Authorization: Bearer
    # <secret>``) to the server's /api/v1/events/registry; unset: notifications are
    # refused and only the resync finds new charts.
    events_secret: SecretSource | None = None
    resync_interval_s: float = _RESYNC


def _artifacts_kind(value: object) -> str:
    kind = value.get("kind", "s3") if isinstance(value, dict) else getattr(value, "kind", "s3")
    return kind if kind in ("s3", "oci") else "s3"  # an unknown kind fails as S3's literal


AnyArtifacts = Annotated[
    Annotated[Artifacts, Tag("s3")] | Annotated[OciArtifacts, Tag("oci")],
    Discriminator(_artifacts_kind),
]


class Queue(Model):
    """The SQS queue the bucket notifies, and its dead-letter queue."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,80}$")
    dead_letter: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,80}$")
    # Deliveries before a message moves to the dead-letter queue.
    max_receive_count: int = Field(default=3, ge=1, le=1000)
    # Seconds a received message stays hidden; the deployer extends it while it works.
    visibility_timeout_s: int = Field(default=60, ge=5, le=43200)

    @property
    def dead_letter_name(self) -> str:
        """The dead-letter queue's name (``<name>-dlq`` unless set)."""
        return self.dead_letter or f"{self.name}-dlq"


class MonitoringQuota(Model):
    """Per-scrape limits that keep one tenant's metrics from hurting the others."""

    sample_limit: int = Field(default=10_000, ge=1)
    label_limit: int = Field(default=64, ge=1)
    target_limit: int = Field(default=100, ge=1)


class Defaults(Model):
    """What every tenant gets unless its file says otherwise."""

    quota: Quota
    container: ContainerDefaults
    monitoring: MonitoringQuota = MonitoringQuota()
    # The Splunk index for the logs of tenants that do not name their own.
    splunk_index: SplunkIndex = "kubernetes"


class People(Model):
    """Users and groups, as the clusters' authenticator names them."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


class Server(Model):
    """The Tenantry server: who proves identities, who administers, how long a review
    lasts, and where it reads firing alerts."""

    # The cluster (named in an environment) whose API server's TokenReview says who a
    # bearer token belongs to: whatever that API server accepts (ServiceAccount tokens,
    # OIDC, a static token file) works.
    management_cluster: DnsLabel
    # People who may do everything, for every tenant.
    admins: People = People()
    # Seconds a token's review is reused; never beyond the token's own expiry.
    review_cache_s: float = Field(default=10.0, ge=0, le=300)
    # The Alertmanager whose firing alerts the dashboard shows each tenant (its API v2);
    # unset on the local platform: the local monitoring stack's.
    alertmanager_url: str | None = Field(default=None, pattern=r"^https?://")


class SecretRef(Model):
    """A key of a Kubernetes Secret in the platform's monitoring namespace (on the platform's
    first cluster); the value never enters git, logs or generated configuration."""

    name: DnsLabel
    key: str


class Alerts(Model):
    """Where a tenant's (or the platform team's) alerts go.

    Unknown receiver types are kept rather than refused: the monitoring planner
    reports them and skips only that tenant's alerting, instead of one typo making
    the whole repository unloadable.
    """

    model_config = ConfigDict(extra="allow")

    slack: SecretRef | None = None
    email: tuple[str, ...] = ()
    pagerduty: SecretRef | None = None


def _steps(value: tuple[int, ...]) -> tuple[int, ...]:
    if any(not 0 < w <= 100 for w in value):
        raise ValueError(f"{list(value)}: every weight must be between 1 and 100")
    if any(b <= a for a, b in itertools.pairwise(value)):
        raise ValueError(f"{list(value)}: weights must increase from step to step")
    return value


Steps = Annotated[tuple[int, ...], Field(min_length=1), AfterValidator(_steps)]


class CanaryPolicy(Model):
    """How a new version goes through the canary cluster (platform defaults)."""

    steps: Steps = (1, 5, 25, 50)
    interval_s: float = Field(default=10.0, gt=0)
    min_requests: int = Field(default=20, ge=1)
    max_failed_intervals: int = Field(default=1, ge=1)
    success_margin: float = Field(default=1.0, ge=0)
    latency_margin: float = Field(default=1.2, ge=1)


class Route53Zone(Model):
    """The hosted zone the Route 53 router writes weighted records in."""

    zone_id: str
    domain: str


class HAProxyRouter(Model):
    """An HAProxy of the platform team's own in front of production clusters outside this
    machine (on premises), run by `tenantry router run` beside the workers: every service
    at ``http://<tenant>-<service>.<domain>/`` through one listener."""

    # haproxy.cfg, the canary weights and the Runtime API's socket: the router and the
    # workers (which set the weights) share it, so they run on one host as one user.
    directory: str = Field(pattern=r"^/[A-Za-z0-9._/-]+$")
    listen: BindAddress
    domain: DnsName
    # /metrics (HAProxy's Prometheus exporter, for the canary analysis) and /stats.
    stats: BindAddress


class Traffic(Model):
    """Live traffic between the production clusters: the router, the canary defaults,
    and failback's hold-down."""

    router: Literal["haproxy", "route53"] = "haproxy"
    route53: Route53Zone | None = None
    # The HAProxy on premises; the local platform runs its own and needs none.
    haproxy: HAProxyRouter | None = None
    scrape_interval_s: float = Field(default=15.0, gt=0)
    # The Prometheus that scrapes the router and the services (the local stack's if unset).
    prometheus_url: str | None = Field(default=None, pattern=r"^https?://")
    canary: CanaryPolicy = CanaryPolicy()
    hold_down_s: float = Field(default=30.0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Traffic:
        if self.router == "route53" and self.route53 is None:
            raise ValueError("router route53 needs route53: {zoneId, domain}")
        if self.canary.interval_s < self.scrape_interval_s:
            raise ValueError(
                f"canary.intervalS {self.canary.interval_s:g} is shorter than "
                f"scrapeIntervalS {self.scrape_interval_s:g}: an interval would have no new data"
            )
        return self


class Platform(Model):
    """``platform.yaml``: environments, clusters, defaults, allowed registries."""

    api_version: Literal["tenantry.dev/v1"] = API_VERSION
    kind: Literal["Platform"] = "Platform"
    name: DnsLabel
    environments: tuple[Environment, ...] = Field(min_length=1)
    defaults: Defaults
    registries: tuple[str, ...] = Field(min_length=1)
    platform_namespaces: PlatformNamespaces = PlatformNamespaces()
    artifacts: AnyArtifacts | None = None
    queue: Queue | None = None
    # The platform team's own contacts: platform alerts, and tenants' refused scrapes.
    alerts: Alerts = Alerts()
    traffic: Traffic | None = None
    server: Server | None = None

    @property
    def bucket(self) -> Artifacts | None:
        """``artifacts`` when the charts are in an S3 bucket; None for a registry or none."""
        return self.artifacts if isinstance(self.artifacts, Artifacts) else None

    def environment(self, name: str) -> Environment:
        """The environment called ``name``; a `SpecError` naming the ones there are if none.

        Not KeyError: publish, the deployer and promotions ask for ``staging`` by name,
        and a platform.yaml without it must read as a one-line error, not a traceback.
        """
        for env in self.environments:
            if env.name == name:
                return env
        names = ", ".join(e.name for e in self.environments) or "none"
        raise errors.SpecError(
            [
                errors.SpecProblem(
                    file="platform.yaml",
                    field="environments",
                    message=f"there is no environment {name!r} (there are: {names})",
                    fix=f"add an environment named {name} to platform.yaml, or use one of: {names}",
                )
            ]
        )

    def cluster(self, name: str) -> tuple[Environment, ClusterRef]:
        """The cluster called ``name`` and its environment; KeyError if there is none."""
        for env in self.environments:
            for cluster in env.clusters:
                if cluster.name == name:
                    return env, cluster
        raise KeyError(name)


@dataclass(frozen=True)
class TenantContext:
    """What a tenant file is checked against: the platform and the other tenants.

    Passed as pydantic's validation context so that one pass over a file reports
    every problem in it, the cross-file ones included.
    """

    environments: frozenset[str]
    registries: tuple[str, ...]
    reserved: frozenset[str]
    tenants: frozenset[str]

    @classmethod
    def of(cls, platform: Platform, tenant_names: frozenset[str]) -> TenantContext:
        """The context for tenants of ``platform`` beside ``tenant_names``."""
        pns = platform.platform_namespaces
        return cls(
            environments=frozenset(e.name for e in platform.environments),
            registries=platform.registries,
            reserved=RESERVED_NAMES | {pns.ingress, pns.monitoring},
            tenants=tenant_names,
        )


def registry_allowed(registry: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``registry`` is one of ``allowed`` or a path under one."""
    return any(registry == a or registry.startswith(a.rstrip("/") + "/") for a in allowed)


def _context(info: ValidationInfo) -> TenantContext | None:
    context = info.context
    return context if isinstance(context, TenantContext) else None


class Tenant(Model):
    """``tenants/<team>.yaml``: one team's slice of the platform."""

    api_version: Literal["tenantry.dev/v1"] = API_VERSION
    kind: Literal["Tenant"] = "Tenant"
    name: DnsLabel
    owners: People
    members: People = People()
    environments: tuple[DnsLabel, ...] = Field(min_length=1)
    quota: Quota = Quota()
    container_defaults: ContainerDefaults | None = None
    registries: tuple[str, ...] = ()
    allow_from: tuple[DnsLabel, ...] = ()
    alerts: Alerts = Alerts()
    splunk_index: SplunkIndex | None = None
    self_approval: bool = False
    monitoring: MonitoringQuota | None = None

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str, info: ValidationInfo) -> str:
        context = _context(info)
        reserved = context.reserved if context else RESERVED_NAMES
        if name in reserved or name.startswith("kube-"):
            raise ValueError(f"{name!r} is reserved for the system or the platform")
        return name

    @field_validator("environments")
    @classmethod
    def _known_environments(cls, envs: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        context = _context(info)
        if context:
            unknown = [e for e in envs if e not in context.environments]
            if unknown:
                raise ValueError(
                    f"{', '.join(map(repr, unknown))} not an environment of the platform "
                    f"(it has: {', '.join(sorted(context.environments))})"
                )
        return envs

    @field_validator("registries")
    @classmethod
    def _allowed_registries(cls, regs: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        context = _context(info)
        if context:
            bad = [r for r in regs if not registry_allowed(r, context.registries)]
            if bad:
                raise ValueError(
                    f"{', '.join(map(repr, bad))} not allowed by the platform "
                    f"(use one of, or a path under: {', '.join(context.registries)})"
                )
        return regs

    @field_validator("allow_from")
    @classmethod
    def _known_tenants(cls, names: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        context = _context(info)
        if context:
            unknown = [n for n in names if n not in context.tenants]
            if unknown:
                raise ValueError(f"{', '.join(map(repr, unknown))} not a tenant of the platform")
        return names

    @model_validator(mode="after")
    def _has_an_owner(self) -> Tenant:
        if not self.owners.users and not self.owners.groups:
            raise ValueError("owners needs at least one user or group")
        if self.name in self.allow_from:
            raise ValueError("allowFrom names the tenant itself; a tenant always reaches itself")
        return self
