"""Plain-loop reference: the fraud flow's kind of work as ONE straightforward Python
loop, no stream engine and none of the project's classes.

    python -m benchmarks.reference INPUT.jsonl [--out scored.jsonl]

Per event: ``orjson`` decode and ISO time parse; per-customer rolling windows of
1 h, 24 h and 7 days (deques with running count, sum and sum of squares, and a
monotonic deque for the max; events assumed in event-time order, no lateness
handling, no cap); time since last, distance and speed; River's own detector,
``compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees())``, ONE
shared for all customers (``score_one`` then ``learn_one``) over the same six
inputs as the project's shared detector. Per 1,000 events: one Feast
``get_online_features`` call for the distinct customers and one for the distinct
merchants not yet in a plain dict cache (defaults for unknown keys), one
``lightgbm.Booster.predict`` on the 1,000 x 29 matrix (the production model's
features, in its order), the risk and status, and ``orjson`` encode of every
record to a JSON Lines file.

This is what "the same work without Bytewax" costs; it is not a second product:
no dead letters, no late events, no recovery, no per-customer detector, no
explanations. Model load and Feast start-up are timed apart (``setup_s``).

>>> from collections import deque
>>> w = Window(3600.0)
>>> [w.add(t, a) for t, a in ((0.0, 10.0), (10.0, 30.0))][-1]
(2, 40.0, 20.0, 10.0, 30.0)
>>> w.add(4000.0, 5.0)   # the first two are out of the hour
(1, 5.0, 5.0, 0.0, 5.0)
"""

from __future__ import annotations

import argparse
import math
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from models.registry import Registry

__all__ = ["Window", "Customer", "run"]

HORIZONS = (("1h", 3600.0), ("24h", 86_400.0), ("7d", 604_800.0))
CATEGORIES = ("grocery", "restaurant", "gas", "retail", "online", "electronics", "travel", "jewelry", "gambling")
CODE = {c: float(i) for i, c in enumerate(CATEGORIES)}
PROFILE = ("avg_transaction_amount", "transaction_frequency", "home_latitude", "home_longitude")
PROFILE_DEFAULTS = {"avg_transaction_amount": 40.0, "transaction_frequency": 2.0,
                    "home_latitude": None, "home_longitude": None}
MERCHANT = ("merchant_risk_score", "chargeback_rate")
MERCHANT_DEFAULTS = {"merchant_risk_score": 0.5, "chargeback_rate": 0.02}


class Window:
    """Count, sum, mean, std and max of amounts over the last ``horizon`` seconds."""

    __slots__ = ("horizon", "events", "maxq", "n", "s", "sq")

    def __init__(self, horizon: float) -> None:
        self.horizon = horizon
        self.events: deque[tuple[float, float]] = deque()
        self.maxq: deque[tuple[float, float]] = deque()
        self.n = 0
        self.s = self.sq = 0.0

    def add(self, t: float, a: float) -> tuple[int, float, float, float, float]:
        ev, mq = self.events, self.maxq
        ev.append((t, a))
        self.n += 1
        self.s += a
        self.sq += a * a
        while mq and mq[-1][1] <= a:
            mq.pop()
        mq.append((t, a))
        edge = t - self.horizon
        while ev[0][0] <= edge:
            _, old = ev.popleft()
            self.n -= 1
            self.s -= old
            self.sq -= old * old
        while mq[0][0] <= edge:
            mq.popleft()
        n = self.n
        mean = self.s / n
        std = math.sqrt(max(self.sq / n - mean * mean, 0.0))
        return n, self.s, mean, std, mq[0][1]


class Customer:
    __slots__ = ("windows", "last")

    def __init__(self) -> None:
        self.windows = [Window(h) for _, h in HORIZONS]
        self.last: tuple[float, float, float] | None = None


def _haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


def _lp(v: float | None) -> float:
    return 0.0 if v is None else math.log1p(max(v, 0.0))


def _epoch(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) else datetime.fromisoformat(v).timestamp()


def open_feast(repo: Path) -> Any:
    from feast import FeatureStore

    return FeatureStore(repo_path=str(repo))


def _fetch(store: Any, view: str, names: tuple[str, ...], key: str, keys: list[str],
           defaults: dict[str, Any]) -> dict[str, tuple[dict[str, Any], bool]]:
    resp = store.get_online_features(features=[f"{view}:{n}" for n in names],
                                     entity_rows=[{key: k} for k in keys]).to_dict()
    out = {}
    for i, k in enumerate(keys):
        vals = {n: resp[n][i] for n in names}
        known = any(v is not None for v in vals.values())
        out[k] = ({n: (defaults[n] if vals[n] is None else vals[n]) for n in names}, known)
    return out


def run(input_path: Path, out_path: Path, feature_repo: Path = Path("feature_repo"),
        registry: Path = Path("model_registry"), model_ref: str = "fraud_model@production",
        batch: int = 1000, limit: int | None = None) -> dict[str, Any]:
    """Score ``input_path`` (JSON Lines) into ``out_path``; returns the figures."""
    import lightgbm as lgb
    from river import anomaly, compose, preprocessing

    t_setup = time.perf_counter()
    text, manifest = Registry(registry).load(model_ref)
    booster = lgb.Booster(model_str=text.decode())
    names = manifest["feature_names"]
    version = f"{manifest['name']}/{manifest['version']}"
    store = open_feast(feature_repo)
    _fetch(store, "customer_profile", PROFILE, "customer_id", ["warm-up"], PROFILE_DEFAULTS)  # first read
    _fetch(store, "merchant_risk", MERCHANT, "merchant_id", ["warm-up"], MERCHANT_DEFAULTS)
    setup_s = time.perf_counter() - t_setup

    hst = compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=42))
    customers: dict[str, Customer] = {}
    profiles: dict[str, tuple[dict[str, Any], bool]] = {}
    merchants: dict[str, tuple[dict[str, Any], bool]] = {}
    col = {n: i for i, n in enumerate(names)}
    n_feat = len(names)
    n = 0
    feast_calls = 0
    t0 = time.perf_counter()
    with input_path.open("rb") as f, out_path.open("wb") as out:
        lines = f.readlines() if limit is None else [line for _, line in zip(range(limit), f)]
        for start in range(0, len(lines), batch):
            events: list[dict[str, Any]] = []
            rows = np.full((min(batch, len(lines) - start), n_feat), np.nan)
            anomalies: list[float] = []
            for j, line in enumerate(lines[start:start + batch]):
                ev = orjson.loads(line)
                t = _epoch(ev["timestamp"])
                amount = float(ev["amount"])
                lat, lon = float(ev["latitude"]), float(ev["longitude"])
                c = customers.get(ev["customer_id"])
                if c is None:
                    c = customers[ev["customer_id"]] = Customer()
                feats: dict[str, float | None] = {}
                if c.last is not None:
                    dt = t - c.last[0]
                    dist = _haversine(c.last[1], c.last[2], lat, lon)
                    feats["time_since_last_transaction"] = dt
                    feats["distance_from_previous_km"] = dist
                    feats["speed_kmh"] = dist / (max(dt, 60.0) / 3600.0)
                c.last = (t, lat, lon)
                for (name, _), w in zip(HORIZONS, c.windows):
                    cnt, s, mean, std, mx = w.add(t, amount)
                    feats[f"amount_count_{name}"] = cnt
                    feats[f"amount_sum_{name}"] = s
                    feats[f"amount_mean_{name}"] = mean
                    feats[f"amount_std_{name}"] = std
                    feats[f"amount_max_{name}"] = mx
                cnt = feats["amount_count_7d"]
                if cnt > 1:
                    mean_o = (feats["amount_sum_7d"] - amount) / (cnt - 1)
                    feats["amount_deviation"] = (amount - mean_o) / max(feats["amount_std_7d"], 1.0)
                    feats["amount_to_mean_ratio"] = amount / max(mean_o, 0.01)
                dev = feats.get("amount_deviation")
                x = {"log_amount": math.log1p(amount), "log_gap": _lp(feats.get("time_since_last_transaction")),
                     "count_1h": float(feats["amount_count_1h"]),
                     "log_distance": _lp(feats.get("distance_from_previous_km")),
                     "log_speed": _lp(feats.get("speed_kmh")),
                     "amount_deviation": 0.0 if dev is None else max(-5.0, min(dev, 20.0))}
                anomalies.append(hst.score_one(x))
                hst.learn_one(x)
                row = rows[j]
                for k, v in feats.items():
                    i = col.get(k)
                    if i is not None and v is not None:
                        row[i] = v
                row[col["merchant_category_code"]] = CODE.get(ev.get("merchant_category"), np.nan)
                ev["features"] = feats
                events.append(ev)
            # one Feast call per entity per batch, for the keys not cached yet
            new_c = list({e["customer_id"] for e in events} - profiles.keys())
            if new_c:
                profiles.update(_fetch(store, "customer_profile", PROFILE, "customer_id", new_c, PROFILE_DEFAULTS))
                feast_calls += 1
            new_m = list({e["merchant_id"] for e in events} - merchants.keys())
            if new_m:
                merchants.update(_fetch(store, "merchant_risk", MERCHANT, "merchant_id", new_m, MERCHANT_DEFAULTS))
                feast_calls += 1
            for j, ev in enumerate(events):
                prof, ck = profiles[ev["customer_id"]]
                merch, mk = merchants[ev["merchant_id"]]
                row = rows[j]
                for k in ("avg_transaction_amount", "transaction_frequency"):
                    row[col[k]] = prof[k]
                for k in MERCHANT:
                    row[col[k]] = merch[k]
                if prof["home_latitude"] is not None:
                    row[col["distance_from_home_km"]] = _haversine(
                        prof["home_latitude"], prof["home_longitude"], ev["latitude"], ev["longitude"])
                row[col["amount_to_profile_ratio"]] = ev["amount"] / prof["avg_transaction_amount"]
                row[col["customer_known"]] = float(ck)
                row[col["merchant_known"]] = float(mk)
            p = booster.predict(rows, num_threads=1).tolist()
            now = time.time()
            buf = []
            for ev, fraud, anom in zip(events, p, anomalies):
                risk = 1.0 - (1.0 - fraud) * (1.0 - 0.4 * anom)
                ev["fraud_score"] = round(fraud, 4)
                ev["anomaly_score"] = round(anom, 4)
                ev["risk_score"] = round(risk, 4)
                ev["status"] = "CRITICAL" if risk > 0.8 else "WARNING" if risk > 0.5 else "NORMAL"
                ev["model_version"] = version
                ev["scored_at"] = now
                buf.append(orjson.dumps(ev))
            out.write(b"\n".join(buf) + b"\n")
            n += len(events)
    seconds = time.perf_counter() - t0
    return {"events": n, "seconds": round(seconds, 3), "events_per_s": round(n / seconds, 1) if seconds else None,
            "setup_s": round(setup_s, 3), "feast_calls": feast_calls, "customers": len(customers)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.reference", description=__doc__.split("\n")[0])
    p.add_argument("input", type=Path)
    p.add_argument("--out", type=Path, default=Path("output/bench/reference_scored.jsonl"))
    a = p.parse_args(argv)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    print(orjson.dumps(run(a.input, a.out), option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
