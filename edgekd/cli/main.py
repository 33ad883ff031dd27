"""The ``edgekd`` command: a Click group whose sub-commands are imported on demand.

``edgekd --help`` and ``edgekd CMD --help`` import neither torch nor onnx: each
command module imports its heavy dependencies inside the command body.
"""

from __future__ import annotations

import importlib
import sys
import traceback

import click

from edgekd import __version__
from edgekd.errors import EdgeKDError

# name -> "module:attribute"; the module is imported only when the command is used.
COMMANDS = {
    "distill": "edgekd.cli.distill:distill",
    "ensemble": "edgekd.cli.ensemble:ensemble",
    "export": "edgekd.cli.export:export",
    "quantize": "edgekd.cli.quantize:quantize",
    "qat": "edgekd.cli.qat:qat",
    "bench": "edgekd.cli.bench:bench",
    "gate": "edgekd.cli.gate:gate",
    "run": "edgekd.cli.run:run",
    "demo": "edgekd.cli.run:demo",
    "targets": "edgekd.cli.targets:targets",
    "deploy": "edgekd.cli.deploy:deploy",
    "search": "edgekd.cli.search:search",
}
INTERNAL_ERROR_EXIT = 3


class LazyGroup(click.Group):
    """Root group: lazy sub-commands, and one-line errors instead of tracebacks."""

    def __init__(self, *args, lazy_commands: dict[str, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            module_name, attr = self.lazy_commands[cmd_name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context):
        from edgekd.api.cli_support import rollback_on_failure

        try:
            # A command that fails (exit 2 or 3) leaves nothing it wrote: see edgekd/artifacts.py.
            with rollback_on_failure():
                return super().invoke(ctx)
        except EdgeKDError as exc:
            if ctx.params.get("debug"):
                traceback.print_exc()
            click.echo(f"edgekd: error: {exc.one_line()}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("edgekd: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # an edgekd bug, not a user mistake: say so in one line
            if ctx.params.get("debug"):
                traceback.print_exc()
            first = (str(exc).strip().splitlines() or [""])[0]
            click.echo(
                f"edgekd: internal error: {type(exc).__name__}: {first} "
                "(re-run with --debug for the traceback, and please report it)",
                err=True,
            )
            ctx.exit(INTERNAL_ERROR_EXIT)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """edgekd's version and the runtime versions, read from package metadata (no heavy import)."""
    if not value or ctx.resilient_parsing:
        return
    from edgekd.api.cli_support import library_versions

    versions = library_versions()
    click.echo(f"edgekd {__version__}")
    for name in ("python", "torch", "onnx", "onnxruntime", "openvino", "nncf", "tensorrt"):
        click.echo(f"  {name:<12} {versions.get(name, 'not installed')}")
    ctx.exit(0)


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    # Every option can also come from EDGEKD_<COMMAND>_<OPTION> (e.g. EDGEKD_BENCH_THREADS=2);
    # the common ones have short names: EDGEKD_QUIET, EDGEKD_VERBOSE, EDGEKD_DEBUG, EDGEKD_JSON,
    # EDGEKD_TARGET.
    context_settings={
        "help_option_names": ["-h", "--help"],
        "max_content_width": 100,
        "auto_envvar_prefix": "EDGEKD",
    },
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show edgekd's version and the runtimes it finds, then exit.",
)
@click.option("--debug", is_flag=True, envvar="EDGEKD_DEBUG", help="Show tracebacks for errors.")
@click.option(
    "--trust-module",
    "trust_modules",
    multiple=True,
    metavar="PKG.MOD",
    envvar="EDGEKD_TRUST_MODULE",
    help="Trust PKG.MOD: checkpoints naming module:PKG.MOD:factory models may import and run it "
    "(no file may otherwise). Repeatable; EDGEKD_TRUST_MODULE takes a space-separated list.",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, trust_modules: tuple[str, ...]) -> None:
    """edgekd: distil a large network into a small, fast, verified model for an edge device.

    \b
    Pipeline:  distill -> export -> quantize -> bench -> gate
    Everything from one recipe:  edgekd run RECIPE   (edgekd demo runs the built-in one)

    Exit codes: 0 success, 1 a gate check failed, 2 bad input or configuration,
    3 internal error. Commands that report take --json (one JSON document on stdout);
    -q/--quiet and -v/--verbose set how much progress goes to stderr.

    \b
    Environment: any option as EDGEKD_<COMMAND>_<OPTION> (EDGEKD_BENCH_THREADS=2), and
    EDGEKD_QUIET, EDGEKD_VERBOSE, EDGEKD_DEBUG, EDGEKD_JSON, EDGEKD_TARGET for every command.
    Shell completion (bash): eval "$(_EDGEKD_COMPLETE=bash_source edgekd)"

    \b
    Trust: a file never chooses code to run. A checkpoint naming a module:PKG.MOD:factory
    model opens only when your recipe names that model or you pass --trust-module PKG.MOD.
    """
    from edgekd.api.cli_support import trusted_code  # light: no torch

    # One scope per command: only what this command line (and its recipe) trusts.
    ctx.with_resource(trusted_code(trust_modules, replace=True))


def main(argv: list[str] | None = None) -> None:
    from edgekd.api.cli_support import apply_thread_policy  # imports neither numpy nor torch

    # Before any command imports torch: its OpenMP threads read the wait policy only once.
    apply_thread_policy()
    cli.main(args=argv, prog_name="edgekd")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
