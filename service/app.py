"""The scoring endpoint: ``POST /score`` scores card transactions synchronously, with the
fraud flow's validation, model registry routing, status rule and Feast features, and each
customer's LIVE streaming features written back by the flow (:mod:`dataflows.connectors.writeback`).

    streamscore serve [--host 127.0.0.1] [--port 8000] [--workers N]   # or: python -m service.app
    uvicorn service.app:app --workers N                                  # the same app, built per worker

Workers: ``--workers N`` (``serve.workers``) runs N uvicorn worker processes on one port.
:data:`app` is a module-level ASGI app that builds itself (settings from the environment,
checks, Feast store, model router) in each worker when the worker starts, so importing
this module opens nothing and every worker has its own store and models.

- ``POST /score``: one transaction (a JSON object) or a list of them (at most
  ``serve.max_batch``); the answer is one object, or a list in the same order, each
  ``transaction_id``, ``fraud_score``, ``risk_score``, ``status``, ``reasons``,
  ``model_version``, ``shadow_scores`` (when a shadow model scores the customer),
  ``live_known`` (the customer had a live row) and ``feature_fallback`` (the store could
  not answer: defaults used). ``?verbose=true`` answers the whole scored record, as the
  flow writes it (every feature). Header ``X-API-Key`` is required (``serve.api_keys``:
  ``STREAMSCORE_API_KEYS``). Errors: 401 (no or a wrong key), 413 (body over
  ``serve.max_bytes`` or batch over ``serve.max_batch``), 422 (``{"detail": [{"index", "field", "error"}, ...]}``
  for every refused transaction, the same messages as the flow's dead letters; the
  whole request is refused).
- ``GET /healthz`` (liveness and the model in use), ``GET /metrics`` (Prometheus),
  ``GET /docs`` and ``/openapi.json`` (FastAPI): no key needed.

Scoring, per request (:class:`EndpointScorer`): ``parse_transaction`` with the flow's
bounds (:func:`dataflows.scoring.transaction_parser`); ONE Feast call for the live rows
of the request's customers (never cached: they move with the stream), the profile and
merchant lookups through the flow's TTL cache, all three with the flow's timeout and
one circuit breaker; the streaming features from the live rows
(:func:`features.live.live_features`: how they differ from the stream's is written
there); then :meth:`models.fraud.FraudScorer.score_batch`, the flow's own scorer: the
router's current assignment (registry aliases, routes, shadows, hot switch: the
registry is looked at every ``model.poll_s``), the model, ``combined_risk`` and
the status thresholds, reasons for alerts. The anomaly detectors live in the stream
only, so ``anomaly_score`` is null and ``risk_score == fraud_score`` here.

Configuration: :class:`settings.config.ServeConfig`, the fraud flow's settings
(``[feast]``, ``[model]``, ``[fraud]`` thresholds and bounds, lookups...) plus ``[serve]``
(``streamscore config --flow serve`` prints them). Start-up checks the feature services and the model and exits with
status 2 and one ``error:`` line per problem, as the flows do.
"""

from __future__ import annotations

import argparse
import hmac
import os
import sys
import threading
import time
from typing import Any, Mapping, Sequence

import msgspec
import orjson
import structlog
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from dataflows.resources import fraud_router
from dataflows.startup import check_feature_service
from features.records import undecodable
from service.scorer import LIVE_VIEWS, EndpointScorer, InvalidItems, answer, item_error
from settings.config import ConfigError, ServeConfig
from settings.logs import configure_logging

__all__ = ["ServeConfig", "EndpointScorer", "InvalidItems", "create_app", "check_serve", "build_app", "app", "run",
           "main", "StartFailed"]

log = structlog.get_logger("service.app")

if __name__ in ("__main__", "__mp_main__"):
    # `python -m service.app --workers N`: each spawned worker runs this file again as
    # __mp_main__, then uvicorn imports service.app:app; one module object, so the metrics
    # below are registered once per process
    sys.modules.setdefault("service.app", sys.modules[__name__])


REQUESTS = Counter("scoring_api_requests_total", "Requests answered by the scoring endpoint", ["path", "code"])
REQUEST_SECONDS = Histogram("scoring_api_request_seconds", "Time to answer a request", ["path"],
                            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
EVENTS = Counter("scoring_api_events_total", "Transactions scored by the endpoint", ["status", "model_version"])


# --- scoring -------------------------------------------------------------------------------


# --- the HTTP application ---------------------------------------------------------------------


class TransactionIn(BaseModel):
    """One card transaction, as the flow reads it (extra fields are kept in ``verbose`` records)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "transaction_id": "t-1001", "customer_id": "C00042", "merchant_id": "M0007", "merchant_category": "grocery",
        "amount": 42.5, "latitude": 40.71, "longitude": -74.0, "timestamp": "2026-11-25T10:00:00Z"}]})

    transaction_id: str | int
    customer_id: str | int
    merchant_id: str | int
    merchant_category: str | int
    amount: float = Field(description="> fraud.min_amount, <= fraud.max_amount")
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    timestamp: str | float = Field(description="ISO-8601 (no offset = UTC) or epoch seconds")


class ScoreOut(BaseModel):
    """The answer for one transaction."""

    transaction_id: str
    fraud_score: float = Field(description="the deciding model's probability")
    risk_score: float = Field(description="noisy-OR of fraud_score and anomaly_score (null here): = fraud_score")
    status: str = Field(description="CRITICAL, WARNING or NORMAL, by fraud.critical and fraud.warning on risk_score")
    reasons: list[str] = Field(description="alerts: the scores over threshold, then the model's top features")
    model_version: str
    shadow_scores: dict[str, float] | None = Field(None, description="only when a shadow model scores the customer")
    live_known: bool = Field(description="the customer had live features (else scored as a first transaction)")
    feature_fallback: bool = Field(description="some Feast values are defaults: the store could not answer")


class ItemError(BaseModel):
    index: int | None
    field: str | None
    error: str


class Refused(BaseModel):
    detail: list[ItemError] | str


class _Counted:
    """ASGI middleware counting requests by route and status and timing them (a plain
    ASGI wrapper: Starlette's ``@app.middleware`` costs about a millisecond per request)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = getattr(scope.get("route"), "path", "other")
            REQUEST_SECONDS.labels(path).observe(time.perf_counter() - t0)
            REQUESTS.labels(path, str(status)).inc()


def create_app(cfg: ServeConfig, scorer: EndpointScorer | None = None) -> FastAPI:
    """The FastAPI application (``scorer`` built from ``cfg`` when not given)."""
    scorer = scorer if scorer is not None else EndpointScorer(cfg)
    keys = [k.encode() for k in cfg.keys()]
    max_bytes, max_batch = cfg.max_bytes, cfg.max_batch
    bytes_name, batch_name = cfg.name_of("max_bytes"), cfg.name_of("max_batch")
    app = FastAPI(
        title="streamscore scoring endpoint",
        version="1",
        description="Fraud scores for card transactions: the fraud flow's model, rules and features, with each "
                    "customer's live streaming features from Feast. Send `X-API-Key`.",
    )
    app.state.scorer = scorer
    api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="one of serve.api_keys")

    def require_key(request: Request, key: str | None = Depends(api_key)) -> None:
        given = (key or "").encode("utf-8", "replace")
        ok = False
        for k in keys:  # every key compared, in constant time per key
            ok |= hmac.compare_digest(given, k)
        if not ok:
            log.warning("api_auth_failed", reason="missing" if not key else "invalid", path=request.url.path,
                        client=request.client.host if request.client else None)
            raise HTTPException(401, "missing or invalid X-API-Key", headers={"WWW-Authenticate": "X-API-Key"})

    app.add_middleware(_Counted)

    def refused(status: int, detail: Any) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=status)

    body_schema = {"oneOf": [TransactionIn.model_json_schema(),
                             {"type": "array", "items": TransactionIn.model_json_schema(), "maxItems": max_batch}]}

    @app.post(
        "/score",
        dependencies=[Depends(require_key)],
        summary="Score one transaction or a list",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}}},
        responses={
            200: {"model": ScoreOut, "description": "one answer, or a list in the request's order "
                                                     "(?verbose=true: the whole scored records)"},
            401: {"description": "missing or invalid X-API-Key"},
            413: {"model": Refused,
                  "description": "body over serve.max_bytes or batch over serve.max_batch"},
            422: {"model": Refused, "description": "refused transactions: index, field and error of each"},
        },
    )
    async def score(request: Request, verbose: bool = False) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            return refused(413, f"body of {int(length)} bytes is over {bytes_name}={max_bytes}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                return refused(413, f"body is over {bytes_name}={max_bytes} bytes")
        text = bytes(body).lstrip()
        try:
            if text.startswith(b"["):
                items: list[Any] = [bytes(r) for r in msgspec.json.decode(text, type=list[msgspec.Raw])]
                single = False
            else:
                items, single = [text], True
        except Exception as exc:  # whatever the decoder raises (RecursionError too): a 422 in our words
            return refused(422, [item_error(None, str(undecodable(text, exc)))])
        if len(items) > max_batch:
            return refused(413, f"batch of {len(items)} transactions is over {batch_name}={max_batch}")
        if not items:
            return Response(b"[]", media_type="application/json")
        try:
            records = await run_in_threadpool(scorer.score, items)
        except InvalidItems as exc:
            return refused(422, exc.errors)
        except Exception as exc:  # a bug or a store error the lookups did not absorb: say so, keep serving
            log.error("api_scoring_failed", events=len(items), error=f"{type(exc).__name__}: {exc}"[:500])
            return refused(500, f"scoring failed: {type(exc).__name__}")
        for rec in records:
            EVENTS.labels(rec["status"], rec["model_version"]).inc()
        out = records if verbose else [answer(r) for r in records]
        return Response(orjson.dumps(out[0] if single else out, option=orjson.OPT_SERIALIZE_NUMPY),
                        media_type="application/json")

    @app.get("/healthz", summary="Liveness: the process answers; the model in use and the worker's pid")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": scorer.router.assignment.label, "pid": os.getpid()}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


# --- start ---------------------------------------------------------------------------------------


def check_serve(cfg: ServeConfig) -> list[str]:
    """What the endpoint needs, checked before it listens: the feature services
    (``feast.fraud_service`` with the profile and merchant views,
    ``feast.live_service`` with ``customer_live`` too, each answering a read)
    and the model routes. One line per problem."""

    fc = cfg.fraud
    problems: list[str] = []
    try:
        check_feature_service(fc.feature_repo, fc.feature_store_yaml, fc.feature_service,
                              {"customer_profile": "customer_id", "merchant_risk": "merchant_id"},
                              label=f"{fc.name_of('feature_service')}={fc.feature_service!r}",
                              where=_store_name(fc))
        check_feature_service(fc.feature_repo, fc.feature_store_yaml, cfg.live_service, LIVE_VIEWS,
                              label=f"{cfg.name_of('live_service')}={cfg.live_service!r}", where=_store_name(fc))
    except (ValueError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "no such feature service" in msg or "has no view" in msg:
            msg += " (apply feature_repo/definitions.py: `cd feature_repo && feast apply`)"
        problems.append(msg)
    try:
        fraud_router(fc)
    except Exception as exc:
        setting = (f"{fc.name_of('model_routes')}={fc.model_routes!r}" if fc.model_routes
                   else f"{fc.name_of('model')}={fc.model!r}")
        problems.append(f"{setting} ({fc.name_of('model_registry')}={str(fc.model_registry)!r}): "
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    return problems


def _store_name(fc: Any) -> str:
    """The store setting, as given, for an online-store problem."""
    if fc.feature_store_yaml:
        return f"{fc.name_of('feature_store_yaml')}={fc.feature_store_yaml!r}"
    return f"{fc.name_of('feature_repo')}={str(fc.feature_repo)!r}"


class StartFailed(Exception):
    """The settings or the start checks failed: ``problems`` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _checked_settings(environ: Mapping[str, str] | None = None) -> ServeConfig:
    """The settings (``environ``, default the process's environment), checked; raises
    :class:`StartFailed`."""
    configure_logging()
    try:
        cfg = ServeConfig.from_env(environ)
        configure_logging(cfg.fraud.log_level)
    except ConfigError as exc:
        raise StartFailed([str(exc)]) from None
    problems = check_serve(cfg)
    if problems:
        raise StartFailed(problems)
    return cfg


def build_app(environ: Mapping[str, str] | None = None) -> FastAPI:
    """Read the settings, check them and build the application (its own Feast store and
    model router); raises :class:`StartFailed`."""
    t0 = time.perf_counter()
    cfg = _checked_settings(environ)
    built = create_app(cfg)
    log.info("serve_worker_ready", pid=os.getpid(), model=built.state.scorer.router.assignment.label,
             seconds=round(time.perf_counter() - t0, 3))
    return built


class LazyApp:
    """An ASGI app that builds the real one (``build``) the first time it is called: at
    the worker's lifespan start-up under uvicorn, so every worker process builds its own
    and importing the module opens nothing. A build that fails ends the worker's start-up
    with the problems (``lifespan.startup.failed``), one ``error:`` line each on stderr."""

    def __init__(self, build: Any = build_app) -> None:
        self._build = build
        self._app: Any = None
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._app is not None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            try:
                with self._lock:
                    if self._app is None:
                        self._app = self._build()
            except StartFailed as exc:
                for p in exc.problems:
                    print(f"error: {p}", file=sys.stderr, flush=True)
                if scope["type"] == "lifespan":
                    await receive()  # lifespan.startup
                    await send({"type": "lifespan.startup.failed", "message": "; ".join(exc.problems)})
                    return
                raise
        await self._app(scope, receive, send)


#: The endpoint as a module-level ASGI app (``uvicorn service.app:app --workers N``): built
#: lazily in each worker from the settings in the environment (see :class:`LazyApp`).
app = LazyApp()


def run(host: str | None = None, port: int | None = None, environ: Mapping[str, str] | None = None,
        workers: int | None = None) -> int:
    """Read the settings, check, and serve until stopped (SIGINT / SIGTERM). Returns the
    exit status: 2 with ``error:`` lines when a setting or a check fails.

    ``workers`` (default ``serve.workers``) above 1 runs that many uvicorn worker
    processes on one socket, each building :data:`app` from the process environment
    (``environ`` must then be None: the workers read the process environment)."""
    import uvicorn

    t0 = time.perf_counter()
    try:
        cfg = _checked_settings(environ)
    except StartFailed as exc:
        for p in exc.problems:
            print(f"error: {p}", file=sys.stderr)
        return 2
    host = host or cfg.host
    port = cfg.port if port is None else port
    workers = cfg.workers if workers is None else workers
    if workers > 1:
        if environ is not None:
            raise ValueError("run(workers > 1): the workers read the process environment; pass environ=None")
        log.info("serve_ready", host=host, port=port, workers=workers, seconds=round(time.perf_counter() - t0, 3),
                 config=cfg.describe())
        # uvicorn's supervisor: spawned workers import service.app and build `app` each
        # a worker answers the supervisor's pings from a thread it starts only after its imports:
        # 60 s, not uvicorn's 5, or a busy machine has the supervisor kill workers while they start
        uvicorn.run("service.app:app", host=host, port=port, workers=workers, log_config=None,
                    access_log=False, server_header=False, timeout_worker_healthcheck=60)
        log.info("serve_stopped", workers=workers)
        return 0
    built = create_app(cfg)
    log.info("serve_ready", host=host, port=port, workers=1, model=built.state.scorer.router.assignment.label,
             seconds=round(time.perf_counter() - t0, 3), config=cfg.describe())
    server = _Server(uvicorn.Config(built, host=host, port=port, log_config=None, access_log=False,
                                    server_header=False))
    server.run()
    log.info("serve_stopped", requests_in_flight_finished=True)
    return 0 if server.started else 1


def _uvicorn_server() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, stopping gracefully on SIGINT / SIGTERM (in-flight requests
        finish) and then returning, so the command exits 0 (uvicorn itself raises the
        signal again after its shutdown, ending the process by the signal)."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    return Server


def _Server(config: Any) -> Any:
    return _uvicorn_server()(config)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m service.app [--host HOST] [--port PORT] [--workers N]``."""
    parser = argparse.ArgumentParser(prog="python -m service.app", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=None,
                        help="interface to listen on (default: the serve.host setting, 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: the serve.port setting, 8000)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: the serve.workers setting, 1)")
    args = parser.parse_args(argv)
    return run(args.host, args.port, workers=args.workers)


if __name__ == "__main__":
    sys.exit(main())
