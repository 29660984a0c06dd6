"""Routes where one version both decides a share and shadows (models/registry/routes.py):
the SageMaker-like meaning of a production variant that also receives a copy of the others' traffic."""

from __future__ import annotations

import pytest

from models.registry import RoutesError, Routes

KEYS = [f"customer-{i}" for i in range(20_000)]


def test_a_version_may_decide_a_share_and_shadow_the_rest():
    r = Routes.parse("m/1:90,m/2:10", "m/2:20")  # was: "m/2 is listed twice (in decide and shadow)"
    assert r.decide == (("m/1", 0.9), ("m/2", 0.1)) and r.shadow == (("m/2", 0.2),)
    assert r.refs() == ("m/1", "m/2", "m/2")
    assert Routes.parse(*r.specs()) == r and Routes.from_json(r.to_json()) == r
    # the shadow draw stays independent of the decide draw: about 20 % of m/1's keys are drawn
    by_m1 = [k for k in KEYS if r.route(k) == 0]
    assert abs(sum("m/2" in r.shadowed(k) for k in by_m1) / len(by_m1) - 0.2) < 0.02


@pytest.mark.parametrize("decide, shadow, message", [
    ("m/1", "m/1", "m/1 decides every key, so as a shadow it would score none"),
    ("models:/m/1", "m/1:50", "m/1 decides every key"),
    ("m/1:90,m/2:10", "m/2:5,m/2:10", "m/2 is listed twice in shadow"),
    ("m/1:90,m/1:10", "", "m/1 is listed twice in decide"),
])
def test_what_stays_meaningless_is_refused(decide, shadow, message):
    with pytest.raises(RoutesError, match=message):
        Routes.parse(decide, shadow)
