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

import json
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import click

from cli.config import config as config_command
from models.registry import (
    METRIC_ORDER,
    ROUTES,
    Registry,
    RegistryError,
    Routes,
    format_ref,
    parse_ref,
    render_comparison,
)

__all__ = ["main"]

REGISTRY_KEY = "model.registry"  # the flows' setting (settings/config.py)


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
            code = _fail(f"{exc.format_message()}{where}", exc.exit_code)
        except click.ClickException as exc:
            code = _fail(exc.format_message(), 2)
        except click.Abort:
            code = _fail("aborted", 130)
        except (RegistryError, ValueError, OSError) as exc:
            code = _fail(str(exc), 2)
        else:
            code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


def _fail(message: str, code: int) -> int:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    return code


def _registry_default() -> Any:
    from settings.config import setting

    return setting(REGISTRY_KEY)


def registry_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--registry", type=click.Path(path_type=Path, file_okay=False), default=_registry_default,
        show_default=f"the {REGISTRY_KEY} setting (STREAMSCORE_MODEL__REGISTRY or the settings file), model_registry",
        help="the model registry folder",
    )(f)


json_option = click.option("--json", "as_json", is_flag=True, help="print machine-readable JSON on stdout")


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
main.add_command(config_command)


# --- train -------------------------------------------------------------------------------


@main.command()
@click.option("--history", type=click.Path(path_type=Path, dir_okay=False), default=Path("data/history.parquet"),
              show_default=True, help="labelled history (.parquet or .jsonl)")
@click.option("--feature-repo", type=click.Path(path_type=Path, file_okay=False), default=Path("feature_repo"),
              show_default=True, help="the Feast repo")
@registry_option
@click.option("--eval-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.3,
              show_default=True, help="the later share of the history's time span kept for evaluation")
@click.option("--no-promote", is_flag=True,
              help="publish a candidate without moving the production alias")
@click.option("--if-missing", is_flag=True, help="do nothing when a production model exists")
def train(history: Path, feature_repo: Path, registry: Path, eval_fraction: float, no_promote: bool,
          if_missing: bool) -> None:
    """Train, evaluate and publish the fraud model (= python -m cli.train).

    The model production points at is evaluated on the new version's evaluation
    window too, and a table compares the two. Without --no-promote the production
    alias then moves to the new version (running flows switch at their next poll).

    \b
    Example:
      streamscore train --no-promote
      streamscore models alias fraud_model production 4     # promote it later
    """
    from settings.logs import configure_logging
    from models.train import run

    configure_logging()
    run(history, feature_repo, registry, eval_fraction, not no_promote, if_missing)


# --- models --------------------------------------------------------------------------------


@main.group()
def models() -> None:
    """Model versions, aliases and traffic routes in the registry.

    \b
    Example:
      streamscore models list fraud_model
    """


@models.command("list")
@click.argument("name", required=False)
@registry_option
@json_option
def list_models(name: str | None, registry: Path, as_json: bool) -> None:
    """Every version of NAME (default: of every model): created, metrics, training
    window, the aliases pointing at it and its share in the routes.

    \b
    Example:
      streamscore models list fraud_model --json
    """
    reg = _registry(registry)
    names = [name] if name else reg.names()
    if name:
        _require_model(reg, name)
    rows = [row for n in names for row in reg.list(n)]
    if as_json:
        _print_json(rows)
        return
    if not rows:
        click.echo(f"no models in {reg.root}")
        return
    for n in names:
        click.echo(_versions_table([r for r in rows if r["name"] == n], n, reg))


@models.command()
@click.argument("ref")
@registry_option
@json_option
def show(ref: str, registry: Path, as_json: bool) -> None:
    """The manifest of REF (name/3, name@alias, name, models:/name/3 or models:/name@alias),
    with the aliases and routes that use it.

    \b
    Example:
      streamscore models show fraud_model@production
    """
    reg = _registry(registry)
    name, version = reg.resolve(ref)
    summary = next(s for s in reg.list(name) if s["version"] == version)
    manifest = reg.manifest(format_ref(name, version=version))
    if as_json:
        _print_json({**manifest, "aliases": summary["aliases"], "routes": summary["routes"]})
        return
    click.echo(_show_text(manifest, summary))


@models.command()
@click.argument("name")
@click.argument("alias")
@click.argument("version_or_ref")
@registry_option
def alias(name: str, alias: str, version_or_ref: str, registry: Path) -> None:
    """Point NAME@ALIAS at a version: a number (3) or a reference (fraud_model/3,
    fraud_model@candidate). Moving production promotes or rolls back.

    \b
    Examples:
      streamscore models alias fraud_model production 4      # promote
      streamscore models alias fraud_model production 3      # roll back
      streamscore models alias fraud_model candidate fraud_model@production
    """
    reg = _registry(registry)
    _require_model(reg, name)
    version = _version_of(reg, name, version_or_ref)
    before = reg.aliases(name).get(alias)
    reg.set_alias(name, alias, version)
    was = "new alias" if before is None else f"was {format_ref(name, version=before)}"
    click.echo(f"{name}@{alias} -> {format_ref(name, version=version)} ({was})")


@models.command()
@click.argument("name")
@click.argument("alias")
@registry_option
def unalias(name: str, alias: str, registry: Path) -> None:
    """Remove NAME@ALIAS (refused while the routes name it).

    \b
    Example:
      streamscore models unalias fraud_model candidate
    """
    reg = _registry(registry)
    version = reg.remove_alias(name, alias)
    click.echo(f"removed {name}@{alias} (was {format_ref(name, version=version)})")


@models.command()
@click.argument("ref_a")
@click.argument("ref_b")
@registry_option
@json_option
def compare(ref_a: str, ref_b: str, registry: Path, as_json: bool) -> None:
    """The evaluation metrics of REF_A and REF_B side by side (diff = B - A).

    Each manifest's metrics come from its own evaluation window; when B was trained
    with `streamscore train` while A was production, the like-for-like comparison on
    B's window is shown too.

    \b
    Example:
      streamscore models compare fraud_model@production fraud_model/4
    """
    cmp = _registry(registry).compare(ref_a, ref_b)
    if as_json:
        _print_json(cmp)
        return
    a, b = cmp["a"]["ref"], cmp["b"]["ref"]
    lines = [f"{a} evaluated on {_window(cmp['a']['evaluation_window'])}",
             f"{b} evaluated on {_window(cmp['b']['evaluation_window'])}"]
    if not cmp["same_evaluation_window"]:
        lines.append("(different evaluation windows: the metrics are not like for like)")
    lines.append(render_comparison(cmp["metrics"], a, b))
    if "same_window" in cmp:
        lines += ["", f"both on the window {_window(cmp['same_window']['evaluation_window'])}:",
                  render_comparison(cmp["same_window"]["metrics"], a, b)]
    click.echo("\n".join(lines))


@models.command()
@click.argument("name")
@click.argument("version", type=int)
@registry_option
def delete(name: str, version: int, registry: Path) -> None:
    """Delete version VERSION of NAME. Refused while an alias points at it or the
    routes use it; its number is never reused.

    \b
    Example:
      streamscore models delete fraud_model 2
    """
    reg = _registry(registry)
    _require_model(reg, name)
    reg.delete(name, version)
    click.echo(f"deleted {format_ref(name, version=version)} from {reg.root}")


@models.command()
@click.argument("name")
@click.option("--set", "decide_spec", metavar="SPEC",
              help="who decides: ref:weight,... (weights are relative; one ref alone = 100 %)")
@click.option("--shadow", "shadow_spec", metavar="SPEC",
              help="who shadows: ref:percent,... of keys ('' removes the shadows)")
@click.option("--clear", is_flag=True, help="remove the routes: the flow scores with its model.ref")
@registry_option
@json_option
def routes(name: str, decide_spec: str | None, shadow_spec: str | None, clear: bool, registry: Path,
           as_json: bool) -> None:
    """Show or change the traffic routes of NAME. --set and --shadow each replace
    their part and keep the other; with neither, the routes are shown.

    \b
    Examples:
      streamscore models routes fraud_model --set fraud_model/3:90,fraud_model/4:10
      streamscore models routes fraud_model --shadow fraud_model/5:5
      streamscore models routes fraud_model --clear
    """
    reg = _registry(registry)
    _require_model(reg, name)
    if clear and (decide_spec is not None or shadow_spec is not None):
        raise click.UsageError("--clear cannot be combined with --set or --shadow")
    if clear:
        removed = reg.clear_routes(name)
        if not as_json:
            click.echo(f"{'removed the' if removed else 'there were no'} routes of {name}")
    elif decide_spec is not None or shadow_spec is not None:
        current = reg.routes(name)
        old_decide, old_shadow = current.specs() if current else (format_ref(name), "")
        new = Routes.parse(old_decide if decide_spec is None else decide_spec,
                           old_shadow if shadow_spec is None else shadow_spec)
        reg.set_routes(name, new)
    r = reg.routes(name)
    if as_json:
        _print_json({"name": name, "routes": r.to_dict() if r else None,
                     "resolved": _resolved(reg, r), "state_token": reg.state_token(name)})
    else:
        click.echo(_routes_text(reg, name, r))


# --- serve ---------------------------------------------------------------------------------


@main.command()
@click.option("--host", default=None, help="interface to listen on  [default: the serve.host setting, 127.0.0.1]")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="port  [default: the serve.port setting, 8000]")
def serve(host: str | None, port: int | None) -> int:
    """Serve the scoring endpoint: POST /score (= python -m service.app).

    Scores one transaction or a list with the fraud flow's validation, model routes and
    status rule, and each customer's live features written back by the flow. Reads the
    flow's settings and [serve]; STREAMSCORE_API_KEYS (comma-separated, >= 16 characters each)
    is required, clients send one in the X-API-Key header. Stops on Ctrl-C / SIGTERM.

    \b
    Example:
      STREAMSCORE_API_KEYS=$(openssl rand -hex 24) streamscore serve --port 8000
      curl -s localhost:8000/healthz
    """
    from service.app import run

    return run(host, port)


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



@main.command()
@click.argument("log_dir", required=False, type=click.Path(path_type=Path, file_okay=False))
@click.option("--since", metavar="DATE", help="first day, YYYY-MM-DD (UTC), inclusive")
@click.option("--until", metavar="DATE", help="last day, YYYY-MM-DD (UTC), inclusive")
@click.option("--version", "model_version", metavar="V", help="only this model version, e.g. fraud_model/2")
@click.option("--score", type=click.Choice(["fraud_score", "risk_score", "anomaly_score"]), default="fraud_score",
              show_default=True, help="the score column (IoT logs: anomaly_score)")
@click.option("--drift", is_flag=True, help="also compare two periods (PSI and KS test per column)")
@click.option("--reference", metavar="START..END", help="drift reference period (dates: whole days; default: first half)")
@click.option("--current", metavar="START..END", help="drift current period (default: second half of the range)")
@click.option("--features", metavar="A,B,...", help="drift of these columns (default: the score and the top features)")
@click.option("--top", type=click.IntRange(0), default=8, show_default=True,
              help="number of features compared, by variance over the reference period")
@click.option("--html", "html_path", type=click.Path(path_type=Path, dir_okay=False),
              help="also write a self-contained HTML report (charts, drift) to this file")
@json_option
def monitor(log_dir: Path | None, since: str | None, until: str | None, model_version: str | None, score: str,
            drift: bool, reference: str | None, current: str | None, features: str | None, top: int,
            html_path: Path | None, as_json: bool) -> None:
    """Daily predictions, scores, alerts and latency of the inference log, per model
    version; with --drift, the drift between two periods; with --html, a report page.

    LOG_DIR defaults to the fraud flow's log: the inference_log.dir setting, else
    <io.output_dir>/inference_log (output/fraud/inference_log).
    The table: predictions, average score, flagged (score > 0.5), alerts and alert rate
    (status not NORMAL), average / p50 / p99 latency (ms), per UTC day and version.
    Drift: PSI (> 0.2 drift, 0.1-0.2 watch) and the two-sample KS test (p < 0.01 with
    statistic > 0.1: drift) of the score and the numeric features; --reference and
    --current imply --drift; without them the first half of the log's time range is
    compared with the second half.

    \b
    Examples:
      streamscore monitor --since 2026-11-20
      streamscore monitor --version fraud_model/2 --json
      streamscore monitor --drift --reference 2026-11-01..2026-11-07 --current 2026-11-08..2026-11-14
      streamscore monitor --html output/monitor.html
    """
    import duckdb

    import monitoring as mon
    from settings.config import IOConfig

    root = log_dir or IOConfig.from_env(flow="fraud").log_dir
    if (reference is None) != (current is None):
        raise click.UsageError("--reference and --current go together")
    drift = drift or reference is not None
    columns = [c.strip() for c in features.split(",") if c.strip()] if features else None
    since_day, until_day = _day_option("--since", since), _day_option("--until", until)
    try:
        con = mon.connect(root)
        if model_version is not None and model_version not in mon.versions(con):
            known = ", ".join(mon.versions(con)) or "none"
            raise mon.MonitoringError(f"no model version {model_version!r} in {root} (versions: {known})")
        rows = mon.daily_summary(con, since_day, until_day, model_version, score)
        report = None
        if drift and rows:
            report = mon.drift_report(con, reference, current, columns, score, top, version=model_version,
                                      since=since_day, until=until_day)
        page = None
        if html_path is not None and rows:
            from monitoring.html_report import write_html

            page = write_html(con, html_path, since_day, until_day, model_version, score, reference, current,
                              columns, top, drift=report, source=str(root))
    except duckdb.Error as exc:
        raise click.ClickException(f"reading the inference log {str(root)!r}: {str(exc).splitlines()[0]}") from None
    where = ", ".join(f"{k} {v}" for k, v in (("since", since_day), ("until", until_day),
                                              ("version", model_version)) if v)
    if as_json:
        _print_json({
            "log_dir": str(root), "score": score,
            "filters": {"since": since_day, "until": until_day, "version": model_version},
            "daily": [{**r, "date": str(r["date"])} for r in rows],
            **({"drift": report} if report is not None else {}),
            **({"html": str(page)} if page is not None else {}),
        })
        return
    if not rows:
        click.echo(f"no predictions in {root}" + (f" ({where})" if where else ""))
        return
    total = sum(r["predictions"] for r in rows)
    days = sorted({r["date"] for r in rows})
    click.echo(f"inference log {root}: {total:,} predictions, {days[0]} .. {days[-1]}"
               + (f" ({where})" if where else ""))
    click.echo(mon.format_daily(rows, score))
    if report is not None:
        click.echo("")
        click.echo(mon.format_drift(report))
    if page is not None:
        click.echo(f"\nwrote {page}")


def _day_option(option: str, value: str | None) -> Any:
    from monitoring.queries import MonitoringError, parse_day

    try:
        return parse_day(value)
    except MonitoringError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


# --- helpers -------------------------------------------------------------------------------


def _registry(root: Path) -> Registry:
    if not root.is_dir():
        raise RegistryError(f"registry folder {str(root)!r} does not exist (--registry or the {REGISTRY_KEY} setting)")
    return Registry(root)


def _require_model(reg: Registry, name: str) -> None:
    parse_ref(name)  # a bad name is a bad reference
    if not reg.versions(name):
        known = ", ".join(reg.names()) or "none"
        raise RegistryError(f"no model {name!r} in {reg.root} (models: {known})")


def _version_of(reg: Registry, name: str, text: str) -> int:
    """A version number, or the version a reference of model ``name`` resolves to."""
    if text.strip().isdigit():
        return int(text)
    ref_name, version = reg.resolve(text)
    if ref_name != name:
        raise RegistryError(f"{text!r} is a version of model {ref_name!r}, not of {name!r}")
    return version


def _print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


def _window(w: Mapping[str, Any] | None) -> str:
    """A training or evaluation window, short.

    >>> _window({"start": "2026-08-31T00:00:01.000Z", "end": "2026-09-25T11:58:40.788Z", "events": 117305})
    '2026-08-31 .. 2026-09-25 (117305 events)'
    >>> _window(None)
    '-'
    """
    if not w:
        return "-"
    return f"{str(w.get('start'))[:10]} .. {str(w.get('end'))[:10]} ({w.get('events')} events)"


def _roles(routes: Mapping[str, float]) -> str:
    """A version's part in the routes.

    >>> _roles({"decide": 0.9, "shadow": 0.05}), _roles({})
    ('decide 90 %, shadow 5 %', '-')
    """
    return ", ".join(f"{role} {round(share * 100, 4):g} %" for role, share in routes.items()) or "-"


def _num(v: Any) -> str:
    return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


def _versions_table(rows: list[dict[str, Any]], name: str, reg: Registry) -> str:
    head = ("version", "created", "ROC AUC", "PR AUC", "CRIT rec/prec", "trained on", "aliases", "routes")
    body = []
    for r in rows:
        m = r["metrics"] or {}
        body.append((
            str(r["version"]), str(r["created_at"] or "-")[:19], _num(m.get("roc_auc")), _num(m.get("pr_auc")),
            f"{_num(m.get('recall_at_critical'))}/{_num(m.get('precision_at_critical'))}",
            _window(r["training_window"]), ", ".join(r["aliases"]) or "-", _roles(r["routes"]),
        ))
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    lines = [f"{name} ({reg.root})"]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in (head, *body)]
    return "\n".join(lines)


def _show_text(m: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    lines = [
        f"{summary['ref']}",
        f"  created       {m.get('created_at')}",
        f"  sha256        {m.get('sha256')}",
        f"  aliases       {', '.join(summary['aliases']) or '-'}",
        f"  routes        {_roles(summary['routes'])}",
        f"  features      {len(m.get('feature_names', []))}",
        f"  trained on    {_window(m.get('training_window'))}",
        f"  evaluated on  {_window(m.get('evaluation_window'))}",
        "  metrics",
    ]
    metrics = m.get("metrics") or {}
    order = [k for k in METRIC_ORDER if k in metrics] + sorted(set(metrics) - set(METRIC_ORDER))
    lines += [f"    {k:<24}{_num(metrics[k])}" for k in order]
    base = m.get("baseline")
    if base and "metrics" in base:
        bm = base["metrics"]
        lines.append(f"  baseline      {base['ref']} on this window: ROC AUC {_num(bm.get('roc_auc'))}, "
                     f"PR AUC {_num(bm.get('pr_auc'))}")
    return "\n".join(lines)


def _resolved(reg: Registry, r: Routes | None) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for ref in r.refs() if r else ():
        try:
            ref_name, version = reg.resolve(ref)
            out[ref] = format_ref(ref_name, version=version)
        except RegistryError:
            out[ref] = None
    return out


def _routes_text(reg: Registry, name: str, r: Routes | None) -> str:
    if r is None:
        try:
            now = f" -> {format_ref(name, version=reg.resolve(format_ref(name))[1])}"
        except RegistryError:
            now = ""
        return (f"no routes for {name}: a flow scores every event with its model.ref "
                f"(default {format_ref(name)}{now})")
    resolved = _resolved(reg, r)
    lines = [f"routes of {name} ({reg.root / name / ROUTES}):"]
    rows = [("decide", ref, f"{round(w * 100, 4):g} %") for ref, w in r.decide]
    rows += [("shadow", ref, f"{round(s * 100, 4):g} % of keys") for ref, s in r.shadow]
    width = max(len(ref) for _, ref, _ in rows)
    for role, ref, share in rows:
        target = resolved.get(ref)
        arrow = "" if target == ref else f"  -> {target or 'does not resolve'}"
        lines.append(f"  {role}  {ref:<{width}}  {share}{arrow}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()


# --- the inference log ----------------------------------------------------------------------


@main.group(name="log")
def log_group() -> None:
    """The inference log (Parquet by date; see ``streamscore monitor``)."""


@log_group.command()
@click.option("--flow", type=click.Choice(["fraud", "iot"]), default="fraud", show_default=True)
@click.option("--topic", default=None, help="the scored topic  [default: the flow's topics.scored setting]")
@click.option("--to", "root", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="the log folder  [default: inference_log.dir, else <io.output_dir>/inference_log]")
@click.option("--group", default=None, help="consumer group  [default: streamscore-land-<flow>]")
@click.option("--follow", is_flag=True, help="keep reading (default: stop at the end of the topic)")
@json_option
def land(flow: str, topic: str | None, root: Path | None, group: str | None, follow: bool, as_json: bool) -> None:
    """Copy a Kafka scored topic into the inference log's Parquet layout.

    Brokers and client options come from the flows' settings (kafka.bootstrap_servers:
    KAFKA_BOOTSTRAP_SERVERS; KAFKA_OPT_*); offsets are committed after each file (at-least-once).

    \b
    Example:
      streamscore log land --flow fraud --topic scored-transactions --to output/fraud/inference_log
    """
    from settings.config import FraudConfig, IoTConfig
    from monitoring.landing import land as land_topic

    if flow == "fraud":
        from models.fraud import LOG_SPEC

        cfg: Any = FraudConfig.from_env()
        spec = LOG_SPEC
    else:
        from dataflows.scoring import iot_scoring_config
        from models.iot import log_spec

        cfg = IoTConfig.from_env()
        spec = log_spec(iot_scoring_config(cfg))
    k = cfg.io.kafka
    out = land_topic(k.bootstrap_servers, topic or k.scored_topic, root or cfg.io.log_dir, spec,
                     group or f"streamscore-land-{flow}", options=k.options, follow=follow)
    click.echo(json.dumps(out) if as_json else
               f"landed {out['rows']:,} rows in {out['files']} files ({out['skipped']} messages skipped)")
