"""Errors a user can cause or meet, each mapped to one exit code (see ARCHITECTURE.md).

The CLI prints the message as one line and exits with `exit_code`; no traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3


class OpenbellError(Exception):
    """Base of every error openbell reports to a user."""

    exit_code = EXIT_BAD_INPUT


class SpecError(OpenbellError):
    """A spec, plan or argument is invalid: names the file, the field and what was expected."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, source: str, field: str, expected: str) -> None:
        self.source = source
        self.field = field
        self.expected = expected
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {expected}")


class UsageError(OpenbellError):
    """A command was called with arguments that cannot work together."""

    exit_code = EXIT_BAD_INPUT


class UnreachableError(OpenbellError):
    """The platform or a tool it needs could not be reached or is not installed."""

    exit_code = EXIT_UNREACHABLE
