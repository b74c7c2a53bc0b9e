"""How every command of the project ends: a message and exit status 2 for the user's errors.

``python -m experiments.train`` and the other entry points call :func:`run_cli`: the project's own
errors (:class:`~idsf_pyg.errors.IDSFError`: bad data, bad config, a run folder in the way, ...) are
printed as ``error: <message>`` on stderr with exit status 2, the status argparse uses for usage
errors. ``--debug`` on the command line (or ``IDSF_DEBUG=1`` in the environment) shows the traceback
instead. Unexpected errors keep their traceback: they are bugs to report.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any, Callable, List, Optional, Sequence

from .errors import IDSFError

DEBUG_FLAG = "--debug"
#: Seconds a rank other than 0 waits on a user error for torchrun to stop it (rank 0 meets the same error,
#: reports it and exits); a rank still running then reports its own error (one only it met).
OTHER_RANK_WAIT_S = 30.0
DEBUG_HELP = "show the Python traceback of an error instead of a one-line message (also IDSF_DEBUG=1)"


def debug_requested(argv: Sequence[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get("IDSF_DEBUG", "") not in ("", "0")


def other_rank() -> bool:
    """Whether this process is a rank other than 0 of a ``torchrun`` job (``WORLD_SIZE`` > 1)."""
    return os.environ.get("WORLD_SIZE", "1") not in ("", "1") and os.environ.get("RANK", "0") != "0"


def run_cli(main: Callable[[Optional[List[str]]], Any], argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``main(argv)`` and returns the process exit status (0, 2 for user errors, 130 on Ctrl-C).

    Under ``torchrun`` every rank meets the same user error (the same options, or rank 0's error shared
    with all): rank 0 reports it and exits, and torchrun stops the job; the other ranks wait for that
    quietly, so that the error is printed once and no rank's exit cuts rank 0's report short."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    try:
        main(argv)
    except IDSFError as e:
        if debug:
            traceback.print_exc()
        elif other_rank():
            time.sleep(OTHER_RANK_WAIT_S)
            print(f"error (rank {os.environ.get('RANK')}): {e}", file=sys.stderr, flush=True)
        else:
            print(f"error: {e}", file=sys.stderr)
            print(f"(add {DEBUG_FLAG} for the traceback)", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # argparse's usage errors (status 2) and --help (0)
        code = e.code
        if code is None or isinstance(code, int):
            return code or 0
        print(f"error: {code}", file=sys.stderr)  # SystemExit("message")
        return 2
    return 0


def entry_point(main: Callable[[Optional[List[str]]], Any]) -> None:
    """``if __name__ == "__main__": entry_point(main)``."""
    sys.exit(run_cli(main))
