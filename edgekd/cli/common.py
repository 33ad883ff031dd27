"""Options and output helpers shared by the command files."""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe value, e.g. --set distill.train.epochs=3 (repeatable).",
)


def _verbose_callback(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta["edgekd.verbose"] = True
        from edgekd.api.cli_support import set_verbose

        set_verbose(True)
        ctx.call_on_close(lambda: set_verbose(False))


def quiet_option(func):
    """``-q/--quiet`` (a ``quiet`` argument) and ``-v/--verbose`` (read through the context).

    Quiet prints only results; verbose adds elapsed time to each progress line and lets the
    runtimes' own messages through (see edgekd/verbosity.py). EDGEKD_QUIET=1 and
    EDGEKD_VERBOSE=1 set them from the environment.
    """
    func = click.option(
        "-v",
        "--verbose",
        is_flag=True,
        expose_value=False,
        envvar="EDGEKD_VERBOSE",
        callback=_verbose_callback,
        help="Timestamped progress and the runtimes' own messages.",
    )(func)
    return click.option(
        "-q", "--quiet", is_flag=True, envvar="EDGEKD_QUIET", help="Print only results, no progress."
    )(func)


json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    envvar="EDGEKD_JSON",
    help="Print the result as one JSON document on stdout (tables go to stderr).",
)


def out_option(default: str | None = None, help_text: str = "Output folder."):
    return click.option(
        "--out",
        "out_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=default,
        show_default=default is not None,
        help=help_text,
    )


def data_option(help_text: str):
    """``--data DATA`` (required; the ``data_path`` argument): a dataset file."""
    return click.option("--data", "data_path", required=True, type=click.Path(path_type=Path), help=help_text)


def target_option(help_text: str = "Target profile: name or YAML.", *, required: bool = False):
    """``--target TARGET`` (the ``target_name`` argument, also from EDGEKD_TARGET)."""
    return click.option(
        "--target",
        "target_name",
        required=required,
        metavar="TARGET",
        envvar="EDGEKD_TARGET",
        help=help_text,
    )


def threads_option(help_text: str = "Threads per runtime (default: the target's, else the runtime's)."):
    """``--threads N`` (None when not given: see ``edgekd.backends.profile_options.resolve_threads``)."""
    return click.option("--threads", type=int, help=help_text)


def timing_options(runs_help: str = "Timed runs at least."):
    """``--min-runs`` and ``--min-seconds``: how long the latency loop times each model."""

    def add(func):
        func = click.option(
            "--min-seconds", type=float, default=1.0, show_default=True, help="Timed seconds at least."
        )(func)
        return click.option("--min-runs", type=int, default=200, show_default=True, help=runs_help)(func)

    return add


@dataclasses.dataclass
class Output:
    """Where a command's words go: progress (``log``) to stderr, tables to stdout (stderr with
    ``--json``, so stdout carries only the JSON document), and the result (:meth:`result`)."""

    as_json: bool
    quiet: bool
    log: Callable[[str], None] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.log = make_log(self.quiet)  # also refuses --quiet with --verbose

    def console(self):
        """The console a table goes to."""
        return make_console(stderr=self.as_json)

    @property
    def tables(self) -> bool:
        """Whether to print a table beside the result: not with both --json and --quiet."""
        return not (self.as_json and self.quiet)

    def result(self, doc: Any, lines: list[Any]) -> None:
        """``doc`` as one JSON document with --json, else ``lines`` (e.g. the files written)."""
        if self.as_json:
            emit_json(doc)
        else:
            click.echo("\n".join(str(line) for line in lines))


def output_options(func):
    """``--json``, ``-q/--quiet`` and ``-v/--verbose``, given to the command as one ``output``
    argument (an :class:`Output`) instead of ``as_json`` and ``quiet``."""

    @functools.wraps(func)
    def command(*args: Any, as_json: bool, quiet: bool, **kwargs: Any) -> Any:
        return func(*args, output=Output(as_json=as_json, quiet=quiet), **kwargs)

    return json_option(quiet_option(command))


def make_log(quiet: bool):
    """Progress goes to stderr so stdout stays for results; verbose lines carry elapsed time."""
    ctx = click.get_current_context(silent=True)
    verbose = bool(ctx and ctx.meta.get("edgekd.verbose")) or _env_verbose()
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose exclude each other; choose one")
    if quiet:
        return lambda _msg: None
    if not verbose:
        return lambda msg: click.echo(msg, err=True)
    started = time.perf_counter()
    return lambda msg: click.echo(f"[{time.perf_counter() - started:7.1f} s] {msg}", err=True)


def _env_verbose() -> bool:
    from edgekd.api.cli_support import is_verbose

    return is_verbose()


def emit_json(obj: Any) -> None:
    """One JSON document on stdout (numpy scalars and paths become plain values)."""
    from edgekd.api.cli_support import json_default

    click.echo(json.dumps(obj, indent=2, default=json_default))


def artifact_summary(path: Path) -> dict[str, Any]:
    """What a command wrote, for ``--json``: path, kind, sha256 and metrics from its manifest."""
    from edgekd.api.cli_support import artifact_summary as summary

    return summary(path)


def existing_file(metavar: str):
    return click.argument(metavar.lower(), metavar=metavar, type=click.Path(path_type=Path))


def make_console(stderr: bool = False):
    """A rich console; logs and pipes get 120 columns so the bench table does not wrap.

    ``stderr`` sends tables to stderr, so that stdout carries only the ``--json`` document.
    """
    from rich.console import Console

    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(width=120, stderr=stderr)


def ssh_options(func):
    """``--known-hosts``, ``--identity`` and ``--remote-python``: how to reach a ``--host ssh://`` device."""
    func = click.option(
        "--remote-python", default="python3", show_default=True, help="Python on the device."
    )(func)
    func = click.option(
        "--identity", type=click.Path(dir_okay=False, path_type=Path), help="SSH private key for --host."
    )(func)
    return click.option(
        "--known-hosts", type=click.Path(dir_okay=False, path_type=Path), help="known_hosts file for --host."
    )(func)
