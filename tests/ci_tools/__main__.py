"""`python -m tests.ci_tools`: install the CI pipeline tools (the bootstrap of `./run test`)."""

import sys

from tests.ci_tools import install

print(f"CI pipeline tools in {install().root}", file=sys.stderr)
