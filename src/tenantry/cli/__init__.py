"""The `tenantry` command line: a thin layer that parses options, calls an action,
and prints its result. No logic lives here that the API or workers would need."""
