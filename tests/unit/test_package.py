"""Reading a chart's Chart.yaml before packaging it (pure: helm is not run)."""

from __future__ import annotations

import pytest

from tenantry import errors
from tenantry.artifacts.package import chart_metadata

FILE = "services/payments/api/chart/Chart.yaml"


def test_a_mapping_is_read() -> None:
    text = "apiVersion: v2\nname: api\nversion: 1.0.0\n"
    assert chart_metadata(text, file=FILE) == {
        "apiVersion": "v2",
        "name": "api",
        "version": "1.0.0",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- list\n", "is a list, not a mapping"),
        ("just a string\n", "is a str, not a mapping"),
        ("", "is empty, not a mapping"),
        ("name: [unclosed\n", "invalid YAML"),
    ],
)
def test_anything_else_is_a_spec_error_naming_the_file(text: str, expected: str) -> None:
    with pytest.raises(errors.SpecError) as raised:
        chart_metadata(text, file=FILE)
    (problem,) = raised.value.problems
    assert problem.file == FILE
    assert expected in problem.message
    assert problem.fix
