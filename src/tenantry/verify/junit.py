"""Verification results as JUnit XML, which every CI system shows (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from xml.etree import ElementTree as ET

from tenantry.verify.results import ServiceReport


def to_xml(reports: Sequence[ServiceReport]) -> str:
    """One testcase per check per service; failures carry the full reason."""
    checks = [(report, check) for report in reports for check in report.checks]
    suite = ET.Element(
        "testsuite",
        name="tenantry verify",
        tests=str(len(checks)),
        failures=str(sum(c.status == "failed" for _, c in checks)),
        skipped=str(sum(c.status == "skipped" for _, c in checks)),
        time=f"{sum(c.seconds for _, c in checks):.3f}",
    )
    for report, check in checks:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=report.ref.replace("/", "."),
            name=check.name,
            time=f"{check.seconds:.3f}",
        )
        if check.status == "failed":
            failure = ET.SubElement(case, "failure", message=check.detail.splitlines()[0][:500])
            failure.text = check.detail
        elif check.status == "skipped":
            ET.SubElement(case, "skipped", message=check.detail)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
