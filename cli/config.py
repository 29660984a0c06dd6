"""``streamscore config``: the effective settings of a flow, each with where its value
came from; the reference of every key; the commented settings file.

    streamscore config                      # the fraud flow's settings and their origins
    streamscore config --flow iot --json
    streamscore config --reference          # every key, variable, type, default (Markdown)
    streamscore config --reference --update docs/configuration.md
    streamscore config --template > streamscore.toml

Secrets (the API keys, ``KAFKA_OPT_*`` passwords, secrets and keys, a password in a
URL) are shown as ``***``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

__all__ = ["config"]


@click.command(name="config")
@click.option("--flow", type=click.Choice(["fraud", "iot", "serve"]), default="fraud", show_default=True,
              help="whose settings: a flow's, or the scoring endpoint's")
@click.option("--reference", is_flag=True,
              help="print the reference of every key and of the retired variables (Markdown)")
@click.option("--template", is_flag=True, help="print the settings file with every key at its default, commented")
@click.option("--update", "update_path", type=click.Path(path_type=Path, dir_okay=False),
              help="with --reference: rewrite the generated blocks of this Markdown file; "
                   "with --template: write this file")
@click.option("--json", "as_json", is_flag=True, help="print machine-readable JSON on stdout")
def config(flow: str, reference: bool, template: bool, update_path: Path | None, as_json: bool) -> None:
    """The effective settings of a flow (or the endpoint): each key, its value and where it
    came from (default, the settings file, or an environment variable). A bad or unknown
    setting is an error, as when the flow starts.

    \b
    Examples:
      streamscore config --flow fraud
      STREAMSCORE_SOURCE=kafka streamscore config --flow iot --json
      streamscore config --reference --update docs/configuration.md
    """
    from settings import reference as ref
    from settings.config import config_file

    if reference and template:
        raise click.UsageError("--reference and --template go alone")
    if update_path is not None and not (reference or template):
        raise click.UsageError("--update goes with --reference or --template")
    if reference:
        if update_path is None:
            click.echo(f"{ref.reference_table()}\n\nRetired variables:\n\n{ref.migration_table()}")
        else:
            update_path.write_text(ref.update_blocks(update_path.read_text()))
            click.echo(f"updated {update_path}")
        return
    if template:
        if update_path is None:
            click.echo(ref.template(), nl=False)
        else:
            update_path.write_text(ref.template())
            click.echo(f"wrote {update_path}")
        return
    cfg = ref.FLOW_CLASSES[flow].from_env()
    rows = ref.effective(cfg)
    file = config_file()
    if as_json:
        click.echo(json.dumps({"flow": flow, "file": None if file is None else str(file), "settings": rows}, indent=2))
    else:
        click.echo(ref.render_effective(rows, file))
