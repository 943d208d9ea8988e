"""The command line imports only the module of the command it runs (pure: modules are
imported, nothing is run)."""

from __future__ import annotations

import pytest
import typer

from tenantry.cli import app
from tenantry.cli import argv as arguments


def _names(built: typer.Typer) -> list[str]:
    return [c.name or "" for c in built.registered_commands] + [
        g.name or "" for g in built.registered_groups
    ]


@pytest.mark.parametrize("module", list(app.COMMANDS))
def test_each_module_adds_exactly_the_commands_listed_for_it(module: str) -> None:
    assert sorted(_names(app.build((module,)))) == sorted(app.COMMANDS[module])


def test_a_command_is_found_after_root_options_and_their_values() -> None:
    assert arguments.command_of(["-o", "json", "--debug", "verify", "--all"]) == "verify"
    assert arguments.command_of(["--output=yaml", "tenants", "apply"]) == "tenants"
    assert arguments.command_of(["--help"]) is None


def test_a_command_imports_its_own_module_and_help_or_a_typo_imports_all() -> None:
    assert app.modules_for("verify") == ("services",)
    assert app.modules_for("deadletters") == ("delivery",)
    assert app.modules_for(None) == tuple(app.COMMANDS)
    assert app.modules_for("verfy") == tuple(app.COMMANDS)
