"""The chaos actions' argument parsing (chaos/actions.py)."""

from __future__ import annotations

import pytest

from openbell.chaos.actions import parse_signal
from openbell.errors import SpecError


def test_signals_by_name_or_number() -> None:
    assert parse_signal("SIGKILL") == 9 and parse_signal("kill") == 9 and parse_signal("15") == 15
    with pytest.raises(SpecError, match="signal"):
        parse_signal("SIGNOPE")
