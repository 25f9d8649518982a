"""The `lreorg` command line: one module per sub-command.

Layer 5 (the top, beside ``app.py``). May import anything below it. Sub-commands import what
they need lazily so that `lreorg --help` and `lreorg keywords` start fast and work without
torch being loaded.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .. import __version__
from . import (anonymize, anonymize_dataset, bench, demo, evaluate, fit, info, keywords, push,
               train)

__all__ = ["main", "build_parser"]

#: Sub-commands in the order `lreorg --help` lists them.
COMMANDS = (keywords, info, anonymize, anonymize_dataset, train, fit, evaluate, push, demo, bench)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line and exit status 2 (argparse prints the usage block too)."""

    def error(self, message: str):
        self.exit(2, f"lreorg: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lreorg", description="LReOrg face anonymization (latent representation "
                                   "reorganization).")
    parser.add_argument("--version", action="version", version=f"lreorg-hub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # usage errors (one line, status 2), --help and --version (0)
        return e.code if isinstance(e.code, int) else 2
    previous = _stop_cleanly_on_sigterm()
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"lreorg: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lreorg: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # never a traceback for the user: one line naming what failed
        print(f"lreorg: error: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop_cleanly_on_sigterm():
    """SIGTERM (``kill``, a job scheduler, a container stopping) ends a run as Ctrl-C does:
    temporary files removed, nothing half-written. Returns the handler it replaced (None when
    not on the main thread, where signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _one_line(error: BaseException) -> str:
    """The message on one line: a file name's newline or terminal escape is shown escaped
    (``image.names.shown``), never acted on."""
    from ..image.names import shown

    return " ".join(shown(error).split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
