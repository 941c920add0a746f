"""The ``rarecast`` command: a thin layer over the Python API.

Each sub-command lives in its own module and registers itself on :data:`rarecast.cli.app.app`. Errors that
rarecast raises on purpose, and usage errors (a missing or unknown option, an unknown command, a bad option
value), print as one line and exit with status 2; a scoring run that failed
(:class:`~rarecast.errors.RunFailed`: too many of its queries failed) prints one line and exits with status 1.

Commands import the library inside their bodies: every command module is loaded to build ``--help``, and
importing the whole library there (numpy, scipy, matplotlib, and torch for a model) would make ``rarecast
--help`` and a mistyped option take seconds instead of a fraction of one.
"""

from __future__ import annotations

import sys

import typer

from rarecast.cli.app import app
from rarecast.errors import RarecastError, RunFailed

# typer parses with its own copy of click (newer typer) or with the click package (older typer); its public
# BadParameter comes from whichever it uses, and so do the other exception classes.
_click = sys.modules[typer.BadParameter.__module__]


def main() -> None:
    """Entry point of the ``rarecast`` console script."""
    register_commands()
    try:
        status = app(standalone_mode=False, prog_name="rarecast")
    except RunFailed as exc:
        _fail(str(exc), status=1)
    except RarecastError as exc:
        _fail(str(exc))
    except getattr(_click, "NoArgsIsHelpError", ()) as exc:  # `rarecast` alone: the help is the answer
        exc.show()
        sys.exit(2)
    except _click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "rarecast"
        _fail(f"{exc.format_message().rstrip('.')}; see {where} --help")
    except _click.ClickException as exc:
        _fail(exc.format_message())
    except typer.Abort:
        sys.exit(130)
    if isinstance(status, int):  # typer.Exit, and Ctrl-C (130), return their status outside standalone mode
        sys.exit(status)


def register_commands() -> None:
    """Import the command modules, which register themselves on :data:`app`."""
    from rarecast.cli import (  # noqa: F401 (imported to register their commands)
        allocate,
        backtest,
        export,
        forecast,
        importers,
        queries,
        report,
        run,
        score,
    )


def _fail(message: str, status: int = 2) -> None:
    """The one error line (whitespace folded, so a message never spans lines), then exit ``status``."""
    print(f"rarecast: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(status)
