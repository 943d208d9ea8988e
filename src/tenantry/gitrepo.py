"""The git adapter: which files changed between two refs of the platform repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tenantry import errors


def check_ref(option: str, ref: str) -> str:
    """``ref`` if it can only be read as a git ref; `UsageError` naming ``option`` if not.

    A ref starting with '-' would reach git as one of its own options (``--output=FILE``
    writes a file), so it is refused here rather than left to git to interpret.
    """
    if not ref or ref.startswith("-"):
        raise errors.UsageError(
            f"{option} {ref!r} is not a git ref (a ref may not be empty or start with '-')",
            fix=f"pass a branch, tag or commit to {option}, e.g. {option} origin/main",
        )
    return ref


def changed_paths(root: Path, *, base: str, head: str) -> list[str]:
    """Paths under ``root`` (relative to it) that differ between ``base`` and ``head``.

    Three dots: what ``head`` changed since it left ``base``, as a pull request shows it.
    """
    revisions = f"{check_ref('--base', base)}...{check_ref('--head', head)}"
    # --end-of-options and the trailing -- keep git from reading the revisions as an
    # option or a path, even if a check above is ever loosened.
    argv = ["git", "-C", str(root), "diff", "--name-only", "--relative", "--end-of-options",
            revisions, "--"]  # fmt: skip
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
