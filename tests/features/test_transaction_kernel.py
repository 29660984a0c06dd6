"""The compiled per-customer step (features.transaction_kernel) computes with the plain-Python
formulas of features.transactions, compiled as they are: the same floats, bit for bit."""

from __future__ import annotations

import random

from features import transaction_kernel as k
from features import transactions as tx


def test_compiled_formulas_give_the_plain_python_floats():
    rng = random.Random(7)
    for _ in range(5000):
        lat1, lat2 = rng.uniform(-90, 90), rng.uniform(-90, 90)
        lon1, lon2 = rng.uniform(-180, 180), rng.uniform(-180, 180)
        if rng.random() < 0.3:  # near points, the flow's common case
            lat2, lon2 = lat1 + rng.gauss(0, 0.01), lon1 + rng.gauss(0, 0.01)
        assert k.haversine_km(lat1, lon1, lat2, lon2, 2.0) == tx.haversine_km(lat1, lon1, lat2, lon2)
        d, dt = rng.expovariate(0.01), rng.choice([0.0, 30.0, rng.expovariate(0.001)])
        assert k.speed_kmh(d, dt) == tx.speed_kmh(d, dt)
        a, m, s = rng.expovariate(0.02), rng.expovariate(0.02), rng.choice([0.0, 0.5, rng.expovariate(0.05)])
        assert k.amount_deviation(a, m, s) == tx.amount_deviation(a, m, s)
        assert k.amount_to_mean_ratio(a, m) == tx.amount_to_mean_ratio(a, m)
    assert k.haversine_km(10.0, 20.0, 10.0, 20.0, 2.0) == 0.0
