"""streamscore monitor and streamscore log: summaries and drift of the inference log, and landing a Kafka-borne log as Parquet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cli.common import print_json, json_option

__all__ = ["monitor", "log_group"]


@click.command()
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
@click.option("--bin", "bin_", type=click.Choice(["hour", "day"]), default=None,
              help="time bins (UTC) of the table and the charts  [default: hour when the selected log spans "
                   "less than 3 days, else day]")
@click.option("--html", "html_path", type=click.Path(path_type=Path, dir_okay=False),
              help="also write a self-contained HTML report (charts, drift) to this file")
@json_option
def monitor(log_dir: Path | None, since: str | None, until: str | None, model_version: str | None, score: str,
            drift: bool, reference: str | None, current: str | None, features: str | None, top: int,
            bin_: str | None, html_path: Path | None, as_json: bool) -> None:
    """Predictions, scores, alerts and latency of the inference log per hour or day and
    model version, and each shadow version beside its decider; with --drift, the drift
    between two periods; with --html, a report page.

    LOG_DIR defaults to the fraud flow's log: the inference_log.dir setting, else
    <io.output_dir>/inference_log (output/fraud/inference_log).
    Repeats of an event_id (at-least-once delivery, e.g. after `streamscore log land`)
    are counted once: the last record of each event is kept, and the number removed is
    shown.
    The table: predictions, average score, flagged (score > 0.5), alerts and alert rate
    (status not NORMAL), average / p50 / p99 latency (ms), per UTC hour or day (--bin)
    and version. Shadows: events scored by both, mean scores, mean (absolute)
    difference and how often the shadow's status (with fraud.critical / fraud.warning)
    agrees with the decider's.
    Drift: PSI (> 0.2 drift, 0.1-0.2 watch) and the two-sample KS test (p < 0.01 with
    statistic > 0.1: drift) of the score and the numeric features; --reference and
    --current imply --drift; without them the first half of the log's time range is
    compared with the second half.

    \b
    Examples:
      streamscore monitor --since 2026-11-20
      streamscore monitor --bin hour
      streamscore monitor --version fraud_model/2 --json
      streamscore monitor --drift --reference 2026-11-01..2026-11-07 --current 2026-11-08..2026-11-14
      streamscore monitor --html output/monitor.html
    """
    import duckdb

    import monitoring as mon
    from settings.config import IOConfig, setting

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
        bin_ = bin_ or mon.choose_bin(con, since_day, until_day, model_version)
        rows = mon.summary(con, since_day, until_day, model_version, score, bin=bin_)
        repeats = mon.repeats(con, since_day, until_day, model_version)
        critical, warning = _threshold(setting, "fraud.critical"), _threshold(setting, "fraud.warning")
        shadows = mon.shadow_summary(con, since_day, until_day, model_version, critical=critical, warning=warning)
        report = None
        if drift and rows:
            report = mon.drift_report(con, reference, current, columns, score, top, version=model_version,
                                      since=since_day, until=until_day)
        page = None
        if html_path is not None and rows:
            from monitoring.html_report import write_html

            page = write_html(con, html_path, since_day, until_day, model_version, score, reference, current,
                              columns, top, drift=report, source=str(root), bin=bin_,
                              thresholds=(critical, warning))
    except duckdb.Error as exc:
        raise click.ClickException(f"reading the inference log {str(root)!r}: {str(exc).splitlines()[0]}") from None
    where = ", ".join(f"{k} {v}" for k, v in (("since", since_day), ("until", until_day),
                                              ("version", model_version)) if v)
    if as_json:
        print_json({
            "log_dir": str(root), "score": score,
            "filters": {"since": since_day, "until": until_day, "version": model_version},
            "bin": bin_, "repeats_removed": repeats,
            "summary": [{**r, "bin": None if r["bin"] is None else r["bin"].isoformat().replace("+00:00", "Z"),
                         "date": None if r["date"] is None else str(r["date"])} for r in rows],
            "shadows": shadows,
            **({"drift": report} if report is not None else {}),
            **({"html": str(page)} if page is not None else {}),
        })
        return
    if not rows:
        click.echo(f"no predictions in {root}" + (f" ({where})" if where else ""))
        return
    total = sum(r["predictions"] for r in rows)
    bins = sorted(mon.format_bin(r, bin_) for r in rows)
    click.echo(f"inference log {root}: {total:,} predictions, {bins[0]} .. {bins[-1]}"
               + (f" ({where})" if where else "") + f", per {bin_}")
    click.echo(f"  repeats of an event_id removed: {repeats:,}" + (" (the last record of each kept)" if repeats else ""))
    click.echo(mon.format_summary(rows, score, bin_))
    if shadows:
        click.echo("\nshadows beside their decider (same events; status: fraud.critical "
                   f"{critical:g} / fraud.warning {warning:g}):")
        click.echo(mon.format_shadows(shadows))
    if report is not None:
        click.echo("")
        click.echo(mon.format_drift(report))
    if page is not None:
        click.echo(f"\nwrote {page}")


def _threshold(setting: Any, key: str) -> float:
    """A status threshold from the settings (judges the shadows' status)."""
    value = setting(key)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise click.UsageError(f"setting {key}={value!r} is not a number") from None


def _day_option(option: str, value: str | None) -> Any:
    from monitoring.queries import MonitoringError, parse_day

    try:
        return parse_day(value)
    except MonitoringError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@click.group(name="log")
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
    from monitoring.landing import land as land_topic
    from settings.config import FraudConfig, IoTConfig
    from settings.logs import configure_logging

    configure_logging()  # its log lines (and librdkafka's) are JSON on stderr, as the flows'

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
