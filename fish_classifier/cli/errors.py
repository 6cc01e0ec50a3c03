"""The command line's exit codes, and a usage error said in one line."""

import sys

WRITE_FAILED = 1  # the CSV, the feedback store or a contact sheet could not be written or reached
USAGE_ERROR = 2
INTERRUPTED = 130  # what shells report for a command stopped by Ctrl-C
TERMINATED = 143  # and by `kill` (128 + SIGTERM)


def usage_error(message: str) -> int:
    print(f"fish-classifier: error: {message}", file=sys.stderr)
    return USAGE_ERROR
