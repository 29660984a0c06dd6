"""streamscore train and streamscore models: train, list, show, alias, compare, delete and route model versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import click

from cli.common import print_json, open_registry, require_model, version_of, json_option, registry_option
from models.registry import (
    METRIC_ORDER,
    ROUTES,
    Registry,
    RegistryError,
    Routes,
    format_ref,
    render_comparison,
)

__all__ = ["train", "models"]


@click.command()
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
    from models.train import run
    from settings.logs import configure_logging

    configure_logging()
    run(history, feature_repo, registry, eval_fraction, not no_promote, if_missing)


@click.group()
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
    window, the aliases pointing at it, and what a flow does with it: the share of keys
    it decides (its routes' weight, or 100 % for the version model.ref resolves to when
    no routes are set) and the share of the other keys it scores in shadow. When routes
    override the alias a flow would follow (model.ref), a warning names it.

    \b
    Example:
      streamscore models list fraud_model --json
    """
    reg = open_registry(registry)
    names = [name] if name else reg.names()
    if name:
        require_model(reg, name)
    rows = [row for n in names for row in reg.list(n, _flow_ref(n))]
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo(f"no models in {reg.root}")
        return
    for n in names:
        click.echo(_versions_table([r for r in rows if r["name"] == n], n, reg))
        _warn_overridden(reg, n)


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
    reg = open_registry(registry)
    name, version = reg.resolve(ref)
    summary = next(s for s in reg.list(name, _flow_ref(name)) if s["version"] == version)
    manifest = reg.manifest(format_ref(name, version=version))
    if as_json:
        print_json({**manifest, "aliases": summary["aliases"], "routes": summary["routes"],
                    "decides": summary["decides"], "shadows": summary["shadows"]})
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
    reg = open_registry(registry)
    require_model(reg, name)
    version = version_of(reg, name, version_or_ref)
    before = reg.aliases(name).get(alias)
    reg.set_alias(name, alias, version)
    was = "new alias" if before is None else f"was {format_ref(name, version=before)}"
    click.echo(f"{name}@{alias} -> {format_ref(name, version=version)} ({was})")
    if format_ref(name, alias=alias) == _flow_ref(name):
        _warn_overridden(reg, name)


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
    reg = open_registry(registry)
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
    cmp = open_registry(registry).compare(ref_a, ref_b)
    if as_json:
        print_json(cmp)
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
    reg = open_registry(registry)
    require_model(reg, name)
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

    Routes decide instead of the alias a flow follows (model.ref, e.g. NAME@production):
    setting routes that override it prints a warning naming it. A version may decide a
    share and shadow too: it then scores in shadow that percent of the keys the others
    decide (never its own).

    \b
    Examples:
      streamscore models routes fraud_model --set fraud_model/3:90,fraud_model/4:10
      streamscore models routes fraud_model --shadow fraud_model/5:5
      streamscore models routes fraud_model --shadow fraud_model/4:100   # 4 decides 10 %, shadows the rest
      streamscore models routes fraud_model --clear
    """
    reg = open_registry(registry)
    require_model(reg, name)
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
        _warn_overridden(reg, name)
    r = reg.routes(name)
    if as_json:
        print_json({"name": name, "routes": r.to_dict() if r else None,
                     "resolved": _resolved(reg, r), "state_token": reg.state_token(name)})
    else:
        click.echo(_routes_text(reg, name, r))


def _flow_ref(name: str) -> str:
    """The reference a flow scores NAME with when no routes are set: the model.ref
    setting when it names this model, else NAME@production."""
    from models.registry import parse_ref
    from settings.config import setting

    try:
        ref = format_ref(*parse_ref(str(setting("model.ref"))))
    except Exception:  # a bad setting is the flow's error to report, not this listing's
        return format_ref(name)
    return ref if parse_ref(ref)[0] == name else format_ref(name)


def _warn_overridden(reg: Registry, name: str) -> None:
    """A warning on stderr when routes override the reference a flow would follow."""
    why = reg.overridden(name, _flow_ref(name))
    if why:
        click.echo(f"warning: {why}", err=True)


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


def _share(fraction: float) -> str:
    """A share of keys.

    >>> _share(0.9), _share(0.0), _share(0.333333)
    ('90 %', '-', '33.3333 %')
    """
    return f"{round(fraction * 100, 4):g} %" if fraction else "-"


def _num(v: Any) -> str:
    return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


def _versions_table(rows: list[dict[str, Any]], name: str, reg: Registry) -> str:
    head = ("version", "created", "ROC AUC", "PR AUC", "CRIT rec/prec", "trained on", "aliases", "decides",
            "shadows")
    body = []
    for r in rows:
        m = r["metrics"] or {}
        body.append((
            str(r["version"]), str(r["created_at"] or "-")[:19], _num(m.get("roc_auc")), _num(m.get("pr_auc")),
            f"{_num(m.get('recall_at_critical'))}/{_num(m.get('precision_at_critical'))}",
            _window(r["training_window"]), ", ".join(r["aliases"]) or "-", _share(r["decides"]),
            "-" if r["shadows"] is None else f"{_share(r['shadows'])} of the rest",
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
        f"  decides       {_share(summary['decides'])}"
        + ("" if summary["shadows"] is None else f", shadows {_share(summary['shadows'])} of the rest"),
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
    deciders = {ref for ref, _ in r.decide}
    rows += [("shadow", ref, f"{round(s * 100, 4):g} % of " + ("the keys others decide" if ref in deciders else "keys"))
             for ref, s in r.shadow]
    width = max(len(ref) for _, ref, _ in rows)
    for role, ref, share in rows:
        target = resolved.get(ref)
        arrow = "" if target == ref else f"  -> {target or 'does not resolve'}"
        lines.append(f"  {role}  {ref:<{width}}  {share}{arrow}")
    return "\n".join(lines)
