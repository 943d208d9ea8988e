"""A service's own alert rules, checked and scoped to its tenant (pure).

A team adds Prometheus rules for a service in ``services/<tenant>/<service>/alerts.yaml``
(the ``groups:`` format of a Prometheus rule file). Before they join the platform's
rules each one is checked here — shape, durations, and that its expression selects
no other tenant — and then pinned to the tenant: ``tenant``, ``namespace`` and
``service`` labels are forced onto every alert and recorded series, so a rule can
never page another team. Syntax errors in the expression are found by the real
``promtool check rules`` (`tenantry.observability.files`). Any problem skips that
service's rules only.

The selector check reads ``tenant``/``namespace`` matchers; it cannot make an
expression that names no tenant at all select only its own (that would need the
PromQL parser), so metrics about several tenants should not be exposed without a
``tenant`` label in the first place.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tenantry.observability.problems import Problem
from tenantry.observability.promql import label_value
from tenantry.spec.repository import ServiceSource, YamlError, parse_yaml

FILE_NAME = "alerts.yaml"
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
_SCOPED_MATCHER = re.compile(r"\b(exported_)?(tenant|namespace)\s*(=~|!~|!=|=)\s*\"([^\"]*)\"")
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}


def path(service: ServiceSource) -> Path:
    """Where a service's own rules live."""
    return service.directory / FILE_NAME


def _rule_problems(rule: Any, where: str, tenant: str) -> list[tuple[str, str]]:
    if not isinstance(rule, dict):
        return [(where, "must be a mapping with alert or record, and expr")]
    found = [(f"{where}.{k}", "is not a rule field") for k in rule if k not in _RULE_KEYS]
    kinds = [k for k in ("alert", "record") if k in rule]
    if len(kinds) != 1:
        found.append((where, "needs exactly one of alert: or record:"))
    elif not isinstance(rule[kinds[0]], str) or not _NAME.match(rule[kinds[0]]):
        found.append((f"{where}.{kinds[0]}", f"{rule[kinds[0]]!r} is not a metric/alert name"))
    expr = rule.get("expr")
    if not isinstance(expr, str) or not expr.strip():
        found.append((f"{where}.expr", "is missing (a PromQL expression)"))
    else:
        for match in _SCOPED_MATCHER.finditer(expr):
            label, op, value = match.group(2), match.group(3), match.group(4)
            if op != "=" or value != tenant:
                own = f"{label}={label_value(tenant)}"
                found.append((f"{where}.expr", f"selects {label}{op}{value!r}: a rule may only "
                              f"select its own tenant ({own})"))  # fmt: skip
    for key in ("for", "keep_firing_for"):
        if key in rule and not (isinstance(rule[key], str) and _DURATION.match(rule[key])):
            found.append((f"{where}.{key}", f"{rule[key]!r} is not a duration like 30s or 5m"))
    for key in ("labels", "annotations"):
        value = rule.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            found.append((f"{where}.{key}", "must map names to strings"))
    return found


def service_rules(service: ServiceSource) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The service's own rule groups, scoped to its tenant, or the problems that skip them."""
    file = path(service)
    if not file.exists():
        return [], []
    shown = f"services/{service.tenant}/{service.name}/{FILE_NAME}"

    def problem(field: str, message: str) -> Problem:
        return Problem(service.tenant, shown, field, message)

    try:
        doc = parse_yaml(file.read_text())
    except (OSError, UnicodeDecodeError) as e:
        return [], [problem("(file)", f"cannot be read: {e}")]
    except YamlError as e:
        return [], [problem(e.where, str(e))]
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
        return [], [problem("groups", "is missing (a list of rule groups)")]
    problems: list[Problem] = []
    groups: list[dict[str, Any]] = []
    forced = {"tenant": service.tenant, "namespace": service.tenant, "service": service.name}
    for i, group in enumerate(doc["groups"]):
        where = f"groups[{i}]"
        if not isinstance(group, dict) or not isinstance(group.get("name"), str):
            problems.append(problem(f"{where}.name", "is missing"))
            continue
        if not isinstance(group.get("rules"), list) or not group["rules"]:
            problems.append(problem(f"{where}.rules", "is missing (a list of rules)"))
            continue
        rules = []
        for j, rule in enumerate(group["rules"]):
            found = _rule_problems(rule, f"{where}.rules[{j}]", service.tenant)
            problems += [problem(field, message) for field, message in found]
            if not found:
                rules.append({**rule, "labels": {**rule.get("labels", {}), **forced}})
        extra = {k: v for k, v in group.items() if k == "interval"}
        groups.append({"name": f"{service.tenant}.{service.name}.{group['name']}",
                       **extra, "rules": rules})  # fmt: skip
    if problems:
        return [], problems
    return groups, []
