"""The `tenantry` command line: a thin layer that parses options, calls an action,
and prints its result. No logic lives here that the API or workers would need.

`entry` is the console script; it hands the commands people repeat while they work to
a warm process (`warm`) and runs every other through `app`, which — besides
`tenantry.local` itself — is the one place that knows the local platform: it plugs it
in when imported, for every command.
"""
