"""Registry versions, aliases, traffic routes, deletion and the state token: real files
in ``tmp_path`` registries (no mocks); the real LightGBM model where one is needed."""

from __future__ import annotations

import json
import hashlib
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from models.registry import (
    BUCKETS,
    Registry,
    RegistryError,
    Routes,
    RoutesError,
    canonical_ref,
    compare_metrics,
    format_ref,
    parse_ref,
)

ROOT = Path(__file__).resolve().parents[2]
KEYS = [f"customer-{i}" for i in range(20_000)]


def window(start: str, end: str, events: int) -> dict:
    return {"start": start, "end": end, "events": events}


def publish(reg: Registry, name: str = "m", roc: float = 0.9, alias: str | None = None) -> int:
    meta = {"feature_names": ["a"], "metrics": {"roc_auc": roc, "events": 100},
            "training_window": window("2026-01-01T00:00:00Z", "2026-01-20T00:00:00Z", 900),
            "evaluation_window": window("2026-01-20T00:00:00Z", "2026-01-30T00:00:00Z", 100)}
    return reg.publish(name, f"artifact {roc}".encode(), meta, alias=alias)


@pytest.fixture
def reg(tmp_path) -> Registry:
    r = Registry(tmp_path / "registry")
    publish(r, roc=0.90, alias="production")
    publish(r, roc=0.92)
    publish(r, roc=0.95, alias="candidate")
    return r


# --- references -----------------------------------------------------------------------------


@pytest.mark.parametrize("ref, parsed", [
    ("fraud_model/3", ("fraud_model", None, 3)),
    ("fraud_model@production", ("fraud_model", "production", None)),
    ("fraud_model", ("fraud_model", "production", None)),
    ("models:/fraud_model/3", ("fraud_model", None, 3)),
    ("models:/fraud_model@production", ("fraud_model", "production", None)),
    ("models:/fraud_model@champion", ("fraud_model", "champion", None)),
    ("  models:/m.v2-x/12 ", ("m.v2-x", None, 12)),
])
def test_parse_ref_accepts_registry_and_mlflow_forms(ref, parsed):
    assert parse_ref(ref) == parsed


@pytest.mark.parametrize("bad", ["", "models:/", "models:/m/Production", "models:/m/1/2", "model:/m/1",
                                 "m@", "m/x", "m@a/1", "a b", "MODELS:/m/1"])
def test_bad_references_are_named(bad):
    with pytest.raises(RegistryError, match="bad model reference") as exc:
        parse_ref(bad)
    assert repr(bad) in str(exc.value)


def test_mlflow_stage_hint():
    with pytest.raises(RegistryError, match="MLflow stages are not supported"):
        parse_ref("models:/fraud_model/Staging")


def test_canonical_refs():
    assert canonical_ref("models:/m/3") == "m/3" == format_ref("m", version=3)
    assert canonical_ref("m") == "m@production" == format_ref("m")
    assert canonical_ref("models:/m@candidate") == "m@candidate"


def test_registry_resolves_mlflow_references(reg):
    assert reg.resolve("models:/m/2") == ("m", 2)
    assert reg.resolve("models:/m@candidate") == ("m", 3)
    assert reg.load("models:/m@production")[0] == b"artifact 0.9"


# --- routes: parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize("decide, shadow, message", [
    ("", "", "decide spec is empty"),
    ("  ", "", "decide spec is empty"),
    ("m/1:90,m/2", "", "give every entry a weight"),
    ("m/1:90,,m/2:10", "", "entry 2 is empty"),
    ("m/1:90,m/2:10,", "", "entry 3 is empty"),
    ("m/1:-5,m/2:1", "", "entry 1 'm/1:-5': weight '-5' must be a positive number"),
    ("m/1:0,m/2:1", "", "entry 1 'm/1:0': weight '0' must be a positive number"),
    ("m/1:nan", "", "weight 'nan' must be a positive number"),
    ("m/1:inf", "", "weight 'inf' must be a positive number"),
    ("m/1:90,m/2:ten", "", "entry 2 'm/2:ten': weight 'ten' is not a number"),
    ("m/1:", "", "entry 1 'm/1:': nothing after ':'"),
    ("m x:5", "", "bad model reference 'm x'"),
    ("m/1:90,m/1:10", "", "m/1 is listed twice"),
    ("m/1:90,models:/m/1:10", "", "m/1 is listed twice"),
    ("m/1", "m/1:5", "m/1 decides every key, so as a shadow it would score none"),
    ("m/1", "m/2:5,models:/m/2:10", "m/2 is listed twice in shadow"),
    ("m/1", "m/2:150", "m/2: 150 % is over 100 %"),
    ("m/1", "m/2:-1", "shadow spec 'm/2:-1', entry 1 'm/2:-1': weight '-1' must be a positive number"),
    ("m/1", "m/2:x%", "weight 'x%' is not a number"),
    ("m/1:1,m/2:0.00001", "", "decide m/2: weight 1e-05 is below the routing resolution"),
    ("m/1", "m/2:0.001", "shadow m/2: share is below the routing resolution"),
])
def test_routes_parse_errors_name_the_bad_part(decide, shadow, message):
    with pytest.raises(RoutesError) as exc:
        Routes.parse(decide, shadow)
    assert message in str(exc.value)
    assert isinstance(exc.value, ValueError) and isinstance(exc.value, RegistryError)


def test_routes_parse_forms():
    r = Routes.parse(" models:/m/3:90 , m@candidate:10% ", "m/5:2.5,m/6")
    assert r.decide == (("m/3", 0.9), ("m@candidate", 0.1))
    assert r.shadow == (("m/5", 0.025), ("m/6", 1.0))
    assert Routes.parse("m").decide == (("m@production", 1.0),)
    assert Routes.parse("m/1:3,m/2:1").decide == (("m/1", 0.75), ("m/2", 0.25))
    assert Routes.parse("m/1", "  ").shadow == ()
    assert r.refs() == ("m/3", "m@candidate", "m/5", "m/6")


def test_routes_constructor_checks():
    with pytest.raises(RoutesError, match="at least one model must decide"):
        Routes(())
    with pytest.raises(RoutesError, match="weight True must be a positive number"):
        Routes((("m/1", True),))
    with pytest.raises(RoutesError, match="share 5.0 is over 1"):
        Routes((("m/1", 1.0),), (("m/2", 5.0),))
    with pytest.raises(RoutesError, match="decide entry 1"):
        Routes((("m/1",),))
    assert Routes((("m/1", 9), ("m/2", 1))) == Routes.parse("m/1:90,m/2:10")


def test_routes_json_round_trip():
    for r in (Routes.parse("m/1:1,m/2:1,m/3:1", "m/4:33.3"), Routes.parse("m"), Routes.parse("m/1:7,m/2:3")):
        again = Routes.from_json(r.to_json())
        assert again == r and again.to_json() == r.to_json()
        assert [again.route(k) for k in KEYS[:500]] == [r.route(k) for k in KEYS[:500]]
        assert Routes.parse(*r.specs()) == r
    assert json.loads(Routes.parse("m/1:90,m/2:10").to_json()) == {
        "decide": [{"ref": "m/1", "weight": 0.9}, {"ref": "m/2", "weight": 0.1}], "shadow": []}


@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON"),
    ("[]", "expected an object"),
    ('{"decide": [{"ref": "m/1"}]}', "decide entry 1"),
    ('{"decide": [{"ref": "m/1", "weight": 1}], "shadow": {}}', "shadow must be a list"),
    ('{"decide": [{"ref": "m/1", "weight": 1}], "shadow": [{"ref": "m/2", "share": 2}]}', "over 1"),
    ('{"decide": [{"ref": "bad ref", "weight": 1}]}', "bad model reference"),
])
def test_routes_from_json_errors(text, message):
    with pytest.raises(RoutesError, match=message):
        Routes.from_json(text)


# --- routes: routing ------------------------------------------------------------------------


def test_route_is_deterministic_and_sticky():
    r = Routes.parse("m/1:50,m/2:30,m/3:20", "m/4:10")
    first = [r.route(k) for k in KEYS[:2000]]
    assert first == [r.route(k) for k in KEYS[:2000]]  # the same key, the same decider
    fresh = Routes.parse("m/1:5,m/2:3,m/3:2", "m/4:10")  # the same split written otherwise
    assert [fresh.route(k) for k in KEYS[:2000]] == first
    assert [fresh.shadowed(k) for k in KEYS[:2000]] == [r.shadowed(k) for k in KEYS[:2000]]
    assert Routes.parse("m/1").route("anything") == 0 and Routes.parse("m/1").shadowed("x") == []


def test_route_is_stable_across_processes_and_hash_seeds():
    code = ("from models.registry import Routes\n"
            "r = Routes.parse('m/1:90,m/2:10', 'm/3:5')\n"
            "print([r.route(f'customer-{i}') for i in range(300)], [bool(r.shadowed(f'customer-{i}')) for i in range(300)])")
    outs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout)
    r = Routes.parse("m/1:90,m/2:10", "m/3:5")
    here = f"{[r.route(f'customer-{i}') for i in range(300)]} {[bool(r.shadowed(f'customer-{i}')) for i in range(300)]}\n"
    assert outs == {here}


def test_split_proportions_90_10():
    r = Routes.parse("fraud_model/3:90,fraud_model/4:10")
    share = sum(r.route(k) for k in KEYS) / len(KEYS)
    assert abs(share - 0.10) < 0.01, share  # binomial sd 0.002


def test_split_proportions_three_ways():
    r = Routes.parse("m/1:50,m/2:30,m/3:20")
    counts = [0, 0, 0]
    for k in KEYS:
        counts[r.route(k)] += 1
    for got, want in zip(counts, (0.5, 0.3, 0.2)):
        assert abs(got / len(KEYS) - want) < 0.015, counts


def test_moving_the_split_only_moves_keys_towards_the_grown_share():
    before = Routes.parse("m/1:90,m/2:10")
    after = Routes.parse("m/1:80,m/2:20")
    moved = [(before.route(k), after.route(k)) for k in KEYS]
    assert all(b <= a for b, a in moved)  # nobody goes from m/2 back to m/1
    assert abs(sum(b != a for b, a in moved) / len(KEYS) - 0.10) < 0.01


def test_shadow_sampling_share_and_independence():
    r = Routes.parse("m/1:90,m/2:10", "m/3:5,m/4:10")
    shadow5 = {k for k in KEYS if "m/3" in r.shadowed(k)}
    shadow10 = {k for k in KEYS if "m/4" in r.shadowed(k)}
    assert abs(len(shadow5) / len(KEYS) - 0.05) < 0.006
    assert abs(len(shadow10) / len(KEYS) - 0.10) < 0.01
    assert shadow5 <= shadow10  # nested shares
    # independent of the decide draw: the 10 % decided by m/2 are shadowed at about 5 % too
    by_m2 = [k for k in KEYS if r.route(k) == 1]
    assert abs(sum(k in shadow5 for k in by_m2) / len(by_m2) - 0.05) < 0.02
    assert Routes.parse("m/1", "m/2:100").shadowed("any") == ["m/2"]


def test_route_costs_one_hash_per_call_and_no_parsing(monkeypatch):
    """What keeps routing cheap on every event (about 1.6 µs for both calls on a 2-core
    machine, see the README): one blake2b of the key per call, the bounds worked out once
    when the routes are made (no spec parsing, checking or normalising per call), and no
    hash at all when there is nothing to choose. Counted, not timed."""
    import models.registry.routes as registry_mod  # where the traffic split hashes

    r = Routes.parse("m/1:90,m/2:10", "m/3:5")
    single = Routes.parse("m/1")
    expected = [(r.route(k), r.shadowed(k)) for k in KEYS[:2000]]
    salts: list[bytes] = []

    def blake2b(*args, **kwargs):
        salts.append(kwargs.get("person", b""))
        return hashlib.blake2b(*args, **kwargs)

    def not_per_call(*args, **kwargs):
        raise AssertionError("routes parsed or checked again while routing a key")

    monkeypatch.setattr(registry_mod, "hashlib", SimpleNamespace(blake2b=blake2b, sha256=hashlib.sha256))
    import models.registry.refs as refs_mod

    patched = set()
    for mod in (registry_mod, refs_mod):
        for name in ("_entries", "parse_ref", "canonical_ref", "_checked_pairs", "_no_repeats", "_number"):
            if hasattr(mod, name):
                monkeypatch.setattr(mod, name, not_per_call)
                patched.add(name)
    assert len(patched) == 6  # every parser and check is watched, wherever it lives
    got = [(r.route(k), r.shadowed(k)) for k in KEYS[:2000]]
    assert got == expected  # the counting wrapper changed nothing
    assert len(salts) == 2 * 2000  # one hash per call
    assert salts.count(registry_mod._DECIDE_SALT) == salts.count(registry_mod._SHADOW_SALT) == 2000
    salts.clear()
    assert [(single.route(k), single.shadowed(k)) for k in KEYS[:2000]] == [(0, [])] * 2000
    assert salts == []  # one decider, no shadow: nothing to hash


def test_buckets_resolution():
    assert BUCKETS == 10_000
    r = Routes.parse("m/1:9999,m/2:1")
    assert r._bounds == (9999, 10_000)


# --- registry: versions, aliases, list, manifest, compare -------------------------------------


def test_list_and_manifest(reg):
    reg.set_routes("m", Routes.parse("m/1:90,m@candidate:10", "m/2:5"))
    rows = reg.list("m")
    assert [r["version"] for r in rows] == [1, 2, 3]
    one, two, three = rows
    assert one["aliases"] == ["production"] and one["routes"] == {"decide": 0.9}
    assert two["aliases"] == [] and two["routes"] == {"shadow": 0.05}
    assert three["aliases"] == ["candidate"] and three["routes"] == {"decide": 0.1}
    assert one["metrics"]["roc_auc"] == 0.9 and one["training_window"]["events"] == 900
    assert one["ref"] == "m/1" and one["created_at"] and len(one["sha256"]) == 64
    assert reg.list("nothing") == [] and reg.names() == ["m"]
    m = reg.manifest("m@candidate")
    assert m["version"] == 3 and m["metrics"]["roc_auc"] == 0.95
    with pytest.raises(RegistryError, match="no alias 'staging'"):
        reg.manifest("m@staging")


def test_set_alias_any_name_and_validation(reg):
    reg.set_alias("m", "champion", 2)
    assert reg.resolve("m@champion") == ("m", 2)
    with pytest.raises(RegistryError, match="no version 9"):
        reg.set_alias("m", "champion", 9)
    with pytest.raises(RegistryError, match="bad alias 'bad alias'"):
        reg.set_alias("m", "bad alias", 1)
    with pytest.raises(RegistryError, match="no model 'other'"):
        reg.set_alias("other", "production", 1)
    assert not (reg.root / "other").exists()  # a typo leaves nothing behind


def test_remove_alias(reg):
    assert reg.remove_alias("m", "candidate") == 3
    assert reg.aliases("m") == {"production": 1}
    with pytest.raises(RegistryError, match=r"no alias 'candidate'.*aliases: production"):
        reg.remove_alias("m", "candidate")
    reg.set_alias("m", "candidate", 3)
    reg.set_routes("m", Routes.parse("m/1:90,m@candidate:10"))
    with pytest.raises(RegistryError, match="refusing to remove m@candidate: the routes of 'm' use it"):
        reg.remove_alias("m", "candidate")


def test_delete_refuses_versions_in_use_and_names_the_user(reg):
    with pytest.raises(RegistryError) as exc:
        reg.delete("m", 1)
    assert "refusing to delete m/1" in str(exc.value) and "alias m@production" in str(exc.value)
    reg.set_routes("m", Routes.parse("m/1:90,m/2:10"))
    with pytest.raises(RegistryError) as exc:
        reg.delete("m", 2)
    msg = str(exc.value)
    assert "routes (decide m/2 10 %" in msg and str(reg.root / "m" / "routes.json") in msg
    reg.set_routes("m", Routes.parse("m/1", "m/2:5"))
    with pytest.raises(RegistryError, match="routes \\(shadow m/2 5 %"):
        reg.delete("m", 2)
    # through an alias the routes name: both are reported
    reg.set_routes("m", Routes.parse("m/1:90,m@candidate:10"))
    with pytest.raises(RegistryError) as exc:
        reg.delete("m", 3)
    assert "alias m@candidate" in str(exc.value) and "decide m@candidate 10 %" in str(exc.value)
    assert reg.versions("m") == [1, 2, 3]  # nothing was deleted


def test_delete_removes_and_never_reuses_the_number(reg):
    reg.delete("m", 2)
    assert reg.versions("m") == [1, 3]
    assert not (reg.root / "m" / "2").exists()
    assert [d["version"] for d in json.loads((reg.root / "m" / "deleted.json").read_text())] == [2]
    reg.set_alias("m", "candidate", 1)
    reg.delete("m", 3)
    assert publish(reg) == 4  # not 2 nor 3: a deleted number names one artifact forever
    with pytest.raises(RegistryError, match="no version 3"):
        reg.delete("m", 3)
    with pytest.raises(RegistryError, match="no version 2"):
        reg.load("m/2")
    assert not [p for p in (reg.root / "m").iterdir() if p.name.startswith(".")]  # no leftovers


def test_routes_storage_and_validation(reg):
    assert reg.routes("m") is None
    r = Routes.parse("m/1:90,m@candidate:10", "m/2:5")
    reg.set_routes("m", r)
    assert reg.routes("m") == r
    assert json.loads((reg.root / "m" / "routes.json").read_text()) == r.to_dict()
    with pytest.raises(RoutesError, match="m/7 does not resolve"):
        reg.set_routes("m", Routes.parse("m/1:90,m/7:10"))
    with pytest.raises(RoutesError, match="m@staging does not resolve"):
        reg.set_routes("m", Routes.parse("m/1", "m@staging"))
    publish(reg, name="other")
    with pytest.raises(RoutesError, match="may only name its own versions; 'other/1' is model 'other'"):
        reg.set_routes("m", Routes.parse("m/1:90,other/1:10"))
    assert reg.routes("m") == r  # refused routes leave the old ones
    assert reg.clear_routes("m") is True and reg.routes("m") is None
    assert reg.clear_routes("m") is False
    (reg.root / "m" / "routes.json").write_text('{"decide": []}')
    with pytest.raises(RoutesError, match="routes.json: decide: at least one model"):
        reg.routes("m")


def test_state_token_changes_on_alias_and_route_changes(reg):
    seen = [reg.state_token("m")]
    assert reg.state_token("m") == seen[0]  # stable while nothing changes
    publish(reg)  # a new version without an alias: nothing a flow scores with changes
    assert reg.state_token("m") == seen[0]
    for change in (
        lambda: reg.set_alias("m", "production", 2),
        lambda: reg.set_routes("m", Routes.parse("m/1:90,m/2:10")),
        lambda: reg.set_routes("m", Routes.parse("m/1:80,m/2:20")),
        lambda: reg.set_routes("m", Routes.parse("m/1:80,m/2:20", "m/3:5")),
        lambda: reg.remove_alias("m", "candidate"),
        lambda: reg.clear_routes("m"),
    ):
        change()
        token = reg.state_token("m")
        assert token not in seen, "a change must give a new token"
        seen.append(token)
    reg.set_alias("m", "production", 2)  # the same value again: no change
    assert reg.state_token("m") == seen[-1]
    assert Registry(reg.root).state_token("m") == seen[-1]  # another process sees the same token
    assert reg.state_token("unknown") == Registry(reg.root).state_token("also-unknown")


def test_compare_side_by_side(reg):
    cmp = reg.compare("m@production", "models:/m/3")
    assert cmp["a"]["ref"] == "m/1" and cmp["b"]["ref"] == "m/3"
    assert cmp["metrics"]["roc_auc"] == {"a": 0.9, "b": 0.95, "diff": 0.05}
    assert cmp["metrics"]["events"] == {"a": 100, "b": 100, "diff": 0}
    assert cmp["same_evaluation_window"] is True and "same_window" not in cmp
    with pytest.raises(RegistryError, match="no version 8"):
        reg.compare("m/1", "m/8")


def test_compare_metrics_keeps_unmatched_keys():
    assert compare_metrics({"x": "text"}, {"x": 1.0})["x"] == {"a": "text", "b": 1.0, "diff": None}
    assert list(compare_metrics({"zeta": 1, "roc_auc": 1}, {"pr_auc": 1})) == ["roc_auc", "pr_auc", "zeta"]


# --- the real LightGBM model ----------------------------------------------------------------


@pytest.fixture
def real_registry(fraud_env, tmp_path) -> Registry:
    dest = tmp_path / "model_registry"
    shutil.copytree(fraud_env.registry, dest)
    return Registry(dest)


def test_routed_refs_load_real_models(real_registry, fraud_env):
    from models.fraud import FraudModel

    reg = real_registry
    v = fraud_env.manifest["version"]
    data, manifest = reg.load(f"fraud_model/{v}")
    v2 = reg.publish("fraud_model", data, {k: manifest[k] for k in ("feature_names", "metrics", "evaluation_window")})
    reg.set_alias("fraud_model", "candidate", v2)
    reg.set_routes("fraud_model", Routes.parse(f"models:/fraud_model/{v}:90,fraud_model@candidate:10"))
    routes = reg.routes("fraud_model")
    models = [FraudModel.load(ref, reg) for ref, _ in routes.decide]
    assert [m.version for m in models] == [f"fraud_model/{v}", f"fraud_model/{v2}"]
    cmp = reg.compare(f"fraud_model/{v}", "fraud_model@candidate")
    assert all(row["diff"] in (0, 0.0) for row in cmp["metrics"].values())
    with pytest.raises(RegistryError, match="alias fraud_model@candidate"):
        reg.delete("fraud_model", v2)


def test_publish_versions_and_aliases(tmp_path):
    reg = Registry(tmp_path / "reg")
    assert reg.versions("m") == [] and reg.aliases("m") == {}
    meta = {"feature_names": ["a", "b"], "metrics": {"roc_auc": 0.9}}
    v1 = reg.publish("m", b"one", meta, alias="production")
    v2 = reg.publish("m", b"two", meta)
    v3 = reg.publish("m", b"three", meta, alias="candidate")
    assert (v1, v2, v3) == (1, 2, 3)
    assert reg.versions("m") == [1, 2, 3]
    assert reg.aliases("m") == {"production": 1, "candidate": 3}
    assert meta == {"feature_names": ["a", "b"], "metrics": {"roc_auc": 0.9}}  # input not modified
    art, manifest = reg.load("m/2")
    assert art == b"two"
    assert manifest["version"] == 2 and manifest["name"] == "m" and manifest["artifact"] == "model.txt"
    assert manifest["sha256"] == hashlib.sha256(b"two").hexdigest()
    assert manifest["feature_names"] == ["a", "b"] and manifest["metrics"] == {"roc_auc": 0.9}
    datetime.fromisoformat(manifest["created_at"])
    # moving an alias
    reg.set_alias("m", "production", 3)
    assert reg.aliases("m") == {"production": 3, "candidate": 3}
    # other models are independent
    assert reg.publish("other", b"x", {}) == 1
    assert reg.versions("m") == [1, 2, 3]


def test_resolve_references(tmp_path):
    reg = Registry(tmp_path)
    for art in (b"a", b"b", b"c"):
        reg.publish("fraud_model", art, {})
    reg.set_alias("fraud_model", "production", 2)
    reg.set_alias("fraud_model", "shadow", 3)
    assert reg.resolve("fraud_model@production") == ("fraud_model", 2)
    assert reg.resolve("fraud_model@shadow") == ("fraud_model", 3)
    assert reg.resolve("fraud_model/1") == ("fraud_model", 1)
    assert reg.resolve("fraud_model") == ("fraud_model", 2)  # bare name: production
    assert reg.resolve("  fraud_model/3 ") == ("fraud_model", 3)
    assert reg.load("fraud_model")[0] == b"b"
    assert reg.load("fraud_model@shadow")[0] == b"c"


def test_parse_ref():
    assert parse_ref("m@prod") == ("m", "prod", None)
    assert parse_ref("m/12") == ("m", None, 12)
    assert parse_ref("m") == ("m", "production", None)
    for bad in ("", "m@", "m/x", "m@a/1", "a b", "m/1/2"):
        with pytest.raises(RegistryError, match="bad model reference"):
            parse_ref(bad)


def test_unknown_alias_names_model_and_registry(tmp_path):
    reg = Registry(tmp_path / "registry_root")
    reg.publish("m", b"a", {}, alias="production")
    with pytest.raises(RegistryError) as exc:
        reg.resolve("m@staging")
    msg = str(exc.value)
    assert "'m'" in msg and "'staging'" in msg and str(tmp_path / "registry_root") in msg
    assert "production" in msg  # lists the aliases it has
    with pytest.raises(RegistryError) as exc:
        reg.load("nomodel")  # bare name without any production alias
    assert "'nomodel'" in str(exc.value) and str(tmp_path / "registry_root") in str(exc.value)


def test_unknown_version_names_model_and_registry(tmp_path):
    reg = Registry(tmp_path / "registry_root")
    reg.publish("m", b"a", {})
    with pytest.raises(RegistryError) as exc:
        reg.load("m/7")
    msg = str(exc.value)
    assert "'m'" in msg and "7" in msg and str(tmp_path / "registry_root") in msg
    with pytest.raises(RegistryError, match="no version 9"):
        reg.set_alias("m", "production", 9)


def test_alias_pointing_at_a_deleted_version_is_an_error(tmp_path):
    reg = Registry(tmp_path)
    reg.publish("m", b"a", {}, alias="production")
    shutil.rmtree(tmp_path / "m" / "1")
    with pytest.raises(RegistryError, match="no version 1"):
        reg.load("m")
