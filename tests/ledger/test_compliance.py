"""Compliance: obligations computed by hand from the rules (docs/rules.md §12), surrender and
borrowing through the ledger on both backends (conservation, refusals that write nothing,
idempotence), the report on a crafted ledger with its penalty arithmetic, and the CLI."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from engine.tradingdays import day_of_date
from ledger import Ledger, LedgerError, Trade
from ledger.compliance import (MEASURES_2021, REGULATIONS_2024, ComplianceError,
                               UnitEmissions, average_price, compliance_period,
                               compliance_report, month_before, net_allocation, obligation,
                               penalty_range, penalty_regime, read_emissions, unit_obligation)
from ledger.core import CASH, CCER, SURRENDERED
from ledger.schema import LATEST, MIGRATIONS
from ledger.store import open_store

from ..test_cli import invoke


def day(text: str) -> int:
    return day_of_date(dt.date.fromisoformat(text))


def coal(e: int, a: int) -> UnitEmissions:
    return UnitEmissions("coal", e, a)


def gas(e: int, a: int) -> UnitEmissions:
    return UnitEmissions("gas", e, a)


# ---------------------------------------------------------------------- obligations (pure)

def test_coal_obligation_under_and_over_the_20_percent_cap():
    # under: E 800,000, A 700,000; cap = 700,000 + 20 % x 800,000 = 860,000 >= E -> owes E
    ob = obligation("C", "2019-20", [coal(800_000, 700_000)])
    assert (ob.obligation, ob.gap) == (800_000, 100_000)
    # over: E 1,000,003, A 700,000; 20 % x 1,000,003 = 200,000.6 -> floor 200,000;
    # cap = 900,000 < E -> owes 900,000 (never above the cap), gap 200,000
    ob = obligation("C", "2019-20", [coal(1_000_003, 700_000)])
    assert (ob.obligation, ob.gap) == (900_000, 200_000)
    # exactly at the cap: E 1,000,000, A 800,000: 800,000 + 200,000 = E
    assert unit_obligation("coal", 1_000_000, 800_000, "2023") == 1_000_000
    # a surplus: E 500,000 < A 600,000 -> owes E, gap 0
    ob = obligation("C", "2024", [coal(500_000, 600_000)])
    assert (ob.obligation, ob.gap, ob.borrow_limit) == (500_000, 0, 0)


def test_gas_units_owe_at_most_their_allocation():
    # E 500,000 > A 420,000 -> owes 420,000; E 400,000 < A 420,000 -> owes 400,000
    assert obligation("G", "2021-22", [gas(500_000, 420_000)]).obligation == 420_000
    ob = obligation("G", "2021-22", [gas(400_000, 420_000)])
    assert (ob.obligation, ob.gap) == (400_000, 0)


def test_mixed_entity_applies_each_kind_rule_to_its_sums():
    # two coal units summed: E 300,000 + 300,000 = 600,000, A 250,000 + 250,000 = 500,000;
    # cap 500,000 + 120,000 = 620,000 >= 600,000 -> coal owes 600,000.
    # gas: E 100,000, A 120,000 -> owes 100,000. Total 700,000; allocation 620,000;
    # gap 80,000; gap rate 80,000 / 700,000 = 11.4 % >= 10 % -> may borrow floor(40,000)
    ob = obligation("M", "2021-22", [coal(300_000, 250_000), gas(100_000, 120_000),
                                     coal(300_000, 250_000)])
    assert [(u.kind, u.verified_emissions, u.allocation, u.obligation) for u in ob.units] == [
        ("coal", 600_000, 500_000, 600_000), ("gas", 100_000, 120_000, 100_000)]
    assert (ob.verified_emissions, ob.allocation, ob.obligation, ob.gap) == (
        700_000, 620_000, 700_000, 80_000)
    assert (ob.borrow_limit, ob.borrow_from) == (40_000, "2023")
    # gas over its allocation, coal over its cap: coal E 100,000 A 50,000 -> 50,000 + 20,000
    # = 70,000; gas E 60,000 A 40,000 -> 40,000. Total 110,000, allocation 90,000, gap 20,000
    ob = obligation("M", "2023", [coal(100_000, 50_000), gas(60_000, 40_000)])
    assert (ob.obligation, ob.gap) == (110_000, 20_000)


def test_ccer_limit_is_5_percent_of_the_obligation_rounded_down():
    # obligation 900,019 (E under the cap): 5 % = 45,000.95 -> 45,000
    assert obligation("C", "2023", [coal(900_019, 900_000)]).ccer_limit == 45_000
    # 5 % of 19 t = 0.95 -> 0: no CCER at all
    assert obligation("C", "2023", [coal(19, 19)]).ccer_limit == 0
    # exactly: 5 % of 1,000,000 = 50,000
    assert obligation("C", "2023", [coal(1_000_000, 1_000_000)]).ccer_limit == 50_000


def test_borrowing_at_exactly_10_percent_and_below():
    # E 1,000,000, A 900,000: cap 1,100,000 -> owes 1,000,000; gap 100,000 = exactly 10 % of
    # E -> eligible; limit 50 % x 100,000 = 50,000 from the 2023 allocation
    ob = obligation("B", "2021-22", [coal(1_000_000, 900_000)])
    assert (ob.gap, ob.borrow_limit, ob.borrow_from) == (100_000, 50_000, "2023")
    # A 900,001: gap 99,999 = 9.9999 % < 10 % -> not eligible
    ob = obligation("B", "2021-22", [coal(1_000_000, 900_001)])
    assert (ob.gap, ob.borrow_limit, ob.borrow_from) == (99_999, 0, None)
    # an odd gap: E 1,000,000, A 899,999 -> gap 100,001; 50 % = 50,000.5 -> 50,000
    assert obligation("B", "2021-22", [coal(1_000_000, 899_999)]).borrow_limit == 50_000
    # the gap is after the 20 % cap: E 1,000,000, A 500,000 -> owes 700,000, gap 200,000
    assert obligation("B", "2021-22", [coal(1_000_000, 500_000)]).borrow_limit == 100_000
    # no borrowing outside period 2, even at a 20 % gap rate
    for period in ("2019-20", "2023", "2024"):
        assert obligation("B", period, [coal(1_000_000, 800_000)]).borrow_limit == 0
    # no emissions: no gap rate, no borrowing
    assert obligation("B", "2021-22", [coal(0, 0)]).borrow_limit == 0


def test_periods_and_penalty_regimes():
    p1, p2 = compliance_period("2019-20"), compliance_period("2021-22")
    assert (p1.milestone, p1.deadline) == (dt.date(2021, 12, 15), dt.date(2021, 12, 31))
    assert (p2.milestone, p2.deadline) == (dt.date(2023, 11, 15), dt.date(2023, 12, 31))
    assert compliance_period("2023").deadline == dt.date(2024, 12, 31)
    assert compliance_period("2024").deadline == dt.date(2025, 12, 31)
    assert p2.borrowing.threshold == Fraction(1, 10)
    # the Interim Regulations are in force from 2024-05-01
    assert penalty_regime(dt.date(2024, 4, 30)) is MEASURES_2021
    assert penalty_regime(dt.date(2024, 5, 1)) is REGULATIONS_2024
    with pytest.raises(ComplianceError, match="no penalty regime"):
        penalty_regime(dt.date(2020, 12, 31))
    # 5x .. 10x the average price 97.49 CNY x 3 t = 1,462.35 .. 2,924.70 CNY
    assert penalty_range(REGULATIONS_2024, 3, 9_749) == (146_235, 292_470)
    assert penalty_range(REGULATIONS_2024, 3, None) is None
    assert penalty_range(MEASURES_2021, 10**6, None) == (2_000_000, 3_000_000)  # fixed
    assert penalty_range(MEASURES_2021, 0, None) == (0, 0)
    assert month_before(dt.date(2023, 11, 15)) == (dt.date(2023, 10, 15), dt.date(2023, 11, 14))
    assert month_before(dt.date(2025, 3, 31)) == (dt.date(2025, 2, 28), dt.date(2025, 3, 30))
    assert month_before(dt.date(2024, 1, 10)) == (dt.date(2023, 12, 10), dt.date(2024, 1, 9))


@pytest.mark.parametrize("call, match", [
    (lambda: obligation("X", "2022", [coal(1, 1)]), "compliance period '2022'"),
    (lambda: obligation("X", "2023", [UnitEmissions("oil", 1, 1)]), "unit kind 'oil'"),
    (lambda: obligation("X", "2023", [coal(-1, 1)]), "verified emissions .* not -1"),
    (lambda: obligation("X", "2023", [coal(1, 2.5)]), "allocation .* not 2.5"),
    (lambda: obligation("X", "2023", [coal(True, 1)]), "not True"),
    (lambda: obligation("X", "2023", []), "no units"),
    (lambda: obligation("", "2023", [coal(1, 1)]), "entity ''"),
    (lambda: unit_obligation("coal", 10**16, 0, "2023"), "not 10000000000000000"),
])
def test_bad_rule_input_is_a_clear_error(call, match):
    with pytest.raises(ComplianceError, match=match):
        call()


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**9),
       st.integers(0, 10**9), st.sampled_from(["2019-20", "2021-22", "2023", "2024"]))
def test_obligation_bounds(ce, ca, ge, ga, period):
    ob = obligation("H", period, [coal(ce, ca), gas(ge, ga)])
    coal_part, gas_part = ob.units
    assert coal_part.obligation <= ce and coal_part.obligation - ca <= ce // 5
    assert coal_part.obligation == ce or coal_part.obligation == ca + ce // 5
    assert gas_part.obligation == min(ge, ga)
    assert ob.obligation == coal_part.obligation + gas_part.obligation
    assert ob.ccer_limit * 20 <= ob.obligation < (ob.ccer_limit + 1) * 20
    assert 0 <= 2 * ob.borrow_limit <= ob.gap
    if ob.borrow_limit:
        assert period == "2021-22" and ob.gap * 10 >= ob.verified_emissions


# ---------------------------------------------------------------------- through the ledger

def snapshot(led: Ledger):
    q = led.store.query
    return (led.balances(include_external=True), sorted(led.assets),
            [q(f"SELECT count(*) FROM {t}")[0][0]
             for t in ("surrender", "borrowing", "operation", "posting", "obligation")])


def assert_conserved(led: Ledger) -> None:
    bal = led.balances(include_external=True)
    for asset in led.assets:
        assert sum(row[asset] for row in bal.values()) == 0, asset
    assert led.reconcile().ok, led.reconcile().problems


def entity_ledger(url, period="2023", **entities) -> Ledger:
    """Accounts holding (CEA, CCER) with obligations from (kind, E, A)."""
    led = Ledger.open(url, ["CEA"])
    obs = []
    for name, (units, cea, ccer) in entities.items():
        led.open_account(name, "COVERED_ENTITY")
        if cea:
            led.allowance_in(name, "CEA", cea, ref=f"alloc:{name}", day=day("2024-06-01"))
        if ccer:
            led.offset_in(name, ccer, ref=f"ccer:{name}", day=day("2024-06-01"))
        obs.append(obligation(name, period, [UnitEmissions(*u) for u in units]))
    assert led.record_obligations(obs) == len(obs)
    return led


def test_surrender_moves_allowances_and_ccer_out_and_conserves(ledger_url):
    # coal E 10,000, A 8,000: cap 8,000 + 2,000 = 10,000 -> owes 10,000; CCER limit 500
    led = entity_ledger(ledger_url, A=([("coal", 10_000, 8_000)], 9_800, 600))
    assert led.surrender("A", "2023", 6_000, 300, ref="s1", day=day("2024-12-01")) is True
    # 10,000 - 6,300 = 3,700 still owed; CCER 300 of 500 used
    assert led.surrender("A", "2023", 3_500, 200, ref="s2", day=day("2024-12-02")) is True
    bal = led.balances(include_external=True)
    assert bal["A"] == {CASH: 0, "CEA": 9_800 - 9_500, CCER: 600 - 500}
    assert bal[SURRENDERED] == {CASH: 0, "CEA": 9_500, CCER: 500}
    assert_conserved(led)
    assert [(s.ref, s.date, s.instrument, s.cea, s.ccer) for s in led.surrenders("2023")] == [
        ("s1", dt.date(2024, 12, 1), "CEA", 6_000, 300),
        ("s2", dt.date(2024, 12, 2), "CEA", 3_500, 200)]
    st_ = led.statement("A", "2024-12-02")
    assert [(o.kind, o.asset, o.amount) for o in st_.operations] == [
        ("SURRENDER", "CEA", -3_500), ("SURRENDER", CCER, -200)]
    assert st_.closing == {CASH: 0, "CEA": 300, CCER: 100}
    led.close()


def test_refusals_write_nothing(ledger_url, monkeypatch):
    # E 10,000, A 8,000 -> owes 10,000, CCER limit 500; holds 9,000 CEA, 700 CCER
    led = entity_ledger(ledger_url, A=([("coal", 10_000, 8_000)], 9_000, 700),
                        B=([("gas", 100, 50)], 10, 0))
    led.open_account("N", "COVERED_ENTITY")  # an account without an obligation
    led.allowance_in("N", "CEA", 10, ref="n", day=day("2024-06-01"))
    led.surrender("A", "2023", 100, 0, ref="first", day=day("2024-12-01"))  # 9,900 owed
    before = snapshot(led)
    d = day("2024-12-02")
    for call, match in [
        (lambda: led.surrender("NOBODY", "2023", 1, ref="x", day=d), "UNKNOWN_ACCOUNT"),
        (lambda: led.surrender("@SURRENDERED", "2023", 1, ref="x", day=d), "UNKNOWN_ACCOUNT"),
        (lambda: led.surrender("N", "2023", 1, ref="x", day=d), "no obligation recorded"),
        (lambda: led.surrender("A", "2019-20", 1, ref="x", day=d), "no obligation recorded"),
        (lambda: led.surrender("A", "2023", 0, 0, ref="x", day=d), "positive CEA or CCER"),
        (lambda: led.surrender("A", "2023", -5, ref="x", day=d), "not -5"),
        (lambda: led.surrender("A", "2023", 1, -1, ref="x", day=d), "not -1"),
        (lambda: led.surrender("A", "2023", 2.0, ref="x", day=d), "not 2.0"),
        (lambda: led.surrender("A", "2023", 1, ref="", day=d), "non-empty ref"),
        (lambda: led.surrender("A", "2023", 1, ref="x", day=d, instrument=CASH), "allowance"),
        (lambda: led.surrender("A", "2023", 1, ref="x", day=d, instrument=CCER), "allowance"),
        (lambda: led.surrender("A", "2023", 1, ref="x", day=d, instrument="CEA99"), "allowance"),
        # 9,001 CEA: held 9,000 - 100 = 8,900
        (lambda: led.surrender("A", "2023", 9_001 - 100, ref="x", day=d), "more than held"),
        # the CEA leg is fine, the CCER leg is not: 500 within the limit but ... see below
        (lambda: led.surrender("A", "2023", 8_000, 501, ref="x", day=d), "above the CCER limit"),
        # over-surrender: 9,900 still owed
        (lambda: led.surrender("A", "2023", 8_900, 1_001, ref="x", day=d), "more than still owed"),
        (lambda: led.surrender("B", "2023", 0, 1, ref="x", day=d), "more than held"),  # no CCER
        (lambda: led.surrender("A", "2023", 200, ref="first", day=d), "another"),
    ]:
        with pytest.raises(LedgerError, match=match):
            call()
        assert snapshot(led) == before
    # CCER beyond holdings while the CEA leg is good: 8,000 CEA + 400 CCER, with only 300 CCER
    led.allowance_out("A", CCER, 400, ref="ccer-sold", day=d)  # 700 - 400 = 300 left
    before = snapshot(led)
    with pytest.raises(LedgerError, match="400 t CCER is more than held"):
        led.surrender("A", "2023", 8_000, 400, ref="x", day=d)
    assert snapshot(led) == before
    # and with the holding check bypassed, the database refuses the CCER leg after writing the
    # CEA leg: the whole transaction is rolled back
    monkeypatch.setattr(led, "holding", lambda account, asset: 10**9)
    with pytest.raises(LedgerError, match="below zero"):
        led.surrender("A", "2023", 8_000, 400, ref="x", day=d)
    assert snapshot(led) == before
    monkeypatch.undo()
    assert_conserved(led)
    led.close()


def test_ccer_asset_arrives_with_the_first_offset_and_not_with_a_failed_one(ledger_url):
    led = Ledger.open(ledger_url, ["CEA"])
    led.open_account("A", "COVERED_ENTITY")
    before = snapshot(led)
    with pytest.raises(LedgerError, match="below zero"):
        led.allowance_out("A", CCER, 1, ref="o", day=1)  # creates the asset, rolled back
    assert CCER not in led.assets and snapshot(led) == before
    with pytest.raises(LedgerError, match="UNKNOWN_ACCOUNT"):
        led.offset_in("Z", 1, ref="o", day=1)
    assert led.offset_in("A", 7, ref="o", day=1) is True
    assert led.offset_in("A", 7, ref="o", day=1) is False
    assert led.balances()["A"] == {CASH: 0, "CEA": 0, CCER: 7}
    with pytest.raises(LedgerError, match="no instrument 'CCER'"):  # not traded on the CEA system
        led.settle_trades([Trade(1, 1, 0, CCER, 0, 100, 1, "A", "A", "b", "s")])
    led.close()
    again = Ledger.open(ledger_url, ["CEA"])
    assert again.balances()["A"][CCER] == 7
    again.close()


def test_duplicate_surrender_is_a_no_op(ledger_url):
    led = entity_ledger(ledger_url, A=([("coal", 1_000, 1_000)], 1_000, 0))
    d = day("2024-12-01")
    assert led.surrender("A", "2023", 400, ref="r1", day=d) is True
    before = snapshot(led)
    assert led.surrender("A", "2023", 400, ref="r1", day=d) is False
    assert snapshot(led) == before
    with pytest.raises(LedgerError, match="ref 'r1' was used for another surrender"):
        led.surrender("A", "2023", 401, ref="r1", day=d)
    # an operation ref cannot be taken by a surrender leg either
    led.deposit("A", 1, ref="surrender#2:CEA", day=d)
    with pytest.raises(LedgerError, match="already taken"):
        led.surrender("A", "2023", 1, ref="r2", day=d)
    led.close()
    led = Ledger.open(ledger_url, ["CEA"])  # reopened: still once
    assert led.surrender("A", "2023", 400, ref="r1", day=d) is False
    assert led.balances(include_external=True)[SURRENDERED]["CEA"] == 400
    assert_conserved(led)
    led.close()


def test_recorded_obligations_are_checked_and_never_changed(ledger_url):
    led = entity_ledger(ledger_url, A=([("coal", 1_000, 900)], 0, 0))
    ob = obligation("A", "2023", [coal(1_000, 900)])
    assert led.record_obligations([ob]) == 0  # the same again: skipped
    before = snapshot(led)
    other = obligation("A", "2023", [coal(1_001, 900)])
    b = obligation("B", "2023", [coal(5, 5)])
    for obs, match in [
        ([other], "already has an obligation"),
        ([b], "UNKNOWN_ACCOUNT"),
        ([dataclasses.replace(ob, obligation=1)], "do not follow"),
        ([dataclasses.replace(ob, period="2021-22")], "do not follow"),
        ([obligation("A", "2024", [coal(5, 5)]), obligation("A", "2024", [coal(5, 5)])], "two"),
        (["A"], "not an Obligation"),
    ]:
        with pytest.raises(LedgerError, match=match):
            led.record_obligations(obs)
        assert snapshot(led) == before
    # a batch is all or nothing: a good 2024 obligation with a changed 2023 one
    with pytest.raises(LedgerError, match="already has"):
        led.record_obligations([obligation("A", "2024", [coal(5, 5)]), other])
    assert led.obligations("2024") == [] and snapshot(led) == before
    led.close()


def test_borrowing_within_the_limit_nets_the_lenders_allocation(ledger_url):
    # E 1,000,000, A 900,000 -> owes 1,000,000, gap 100,000 (10 %): may borrow 50,000 of 2023
    # E 100,000, A 95,000 -> owes 100,000, gap 5,000 (5 %): may not borrow
    led = entity_ledger(ledger_url, "2021-22", M1=([("coal", 1_000_000, 900_000)], 900_000, 0),
                        M2=([("coal", 100_000, 95_000)], 95_000, 0))
    d = day("2023-10-01")
    assert led.borrow("M1", "2021-22", 30_000, ref="b1", day=d) is True
    assert led.borrow("M1", "2021-22", 30_000, ref="b1", day=d) is False  # idempotent
    before = snapshot(led)
    for call, match in [
        # 30,000 + 20,001 = 50,001 > 50,000
        (lambda: led.borrow("M1", "2021-22", 20_001, ref="b2", day=d), "above the limit 50000"),
        (lambda: led.borrow("M2", "2021-22", 1, ref="b3", day=d), "not allowed"),
        (lambda: led.borrow("M1", "2023", 1, ref="b4", day=d), "no obligation recorded"),
        (lambda: led.borrow("M1", "2021-22", 0, ref="b5", day=d), "not 0"),
        (lambda: led.borrow("M1", "2021-22", 1, ref="b1", day=d), "another borrowing"),
        (lambda: led.borrow("X", "2021-22", 1, ref="b6", day=d), "UNKNOWN_ACCOUNT"),
    ]:
        with pytest.raises(LedgerError, match=match):
            call()
        assert snapshot(led) == before
    assert led.borrow("M1", "2021-22", 20_000, ref="b2", day=d) is True  # exactly the limit
    assert led.balances()["M1"]["CEA"] == 900_000 + 50_000
    # the borrowed allowances are surrendered like any others: 950,000 + 50,000 bought
    led.allowance_in("M1", "CEA", 50_000, ref="bought", day=d)
    assert led.surrender("M1", "2021-22", 1_000_000, ref="s", day=day("2023-11-10"))
    # the 2023 allocation of M1 is netted: 800,000 - 50,000
    assert net_allocation(led, "M1", "2023", 800_000) == 750_000
    assert net_allocation(led, "M2", "2023", 800_000) == 800_000
    assert [(b.entity, b.lender, b.tonnes) for b in led.borrowings(lender="2023")] == [
        ("M1", "2023", 30_000), ("M1", "2023", 20_000)]
    assert led.statement("M1", "2023-10-01").operations[0].kind == "BORROW"
    assert_conserved(led)
    led.close()


def test_a_version_3_ledger_is_upgraded(ledger_url):
    store = open_store(ledger_url)
    store.execute("CREATE TABLE schema_version (version BIGINT PRIMARY KEY, description TEXT "
                  "NOT NULL)")
    for version, description, statements in MIGRATIONS[:3]:
        with store.transaction():
            for sql in statements:
                store.execute(sql.replace("{pk}", store.pk))
            store.execute("INSERT INTO schema_version VALUES (?, ?)", (version, description))
    store.close()
    led = Ledger.open(ledger_url, ["CEA"])
    assert led.version == LATEST == 4 and SURRENDERED in led.accounts
    led.open_account("A", "COVERED_ENTITY")
    led.allowance_in("A", "CEA", 5, ref="a", day=1)
    led.record_obligations([obligation("A", "2023", [coal(5, 5)])])
    assert led.surrender("A", "2023", 5, ref="s", day=1)
    assert_conserved(led)
    led.close()


# ---------------------------------------------------------------------- the report

def trade(tid: int, date: str, price: int, qty: int, segment: int = 0) -> Trade:
    d = day(date)
    return Trade(tid, d, d * 86_400_000_000 + 36_000_000_000, "CEA", segment, price, qty,
                 "T1", "T2", f"b{tid}", f"s{tid}")


def test_report_compliant_partial_short_with_price_based_penalties(ledger_url):
    # C1: coal E 10,000, A 9,000 -> cap 11,000 -> owes 10,000; CCER limit 500
    # P1: gas E 8,000, A 7,000 -> owes 7,000
    # S1: coal E 20,000, A 10,000 -> cap 10,000 + 4,000 = 14,000 -> owes 14,000
    led = entity_ledger(ledger_url, C1=([("coal", 10_000, 9_000)], 9_600, 400),
                        P1=([("gas", 8_000, 7_000)], 7_000, 0),
                        S1=([("coal", 20_000, 10_000)], 10_000, 0))
    led.surrender("C1", "2023", 9_600, 400, ref="c", day=day("2024-12-20"))
    led.surrender("P1", "2023", 5_000, ref="p", day=day("2024-12-31"))  # on the deadline: counts
    led.surrender("S1", "2023", 3_000, ref="late", day=day("2025-01-15"))  # after: late
    # trades for the average price of the month before 2024-12-31 (2024-11-30..2024-12-30)
    for name, cash, cea in (("T1", 10**10, 0), ("T2", 0, 10_000)):
        led.open_account(name, "INSTITUTION")
        if cash:
            led.deposit(name, cash, ref=name, day=day("2024-11-01"))
        else:
            led.allowance_in(name, "CEA", cea, ref=name, day=day("2024-11-01"))
    led.settle_trades([
        trade(1, "2024-11-29", 50_000, 1_000),  # before the window: left out
        trade(2, "2024-12-02", 9_000, 100),  # 900,000 fen
        trade(3, "2024-12-20", 9_501, 300),  # 2,850,300 fen
        trade(4, "2024-12-20", 1_000, 1_000, segment=2),  # auction: left out
        trade(5, "2024-12-31", 100, 1_000),  # the deadline itself: left out
    ])
    # (900,000 + 2,850,300) / (100 + 300) = 3,750,300 / 400 = 9,375.75 -> 9,376 fen (half up)
    assert average_price(led, dt.date(2024, 12, 31)) == 9_376
    rep = compliance_report(led, "2023")
    assert rep.regime is REGULATIONS_2024 and rep.average_price == 9_376
    assert rep.average_price_basis == "ledger trades 2024-11-30..2024-12-30"
    c1, p1, s1 = rep.entities
    assert (c1.entity, c1.obligation, c1.surrendered_cea, c1.surrendered_ccer, c1.shortfall,
            c1.status, c1.penalty_min, c1.penalty_max) == ("C1", 10_000, 9_600, 400, 0,
                                                          "COMPLIANT", 0, 0)
    # P1: 7,000 - 5,000 = 2,000 short; 5 x 9,376 x 2,000 = 93,760,000 fen (937,600.00 CNY),
    # 10 x = 187,520,000 fen
    assert (p1.shortfall, p1.status, p1.penalty_min, p1.penalty_max, p1.uncorrected) == (
        2_000, "PARTIAL", 93_760_000, 187_520_000, 2_000)
    # S1: nothing by the deadline: 14,000 short; 5 x 9,376 x 14,000 = 656,320,000 fen,
    # 10 x = 1,312,640,000 fen; 3,000 surrendered late -> 11,000 deducted from next allocation
    assert (s1.surrendered_cea, s1.late, s1.shortfall, s1.uncorrected, s1.status) == (
        0, 3_000, 14_000, 11_000, "SHORT")
    assert (s1.penalty_min, s1.penalty_max) == (656_320_000, 1_312_640_000)
    assert rep.milestone is None and rep.milestone_met is None and c1.by_milestone is None
    # a given price wins: 60.00 -> P1 5 x 6,000 x 2,000 = 60,000,000 fen
    rep = compliance_report(led, "2023", average_price_fen=6_000)
    assert rep.entities[1].penalty_min == 60_000_000 and rep.average_price_basis == "given"
    # obligations given must agree with the ledger's
    with pytest.raises(ComplianceError, match="differs from the one recorded"):
        compliance_report(led, "2023", [obligation("P1", "2023", [gas(8_000, 7_001)])])
    extra = compliance_report(led, "2023", [obligation("Z9", "2023", [coal(100, 0)])])
    assert extra.entities[-1].entity == "Z9" and extra.entities[-1].status == "SHORT"
    assert_conserved(led)
    led.close()


def test_report_period_2_fixed_fine_milestone_and_no_price(ledger_url):
    led = entity_ledger(ledger_url, "2021-22", M1=([("coal", 1_000_000, 900_000)], 900_000, 0),
                        M2=([("coal", 100_000, 95_000)], 95_000, 0))
    led.borrow("M1", "2021-22", 50_000, ref="b", day=day("2023-10-01"))
    led.allowance_in("M1", "CEA", 50_000, ref="bought", day=day("2023-10-02"))
    led.surrender("M1", "2021-22", 1_000_000, ref="s", day=day("2023-11-10"))  # by 11-15
    led.surrender("M2", "2021-22", 95_000, ref="s", day=day("2023-12-01"))  # after 11-15
    rep = compliance_report(led, "2021-22")
    m1, m2 = rep.entities
    assert (m1.status, m1.by_milestone, m1.borrowed) == ("COMPLIANT", True, 50_000)
    # M2: 100,000 - 95,000 = 5,000 short; Measures 2021: a fixed fine of 20,000..30,000 CNY
    assert (m2.status, m2.by_milestone, m2.shortfall) == ("PARTIAL", False, 5_000)
    assert (m2.penalty_min, m2.penalty_max) == (2_000_000, 3_000_000)
    # 1 of 2 entities by the milestone: 50 % < 95 %
    assert (rep.compliant_by_milestone, rep.milestone_met) == (1, False)
    assert rep.average_price is None and rep.average_price_basis.startswith("not needed")
    # a 2024 report with no trades and no price: penalty ranges unknown
    led.record_obligations([obligation("M2", "2024", [coal(10, 0)])])
    rep = compliance_report(led, "2024")
    assert rep.average_price is None and rep.average_price_basis.startswith("none")
    assert (rep.entities[0].penalty_min, rep.entities[0].penalty_max) == (None, None)
    led.close()


# ---------------------------------------------------------------------- the CLI

EMISSIONS = """entity,verified_emissions,allocation,kind
E001,104000,100000,coal
E002,80000,60000,coal
E002,30000,32000,gas
E003,50000,45000,gas
"""


@pytest.fixture
def cli_ledger(tmp_path):
    path = tmp_path / "ledger.sqlite"
    led = Ledger.open(str(path), ["CEA"])
    for name, tonnes in (("E001", 100_000), ("E002", 60_000), ("E003", 0)):
        led.open_account(name, "COVERED_ENTITY")
        if tonnes:
            led.allowance_in(name, "CEA", tonnes, ref=f"alloc:{name}", day=day("2024-07-01"))
    led.close()
    (tmp_path / "emissions.csv").write_text(EMISSIONS)
    return path


def test_cli_obligations_surrender_report(cli_ledger, tmp_path):
    led, em = ["--ledger", cli_ledger], tmp_path / "emissions.csv"
    r = invoke("compliance", "obligations", "--period", "2023", "--emissions", em, *led)
    assert r.exit_code == 0, r.output
    # E002: coal 60,000 + 16,000 = 76,000 (< 80,000) + gas min(30,000, 32,000) = 106,000
    assert "E002              110000       92000      106000  14000        5300" in r.output
    assert "3 obligations recorded, 0 already there" in r.output
    r = invoke("compliance", "offset-in", "E001", "--tonnes", "5000", "--ref", "c1", "--date",
               "2024-09-01", *led)
    assert r.exit_code == 0, r.output
    args = ["compliance", "surrender", "E001", "--period", "2023", "--cea", "99000", "--ccer",
            "5000", "--date", "2024-12-20", *led]
    assert "surrendered 99000 t CEA and 5000 t CCER" in invoke(*args).output
    assert "applied before: nothing written" in invoke(*args).output  # default ref: once
    r = invoke("compliance", "surrender", "E002", "--period", "2023", "--cea", "60000",
               "--date", "2024-12-20", *led)
    assert r.exit_code == 0, r.output
    out = tmp_path / "rep"
    r = invoke("compliance", "report", "--period", "2023", *led, "--emissions", em,
               "--average-price", "97.49", "--out", out)
    assert r.exit_code == 0, r.output
    # E002 46,000 short: 5 x 97.49 x 46,000 = 22,422,700.00 CNY, 10 x = 44,845,400.00
    assert "E002,110000,92000,106000,5300,60000,0,0,0,46000,46000,,PARTIAL,22422700.00," \
        "44845400.00" in (out / "compliance_2023.csv").read_text()
    data = json.loads((out / "compliance_2023.json").read_text())
    assert [(e["entity"], e["status"]) for e in data["entities"]] == [
        ("E001", "COMPLIANT"), ("E002", "PARTIAL"), ("E003", "SHORT")]
    assert data["average_price_fen"] == 9_749 and data["penalty_regime"] == REGULATIONS_2024.name
    r = invoke("compliance", "periods")
    assert r.exit_code == 0 and "2021-22" in r.output and "2023-11-15" in r.output


@pytest.mark.parametrize("args, message", [
    (["surrender", "E001", "--period", "2022", "--cea", "1"], "compliance period '2022'"),
    (["surrender", "E001", "--period", "2023", "--cea", "1"], "no obligation recorded"),
    (["surrender", "NOBODY", "--period", "2023", "--cea", "1"], "UNKNOWN_ACCOUNT"),
    (["surrender", "E001", "--period", "2023", "--cea", "-1"], "not -1"),
    (["surrender", "E001", "--period", "2023", "--date", "2024-13-01"], "--date"),
    (["borrow", "E001", "--period", "2023", "--tonnes", "1"], "no obligation recorded"),
    (["offset-in", "E001", "--tonnes", "0", "--ref", "x"], "not 0"),
    (["report", "--period", "2023", "--average-price", "60.001"], "--average-price"),
    (["report", "--period", "2023", "--average-price", "0"], "--average-price"),
    (["obligations", "--period", "2023", "--emissions", "missing.csv"], "cannot read"),
])
def test_cli_bad_input_is_one_line(cli_ledger, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    before = cli_ledger.read_bytes()
    r = invoke("compliance", *args, "--ledger", cli_ledger) if args[0] != "obligations" else \
        invoke("compliance", *args)
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cea: error: ") and message in lines[0]
    led = Ledger.open(str(cli_ledger), ["CEA"])
    assert led.store.query("SELECT count(*) FROM surrender")[0][0] == 0
    led.close()
    assert before  # the ledger file is still there


@pytest.mark.parametrize("text, message", [
    ("entity,verified_emissions,kind\nA,1,coal\n", "missing allocation"),
    ("entity,verified_emissions,allocation,kind\nA,1,1,oil\n", "kind 'oil'"),
    ("entity,verified_emissions,allocation,kind\nA,-1,1,coal\n", "verified_emissions '-1'"),
    ("entity,verified_emissions,allocation,kind\nA,1,1.5,coal\n", "allocation '1.5'"),
    ("entity,verified_emissions,allocation,kind\nA,1,1,coal\nA,2,2,COAL\n", "given twice"),
    ("entity,verified_emissions,allocation,kind\n,1,1,coal\n", "empty entity"),
    ("entity,verified_emissions,allocation,kind\nA,1,1\n", "3 fields"),
    ("entity,verified_emissions,allocation,kind\n", "no entities"),
    ("", "missing entity"),
])
def test_emissions_file_errors_name_the_line(tmp_path, text, message):
    path = tmp_path / "e.csv"
    path.write_text(text)
    with pytest.raises(ComplianceError, match=message):
        read_emissions(path, "2023")


def test_emissions_file_any_column_order_and_extra_columns(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("kind,unit_count,allocation,entity,verified_emissions\n"
                    "GAS,2,120,B,100\ncoal,1,50,A,100\n")
    # A: coal 50 + floor(20 % x 100) = 70; B: gas min(100, 120) = 100
    assert [(o.entity, o.obligation) for o in read_emissions(path, "2024")] == [
        ("A", 70), ("B", 100)]
