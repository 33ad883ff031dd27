"""``edgekd targets``: list the target-device profiles, or show one resolved."""

from __future__ import annotations

import json

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
    from edgekd.api import targets as find_targets

    output = common.Output(as_json=as_json, quiet=False)
    if name is not None:
        data = find_targets(name).to_dict()
        from edgekd.api.cli_support import dump_yaml

        click.echo(json.dumps(data, indent=2) if as_json else dump_yaml(data), nl=not as_json)
        return
    profiles = find_targets()
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in profiles], indent=2))
        return
    from rich.table import Table

    table = Table(title="edgekd target profiles")
    for column in ("name", "entry", "device", "host"):
        table.add_column(column, no_wrap=True)
    table.add_column("description")
    for p in profiles:
        table.add_row(p.name, p.entry_id, p.device, p.host, p.description)
    output.console().print(table)
