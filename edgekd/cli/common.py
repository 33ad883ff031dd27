"""Options and output helpers shared by the command files."""

from __future__ import annotations

from pathlib import Path

import click

set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe value, e.g. --set distill.train.epochs=3 (repeatable).",
)
quiet_option = click.option("-q", "--quiet", is_flag=True, help="Print only results, no progress.")


def out_option(default: str | None = None, help_text: str = "Output folder."):
    return click.option(
        "--out",
        "out_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=default,
        show_default=default is not None,
        help=help_text,
    )


def make_log(quiet: bool):
    """Progress goes to stderr so stdout stays for results."""
    if quiet:
        return lambda _msg: None
    return lambda msg: click.echo(msg, err=True)


def existing_file(metavar: str):
    return click.argument(metavar.lower(), metavar=metavar, type=click.Path(path_type=Path))


def make_console():
    """A rich console; logs and pipes get 120 columns so the bench table does not wrap."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=120)
