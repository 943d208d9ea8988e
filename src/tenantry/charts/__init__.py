"""Charts: the platform's base chart (`service/`, a real Helm chart kept here),
rendered manifests (`manifests`), policy on them (`policy`), scaffolding
(`scaffold`) and rendering a repository's service through Helm (`render`)."""

from pathlib import Path

BASE_CHART = Path(__file__).parent / "service"
