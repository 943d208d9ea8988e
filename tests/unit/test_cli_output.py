"""How the CLI names table columns (pure: nothing is printed)."""

from __future__ import annotations

import pytest

from tenantry.cli.output import header


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("arrivedAfterSeconds", "ARRIVED AFTER SECONDS"),
        ("logLine", "LOG LINE"),
        ("chart_version", "CHART VERSION"),
        ("name", "NAME"),
        ("s3Bucket", "S3 BUCKET"),
    ],
)
def test_header_splits_camel_case_and_snake_case_keys_into_words(key: str, expected: str) -> None:
    assert header(key) == expected
