"""What every command line of the project does with an error: one line on stderr, exit status 1."""

from __future__ import annotations

import sys
from collections.abc import Callable

INPUT_ERRORS = (ValueError, KeyError, OSError)


def run_command(command: Callable[..., int], *args) -> int:
    try:
        return command(*args)
    except INPUT_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 1
