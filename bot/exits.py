"""How a command ends: one line on stderr and the exit code its error carries, alerted once.

Used by :mod:`bot.cli` alone; together they are the only place that maps errors to exit codes
(0 success, 1 failure, 2 bad usage, 75 try again later, 78 configuration: ``docs/design.md``).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import typer

from bot.errors import EXIT_FAILURE, RevbotError, disk_full

if TYPE_CHECKING:
    from bot.alerts import Alerter
    from bot.config import Settings

log = logging.getLogger("bot")


def fatal(message: str, code: int) -> NoReturn:
    from bot.logs import REDACT
    from bot.text import escaped

    typer.echo(f"revbot: {escaped(REDACT(message))}", err=True)
    raise typer.Exit(code=code)


@dataclass
class Run:
    """One command's run: its alerter, once the settings say where alerts go."""

    command: str | None
    alerter: Alerter | None = None

    def alert(self, settings: Settings) -> Alerter:
        from bot import wiring
        from bot.alerts import Alerter

        # The alerter opens its own ledger connection, and only when an alert needs it, so
        # that failures before (or while) the command opens its own are alerted too.
        self.alerter = Alerter(settings, ledger=lambda: wiring.open_ledger(settings))
        return self.alerter

    def failed(self, message: str, code: int, kind: str) -> None:
        if self.command is not None and self.alerter is not None:
            from bot.logs import REDACT
            from bot.text import escaped

            self.alerter.failure(self.command, escaped(REDACT(message)), code, kind=kind)


@contextmanager
def guard(command: str | None = None) -> Iterator[Run]:
    """Every failure becomes one line on stderr and the exit code its class carries; with a
    ``command`` whose run was given an alerter, it is also alerted (once per incident)."""
    run = Run(command)
    try:
        yield run
    except RevbotError as e:
        run.failed(str(e), e.exit_code, type(e).__name__)
        fatal(str(e), e.exit_code)
    except KeyboardInterrupt:
        fatal("interrupted; the ledger is consistent, run the command again", 130)
    except typer.Exit:
        raise
    except Exception as e:  # a bug: still one line, the traceback only with --verbose
        log.debug("unexpected error", exc_info=True)
        if disk_full(e):
            message = (
                f"the disk is full ({e}); free some space on the disk that holds DATA_DIR and "
                "run the command again: the ledger keeps what was committed"
            )
        else:
            message = (
                f"unexpected error ({type(e).__name__}: {e}); run with --verbose for details "
                "and please report it"
            )
        run.failed(message, EXIT_FAILURE, type(e).__name__)
        fatal(message, EXIT_FAILURE)
    finally:
        if run.alerter is not None:
            run.alerter.close()


def leave(app: typer.Typer, args: list[str]) -> NoReturn:
    """Run the app and end the process with its exit code.

    When the command returns its work is done (files closed, ledger committed), so the process
    leaves without the interpreter's teardown (~0.15 s after a workbook write), and with a
    higher GC threshold: a run frees many small containers and makes hardly any cycles.
    """
    gc.set_threshold(50_000, 20, 100)
    try:
        app(args=args, prog_name="revbot")
        code: int | str | None = 0
    except SystemExit as e:
        code = e.code
    if isinstance(code, str):  # what sys.exit("message") would have printed
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed pipe (`revbot status | head`)
            stream.flush()
    logging.shutdown()
    os._exit(code or 0)
