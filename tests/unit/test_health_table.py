"""`integrations health` prints names from Google and users: nothing in them can move an operator's cursor."""

from __future__ import annotations

from services.cli.health import COLUMNS, table


def test_control_characters_in_names_are_printed_as_spaces():
    item = {c: None for c in COLUMNS}
    item.update({"id": 7, "display_name": "Cafe\x1b[2J\x1b[31mred\r\nnext\u2028line\x07"})
    lines = table([item]).splitlines()
    assert len(lines) == 2
    assert not any(not ch.isprintable() for ch in lines[1])
    assert "Cafe [2J [31mred  next line" in lines[1]
