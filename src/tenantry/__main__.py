"""`python -m tenantry` is the `tenantry` command."""

from tenantry.cli.app import main

main()
