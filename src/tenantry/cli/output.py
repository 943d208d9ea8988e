"""Print results as a table for people or as JSON/YAML for scripts.

Commands build plain rows (lists of dicts with JSON-safe values) and hand them
here, so every command supports ``--output`` the same way.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TextIO

import yaml
from rich.console import Console
from rich.table import Table

Format = Literal["table", "json", "yaml"]

# Piped output (CI logs, `| less`) gets wide tables instead of rich's 80-column default,
# so paths and URLs stay on one line.
_PIPE_WIDTH = 200


def _width(stream: TextIO) -> int | None:
    return None if stream.isatty() else _PIPE_WIDTH


def _consoles() -> tuple[Console, Console]:
    # Progress and messages go to stderr so stdout stays parseable under --output json.
    return (
        Console(stderr=True, highlight=False, soft_wrap=True, width=_width(sys.stderr)),
        Console(highlight=False, width=_width(sys.stdout)),
    )


err_console, out_console = _consoles()


def bind_streams() -> None:
    """Make the consoles again for the current standard streams: a console decides at
    creation whether it writes to a terminal (colours, width), and a warm process's
    child (`tenantry.cli.warm`) gets its command's streams after this module loaded."""
    global err_console, out_console
    err_console, out_console = _consoles()


def emit(
    data: Sequence[Mapping[str, Any]] | Mapping[str, Any], fmt: Format, *, title: str = ""
) -> None:
    """Print ``data`` in ``fmt``; a mapping prints as one record, a sequence as rows."""
    if fmt == "json":
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    if fmt == "yaml":
        sys.stdout.write(yaml.safe_dump(_plain(data), sort_keys=False))
        return
    rows = [data] if isinstance(data, Mapping) else list(data)
    if not rows:
        out_console.print(f"(no {title or 'rows'})")
        return
    table = Table(title=title or None, title_justify="left")
    columns = list(rows[0].keys())
    for column in columns:
        table.add_column(header(column), overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    out_console.print(table)


def emit_sections(
    sections: Mapping[str, tuple[str, Sequence[Mapping[str, Any]]]], fmt: Format
) -> None:
    """Several tables for people (each with its title); one document keyed by section
    for scripts."""
    if fmt == "table":
        for title, rows in sections.values():
            emit(rows, "table", title=title)
    else:
        emit({key: rows for key, (_, rows) in sections.items()}, fmt)


# A lower-case letter or digit followed by an upper-case one: where a camelCase key
# (JSON's convention for the rows' keys) starts its next word.
_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def header(key: str) -> str:
    """A table column's header for a row key: ``logLine`` and ``log_line`` -> ``LOG LINE``.

    Upper-casing a camelCase key alone ran its words together (``LOGLINE``).
    """
    return _WORD_START.sub(" ", key).replace("_", " ").upper()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _plain(data: Any) -> Any:
    # yaml.safe_dump refuses Path and other non-builtin values; JSON's rules are the contract.
    return json.loads(json.dumps(data, default=str))
