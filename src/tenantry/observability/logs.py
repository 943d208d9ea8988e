"""The log shipper's configuration (pure): every tenant's container logs to its own
Splunk index.

The shipper is ``otelcol-tenantry`` (an OpenTelemetry Collector built by
`tenantry tools install`). Its pipeline:

* ``file_log`` tails the node's container logs in the Kubernetes layout
  (``/var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log``); the ``container``
  parser reads docker/CRI lines and takes namespace, pod and container from the path.
  Read offsets are kept in ``file_storage`` so a restart neither loses nor repeats.
  Each cluster whose kubelets write elsewhere (``podLogsDir``: a local cluster's real
  nodes) gets a ``file_log/<cluster>`` of its own over those directories, which also
  tags its logs with ``k8s.cluster.name``.
* the ``routing`` connector sends each namespace's logs to its tenant's pipeline;
  logs of every other namespace go to the platform's pipeline.
* each pipeline tags its logs with the tenant and ends in its own ``splunk_hec``
  exporter (the tenant's index, a persistent queue in ``file_storage`` and retries
  without a deadline), so a receiver outage loses nothing and one tenant's backlog
  never queues in front of another's.

The HEC token is never written here: the configuration reads it from the
environment (``${env:SPLUNK_HEC_TOKEN}``), set by whoever starts the collector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tenantry.spec import models
from tenantry.spec.repository import Repository

INDEX_ANNOTATION = "splunk.com/index"
TOKEN_ENV = "SPLUNK_HEC_TOKEN"  # noqa: S105 - the name of a variable, not a token
PLATFORM_PIPELINE = "platform"
POD_LOGS = "/var/log/pods/*/*/*.log"


@dataclass(frozen=True)
class NodeLogs:
    """The directory one node's kubelet writes its pods' logs to (its ``podLogsDir``)."""

    cluster: str
    pod_logs_dir: str


@dataclass(frozen=True)
class Shipper:
    """Where the collector reads, keeps its state and sends."""

    hec_endpoint: str
    storage_dir: str
    health_port: int
    log_glob: str = POD_LOGS
    poll_interval: str = "200ms"
    nodes: tuple[NodeLogs, ...] = ()


def _file_log(shipper: Shipper, include: list[str]) -> dict[str, Any]:
    return {
        "include": include,
        "include_file_path": True,
        "start_at": "beginning",
        "poll_interval": shipper.poll_interval,
        "storage": "file_storage/offsets",
        "operators": [{"type": "container", "id": "container-parser"}],
    }


def receivers(shipper: Shipper) -> dict[str, Any]:
    """``file_log`` over ``log_glob``, and a ``file_log/<cluster>`` per cluster of ``nodes``."""
    found: dict[str, Any] = {"file_log": _file_log(shipper, [shipper.log_glob])}
    clusters = sorted({n.cluster for n in shipper.nodes})
    for cluster in clusters:
        dirs = sorted({n.pod_logs_dir for n in shipper.nodes if n.cluster == cluster})
        receiver = _file_log(shipper, [f"{d.rstrip('/')}/*/*/*.log" for d in dirs])
        receiver["resource"] = {"k8s.cluster.name": cluster}
        found[f"file_log/{cluster}"] = receiver
    return found


def index(tenant: models.Tenant, platform: models.Platform) -> str:
    """The tenant's Splunk index, else the platform default."""
    return tenant.splunk_index or platform.defaults.splunk_index


def _exporter(shipper: Shipper, splunk_index: str) -> dict[str, Any]:
    return {
        "endpoint": shipper.hec_endpoint,
        "token": f"${{env:{TOKEN_ENV}}}",
        "index": splunk_index,
        "source": "kubernetes",
        "sourcetype": "kube:container",
        "sending_queue": {"enabled": True, "storage": "file_storage/queue"},
        # No deadline: the persistent queue holds the lines until Splunk takes them.
        "retry_on_failure": {"enabled": True, "initial_interval": "1s",
                             "max_interval": "5s", "max_elapsed_time": "0s"},
    }  # fmt: skip


def collector_config(repo: Repository, shipper: Shipper) -> dict[str, Any]:
    """The collector's whole configuration for the platform's tenants."""
    tenants = sorted(repo.tenants, key=lambda t: t.name)
    routes = [
        {
            "context": "resource",
            "condition": f'attributes["k8s.namespace.name"] == "{t.name}"',
            "pipelines": [f"logs/{t.name}"],
        }
        for t in tenants
    ]
    inputs = receivers(shipper)
    processors: dict[str, Any] = {"batch": {"timeout": "200ms", "send_batch_size": 1024}}
    exporters: dict[str, Any] = {}
    pipelines: dict[str, Any] = {
        "logs/in": {"receivers": list(inputs), "exporters": ["routing"]},
    }
    owners = [(t.name, index(t, repo.platform)) for t in tenants]
    owners.append((PLATFORM_PIPELINE, repo.platform.defaults.splunk_index))
    for owner, splunk_index in owners:
        processors[f"resource/{owner}"] = {
            "attributes": [{"key": "tenant", "value": owner, "action": "upsert"}]
        }
        exporters[f"splunk_hec/{owner}"] = _exporter(shipper, splunk_index)
        pipelines[f"logs/{owner}"] = {
            "receivers": ["routing"],
            "processors": [f"resource/{owner}", "batch"],
            "exporters": [f"splunk_hec/{owner}"],
        }
    return {
        "extensions": {
            "file_storage/queue": {
                "directory": f"{shipper.storage_dir}/queue",
                "create_directory": True,
            },
            "file_storage/offsets": {
                "directory": f"{shipper.storage_dir}/offsets",
                "create_directory": True,
            },
            "health_check": {"endpoint": f"127.0.0.1:{shipper.health_port}"},
        },
        "receivers": inputs,
        "connectors": {
            "routing": {
                "default_pipelines": [f"logs/{PLATFORM_PIPELINE}"],
                "error_mode": "ignore",
                "table": routes,
            }
        },
        "processors": processors,
        "exporters": exporters,
        "service": {
            "extensions": ["file_storage/queue", "file_storage/offsets", "health_check"],
            "pipelines": pipelines,
            # The collector's own metrics would need a port per instance; it has none.
            "telemetry": {"metrics": {"level": "none"}},
        },
    }
