"""Which model scores each key (models/serving.py): a shadow never scores the keys its own
version decides."""

from __future__ import annotations

from models.registry import Registry, Routes
from models.serving import ModelRouter

KEYS = [f"customer-{i}" for i in range(4000)]


class Model:
    def __init__(self, version: str) -> None:
        self.version = version


def router(tmp_path, decide: str, shadow: str) -> ModelRouter:
    reg = Registry(tmp_path)
    for _ in range(2):
        reg.publish("m", b"x", {"feature_names": []})
    reg.set_alias("m", "production", 2)
    return ModelRouter(reg, "m@production", Routes.parse(decide, shadow), load=lambda n, v: Model(f"{n}/{v}"))


def test_a_version_that_decides_and_shadows_scores_the_others_keys_in_shadow(tmp_path):
    a = router(tmp_path, "m/1:90,m/2:10", "m/2:100").current()
    decider = a.decider_of(KEYS)
    shadows = a.shadows_of(KEYS, decider)
    assert shadows == a.shadows_of(KEYS)  # the decider indices are only a shortcut
    for d, s in zip(decider, shadows):
        assert s == (["m/2"] if a.deciders[d].version == "m/1" else [])  # never its own keys
    assert 0.07 < decider.count(1) / len(KEYS) < 0.13


def test_the_rule_holds_through_an_alias(tmp_path):
    """``m@production`` is ``m/2``: as a shadow it skips the keys ``m/2`` decides."""
    a = router(tmp_path, "m/1:50,m/2:50", "m@production:100").current()
    decider = a.decider_of(KEYS)
    got = a.shadows_of(KEYS)
    assert all(s == ([] if d == 1 else ["m@production"]) for d, s in zip(decider, got))
    assert 0.4 < decider.count(0) / len(KEYS) < 0.6
