"""What decides, as the registry tells it (models/registry/store.py): route shares next to
aliases in the listing, and the alias a set of routes overrides."""

from __future__ import annotations

from models.registry import Registry, Routes


def registry(tmp_path) -> Registry:
    reg = Registry(tmp_path)
    for _ in range(3):
        reg.publish("m", b"x", {})
    reg.set_alias("m", "production", 2)
    return reg


def decides(reg: Registry, ref: str | None = None) -> list[tuple[int, list[str], float, float | None]]:
    return [(r["version"], r["aliases"], r["decides"], r["shadows"]) for r in reg.list("m", ref)]


def test_the_listing_says_what_decides(tmp_path):
    reg = registry(tmp_path)
    assert decides(reg) == [(1, [], 0.0, None), (2, ["production"], 1.0, None), (3, [], 0.0, None)]
    assert decides(reg, "m/3") == [(1, [], 0.0, None), (2, ["production"], 0.0, None), (3, [], 1.0, None)]
    reg.set_routes("m", Routes.parse("m/1:90,m/2:10", "m/2:20,m/3:5"))
    # production is still on 2, but 90 % of the decisions are 1's
    assert decides(reg) == [(1, [], 0.9, None), (2, ["production"], 0.1, 0.2), (3, [], 0.0, 0.05)]
    reg.set_routes("m", Routes.parse("m@production:3,m/1:1"))  # through an alias: its version's share
    assert decides(reg) == [(1, [], 0.25, None), (2, ["production"], 0.75, None), (3, [], 0.0, None)]


def test_routes_that_override_the_flows_alias_are_named(tmp_path):
    reg = registry(tmp_path)
    assert reg.overridden("m") is None  # no routes: the alias decides
    reg.set_routes("m", Routes.parse("m/1:90,m/2:10"))
    why = reg.overridden("m")
    assert why is not None and "the routes of m decide (m/1 90 %, m/2 10 %), not m@production (-> m/2)" in why
    assert "moving m@production changes no decision" in why and "streamscore models routes m --clear" in why
    assert "not m@candidate" in (reg.overridden("m", "m@candidate") or "")
    assert "not m/2," in (reg.overridden("m", "models:/m/2") or "")
    reg.set_routes("m", Routes.parse("m@production", "m/1:10"))  # the alias still decides (shadows aside)
    assert reg.overridden("m") is None
    reg.set_routes("m", Routes.parse("m/2"))  # the same version today, but the alias no longer moves it
    assert "not m@production (-> m/2)" in (reg.overridden("m") or "")
