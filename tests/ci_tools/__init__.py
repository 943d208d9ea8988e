"""The tools the tests run the example CI pipelines (examples/ci/) with, pinned here and
installed into the per-machine cache, outside the repository, by `./run test` (or by the
first test that needs them):

- from npm (``package.json``, ``package-lock.json``): gitlab-ci-local runs the GitLab
  pipeline with its shell executor; GitHub's own ``@actions/workflow-parser`` and
  ``@actions/expressions`` read the GitHub Actions workflow (``github_workflow.mjs``);
- from Maven Central: Groovy, whose parser reads the Jenkinsfile (``jenkinsfile.groovy``).

The cache directory is named by a digest of everything above, so a bumped pin installs
afresh beside the old one, and an interrupted install never leaves a half-filled one.

    python -m tests.ci_tools      # install, then print where
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tenantry import paths

HERE = Path(__file__).parent
GROOVY_VERSION = "4.0.33"
GROOVY_ARTIFACTS = ("groovy", "groovy-json")
# Copied next to node_modules: Node resolves a script's imports from where the script is.
SCRIPTS = ("github_workflow.mjs", "json_imports.mjs", "jenkinsfile.groovy")
PINS = ("package.json", "package-lock.json", *SCRIPTS)
INSTALL_TIMEOUT_S = 600


@dataclass(frozen=True)
class Tools:
    """Where the installed tools are."""

    root: Path

    @property
    def gitlab_ci_local(self) -> Path:
        return self.root / "node_modules" / ".bin" / "gitlab-ci-local"

    def script(self, name: str) -> Path:
        return self.root / name

    @property
    def groovy_classpath(self) -> str:
        jars = (self.root / "groovy" / f"{a}-{GROOVY_VERSION}.jar" for a in GROOVY_ARTIFACTS)
        return os.pathsep.join(str(j) for j in jars)


def _digest() -> str:
    digest = hashlib.sha256(f"groovy {GROOVY_VERSION}\n".encode())
    for name in PINS:
        digest.update(name.encode() + b"\0" + (HERE / name).read_bytes())
    return digest.hexdigest()[:16]


def _run(argv: list[str], cwd: Path) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                          timeout=INSTALL_TIMEOUT_S, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed ({done.returncode}):\n"
                           f"{done.stdout[-3000:]}{done.stderr[-3000:]}")  # fmt: skip


def install() -> Tools:
    """Install the pinned tools unless the cache has them; where they are."""
    target = paths.cache_dir() / "ci-tools" / _digest()
    if target.is_dir():
        return Tools(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ci-tools-", dir=target.parent))
    try:
        for name in PINS:
            shutil.copyfile(HERE / name, staging / name)
        _run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], staging)
        for artifact in GROOVY_ARTIFACTS:
            _run(["mvn", "-q", "-B", "dependency:copy",
                  f"-Dartifact=org.apache.groovy:{artifact}:{GROOVY_VERSION}",
                  f"-DoutputDirectory={staging / 'groovy'}"], staging)  # fmt: skip
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Tools(target)
