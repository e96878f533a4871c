"""Exit codes, documented in docs/operator-guide.md, and the one table that maps errors to them."""

from __future__ import annotations

from enum import IntEnum

from gapsync import errors


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    VERIFICATION_FAILED = 3
    BLOCKED_BY_POLICY = 4
    NOTHING_NEW = 5
    INTERRUPTED = 130


# Most specific first: the first matching class decides.
ERROR_EXIT_CODES: list[tuple[type[errors.GapsyncError], ExitCode]] = [
    (errors.VerificationError, ExitCode.VERIFICATION_FAILED),
    (errors.PolicyBlockedError, ExitCode.BLOCKED_BY_POLICY),
    (errors.InputError, ExitCode.USAGE),
    (errors.GapsyncError, ExitCode.ERROR),
]


def exit_code_for(exc: errors.GapsyncError) -> ExitCode:
    for cls, code in ERROR_EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return ExitCode.ERROR
