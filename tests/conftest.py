"""Shared fixtures. Unit tests use none of them; integration and e2e tests share one
real local cluster, created once per session (only when a test asks for it).

The cluster lives in its own state directory (so it never collides with a
`tenantry up` platform) and is deleted at the end even when tests fail. Each test
gets its own namespace, labelled with the session's id, removed after the test.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube.resources.core_v1 import Namespace, ServiceAccount

from tenantry import errors
from tenantry.kube import localcluster
from tenantry.kube.client import Kube
from tests.waiting import wait_for

SESSION_ID = secrets.token_hex(3)
TEST_LABEL = "tenantry.dev/test-session"
CHARTS = Path(__file__).parent / "data" / "charts"


@pytest.fixture(scope="session", autouse=True)
def local_platform_plugged_in() -> None:
    """What the `tenantry` command does on import: the local platform's traffic wiring and
    S3/SQS endpoint, for the tests that call actions directly on local clusters."""
    from tenantry.local import plugin

    plugin.install()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"integration", "e2e", "faults"} & set(item.path.parts):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private state directory for this session's clusters."""
    path = tmp_path_factory.mktemp("tenantry-state")
    previous = os.environ.get("TENANTRY_STATE_DIR")
    os.environ["TENANTRY_STATE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("TENANTRY_STATE_DIR", None)
    else:
        os.environ["TENANTRY_STATE_DIR"] = previous


# The people the session cluster's API server knows by a static bearer token: the
# Tenantry server proves who calls it by asking that API server (TokenReview).
PEOPLE: dict[str, tuple[str, ...]] = {
    "alice": (),  # owner of the test tenant echo
    "bob": (),  # owner of echo
    "erin": (),  # member of echo
    "carol": (),  # owner of another tenant
    "dana": (),  # platform admin
    "devs-member": ("echo-devs",),  # member of echo through a group
}


@pytest.fixture(scope="session")
def tokens(state_dir: Path) -> dict[str, str]:
    """Each person's bearer token; the session cluster's API server accepts them."""
    return {user: secrets.token_urlsafe(24) for user in PEOPLE}


@pytest.fixture(scope="session")
def cluster(state_dir: Path, tokens: dict[str, str]) -> Iterator[localcluster.LocalCluster]:
    """One real cluster (3 simulated nodes) shared by the whole session."""
    name = f"it-{SESSION_ID}"
    token_file = state_dir / "people-tokens.csv"
    token_file.write_text("".join(
        f'{tokens[user]},{user},{user},"{",".join(groups)}"\n' for user, groups in PEOPLE.items()
    ))  # fmt: skip
    token_file.chmod(0o600)
    created = localcluster.create(name, nodes=3, token_file=token_file)
    try:
        yield created
    finally:
        localcluster.delete(name)


@pytest.fixture(scope="session")
def admin(cluster: localcluster.LocalCluster) -> Iterator[Kube]:
    """The cluster's admin connection."""
    with cluster.connect() as kube:
        yield kube


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].rstrip("-")


@pytest.fixture
def namespace(admin: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, with its default ServiceAccount ready."""
    name = f"{_slug(request.node.name)}-{secrets.token_hex(2)}"
    admin.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {TEST_LABEL: SESSION_ID}},
        }
    )

    def has_default_account() -> bool:
        try:
            admin.get(ServiceAccount, "default", namespace=name)
        except errors.NotFoundError:
            return False
        return True

    wait_for(has_default_account, f"the default ServiceAccount of namespace {name}",
             timeout_s=30)  # fmt: skip
    try:
        yield name
    finally:
        admin.delete(Namespace, name)


@pytest.fixture(scope="session")
def aws_server(state_dir: Path) -> Iterator[str]:
    """The local S3/SQS server (moto, a real HTTP server), for the whole session."""
    from tenantry.local import awsserver

    server = awsserver.start()
    try:
        yield server.endpoint
    finally:
        awsserver.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server on loopback for the whole session."""
    from tenantry.local import postgres

    with postgres.server() as url:
        yield url
