"""Property tests: whatever a person writes into the platform repository, whatever S3
sends, each input gives a clear error of the project's own type or success, never a
traceback.

Each document is generated (random YAML values, or one mutation of a valid example
file: a field removed, replaced by a value of another type, or an unknown one added),
written into a copy of ``examples/platform-repo`` and loaded the way the CLI, the
server and the workers load it. Only `SpecError` (naming the file and the field) is an
acceptable failure; anything else escaping is a bug. Derandomized and without an
example database so CI sees the same examples as a laptop.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantry import errors
from tenantry.events import s3
from tenantry.observability import config, rules
from tenantry.spec import quantities, repository

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"

# Reproducible: the same examples on every machine, and no example database to carry.
BOUNDED = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Loading a whole repository takes ~50 ms; fewer examples keep the module under a minute.
WHOLE_REPO = settings(BOUNDED, max_examples=100)

# Strings people (and attackers) really write: quotes, non-ASCII names, paths out of
# the repository, very long names, NUL bytes, YAML-looking text, lone surrogates
# (which cannot be encoded as UTF-8 at all).
ODD_STRINGS = [
    "",
    " ",
    "José",
    "Müller-Lüdenscheidt",
    "日本語",
    "../../etc/passwd",
    "../",
    "a" * 300,
    "x" * 10_000,
    "a\x00b",
    "\x00",
    "'",
    '"',
    'it\'s "quoted"',
    'web"} or up{tenant="payments',
    "2020-13-45",
    "1e99999999",
    "9" * 5000,
    "null",
    "~",
    "yes",
    "-1",
    "\n",
    "trailing\n",
    "\u2028",
    "\ud800",
    "payments",
    "production",
    "500m",
]
odd_text = st.sampled_from(ODD_STRINGS) | st.text(max_size=40)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**70, -(2**70), 10**400])
    | st.floats(allow_nan=True, allow_infinity=True)
    | odd_text
)
keys = odd_text | st.integers(min_value=-5, max_value=5) | st.booleans()
yaml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)

# Raw file contents that are not a YAML dump of anything: syntax errors, invalid
# UTF-8, dates that do not exist, nesting deeper than a recursive parser goes.
RAW_TEXTS = [
    b"",
    b"a: [",
    b"a: 2020-13-45\n",
    b"when: 2021-02-30 10:00:00\n",
    b"\xff\xfe\x00bad utf-8",
    b"name: \x00\n",
    b"[" * 700 + b"]" * 700,  # PyYAML recurses per level: deeper than its stack
    b"a: " + b"{a: " * 700 + b"1" + b"}" * 700,
    b"*alias\n",
    b"&a [*a]\n",
    b"? [a, b]\n: c\n",
    b"- 1\n- 2\n",
    b"just a string\n",
    b"name: payments\n\tbad: tab\n",
    b"cpu: 1e99999999\n",
    b"%YAML 9.9\n---\na: 1\n",
    b"!!python/object:os.system {}\n",
]
raw_bytes = (
    st.sampled_from(RAW_TEXTS)
    | st.binary(max_size=60)
    | odd_text.map(lambda s: s.encode("utf-8", "surrogatepass"))
)


def dump(value: Any) -> bytes:
    """YAML for ``value`` as a person could have written it (lone surrogates included)."""
    text = yaml.safe_dump(value, allow_unicode=True, sort_keys=False)
    return text.encode("utf-8", "surrogatepass")


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    # Every place in a document a mutation can hit (the document itself excluded).
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield (*prefix, i)
            yield from _paths(child, (*prefix, i))


@st.composite
def mutated(draw: st.DrawFn, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with one field removed, replaced (wrong type or odd value), or an
    unknown field added somewhere."""
    doc = copy.deepcopy(document)
    path = draw(st.sampled_from(list(_paths(doc))))
    *parents, last = path
    container: Any = doc
    for step in parents:
        container = container[step]
    kind = draw(st.sampled_from(["remove", "replace", "replace", "unknown"]))
    if kind == "remove":
        del container[last]
    elif kind == "replace":
        container[last] = draw(yaml_values)
    else:
        target = container[last] if isinstance(container[last], dict) else doc
        target[draw(odd_text | st.just("quotas"))] = draw(yaml_values)
    return doc


def _yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


PLATFORM = _yaml(EXAMPLE / "platform.yaml")
TENANT = _yaml(EXAMPLE / "tenants" / "payments.yaml")
SERVICE = _yaml(EXAMPLE / "services" / "payments" / "api" / "service.yaml")
ALERTS = {
    "groups": [
        {
            "name": "api",
            "interval": "1m",
            "rules": [
                {
                    "alert": "ApiDown",
                    "expr": 'up{tenant="payments", service="api"} == 0',
                    "for": "5m",
                    "labels": {"severity": "page"},
                    "annotations": {"summary": "payments/api is down"},
                },
                {"record": "payments:requests:rate5m", "expr": "sum(rate(requests[5m]))"},
            ],
        }
    ]
}

# Each file a person edits, relative to the repository, with its valid content.
FILES = {
    "platform.yaml": PLATFORM,
    "tenants/payments.yaml": TENANT,
    "services/payments/api/service.yaml": SERVICE,
}


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One private copy of the example platform repository for the module; each example
    edits files in it through `edited`, which puts them back."""
    root = tmp_path_factory.mktemp("bad-input") / "platform-repo"
    shutil.copytree(EXAMPLE, root)
    return root


@contextmanager
def edited(root: Path, file: str, content: bytes) -> Iterator[Path]:
    """``root`` with ``file`` holding ``content`` until the block ends (then as before)."""
    path = root / file
    before = path.read_bytes() if path.exists() else None
    path.write_bytes(content)
    try:
        yield root
    finally:
        if before is None:
            path.unlink()
        else:
            path.write_bytes(before)


def load_or_refuse(root: Path, changed: str) -> repository.Repository | None:
    """The repository, or None after checking its `SpecError` names files and fields.

    Any other exception escapes and fails the test: that is the property."""
    try:
        return repository.load(root)
    except errors.SpecError as e:
        assert e.problems, "a SpecError without problems tells nobody what to fix"
        text = str(e)
        for problem in e.problems:
            assert problem.file and problem.field and problem.message and problem.fix, problem
            assert f"{problem.file}: {problem.field}: " in text
        # A platform.yaml change may only show in the tenant files that now break; any
        # other change is reported in the file itself.
        if changed != "platform.yaml":
            assert changed in {p.file for p in e.problems}, (changed, text)
        return None


def plans_monitoring(repo: repository.Repository) -> None:
    """A repository that loads is also planned into monitoring configuration without
    an exception: the planners report problems per tenant instead."""
    own, _ = config.custom_rules(repo)
    with tempfile.TemporaryDirectory() as out:
        config.plan(
            repo,
            Path(out),
            config.Settings(),
            own_rules={service.ref: groups for service, groups in own},
        )


FILE_NAMES = st.sampled_from(sorted(FILES))


@WHOLE_REPO
@given(data=st.data(), file=FILE_NAMES)
def test_a_mutated_example_file_loads_or_is_refused_naming_file_and_field(
    example: Path, data: st.DataObject, file: str
) -> None:
    document = data.draw(mutated(FILES[file]), label="document")
    with edited(example, file, dump(document)) as root:
        repo = load_or_refuse(root, file)
        if repo is not None:
            plans_monitoring(repo)


@WHOLE_REPO
@given(file=FILE_NAMES, document=yaml_values)
def test_any_yaml_value_as_a_file_loads_or_is_refused(
    example: Path, file: str, document: Any
) -> None:
    with edited(example, file, dump(document)) as root:
        assert load_or_refuse(root, file) is None  # no random value is a valid file


@WHOLE_REPO
@given(file=FILE_NAMES, content=raw_bytes)
def test_any_bytes_as_a_file_are_refused_naming_the_file(
    example: Path, file: str, content: bytes
) -> None:
    with edited(example, file, content) as root:
        assert load_or_refuse(root, file) is None


@WHOLE_REPO
@given(name=odd_text, document=st.sampled_from([TENANT]) | yaml_values)
def test_a_new_tenant_file_of_any_name_loads_or_is_refused(
    example: Path, name: str, document: Any
) -> None:
    file_name = f"{name}.yaml"
    if "/" in name or "\x00" in name or len(file_name.encode("utf-8", "surrogatepass")) > 255:
        return  # not a file name any file system takes
    try:
        file_name.encode("utf-8")
    except UnicodeEncodeError:
        return  # nor is a lone surrogate
    tenant = example / "tenants" / file_name
    if tenant.exists() or tenant.resolve().parent != (example / "tenants").resolve():
        return  # `..` or an existing tenant: not a new file
    with edited(example, f"tenants/{file_name}", dump(document)) as root:
        load_or_refuse(root, f"tenants/{file_name}")


# Numbers the quantity grammar admits, up to exponents no Decimal can hold.
quantity_like = (
    st.from_regex(r"[+-]?[0-9]{1,4}(\.[0-9]{0,3})?([eE][+-]?[0-9]{1,12}|Ki|Gi|m|k|E)?",
                  fullmatch=True)
    | st.sampled_from(["1e99999999", "1e-99999999", "9" * 5000 + "e1", "1e" + "9" * 5000])
    | odd_text
)  # fmt: skip


@BOUNDED
@given(text=quantity_like)
def test_any_quantity_text_is_a_value_or_a_quantity_error(text: str) -> None:
    try:
        quantities.parse(text)
    except quantities.QuantityError as e:
        assert repr(text)[:40] in str(e) or "too large" in str(e)


@WHOLE_REPO
@given(value=quantity_like)
def test_a_quota_of_any_text_loads_or_is_refused_naming_the_field(
    example: Path, value: str
) -> None:
    tenant = copy.deepcopy(TENANT)
    tenant["quota"]["cpu"] = value
    with edited(example, "tenants/payments.yaml", dump(tenant)) as root:
        try:
            repository.load(root)
        except errors.SpecError as e:
            assert [(p.file, p.field) for p in e.problems] == [
                ("tenants/payments.yaml", "quota.cpu")
            ], str(e)


def test_the_example_repository_itself_loads_and_plans() -> None:
    # The properties above start from it; it must be valid for them to mean anything.
    repo = repository.load(EXAMPLE)
    plans_monitoring(repo)


# --- a service's own alerts.yaml --------------------------------------------------------


ALERTS_FILE = f"services/payments/api/{rules.FILE_NAME}"


@pytest.fixture(scope="module")
def loaded(example: Path) -> repository.Repository:
    """The example repository, loaded once: service_rules reads alerts.yaml on each call."""
    return repository.load(example)


def check_alerts(repo: repository.Repository, content: bytes) -> None:
    """service_rules gives rules or problems naming alerts.yaml and a field, never raises."""
    with edited(repo.root, ALERTS_FILE, content):
        groups, problems = rules.service_rules(repo.service("payments/api"))
        assert not (groups and problems)
        for problem in problems:
            assert problem.file == ALERTS_FILE, problem
            assert problem.field and problem.message, problem
        for group in groups:
            for rule in group["rules"]:
                # Scoped to its own tenant, whatever it asked for.
                assert rule["labels"]["tenant"] == "payments"
        if groups:
            plans_monitoring(repo)


@BOUNDED
@given(document=mutated(ALERTS))
def test_a_mutated_alerts_file_gives_rules_or_problems(
    loaded: repository.Repository, document: dict[str, Any]
) -> None:
    check_alerts(loaded, dump(document))


@BOUNDED
@given(content=raw_bytes | yaml_values.map(dump))
def test_any_alerts_file_gives_rules_or_problems(
    loaded: repository.Repository, content: bytes
) -> None:
    check_alerts(loaded, content)


def test_the_valid_alerts_file_is_accepted(loaded: repository.Repository) -> None:
    with edited(loaded.root, ALERTS_FILE, dump(ALERTS)):
        groups, problems = rules.service_rules(loaded.service("payments/api"))
    assert problems == []
    assert [g["name"] for g in groups] == ["payments.api.api"]


# --- S3 event bodies --------------------------------------------------------------------

VALID_EVENT = {
    "Records": [
        {
            "eventName": "ObjectCreated:Put",
            "eventTime": "2024-01-01T00:00:00.000Z",
            "s3": {
                "bucket": {"name": "charts"},
                "object": {"key": "payments/api-1.4.0.tgz", "size": 1},
            },
        }
    ]
}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | odd_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=20,
)
RAW_BODIES = [
    "",
    "{",
    "null",
    "[]",
    "1" * 5000,
    "[" * 100_000,
    '{"a":' * 100_000,
    '{"Event": "s3:TestEvent"}',
    '{"Records": []}',
    '{"Records": "x"}',
    '{"Records": [null, 1, "x", [], {}]}',
    "\ud800",
    "NaN",
]


def _event_body(document: Any) -> str:
    return json.dumps(document, ensure_ascii=False)


def check_events(body: str) -> None:
    """parse() returns typed events, and a ChartCreated only for a real chart key."""
    events = s3.parse(body)
    assert events, "every message gives at least one event (or the reason it has none)"
    for event in events:
        assert isinstance(event, s3.ChartCreated | s3.TestEvent | s3.Invalid), event
        if isinstance(event, s3.Invalid):
            assert event.reason
        if isinstance(event, s3.ChartCreated):
            # The key is exactly what the chart's three parts spell: nothing before,
            # nothing after (not even a newline), so the deployer fetches that archive.
            assert event.key == f"{event.tenant}/{event.service}-{event.version}.tgz", event


@BOUNDED
@given(document=mutated(VALID_EVENT))
def test_a_mutated_s3_event_is_parsed_into_typed_events(document: dict[str, Any]) -> None:
    check_events(_event_body(document))


@BOUNDED
@given(body=st.sampled_from(RAW_BODIES) | st.text(max_size=60) | json_values.map(_event_body))
def test_any_sqs_body_is_parsed_into_typed_events(body: str) -> None:
    check_events(body)


@BOUNDED
@given(key=odd_text | st.sampled_from(["payments/api-1.4.0.tgz\n", "payments%2Fapi-1.4.0.tgz"]))
def test_any_object_key_is_a_chart_or_invalid(key: str) -> None:
    record = copy.deepcopy(VALID_EVENT)
    record["Records"][0]["s3"]["object"]["key"] = key
    check_events(_event_body(record))


def test_the_valid_event_is_a_chart() -> None:
    assert s3.parse(_event_body(VALID_EVENT)) == [
        s3.ChartCreated(
            "charts",
            "payments/api-1.4.0.tgz",
            "payments",
            "api",
            "1.4.0",
            "2024-01-01T00:00:00.000Z",
        )
    ]
