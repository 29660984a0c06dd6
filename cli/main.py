"""The ``streamscore`` command: train models, manage registry versions, aliases and
traffic routes, replay events to Kafka and summarise a run.

    streamscore train --no-promote                  # publish a candidate, compare it with production
    streamscore models list                         # every version, its metrics, aliases and routes
    streamscore models alias fraud_model production 4
    streamscore models routes fraud_model --set fraud_model/3:90,fraud_model/4:10 --shadow fraud_model/5:5
    streamscore replay --events 5000 --rate 500     # = python -m cli.replay ...
    streamscore report output/fraud --input 5000    # = python -m monitoring.run_report ...
    streamscore serve --port 8000                   # the scoring endpoint (= python -m service.app)
    streamscore monitor --drift --html report.html  # the inference log: daily table, drift, HTML
    streamscore log land --topic scored-transactions # a Kafka scored topic into the log's Parquet layout
    streamscore config --flow fraud                 # the effective settings, each with where it came from

Every command takes ``--registry`` (default: the flows' ``model.registry`` setting,
``model_registry``). Errors are one line ``error: ...`` on stderr with exit
status 2; ``--json`` prints machine-readable JSON on stdout. Importing this module loads
neither pandas, LightGBM nor Kafka: only ``train``, ``replay`` and ``report`` do.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

import click

from cli.common import fail
from cli.config import config as config_command
from cli.models import models, train
from cli.monitor import log_group, monitor
from models.registry import (
    RegistryError,
)

__all__ = ["main"]


#: click >= 8.2 raises this for a group called without a command (8.1 prints the help itself)
_NoArgsIsHelp: type[click.UsageError] = getattr(click.exceptions, "NoArgsIsHelpError", type("_Never", (click.UsageError,), {}))


class _Streamscore(click.Group):
    """The root group: turns every error into one ``error:`` line on stderr and exit status 2."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name or "streamscore", complete_var, standalone_mode=False, **extra)
        except _NoArgsIsHelp as exc:  # `streamscore` or `streamscore models` alone: the help (as click 8.1)
            click.echo(exc.ctx.get_help() if exc.ctx is not None else "")
            code = 0
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            code = fail(f"{exc.format_message()}{where}", exc.exit_code)
        except click.ClickException as exc:
            code = fail(exc.format_message(), 2)
        except click.Abort:
            code = fail("aborted", 130)
        except (RegistryError, ValueError, OSError) as exc:
            code = fail(str(exc), 2)
        else:
            code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


@click.group(name="streamscore", cls=_Streamscore, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """Real-time ML scoring on event streams: models, routes and runs.

    \b
    Examples:
      streamscore train --no-promote
      streamscore models list
      streamscore models routes fraud_model --set fraud_model/3:90,fraud_model/4:10
    """


cli = main  # the click group, for CliRunner
for command in (config_command, train, models, monitor, log_group):
    main.add_command(command)


# --- train -------------------------------------------------------------------------------


# --- models --------------------------------------------------------------------------------


# --- serve ---------------------------------------------------------------------------------


@main.command()
@click.option("--host", default=None, help="interface to listen on  [default: the serve.host setting, 127.0.0.1]")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="port  [default: the serve.port setting, 8000]")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="worker processes on the port, each with its own store and models  "
                   "[default: the serve.workers setting, 1]")
def serve(host: str | None, port: int | None, workers: int | None) -> int:
    """Serve the scoring endpoint: POST /score (= python -m service.app).

    Scores one transaction or a list with the fraud flow's validation, model routes and
    status rule, and each customer's live features written back by the flow. Reads the
    flow's settings and [serve]; STREAMSCORE_API_KEYS (comma-separated, >= 16 characters each)
    is required, clients send one in the X-API-Key header. Stops on Ctrl-C / SIGTERM.

    \b
    Example:
      STREAMSCORE_API_KEYS=$(openssl rand -hex 24) streamscore serve --port 8000 --workers 2
      curl -s localhost:8000/healthz
    """
    from service.app import run

    return run(host, port, workers=workers)


# --- replay / report ---------------------------------------------------------------------------

_PASS = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@main.command(context_settings=_PASS, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def replay(ctx: click.Context, args: tuple[str, ...]) -> int:
    """Produce events to a flow's Kafka input topic (= python -m cli.replay ARGS).

    \b
    Example:
      streamscore replay --flow fraud --events 5000 --rate 500
    """
    from cli.replay import main as replay_main

    return _delegate(ctx, replay_main, args)


@main.command(context_settings=_PASS, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def report(ctx: click.Context, args: tuple[str, ...]) -> int:
    """One-screen summary of a run's output folder (= python -m monitoring.run_report ARGS).

    \b
    Example:
      streamscore report output/fraud --input 5000
    """
    from monitoring.run_report import main as report_main

    return _delegate(ctx, report_main, args)


def _delegate(ctx: click.Context, target: Callable[[list[str]], int | None], args: tuple[str, ...]) -> int:
    """Run an argparse ``main`` with ``args``; ``-h`` shows this command's help, then the options."""
    if "-h" in args or "--help" in args:
        click.echo(ctx.get_help() + "\n")
    try:
        code = target(list(args))
    except SystemExit as exc:  # argparse: --help (0) or bad arguments (2, already reported)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return code or 0


# --- monitor -------------------------------------------------------------------------------


# --- helpers -------------------------------------------------------------------------------


if __name__ == "__main__":
    main()


# --- the inference log ----------------------------------------------------------------------


