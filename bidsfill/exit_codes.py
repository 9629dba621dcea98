"""Exit codes of the BIDS Apps execution specification, in one place."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode", "BidsfillExit"]


class ExitCode(IntEnum):
    SUCCESS = 0
    FAILURE = 1
    INVALID_DATASET = 16
    UNKNOWN_LEVEL = 17
    NO_MATCH = 18
    USAGE = 64
    MISSING_INPUT = 66


class BidsfillExit(Exception):
    """Raised anywhere in the CLI to stop with one sentence and an exit code."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
