"""Checked at start: everything a run depends on, before the first event is read.

:func:`start` is what ``dataflows.fraud:flow`` / ``get_flow()`` (and the IoT
flow) run: configure logging, read the configuration, run the flow's checks,
build the flow. Every problem found is one line naming the setting as it was
given (its variable, else its key: :meth:`settings.config._Settings.name_of`) and its
value; the run exits with status 2 before reading any input. (Outages *during*
a run are handled by the steps: lookups fall back to defaults, Kafka retries.)

Resources a check opens (the Feast store, the model) are kept for the process by
:mod:`dataflows.resources`, so the workers of a single-process run reuse them
instead of opening them again.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import structlog

from dataflows.gcwatch import watch_gc

from dataflows.connectors.outputs import output_files
from dataflows.connectors.writeback import check_live_view
from dataflows.placement import resuming
from dataflows.resources import feature_store, fraud_router
from features.formats import format_of
from models.inference_log import FILE_PATTERN
from settings.config import ConfigError, FraudConfig, IOConfig, IoTConfig
from settings.logs import configure_logging

__all__ = [
    "CheckFailed",
    "start",
    "check_io",
    "check_fraud",
    "check_iot",
]

log = structlog.get_logger("dataflows.startup")

C = TypeVar("C")
F = TypeVar("F")


class CheckFailed(Exception):
    """Problems found before the run; one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _service_views(store: Any, service: str, label: str) -> dict[str, list[str]]:
    try:
        fs = store.get_feature_service(service)
    except Exception:
        names = sorted(s.name for s in store.list_feature_services())
        raise ValueError(f"{label}: no such feature service (the repo has: {', '.join(names) or 'none'})") from None
    return {p.name: [f.name for f in p.features] for p in fs.feature_view_projections}


def check_feature_service(repo: Path, yaml_file: str | None, service: str, views: dict[str, str],
                          label: str | None = None, where: str | None = None) -> None:
    """The store opens, serves ``service`` with every view in ``views``
    (view -> join key), and answers one online read per view. ``label`` names
    the setting in errors (default ``feast.fraud_service=<service>``), ``where``
    the store's (default ``feast.store_yaml=...`` or ``feast.repo=...``)."""
    label = label or f"feast.fraud_service={service!r}"
    store = feature_store(repo, yaml_file, where)
    have = _service_views(store, service, label)
    missing = [v for v in views if v not in have]
    if missing:
        raise ValueError(f"{label}: feature service has no view {', '.join(missing)} (it has: {', '.join(have)})")
    for view, join_key in views.items():
        try:
            store.get_online_features(features=[f"{view}:{have[view][0]}"],
                                      entity_rows=[{join_key: "__streamscore_check__"}]).to_dict()
        except Exception as exc:
            where = where or (f"feast.store_yaml={yaml_file!r}" if yaml_file else f"feast.repo={str(repo)!r}")
            raise ValueError(f"{where}: online store read failed: {type(exc).__name__}: {str(exc)[:200]}") from None


def store_name(cfg: FraudConfig | IoTConfig) -> str:
    """The store setting as given, for a store problem: ``feast.store_yaml=...`` when
    set, else ``feast.repo=...`` (each named by its variable when a variable set it)."""
    if cfg.feature_store_yaml:
        return f"{cfg.name_of('feature_store_yaml')}={cfg.feature_store_yaml!r}"
    return f"{cfg.name_of('feature_repo')}={str(cfg.feature_repo)!r}"


# -- the checks --------------------------------------------------------------------

def _problems(checks: Iterable[Callable[[], None]]) -> list[str]:
    out: list[str] = []
    for check in checks:
        try:
            check()
        except CheckFailed as exc:
            out.extend(exc.problems)
        except (ValueError, OSError, RuntimeError) as exc:
            out.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return out


def _make_writable(folder: Path) -> None:
    """Create ``folder`` if needed and write a probe file in it; raises ``OSError``."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".write-check-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()


def _check_output_dir(io: IOConfig) -> None:
    out = io.output_dir
    try:
        _make_writable(out)
    except OSError as exc:
        raise ValueError(f"{io.name_of('output_dir')}={str(out)!r}: not a writable folder "
                         f"({exc.strerror or exc})") from None
    files = output_files(out)
    if resuming():
        return  # continue the files of the interrupted run (the sinks truncate to the last snapshot)
    present = [p.name for p in files.values() if p.exists() and p.stat().st_size > 0]
    if present and not io.replace_outputs:
        raise ValueError(f"{io.name_of('output_dir')}={str(out)!r} holds another run's outputs "
                         f"({', '.join(present)}); choose another folder or set {io.name_of('replace_outputs')}=true")
    for p in files.values():  # a run owns its outputs: every file is written, empty if nothing went there
        p.write_bytes(b"")


def check_log(io: IOConfig, flow: str) -> list[Callable[[], None]]:
    """The inference log's folder is writable; a new run (not resuming) starts the
    flow's log afresh unless ``inference_log.append`` is true (a run owns its
    outputs, the log included)."""
    if not io.log_enabled:
        return []

    def log_dir() -> None:
        root = io.log_dir
        label = (f"{io.name_of('inference_log_dir')}={str(root)!r}" if io.inference_log_dir
                 else f"{io.name_of('output_dir')}={str(io.output_dir)!r} (its inference_log folder)")
        try:
            _make_writable(root)
        except OSError as exc:
            if io.inference_log_dir is None and io.output == "file":
                return  # inside io.output_dir: its own check names the problem once
            raise ValueError(f"{label}: not a writable folder ({exc.strerror or exc})") from None
        if resuming() or io.inference_log_append:
            return
        files = [p for p in root.glob("date=*/*.parquet")
                 if (m := FILE_PATTERN.match(p.name)) is not None and m["flow"] == flow]
        if files and not io.replace_outputs:
            raise ValueError(f"{label} holds another run's inference log ({len(files)} files); set "
                             f"{io.name_of('inference_log_append')}=true to add to it, or "
                             f"{io.name_of('replace_outputs')}=true")
        for p in files:
            p.unlink()

    return [log_dir]


def check_io(io: IOConfig) -> list[Callable[[], None]]:
    """Checks of the input and outputs: the input file, the output folder, Kafka
    settings, broker and input topic."""
    checks: list[Callable[[], None]] = []
    if io.source == "file":
        def input_file() -> None:
            p = io.input_path
            if p is None or not p.is_file():
                raise ValueError(f"{io.name_of('input_path')}={str(p)!r}: no such file")
            format_of(p)
            with open(p, "rb"):
                pass
        checks.append(input_file)
    if io.output == "file":
        checks.append(lambda: _check_output_dir(io))
    if "kafka" in (io.source, io.output):
        def kafka() -> None:
            # lazy: pulls confluent_kafka; importing a flow loads no Kafka client (tests/dataflows/test_startup.py)
            from dataflows.connectors.kafka import broker_creates_topics, check_broker, check_options

            k = io.kafka
            check_options(k.options)
            outputs = {k.name_of(f): getattr(k, f) for f in ("scored_topic", "alerts_topic", "dead_letter_topic")
                       } if io.output == "kafka" else {}
            found = check_broker(k.bootstrap_servers, k.options, k.check_timeout_s,
                                 (k.input_topic, *outputs.values()))
            if io.source == "kafka" and k.input_topic not in found:
                raise ValueError(f"{k.name_of('input_topic')}={k.input_topic!r}: no such topic on {k.bootstrap_servers}; "
                                 f"create it or produce to it first (e.g. `.venv/bin/python -m cli.replay`)")
            missing = {var: t for var, t in outputs.items() if t not in found}
            if missing and broker_creates_topics(k.bootstrap_servers, k.options, k.check_timeout_s) is False:
                # else the first record for it fails, maybe hours later (the dead-letter topic)
                names = ", ".join(f"{var}={t!r}" for var, t in missing.items())
                raise ValueError(f"{names}: no such topic on {k.bootstrap_servers}, and the broker does not "
                                 f"create topics (auto.create.topics.enable=false); create the output topics first")
        checks.append(kafka)
    return checks


def _registry(cfg: FraudConfig | IoTConfig) -> list[Callable[[], None]]:
    """The schema registry check (dataflows/connectors/registry.py), when a Kafka input or
    output is Avro or Protobuf."""
    k = cfg.io.kafka
    wire = (cfg.io.source == "kafka" and k.input_format != "json") or (cfg.io.output == "kafka"
                                                                         and k.output_format != "json")
    if not wire:
        return []

    def registry() -> None:
        from dataflows.connectors.registry import check_registry  # lazy: pulls the registry client

        check_registry(cfg)

    return [registry]


def check_fraud(cfg: FraudConfig) -> list[Callable[[], None]]:
    """The fraud flow's checks: I/O, the Feast feature service, the model."""

    def feast() -> None:
        check_feature_service(cfg.feature_repo, cfg.feature_store_yaml, cfg.feature_service,
                              {"customer_profile": "customer_id", "merchant_risk": "merchant_id"},
                              label=f"{cfg.name_of('feature_service')}={cfg.feature_service!r}",
                              where=store_name(cfg))

    def model() -> None:
        try:
            fraud_router(cfg)  # every version the routes name loads and verifies
        except Exception as exc:
            setting = (f"{cfg.name_of('model_routes')}={cfg.model_routes!r}" if cfg.model_routes
                       else f"{cfg.name_of('model')}={cfg.model!r}")
            if cfg.model_shadow:
                setting += f" {cfg.name_of('model_shadow')}={cfg.model_shadow!r}"
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            hint = "" if "train one" in reason else "; train one with `.venv/bin/streamscore train`"
            raise ValueError(f"{setting} ({cfg.name_of('model_registry')}={str(cfg.model_registry)!r}): "
                             f"{reason}{hint}") from None

    def live_view() -> None:
        check_live_view(cfg.feature_repo, cfg.feature_store_yaml, "customer_live", setting=cfg.name_of("writeback"),
                        where=store_name(cfg))

    return [*check_io(cfg.io), *_registry(cfg), *check_log(cfg.io, "fraud"), feast, model, *([live_view] if cfg.writeback else [])]


def check_iot(cfg: IoTConfig) -> list[Callable[[], None]]:
    """The IoT flow's checks: I/O and, unless ``iot.device_profile`` is false, the
    Feast ``iot_scoring`` service with its ``device_profile`` view."""

    def feast() -> None:
        try:
            check_feature_service(cfg.feature_repo, cfg.feature_store_yaml, "iot_scoring",
                                  {"device_profile": "device_id"},
                                  label=f"{cfg.name_of('feature_repo')}={str(cfg.feature_repo)!r} "
                                        f"(feature service 'iot_scoring')", where=store_name(cfg))
        except ValueError as exc:
            raise ValueError(f"{exc} (or set {cfg.name_of('device_profile')}=false)") from None

    def live_view() -> None:
        check_live_view(cfg.feature_repo, cfg.feature_store_yaml, "device_live", setting=cfg.name_of("writeback"),
                        where=store_name(cfg))

    return [*check_io(cfg.io), *_registry(cfg), *check_log(cfg.io, "iot"), *([feast] if cfg.device_profile else []),
            *([live_view] if cfg.writeback else [])]


def _dataflow_api() -> None:
    """Bytewax's dataflow API (its ``/metrics``): ``BYTEWAX_DATAFLOW_API_ENABLED=0`` (or
    false/no/off) means off (Bytewax 0.21.1 starts it whenever the variable is set); when
    on and its port (``BYTEWAX_DATAFLOW_API_PORT``, 3030) is taken, e.g. by a second flow
    on the host, one warning and the flow runs without it (Bytewax would print a Rust
    panic). A port that is not a number is a start-up error."""
    import socket

    from settings.environment import dataflow_api, disable_dataflow_api

    enabled, port = dataflow_api()
    if enabled is None:
        return
    if not enabled:
        disable_dataflow_api()
        return
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"BYTEWAX_DATAFLOW_API_PORT={port!r}: expected a port number")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("0.0.0.0", int(port)))  # where Bytewax binds it
        except OSError as exc:
            disable_dataflow_api()
            log.warning("dataflow_api_port_busy", port=int(port),
                        detail=f"BYTEWAX_DATAFLOW_API_PORT={port}: port in use ({exc.strerror or exc}), so this flow "
                               f"serves no /metrics; give each flow on a host its own port")


def _fail(problems: list[str]) -> None:
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    raise SystemExit(2)


def start(
    name: str,
    load_config: Callable[[], C],
    checks: Callable[[C], list[Callable[[], None]]],
    build: Callable[[C], F],
    warm: Sequence[Callable[[], object]] = (),
) -> F:
    """Configure logging, read the configuration, run every check, build the flow.

    Any problem exits with status 2 and one line per problem on stderr, before
    any input is read. Then :func:`settle` (``warm``: the flow's warm-up calls).
    """
    t0 = time.perf_counter()
    dump_stacks_on_signal()
    try:
        configure_logging()
        cfg = load_config()
        configure_logging(getattr(cfg, "log_level", None))
    except ConfigError as exc:
        _fail([str(exc)])
    problems = _problems([*checks(cfg), _dataflow_api])
    if problems:
        _fail(problems)
    flow = build(cfg)
    settle(*warm, freeze=getattr(cfg, "gc_freeze", False))
    describe = getattr(cfg, "describe", None)
    log.info("flow_ready", flow=name, seconds=round(time.perf_counter() - t0, 3),
             config=describe() if callable(describe) else None)
    return flow


def dump_stacks_on_signal(signum: int | None = None) -> bool:
    """From now on, ``kill -USR1 <pid>`` (``signum``) makes this process write every
    thread's Python stack to stderr (:mod:`faulthandler`, from its C signal handler: it
    answers even when a thread holds the interpreter lock forever). A flow that stops
    scoring can be asked where it stands without stopping it. ``False`` where the signal
    does not exist (Windows) or this is not the main thread.

    >>> import signal
    >>> dump_stacks_on_signal(signal.SIGUSR1)
    True
    """
    import faulthandler
    import signal

    sig = getattr(signal, "SIGUSR1", None) if signum is None else signum
    if sig is None:
        return False
    try:
        faulthandler.register(sig, all_threads=True, chain=False)
    except (ValueError, RuntimeError, OSError):
        return False
    return True


def settle(*warm: Callable[[], object], freeze: bool = True) -> None:
    """Once the flow is built: run the ``warm`` calls (e.g. load compiled kernels from their
    cache, so the first batch does not wait for it), then time every garbage collection
    and, with ``freeze`` (``state.gc_freeze``), move the hundreds of thousands of long-lived
    objects of the start-up (imported modules, the feature store, models) and, from then on,
    the survivors of each full collection out of the collector's way
    (:mod:`dataflows.gcwatch`). Without it, each full collection while scoring walks all of
    them (measured on the IoT flow: 4 collections of ~0.5 s each in a 6 s run of 20,000
    readings; on the fraud flow with 50,000 new customers, the longest 1.2 s)."""
    t0 = time.perf_counter()
    for w in warm:
        w()
    watch_gc(freeze=freeze)
    log.info("flow_settled", seconds=round(time.perf_counter() - t0, 3), frozen_objects=gc.get_freeze_count())
