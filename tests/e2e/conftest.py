"""End-to-end: the user's workflow through the `tenantry` command on real clusters."""
