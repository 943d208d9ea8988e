"""Where Tenantry keeps tools and local state, outside any repository.

Built tools are large and slow to build, so they live in a per-machine cache that
every clone and every test run shares; cluster state lives in a per-user state
directory so `tenantry down` can find what `tenantry up` started.
"""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / default


def cache_dir() -> Path:
    """Tenantry's per-machine cache: ``$XDG_CACHE_HOME/tenantry``."""
    return _xdg("XDG_CACHE_HOME", ".cache") / "tenantry"


def tools_dir() -> Path:
    """The tool cache: ``$TENANTRY_TOOLS_DIR``, else ``$XDG_CACHE_HOME/tenantry/tools``."""
    override = os.environ.get("TENANTRY_TOOLS_DIR")
    if override:
        return Path(override).expanduser().resolve()
    return cache_dir() / "tools"


def state_dir() -> Path:
    """Local platform state: ``$TENANTRY_STATE_DIR``, else ``$XDG_STATE_HOME/tenantry``."""
    override = os.environ.get("TENANTRY_STATE_DIR")
    if override:
        return Path(override).expanduser().resolve()
    return _xdg("XDG_STATE_HOME", ".local/state") / "tenantry"


def images_dir() -> Path:
    """Images Tenantry builds itself (no registry is reachable): beside the tool cache."""
    return cache_dir() / "images"
