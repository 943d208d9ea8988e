"""The `tenantry` command line: a thin layer that parses options, calls an action,
and prints its result. No logic lives here that the API or workers would need.

The command line is the entry point (workers and servers run as `python -m tenantry
…`), and the one place besides `tenantry.local` that may know the local platform: it
plugs it in here, on import, for every command.
"""

from tenantry.local import plugin

plugin.install()
