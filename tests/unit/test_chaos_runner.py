"""Chaos Toolkit as a subprocess (chaos/runner.py): its error lines."""

from __future__ import annotations

from openbell.chaos.runner import error_lines


def test_chaos_error_lines_lose_their_colours() -> None:
    out = ("\x1b[32m[2025-03-03 10:00:00 INFO] Validating\n"
           "\x1b[31m[2025-03-03 10:00:00 ERROR] experiment requires a title\n")
    assert error_lines(out) == "experiment requires a title"
    assert error_lines("Traceback...\njson.decoder.JSONDecodeError: Expecting value\n") == \
        "json.decoder.JSONDecodeError: Expecting value"
