"""Reading a command line before anything heavy is imported: which command it runs,
and where ``--output`` goes (`tenantry.cli.entry` decides from it whether a warm
process serves the command; `tenantry.cli.app` parses it)."""

from __future__ import annotations

_OUTPUT_FLAGS = ("-o", "--output")


def hoist_output_option(argv: list[str]) -> list[str]:
    """Move every ``-o X``/``--output X``/``--output=X``/``-oX`` to the front of ``argv``.

    ``--output`` is the root callback's option, and click only accepts a group's
    options before the sub-command; people type it after the command, as with
    kubectl and helm (the README does too), so main() moves it where click looks.
    No sub-command has an option or argument spelled ``-o``/``--output``, so such a
    token is always ours; only what follows ``--`` (all positional) is left alone.
    The value is moved unchecked so click still reports a bad one in its own words.
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg in _OUTPUT_FLAGS:
            front += argv[i : i + 2]  # a missing value stays missing: click says so
            i += 2
            continue
        if arg.startswith("--output=") or (arg.startswith("-o") and not arg.startswith("--")):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


def command_of(argv: list[str]) -> str | None:
    """The top-level command ``argv`` runs (after `hoist_output_option`), if any."""
    i = 0
    while i < len(argv):
        if argv[i] in _OUTPUT_FLAGS:
            i += 2
        elif argv[i].startswith("-"):
            i += 1
        else:
            return argv[i]
    return None
