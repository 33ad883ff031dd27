"""``edgekd targets``: list the target-device profiles, or show one resolved."""

from __future__ import annotations

import json

import click

from edgekd.cli.common import json_option, make_console


@click.command()
@click.argument("name", required=False, metavar="[TARGET]")
@json_option
def targets(name: str | None, as_json: bool) -> None:
    """List the built-in target profiles, or show TARGET (a name or a YAML file) resolved.

    A malformed profile fails with the key and the reason.

    \b
    Examples:
      edgekd targets
      edgekd targets jetson-orin-tensorrt-fp16
    """
    from rich.table import Table

    from edgekd import resources
    from edgekd.config import dump_yaml, to_dict
    from edgekd.targets import load_target

    if name is not None:
        profile = load_target(name)
        click.echo(json.dumps(to_dict(profile), indent=2) if as_json else dump_yaml(profile), nl=not as_json)
        return
    profiles = [load_target(n) for n in resources.builtin_names("targets")]
    if as_json:
        click.echo(json.dumps([to_dict(p) for p in profiles], indent=2))
        return
    table = Table(title="edgekd target profiles")
    for column in ("name", "entry", "device", "host"):
        table.add_column(column, no_wrap=True)
    table.add_column("description")
    for p in profiles:
        table.add_row(p.name, p.entry_id, p.device, p.host, p.description)
    make_console().print(table)
