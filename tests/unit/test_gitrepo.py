"""Which git refs reach git (pure: git is not run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantry import errors, gitrepo


@pytest.mark.parametrize("ref", ["origin/main", "HEAD~1", "v1.2.3", "abc123"])
def test_a_ref_passes_unchanged(ref: str) -> None:
    assert gitrepo.check_ref("--base", ref) == ref


@pytest.mark.parametrize("ref", ["--output=/tmp/x", "-p", ""])
def test_a_ref_git_would_read_as_an_option_is_a_usage_error_naming_the_option(ref: str) -> None:
    with pytest.raises(errors.UsageError) as raised:
        gitrepo.check_ref("--head", ref)
    assert "--head" in raised.value.message
    assert raised.value.fix is not None and "--head" in raised.value.fix


def test_changed_paths_refuses_an_option_before_running_git(tmp_path: Path) -> None:
    with pytest.raises(errors.UsageError, match="--base '--output="):
        gitrepo.changed_paths(tmp_path, base=f"--output={tmp_path / 'x'}", head="HEAD")
    assert not (tmp_path / "x").exists()
