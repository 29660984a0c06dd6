"""``streamscore models`` (cli/models.py): the listing says what decides, and routes that
override the alias a flow follows are named in a warning."""

from __future__ import annotations

from models.registry import Registry, Routes
from tests.cli.test_main import reg, run, run_json  # noqa: F401 - the fixture

WARNING = ("warning: the routes of fraud_model decide (fraud_model/1 90 %, fraud_model/2 10 %), "
           "not fraud_model@production (-> fraud_model/2)")


def table_row(out: str, version: int) -> list[str]:
    return next(line.split() for line in out.splitlines() if line.split()[:1] == [str(version)])


def test_routes_overriding_the_alias_are_shown_and_warned(reg: Registry):
    """The user's sequence: alias production to 2, then a 90/10 split with 1 deciding most."""
    run(reg, "models", "alias", "fraud_model", "production", "2")
    out = run(reg, "models", "list", "fraud_model").stdout
    assert out.splitlines()[1].split()[-2:] == ["decides", "shadows"]
    assert table_row(out, 2)[-4:] == ["production", "100", "%", "-"] and table_row(out, 1)[-2:] == ["-", "-"]
    routed = run(reg, "models", "routes", "fraud_model", "--set", "fraud_model/1:90,fraud_model/2:10")
    assert WARNING in routed.stderr and "moving fraud_model@production changes no decision" in routed.stderr
    listed = run(reg, "models", "list", "fraud_model")
    assert table_row(listed.stdout, 1)[-3:] == ["90", "%", "-"]
    assert table_row(listed.stdout, 2)[-4:] == ["production", "10", "%", "-"]
    assert WARNING in listed.stderr
    rows = run_json(reg, "models", "list", "fraud_model")
    assert [(r["decides"], r["shadows"]) for r in rows] == [(0.9, None), (0.1, None), (0.0, None)]
    # moving the overridden alias says it changes nothing
    assert WARNING.replace("(-> fraud_model/2)", "(-> fraud_model/3)") in \
        run(reg, "models", "alias", "fraud_model", "production", "3").stderr
    assert run(reg, "models", "alias", "fraud_model", "candidate", "1").stderr == ""  # not the flow's alias
    run(reg, "models", "routes", "fraud_model", "--clear")
    assert run(reg, "models", "list", "fraud_model").stderr == ""


def test_a_route_and_a_shadow_for_the_same_version(reg: Registry):
    run(reg, "models", "alias", "fraud_model", "production", "2")
    run(reg, "models", "routes", "fraud_model", "--set", "fraud_model/1:90,fraud_model/2:10")
    out = run(reg, "models", "routes", "fraud_model", "--shadow", "fraud_model/2:20")  # was: "listed twice"
    assert "decide  fraud_model/2" in out.stdout and "shadow  fraud_model/2" in out.stdout
    assert reg.routes("fraud_model") == Routes.parse("fraud_model/1:90,fraud_model/2:10", "fraud_model/2:20")
    row = table_row(run(reg, "models", "list", "fraud_model").stdout, 2)
    assert " ".join(row).endswith("production 10 % 20 % of the rest")
    shown = run(reg, "models", "show", "fraud_model/2").stdout
    assert "  decides       10 %, shadows 20 % of the rest" in shown
    got = run_json(reg, "models", "show", "fraud_model@production")
    assert (got["decides"], got["shadows"]) == (0.1, 0.2)
    err = run(reg, "models", "routes", "fraud_model", "--set", "fraud_model/2", code=2).stderr
    assert "fraud_model/2 decides every key, so as a shadow it would score none" in err
