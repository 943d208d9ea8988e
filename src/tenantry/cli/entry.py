"""The `tenantry` console script (and `python -m tenantry`): a command that a warm
process serves runs there (`tenantry.cli.warm`), every other here (`tenantry.cli.app`).

It imports nothing heavy before it knows which: that is the point of the warm process.
"""

from __future__ import annotations

import sys

from tenantry.cli import argv as arguments
from tenantry.cli import warm


def main() -> None:
    argv = sys.argv[1:]
    if arguments.command_of(arguments.hoist_output_option(argv)) in warm.SERVED:
        code = warm.run(argv)
        if code is not None:
            sys.exit(code)
    from tenantry.cli import app

    app.main()
