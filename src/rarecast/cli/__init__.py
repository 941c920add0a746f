"""The ``rarecast`` command: a thin layer over the Python API.

Each sub-command lives in its own module and registers itself on :data:`app`. Errors that rarecast raises on
purpose print as one line and exit with status 2.
"""

from __future__ import annotations

import sys

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Forecast rare language-model behaviors.")


def main() -> None:
    """Entry point of the ``rarecast`` console script."""
    from rarecast.errors import RarecastError

    # Importing the command modules registers them on `app`.
    from rarecast.cli import forecast  # noqa: F401
    from rarecast.cli import importers  # noqa: F401
    from rarecast.cli import allocate, backtest, export, score  # noqa: F401
    from rarecast.cli import queries, report, run  # noqa: F401

    try:
        app(standalone_mode=False)
    except RarecastError as exc:
        print(f"rarecast: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as exc:  # click's usage errors carry their own exit code
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        raise
