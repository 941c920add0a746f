"""The typer application that every ``rarecast`` sub-command registers itself on."""

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Forecast rare language-model behaviors.")
