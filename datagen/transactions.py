"""Synthetic card transactions with injected, labelled fraud, deterministic by seed.

A :class:`World` holds customers (home location, spending habit) and merchants
(category, location, risk level). :func:`generate_transactions` draws a stream of
transactions over a span of event time and injects four fraud patterns:

``burst``           4-10 rapid card-not-present purchases within minutes
``high_amount``     one or two purchases 12-40x the customer's habit
``far_from_home``   a cloned card used in another city minutes after a genuine
                    purchase (impossible travel speed)
``risky_merchant``  purchases at a high-risk merchant, above habit

Fraud events carry ``is_fraud=1`` and the pattern in ``fraud_pattern``. The
labels are carried through scoring but never used by it.

:func:`build_dataset` writes what backs the Feast repo (daily, point-in-time
snapshots of ``customer_profile`` and ``merchant_risk``) and the labelled
history the model is trained on. The scoring stream starts where the history
ends, with the same world (:func:`stream_transactions`).

>>> world = World.create(seed=1, n_customers=20, n_merchants=15)
>>> txs = generate_transactions(world, start=HISTORY_START, days=2, seed=1)
>>> sorted(txs[0])  # doctest: +NORMALIZE_WHITESPACE
['amount', 'customer_id', 'fraud_pattern', 'is_fraud', 'latitude', 'longitude',
 'merchant_category', 'merchant_id', 'timestamp', 'transaction_id']
>>> txs == generate_transactions(world, start=HISTORY_START, days=2, seed=1)
True
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import orjson
import pandas as pd

from datagen.sensors import device_profiles
from features.formats import format_of, write_rows

__all__ = [
    "World",
    "HISTORY_START",
    "generate_transactions",
    "stream_transactions",
    "build_dataset",
    "write_events",
    "corrupt_events",
    "DatasetSpec",
    "iter_stream",
]

HISTORY_START = datetime(2026, 9, 1, tzinfo=timezone.utc)
DAY = 86_400.0

# (name, latitude, longitude): cities customers live in and merchants sit in.
CITIES = [
    ("New York", 40.71, -74.01),
    ("Chicago", 41.88, -87.63),
    ("Houston", 29.76, -95.37),
    ("Phoenix", 33.45, -112.07),
    ("Seattle", 47.61, -122.33),
    ("Miami", 25.76, -80.19),
    ("Denver", 39.74, -104.99),
    ("Boston", 42.36, -71.06),
    ("London", 51.51, -0.13),
    ("Lagos", 6.52, 3.38),
]
HOME_CITIES = 8  # customers live in the first 8 (US) cities

# category -> (share of merchants, relative price level, card-not-present)
CATEGORIES = {
    "grocery": (0.22, 0.8, False),
    "restaurant": (0.20, 0.9, False),
    "gas": (0.12, 1.0, False),
    "retail": (0.16, 1.3, False),
    "online": (0.12, 1.2, True),
    "electronics": (0.07, 3.0, False),
    "travel": (0.05, 4.0, True),
    "jewelry": (0.03, 5.0, False),
    "gambling": (0.03, 2.0, True),
}
FRAUD_PATTERNS = ("burst", "high_amount", "far_from_home", "risky_merchant")


@dataclass(frozen=True)
class World:
    """Customers and merchants of one synthetic universe."""

    seed: int
    customers: pd.DataFrame  # customer_id, city, home_latitude, home_longitude, spend, frequency
    merchants: pd.DataFrame  # merchant_id, merchant_category, city, latitude, longitude, risk, chargeback

    @classmethod
    def create(cls, seed: int = 42, n_customers: int = 2000, n_merchants: int = 300) -> "World":
        """Draw ``n_customers`` customers and ``n_merchants`` merchants."""
        if n_customers < 1 or n_merchants < len(CATEGORIES):
            raise ValueError(
                f"need n_customers >= 1 and n_merchants >= {len(CATEGORIES)}, "
                f"got {n_customers} and {n_merchants}"
            )
        rng = np.random.default_rng(seed)
        city = rng.integers(0, HOME_CITIES, n_customers)
        lat = np.array([CITIES[c][1] for c in city]) + rng.normal(0, 0.08, n_customers)
        lon = np.array([CITIES[c][2] for c in city]) + rng.normal(0, 0.08, n_customers)
        customers = pd.DataFrame(
            {
                "customer_id": [f"C{i:06d}" for i in range(n_customers)],
                "city": city,
                "home_latitude": lat.round(5),
                "home_longitude": lon.round(5),
                "spend": np.exp(rng.normal(3.4, 0.6, n_customers)).round(2),
                "frequency": rng.gamma(2.0, 1.2, n_customers).clip(0.3, 12).round(3),
            }
        )
        names = list(CATEGORIES)
        shares = np.array([CATEGORIES[c][0] for c in names])
        cat = rng.choice(len(names), n_merchants, p=shares / shares.sum())
        cat[: len(names)] = np.arange(len(names))  # every category exists
        mcity = rng.integers(0, len(CITIES), n_merchants)
        mcity = np.where(rng.random(n_merchants) < 0.9, mcity % HOME_CITIES, mcity)
        risky = rng.random(n_merchants) < 0.06
        risky |= np.isin(cat, [names.index("gambling")]) & (rng.random(n_merchants) < 0.5)
        risk = np.where(risky, rng.uniform(0.55, 0.95, n_merchants), rng.beta(2, 12, n_merchants))
        merchants = pd.DataFrame(
            {
                "merchant_id": [f"M{i:05d}" for i in range(n_merchants)],
                "merchant_category": [names[c] for c in cat],
                "city": mcity,
                "latitude": (np.array([CITIES[c][1] for c in mcity]) + rng.normal(0, 0.05, n_merchants)).round(5),
                "longitude": (np.array([CITIES[c][2] for c in mcity]) + rng.normal(0, 0.05, n_merchants)).round(5),
                "risk": risk.round(4),
                "chargeback": (risk * rng.uniform(0.02, 0.08, n_merchants)).round(5),
            }
        )
        return cls(seed, customers, merchants)

    def daily_rate(self) -> float:
        """Expected legitimate transactions per day across all customers."""
        return float(self.customers["frequency"].sum())


def _iso(ts: np.ndarray) -> list[str]:
    """Epoch seconds -> ISO-8601 UTC strings with millisecond precision and Z."""
    return [
        datetime.fromtimestamp(float(t), tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for t in ts
    ]


def generate_transactions(
    world: World,
    start: datetime,
    days: float,
    seed: int,
    fraud_rate: float = 0.015,
    id_prefix: str = "tx",
) -> list[dict]:
    """Transactions over ``[start, start + days)`` sorted by event time.

    ``fraud_rate`` is the target share of fraudulent transactions.
    """
    rng = np.random.default_rng([world.seed, seed])
    cust, merch = world.customers, world.merchants
    t0 = start.timestamp()
    n_cust = len(cust)
    cats = merch["merchant_category"].to_numpy()
    cnp = np.array([CATEGORIES[c][2] for c in cats])
    price = np.array([CATEGORIES[c][1] for c in cats])
    mcity = merch["city"].to_numpy()
    mlat, mlon = merch["latitude"].to_numpy(), merch["longitude"].to_numpy()
    risky = np.flatnonzero(merch["risk"].to_numpy() > 0.5)
    by_city = {c: np.flatnonzero(mcity == c) for c in range(len(CITIES))}
    everywhere = np.flatnonzero(cnp)

    # --- legitimate activity: a Poisson process per customer ---------------
    counts = rng.poisson(cust["frequency"].to_numpy() * days)
    c_idx = np.repeat(np.arange(n_cust), counts)
    n = len(c_idx)
    ts = t0 + rng.random(n) * days * DAY
    home_city = cust["city"].to_numpy()[c_idx]
    # Legit travel: about one 2-5 day trip a month per customer, to another city.
    where = home_city.copy()
    n_trips = rng.poisson(days / 30.0, n_cust)
    for c in np.flatnonzero(n_trips):
        for _ in range(n_trips[c]):
            t_start = t0 + rng.random() * days * DAY
            t_end = t_start + rng.uniform(2, 5) * DAY
            dest = int(rng.choice([x for x in range(HOME_CITIES) if x != cust["city"].iat[c]]))
            where[(c_idx == c) & (ts >= t_start) & (ts < t_end)] = dest
    m_idx = np.empty(n, dtype=np.int64)
    for city in range(HOME_CITIES):
        sel = where == city
        m_idx[sel] = rng.choice(np.concatenate([by_city[city], everywhere]), sel.sum())
    avoid = np.isin(m_idx, risky) & (rng.random(n) < 0.7)  # legit customers avoid most risky shops
    safe = np.setdiff1d(np.flatnonzero(cnp), risky)
    m_idx[avoid] = rng.choice(safe, avoid.sum())
    spend = cust["spend"].to_numpy()[c_idx]
    amount = spend * price[m_idx] * np.exp(rng.normal(0, 0.45, n))
    legit = pd.DataFrame({"c": c_idx, "m": m_idx, "t": ts, "amount": amount, "pattern": ""})

    # --- fraud incidents ------------------------------------------------------
    sizes = {"burst": 7.0, "high_amount": 1.5, "far_from_home": 2.0, "risky_merchant": 2.0}
    target = fraud_rate * n
    n_incidents = rng.poisson(target / np.mean(list(sizes.values()))) if n else 0
    rows: list[tuple] = []
    far_cities = np.arange(len(CITIES))
    for _ in range(n_incidents):
        c = int(rng.integers(n_cust))
        pattern = FRAUD_PATTERNS[int(rng.integers(len(FRAUD_PATTERNS)))]
        t = t0 + rng.random() * days * DAY
        habit = float(cust["spend"].iat[c])
        if pattern == "burst":
            k = int(rng.integers(4, 11))
            gaps = rng.uniform(20, 240, k).cumsum()
            for g in gaps:
                m = int(rng.choice(everywhere))
                rows.append((c, m, t + g, habit * rng.uniform(1.0, 3.0), pattern))
        elif pattern == "high_amount":
            pool = np.flatnonzero(np.isin(cats, ["electronics", "jewelry", "travel"]))
            for j in range(int(rng.integers(1, 3))):
                m = int(rng.choice(pool))
                rows.append((c, m, t + j * rng.uniform(60, 1800), habit * rng.uniform(12, 40), pattern))
        elif pattern == "far_from_home":
            # A cloned card used in another city shortly after a genuine purchase.
            own = np.flatnonzero(c_idx == c)
            if len(own):
                t = float(ts[rng.choice(own)]) + rng.uniform(600, 5400)
            home = home_city_of(cust, c)
            far = [fc for fc in far_cities if fc != home and len(by_city[fc])]
            fc = int(rng.choice(far))
            for j in range(int(rng.integers(1, 4))):
                m = int(rng.choice(by_city[fc]))
                rows.append((c, m, t + j * rng.uniform(120, 1200), habit * rng.uniform(1.5, 4.0), pattern))
        else:  # risky_merchant
            for j in range(int(rng.integers(1, 4))):
                m = int(rng.choice(risky))
                rows.append((c, m, t + j * rng.uniform(60, 900), habit * rng.uniform(2.0, 6.0), pattern))
    fraud = pd.DataFrame(rows, columns=["c", "m", "t", "amount", "pattern"]).astype(
        {"c": np.int64, "m": np.int64, "t": float, "amount": float}
    )
    fraud = fraud[fraud["t"] < t0 + days * DAY]
    df = pd.concat([legit, fraud], ignore_index=True).sort_values("t", kind="stable", ignore_index=True)

    # --- where the card was used ---------------------------------------------
    m = df["m"].to_numpy()
    c = df["c"].to_numpy()
    at_home = cnp[m]
    lat = np.where(at_home, cust["home_latitude"].to_numpy()[c], mlat[m]) + rng.normal(0, 0.02, len(df))
    lon = np.where(at_home, cust["home_longitude"].to_numpy()[c], mlon[m]) + rng.normal(0, 0.02, len(df))
    ids = [f"{id_prefix}-{seed}-{i:08d}" for i in range(len(df))]
    return [
        {
            "transaction_id": tid,
            "customer_id": cid,
            "merchant_id": mid,
            "amount": round(float(a), 2),
            "merchant_category": mc,
            "timestamp": ts_,
            "latitude": round(float(la), 5),
            "longitude": round(float(lo), 5),
            "is_fraud": int(p != ""),
            "fraud_pattern": p,
        }
        for tid, cid, mid, a, mc, ts_, la, lo, p in zip(
            ids,
            cust["customer_id"].to_numpy()[c],
            merch["merchant_id"].to_numpy()[m],
            df["amount"].to_numpy().clip(0.5),
            cats[m],
            _iso(df["t"].to_numpy()),
            lat,
            lon,
            df["pattern"].to_numpy(),
        )
    ]


def home_city_of(customers: pd.DataFrame, c: int) -> int:
    """Index into :data:`CITIES` of customer ``c``'s home."""
    return int(customers["city"].iat[c])


def customer_profile_snapshots(world: World, history: list[dict], start: datetime, days: int) -> pd.DataFrame:
    """Daily ``customer_profile`` rows: habits over the 30 days before each day.

    Each row at day ``d`` (00:00 UTC) only uses transactions before ``d``: what a
    nightly batch job would have published, so training joins are point-in-time
    correct. Customers with fewer than 3 past transactions get their prior habit.
    """
    cust = world.customers
    ids = {cid: i for i, cid in enumerate(cust["customer_id"])}
    t0 = start.timestamp()
    n_cust = len(cust)
    amount_sum = np.zeros((n_cust, days + 1))
    count = np.zeros((n_cust, days + 1))
    for tx in history:
        if tx["is_fraud"]:
            continue  # the batch job sees charge-backs removed
        d = int((_epoch(tx["timestamp"]) - t0) // DAY)
        if 0 <= d < days:
            i = ids[tx["customer_id"]]
            amount_sum[i, d + 1] += tx["amount"]
            count[i, d + 1] += 1
    csum, ccount = amount_sum.cumsum(axis=1), count.cumsum(axis=1)
    lag = 30
    win_sum = csum - np.concatenate([np.zeros((n_cust, lag)), csum[:, :-lag]], axis=1)[:, : days + 1]
    win_cnt = ccount - np.concatenate([np.zeros((n_cust, lag)), ccount[:, :-lag]], axis=1)[:, : days + 1]
    span = np.minimum(np.arange(days + 1), lag).clip(1)
    prior_amt = (cust["spend"].to_numpy() * 1.3)[:, None]
    prior_freq = cust["frequency"].to_numpy()[:, None]
    enough = win_cnt >= 3
    avg = np.where(enough, win_sum / np.maximum(win_cnt, 1), prior_amt)
    freq = np.where(enough, win_cnt / span, prior_freq)
    frames = []
    for d in range(days + 1):
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": cust["customer_id"],
                    "avg_transaction_amount": avg[:, d].round(2),
                    "transaction_frequency": freq[:, d].round(3),
                    "home_latitude": cust["home_latitude"],
                    "home_longitude": cust["home_longitude"],
                    "event_timestamp": pd.Timestamp(start + timedelta(days=d)),
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    out["created"] = out["event_timestamp"]
    return out


def merchant_risk_snapshots(world: World, start: datetime, days: int) -> pd.DataFrame:
    """Daily ``merchant_risk`` rows with a little day-to-day noise."""
    rng = np.random.default_rng([world.seed, 7])
    merch = world.merchants
    frames = []
    for d in range(days + 1):
        noise = rng.normal(0, 0.02, len(merch))
        frames.append(
            pd.DataFrame(
                {
                    "merchant_id": merch["merchant_id"],
                    "merchant_risk_score": (merch["risk"] + noise).clip(0, 1).round(4),
                    "chargeback_rate": (merch["chargeback"] * (1 + noise)).clip(0, 1).round(5),
                    "event_timestamp": pd.Timestamp(start + timedelta(days=d)),
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    out["created"] = out["event_timestamp"]
    return out


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


@dataclass(frozen=True)
class DatasetSpec:
    """Sizes of the demo universe; the defaults are what ``make demo`` uses."""

    seed: int = 42
    n_customers: int = 2000
    n_merchants: int = 300
    history_days: int = 35


def build_dataset(spec: DatasetSpec, feature_data_dir: Path, history_path: Path) -> dict:
    """Write Feast source Parquet files and the labelled history; returns counts."""
    world = World.create(spec.seed, spec.n_customers, spec.n_merchants)
    history = generate_transactions(world, HISTORY_START, spec.history_days, seed=spec.seed, id_prefix="hist")
    feature_data_dir.mkdir(parents=True, exist_ok=True)
    history_path.parent.mkdir(parents=True, exist_ok=True)
    customer_profile_snapshots(world, history, HISTORY_START, spec.history_days).to_parquet(
        feature_data_dir / "customer_profile.parquet", index=False
    )
    merchant_risk_snapshots(world, HISTORY_START, spec.history_days).to_parquet(
        feature_data_dir / "merchant_risk.parquet", index=False
    )
    write_rows(history, history_path)
    device_profiles().to_parquet(feature_data_dir / "device_profile.parquet", index=False)
    return {"customers": spec.n_customers, "merchants": spec.n_merchants, "history_events": len(history)}


def stream_transactions(
    n_events: int, seed: int = 42, spec: DatasetSpec = DatasetSpec(), fraud_rate: float = 0.015
) -> list[dict]:
    """``n_events`` transactions of the world ``spec`` starting where its history ends."""
    world = World.create(spec.seed, spec.n_customers, spec.n_merchants)
    days = max(n_events / max(world.daily_rate(), 1e-9) * 1.05, 1 / 24)
    start = HISTORY_START + timedelta(days=spec.history_days)
    txs = generate_transactions(world, start, days, seed=seed + 1_000_003, fraud_rate=fraud_rate, id_prefix="tx")
    while len(txs) < n_events:  # Poisson shortfall: draw a little more time
        days *= 1.2
        txs = generate_transactions(world, start, days, seed=seed + 1_000_003, fraud_rate=fraud_rate, id_prefix="tx")
    return txs[:n_events]


def corrupt_events(events: list[dict], rate: float, seed: int, *, raw_lines: bool = True) -> list[dict | str]:
    """Replace a share ``rate`` of events with malformed ones, for dead-letter demos.

    Corruptions: a missing field, a non-numeric amount, a negative amount, a bad
    timestamp, an out-of-range latitude, or a line that is not JSON at all (a ``str``,
    only representable in JSON Lines). With ``raw_lines=False`` that last kind is an
    event with no amount (``None``) instead, so every corrupted event is a row that a
    CSV or Parquet file can hold. Which events are corrupted does not depend on it.
    """
    rng = np.random.default_rng([seed, 99])
    out: list[dict | str] = []
    for ev in events:
        if rng.random() >= rate:
            out.append(ev)
            continue
        bad = dict(ev)
        kind = int(rng.integers(6))
        if kind == 0:
            del bad["customer_id"]
        elif kind == 1:
            bad["amount"] = "twelve"
        elif kind == 2:
            bad["amount"] = -abs(bad["amount"])
        elif kind == 3:
            bad["timestamp"] = "yesterday"
        elif kind == 4:
            bad["latitude"] = 123.4
        elif raw_lines:
            out.append(orjson.dumps(bad).decode()[:-7])  # truncated JSON
            continue
        else:
            bad["amount"] = None
        out.append(bad)
    return out


def write_events(events: Iterable[dict | str], path: Path) -> int:
    """Write events to ``path`` (``.jsonl``, ``.csv`` or ``.parquet``); returns the count.

    A thin name kept for callers outside this module: it is
    :func:`features.formats.write_rows`. Raw strings (malformed lines) are only
    representable in JSON Lines (``ValueError`` otherwise).
    """
    return write_rows(events, path)


def iter_stream(n_events: int, seed: int, bad_rate: float = 0.0, *, raw_lines: bool = True) -> Iterator[dict | str]:
    """Generated scoring stream, optionally with malformed events mixed in
    (``raw_lines=False``: only malformed *rows*, see :func:`corrupt_events`)."""
    events: list[dict | str] = list(stream_transactions(n_events, seed))
    if bad_rate > 0:
        events = corrupt_events(events, bad_rate, seed, raw_lines=raw_lines)  # type: ignore[arg-type]
    yield from events


def main(argv: list[str] | None = None) -> int:
    """Command line; a bad output name or value is one line on stderr and exit code 2."""
    p = argparse.ArgumentParser(prog="python -m datagen.transactions", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dataset", help="write Feast source data and the labelled training history")
    d.add_argument("--seed", type=int, default=42)
    d.add_argument("--customers", type=int, default=DatasetSpec.n_customers)
    d.add_argument("--merchants", type=int, default=DatasetSpec.n_merchants)
    d.add_argument("--history-days", type=int, default=DatasetSpec.history_days)
    d.add_argument("--feature-data", type=Path, default=Path("feature_repo/data"))
    d.add_argument("--history", type=Path, default=Path("data/history.parquet"), help=".jsonl, .csv or .parquet")
    s = sub.add_parser("stream", help="write a scoring stream to a file (.jsonl, .csv, .parquet)")
    s.add_argument("--events", type=int, default=20_000)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument(
        "--bad-rate",
        type=float,
        default=0.0,
        help="share of malformed events; in .jsonl some are lines that are not JSON, "
        "in .csv/.parquet all are rows with bad field values",
    )
    s.add_argument("--out", type=Path, default=Path("data/transactions.jsonl"), help=".jsonl, .csv or .parquet")
    a = p.parse_args(argv)
    try:
        if a.cmd == "dataset":
            format_of(a.history)
            spec = DatasetSpec(a.seed, a.customers, a.merchants, a.history_days)
            print(orjson.dumps(build_dataset(spec, a.feature_data, a.history)).decode())
            return 0
        if not 0.0 <= a.bad_rate <= 1.0:
            raise ValueError(f"--bad-rate must be between 0 and 1, got {a.bad_rate!r}")
        if a.events < 0:
            raise ValueError(f"--events must be >= 0, got {a.events!r}")
        fmt = format_of(a.out)
        events = iter_stream(a.events, a.seed, a.bad_rate, raw_lines=fmt == "jsonl")
        n = write_rows(events, a.out, fmt)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {n} events to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
