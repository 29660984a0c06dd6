"""Checked at start: everything a run depends on, before the first event is read.

:func:`start` is what ``dataflows.fraud:flow`` / ``get_flow()`` (and the IoT
flow) run: configure logging, read the configuration, run the flow's checks,
build the flow. Every problem found is one line naming the variable and its
value; the run exits with status 2 before reading any input. (Outages *during*
a run are handled by the steps: lookups fall back to defaults, Kafka retries.)

Resources a check opens (the Feast store, the model) are kept for the process
(:func:`feature_store`, :func:`fraud_model`), so the workers of a single-process
run reuse them instead of opening them again.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import structlog

from dataflows.config import ConfigError, FraudConfig, IOConfig, IoTConfig
from dataflows.logs import configure_logging

__all__ = [
    "CheckFailed",
    "start",
    "check_io",
    "check_fraud",
    "check_iot",
    "feature_store",
    "fraud_model",
    "resuming",
]

log = structlog.get_logger("dataflows.checks")

C = TypeVar("C")
F = TypeVar("F")


class CheckFailed(Exception):
    """Problems found before the run; one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def recovery_directory(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> str | None:
    """The Bytewax recovery directory of this run (``-r`` / ``--recovery-directory`` or
    ``BYTEWAX_RECOVERY_DIRECTORY``), or ``None`` without recovery.

    >>> recovery_directory(["bytewax.run", "m:flow", "-r", "rec"], {}), recovery_directory(["x"], {})
    ('rec', None)
    """
    argv = sys.argv if argv is None else argv
    env = os.environ if environ is None else environ
    for i, a in enumerate(argv):
        if a in ("-r", "--recovery-directory") and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--recovery-directory="):
            return a.split("=", 1)[1]
    return env.get("BYTEWAX_RECOVERY_DIRECTORY") or None


def resuming(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> bool:
    """Whether this run resumes from a Bytewax recovery store (``-r`` /
    ``--recovery-directory`` or ``BYTEWAX_RECOVERY_DIRECTORY``): then the output
    files are continued, not replaced."""
    return recovery_directory(argv, environ) is not None


# -- resources kept for the process ------------------------------------------------

_STORES: dict[tuple[str, str | None], Any] = {}
_MODELS: dict[tuple[str, str], Any] = {}


def feature_store(repo: Path, yaml_file: str | None = None) -> Any:
    """The Feast ``FeatureStore`` of ``repo`` (``yaml_file`` inside it, or its
    ``feature_store.yaml``), opened once per process. Raises ``ValueError`` naming
    the variable at fault."""
    key = (str(repo), yaml_file)
    if key not in _STORES:
        from features.store import open_store

        var = f"SCORING_FEATURE_STORE_YAML={yaml_file!r}" if yaml_file else f"SCORING_FEATURE_REPO={str(repo)!r}"
        if not Path(repo).is_dir():
            raise ValueError(f"SCORING_FEATURE_REPO={str(repo)!r}: no such folder")
        try:
            _STORES[key] = open_store(repo, yaml_file)
        except ValueError as exc:
            if ": not set, but" in str(exc):
                raise  # names the environment variable itself
            raise ValueError(f"{var}: {exc}") from None
        except Exception as exc:
            raise ValueError(f"{var}: cannot open the feature store: {type(exc).__name__}: {exc}") from None
    return _STORES[key]


def fraud_model(ref: str, registry: Path) -> Any:
    """The verified fraud model ``ref``, loaded once per process."""
    key = (ref, str(registry))
    if key not in _MODELS:
        from models.fraud import FraudModel

        _MODELS[key] = FraudModel.load(ref, registry)
    return _MODELS[key]


def fraud_router(cfg: FraudConfig) -> Any:
    """A :class:`~models.serving.ModelRouter` of the flow's model settings (one per
    worker: each polls the registry; loaded versions are shared by the process)."""
    from models.registry import Registry, Routes
    from models.serving import ModelRouter

    routes = None
    if cfg.model_routes:
        routes = Routes.parse(cfg.model_routes, cfg.model_shadow)
    elif cfg.model_shadow:
        routes = Routes.parse(cfg.model, cfg.model_shadow)
    registry = cfg.model_registry
    return ModelRouter(Registry(registry), cfg.model, routes,
                       load=lambda name, version: fraud_model(f"{name}/{version}", registry),
                       poll_s=cfg.model_poll_s or None)


def _service_views(store: Any, service: str, label: str) -> dict[str, list[str]]:
    try:
        fs = store.get_feature_service(service)
    except Exception:
        names = sorted(s.name for s in store.list_feature_services())
        raise ValueError(f"{label}: no such feature service (the repo has: {', '.join(names) or 'none'})") from None
    return {p.name: [f.name for f in p.features] for p in fs.feature_view_projections}


def check_feature_service(repo: Path, yaml_file: str | None, service: str, views: dict[str, str],
                          label: str | None = None) -> None:
    """The store opens, serves ``service`` with every view in ``views``
    (view -> join key), and answers one online read per view. ``label`` names
    the setting in errors (default ``SCORING_FEATURE_SERVICE=<service>``)."""
    label = label or f"SCORING_FEATURE_SERVICE={service!r}"
    store = feature_store(repo, yaml_file)
    have = _service_views(store, service, label)
    missing = [v for v in views if v not in have]
    if missing:
        raise ValueError(f"{label}: feature service has no view {', '.join(missing)} (it has: {', '.join(have)})")
    for view, join_key in views.items():
        try:
            store.get_online_features(features=[f"{view}:{have[view][0]}"],
                                      entity_rows=[{join_key: "__streamscore_check__"}]).to_dict()
        except Exception as exc:
            where = f"SCORING_FEATURE_STORE_YAML={yaml_file!r}" if yaml_file else f"SCORING_FEATURE_REPO={str(repo)!r}"
            raise ValueError(f"{where}: online store read failed: {type(exc).__name__}: {str(exc)[:200]}") from None


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
    from dataflows.sinks import output_files

    out = io.output_dir
    try:
        _make_writable(out)
    except OSError as exc:
        raise ValueError(f"SCORING_OUTPUT_DIR={str(out)!r}: not a writable folder ({exc.strerror or exc})") from None
    files = output_files(out)
    if resuming():
        return  # continue the files of the interrupted run (the sinks truncate to the last snapshot)
    present = [p.name for p in files.values() if p.exists() and p.stat().st_size > 0]
    if present and not io.replace_outputs:
        raise ValueError(f"SCORING_OUTPUT_DIR={str(out)!r} holds another run's outputs ({', '.join(present)}); "
                         f"choose another folder or set SCORING_REPLACE_OUTPUTS=true")
    for p in files.values():  # a run owns its outputs: every file is written, empty if nothing went there
        p.write_bytes(b"")


def check_log(io: IOConfig, flow: str) -> list[Callable[[], None]]:
    """The inference log's folder is writable; a new run (not resuming) starts the
    flow's log afresh unless ``SCORING_INFERENCE_LOG_APPEND=true`` (a run owns its
    outputs, the log included)."""
    if not io.log_enabled:
        return []

    def log_dir() -> None:
        from models.inference_log import FILE_PATTERN

        root = io.log_dir
        label = (f"SCORING_INFERENCE_LOG_DIR={str(root)!r}" if io.inference_log_dir
                 else f"SCORING_OUTPUT_DIR={str(io.output_dir)!r} (its inference_log folder)")
        try:
            _make_writable(root)
        except OSError as exc:
            if io.inference_log_dir is None and io.output == "file":
                return  # inside SCORING_OUTPUT_DIR: its own check names the problem once
            raise ValueError(f"{label}: not a writable folder ({exc.strerror or exc})") from None
        if resuming() or io.inference_log_append:
            return
        files = [p for p in root.glob("date=*/*.parquet")
                 if (m := FILE_PATTERN.match(p.name)) is not None and m["flow"] == flow]
        if files and not io.replace_outputs:
            raise ValueError(f"{label} holds another run's inference log ({len(files)} files); set "
                             f"SCORING_INFERENCE_LOG_APPEND=true to add to it, or SCORING_REPLACE_OUTPUTS=true")
        for p in files:
            p.unlink()

    return [log_dir]


def check_io(io: IOConfig) -> list[Callable[[], None]]:
    """Checks of the input and outputs: the input file, the output folder, Kafka
    settings, broker and input topic."""
    checks: list[Callable[[], None]] = []
    if io.source == "file":
        def input_file() -> None:
            from features.formats import format_of

            p = io.input_path
            if p is None or not p.is_file():
                raise ValueError(f"SCORING_INPUT={str(p)!r}: no such file")
            format_of(p)
            with open(p, "rb"):
                pass
        checks.append(input_file)
    if io.output == "file":
        checks.append(lambda: _check_output_dir(io))
    if "kafka" in (io.source, io.output):
        def kafka() -> None:
            from dataflows.kafka import broker_creates_topics, check_broker, check_options

            k = io.kafka
            check_options(k.options)
            outputs = {"SCORING_SCORED_TOPIC": k.scored_topic, "SCORING_ALERTS_TOPIC": k.alerts_topic,
                       "SCORING_DEAD_LETTER_TOPIC": k.dead_letter_topic} if io.output == "kafka" else {}
            found = check_broker(k.bootstrap_servers, k.options, k.check_timeout_s,
                                 (k.input_topic, *outputs.values()))
            if io.source == "kafka" and k.input_topic not in found:
                raise ValueError(f"SCORING_INPUT_TOPIC={k.input_topic!r}: no such topic on {k.bootstrap_servers}; "
                                 f"create it or produce to it first (e.g. `.venv/bin/python -m dataflows.replay`)")
            missing = {var: t for var, t in outputs.items() if t not in found}
            if missing and broker_creates_topics(k.bootstrap_servers, k.options, k.check_timeout_s) is False:
                # else the first record for it fails, maybe hours later (the dead-letter topic)
                names = ", ".join(f"{var}={t!r}" for var, t in missing.items())
                raise ValueError(f"{names}: no such topic on {k.bootstrap_servers}, and the broker does not "
                                 f"create topics (auto.create.topics.enable=false); create the output topics first")
        checks.append(kafka)
    return checks


def check_fraud(cfg: FraudConfig) -> list[Callable[[], None]]:
    """The fraud flow's checks: I/O, the Feast feature service, the model."""

    def feast() -> None:
        check_feature_service(cfg.feature_repo, cfg.feature_store_yaml, cfg.feature_service,
                              {"customer_profile": "customer_id", "merchant_risk": "merchant_id"})

    def model() -> None:
        try:
            fraud_router(cfg)  # every version the routes name loads and verifies
        except Exception as exc:
            setting = (f"SCORING_MODEL_ROUTES={cfg.model_routes!r}" if cfg.model_routes
                       else f"SCORING_MODEL={cfg.model!r}")
            if cfg.model_shadow:
                setting += f" SCORING_MODEL_SHADOW={cfg.model_shadow!r}"
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            hint = "" if "train one" in reason else "; train one with `.venv/bin/streamscore train`"
            raise ValueError(f"{setting} (SCORING_MODEL_REGISTRY={str(cfg.model_registry)!r}): {reason}{hint}") from None

    def live_view() -> None:
        from dataflows.writeback import check_live_view

        check_live_view(cfg.feature_repo, cfg.feature_store_yaml, "customer_live")

    return [*check_io(cfg.io), *check_log(cfg.io, "fraud"), feast, model, *([live_view] if cfg.writeback else [])]


def check_iot(cfg: IoTConfig) -> list[Callable[[], None]]:
    """The IoT flow's checks: I/O and, unless ``IOT_DEVICE_PROFILE=false``, the
    Feast ``iot_scoring`` service with its ``device_profile`` view."""

    def feast() -> None:
        try:
            check_feature_service(cfg.feature_repo, cfg.feature_store_yaml, "iot_scoring",
                                  {"device_profile": "device_id"},
                                  label=f"SCORING_FEATURE_REPO={str(cfg.feature_repo)!r} (feature service 'iot_scoring')")
        except ValueError as exc:
            raise ValueError(f"{exc} (or set IOT_DEVICE_PROFILE=false)") from None

    def live_view() -> None:
        from dataflows.writeback import check_live_view

        check_live_view(cfg.feature_repo, cfg.feature_store_yaml, "device_live")

    return [*check_io(cfg.io), *check_log(cfg.io, "iot"), *([feast] if cfg.device_profile else []),
            *([live_view] if cfg.writeback else [])]


def _fail(problems: list[str]) -> None:
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    raise SystemExit(2)


def start(
    name: str,
    load_config: Callable[[], C],
    checks: Callable[[C], list[Callable[[], None]]],
    build: Callable[[C], F],
) -> F:
    """Configure logging, read the configuration, run every check, build the flow.

    Any problem exits with status 2 and one line per problem on stderr, before
    any input is read.
    """
    t0 = time.perf_counter()
    try:
        configure_logging()
        cfg = load_config()
        configure_logging(getattr(cfg, "log_level", None))
    except ConfigError as exc:
        _fail([str(exc)])
    problems = _problems(checks(cfg))
    if problems:
        _fail(problems)
    flow = build(cfg)
    describe = getattr(cfg, "describe", None)
    log.info("flow_ready", flow=name, seconds=round(time.perf_counter() - t0, 3),
             config=describe() if callable(describe) else None)
    return flow
