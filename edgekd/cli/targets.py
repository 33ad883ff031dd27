"""``edgekd targets``: list the target-device profiles, or show one resolved."""

from __future__ import annotations

import click

from edgekd.cli import common


@click.command()
@click.argument("name", required=False, metavar="[TARGET]")
@common.json_option
def targets(name: str | None, as_json: bool) -> None:
    """List the built-in target profiles, or show TARGET (a name or a YAML file) resolved.

    A malformed profile fails with the key and the reason.

    \b
    Examples:
      edgekd targets
      edgekd targets jetson-orin-tensorrt-fp16
    """
    from edgekd.targets_command import targets_command

    targets_command(name, common.Output(as_json=as_json, quiet=False))
