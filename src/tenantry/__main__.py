"""`python -m tenantry` is the `tenantry` command."""

from tenantry.cli.entry import main

main()
