"""The mark for tests that need real nodes: skipped, with the reason, where this machine
cannot run containers (not root, no cgroups, no runc). CI runs as root and runs them."""

from __future__ import annotations

import pytest

from tenantry import errors
from tenantry.kube import realnodes


def _unsupported_reason() -> str | None:
    try:
        realnodes.preflight()
    except errors.RealNodeUnsupportedError as e:
        return str(e)
    return None


_REASON = _unsupported_reason()
needed = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")
