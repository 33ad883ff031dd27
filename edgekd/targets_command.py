"""``edgekd targets`` behind its options: one profile resolved, or the built-in ones listed."""

from __future__ import annotations

import json
from typing import Any

import click


def targets_command(name: str | None, output: Any) -> None:
    """Print target ``name`` (a built-in name or a YAML path) resolved, as YAML or with
    ``output.as_json`` as JSON; without a name, a table of the built-in profiles (a JSON list
    with ``--json``). A malformed profile raises ConfigError naming the key and the reason."""
    from edgekd import resources
    from edgekd.config import dump_yaml
    from edgekd.targets import load_target

    if name is not None:
        data = load_target(name).to_dict()
        click.echo(json.dumps(data, indent=2) if output.as_json else dump_yaml(data), nl=not output.as_json)
        return
    profiles = [load_target(n) for n in resources.builtin_names("targets")]
    if output.as_json:
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
