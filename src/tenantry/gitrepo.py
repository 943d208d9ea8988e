"""The git adapter: which files changed between two refs of the platform repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tenantry import errors


def changed_paths(root: Path, *, base: str, head: str) -> list[str]:
    """Paths under ``root`` (relative to it) that differ between ``base`` and ``head``.

    Three dots: what ``head`` changed since it left ``base``, as a pull request shows it.
    """
    argv = ["git", "-C", str(root), "diff", "--name-only", "--relative", f"{base}...{head}"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise errors.TenantryError(f"git could not run in {root}: {e}") from e
    if done.returncode != 0:
        raise errors.UsageError(
            f"git diff {base}...{head} failed in {root}: {done.stderr.strip()}",
            fix="pass refs that exist (fetch the base branch first in CI: git fetch origin main)",
        )
    return [line for line in done.stdout.splitlines() if line]


def _git(root: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise errors.TenantryError(f"git could not run in {root}: {e}") from e
    if done.returncode != 0:
        raise errors.UsageError(
            f"git {' '.join(args)} failed in {root}: {done.stderr.strip()}",
            fix="run it inside a git checkout of the platform repository",
        )
    return done.stdout.strip()


def head_commit(root: Path) -> str:
    """The commit checked out in ``root``."""
    return _git(root, "rev-parse", "HEAD")


def head_author(root: Path) -> str:
    """``Name <email>`` of the commit checked out in ``root``."""
    return _git(root, "log", "-1", "--format=%an <%ae>")
