"""Usage errors the BIDS Apps way, shared by every bidsfill command line.

argparse exits with 2 on a bad option; BIDS Apps use 64. ``bidsfill`` and the helper
commands (bidsfill-demo, -simulate, -evaluate) build their parsers from this class.
"""

from __future__ import annotations

import argparse
import sys

from bidsfill.exit_codes import ExitCode

__all__ = ["ToolParser", "fail"]


class ToolParser(argparse.ArgumentParser):
    """argparse with the BIDS Apps usage code (64) instead of argparse's 2."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(int(ExitCode.USAGE), f"{self.prog}: error: {message}\n")


def fail(prog: str, message: str, code: ExitCode) -> int:
    """Print one sentence to stderr and return ``code`` (for ``return fail(...)``)."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return int(code)
