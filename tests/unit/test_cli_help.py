"""`integrations --help` reads evenly: every command and option says what it does, metavars are upper case."""

from __future__ import annotations

import argparse

import pytest

from services.cli.main import build_parser


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(" ".join(path) or "integrations", parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, (*path, name))
    return found


@pytest.mark.parametrize(("name", "parser"), _parsers(build_parser()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_and_option_is_described_with_upper_case_metavars(name, parser):
    assert parser.description, f"{name} has no description"
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            assert action.metavar == "COMMAND", name
            assert all(choice.help for choice in action._choices_actions), name
            continue
        assert action.help, f"{name}: {action.option_strings or action.dest} has no help"
        if action.nargs != 0:
            assert action.metavar and action.metavar.isupper(), f"{name}: {action.dest} metavar {action.metavar!r}"


def test_a_missing_command_names_the_placeholder_not_an_internal_name(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["users"])
    err = capsys.readouterr().err
    assert "required: COMMAND" in err and "users_command" not in err
