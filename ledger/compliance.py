"""Compliance: the compliance periods, each entity's surrender obligation, and the report of
what was surrendered by the deadline, the shortfall and the penalty range.

Rules and numbers are summarised in ``docs/rules.md`` §12 (formulas and worked examples in
``docs/compliance.md``); each carries a confidence mark: [verified in source], [secondary
source], [unverified], [our modelling choice]. Every quantity is whole tonnes, every amount
of money whole fen; every fraction is a ``fractions.Fraction`` and every rounding step is
written next to the rule it serves.

The obligation (``obligation``) is a pure function of verified emissions, free allocation and
unit kind; the ledger records it (``record_obligations``), and surrender (``surrender``) and
borrowing (``borrow``) are checked against the record. These functions take the ledger (a
``ledger.accounts.LedgerAccounts``) first; ``ledger.core.Ledger`` has them as methods of the
same name (``recorded_obligations`` is ``Ledger.obligations``). ``compliance_report`` reads
the ledger's obligations, surrenders and borrowings and prices the shortfall at the deadline
under the penalty regime in force on that date.

>>> ob = obligation("A001", "2021-22", [UnitEmissions("coal", 1_000_000, 700_000)])
>>> ob.obligation, ob.gap, ob.ccer_limit, ob.borrow_limit, ob.borrow_from
(900000, 200000, 45000, 100000, '2023')
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np

from engine.csvfile import write_csv
from engine.accounts import MAX_BALANCE
from engine.tradingdays import date_of_day, day_of_date

from .accounts import (AUCTION, CASH, CCER, REGISTRY, SURRENDERED, LedgerAccounts, LedgerError,
                       amount_or_zero, positive_amount)
from .statements import money


class ComplianceError(LedgerError):
    """Bad input to a compliance rule (unknown period or unit kind, bad tonnes)."""


# ---------------------------------------------------------------------- periods

@dataclass(frozen=True)
class BorrowingRule:
    """Who may borrow, how much, from which period's allowances."""

    threshold: Fraction  # an entity may borrow when gap / verified emissions >= this
    share: Fraction  # of the gap, at most (rounded down to whole tonnes)
    lender: str  # the compliance period whose allocation lends the allowances


@dataclass(frozen=True)
class CompliancePeriod:
    """One compliance period: its emission years, deadlines and the rules that apply.

    ``coal_gap_cap``: the share of verified emissions that caps a non-gas unit's obligation
    above its allocation (None: no cap). ``gas_capped``: gas units owe at most their
    allocation. ``ccer_share``: the share of the obligation CCER offsets may cover.
    ``milestone``: the date by which ``milestone_share`` of the entities are to have complied
    (None where the sources give none).
    """

    name: str
    emission_years: tuple[int, ...]
    deadline: dt.date
    milestone: dt.date | None
    milestone_share: Fraction
    coal_gap_cap: Fraction | None
    gas_capped: bool
    ccer_share: Fraction
    borrowing: BorrowingRule | None


#: 20 % of verified emissions above allocation for non-gas units, periods 1 and 2
#: [secondary source: ICAP 804, climatecooperation.cn, docs/rules.md §12]; kept for 2023 and 2024
#: [unverified: the sources cover periods 1 and 2 only; our modelling choice]
COAL_GAP_CAP = Fraction(20, 100)
#: CCER offsets up to 5 % of the obligation [unverified number; procedure secondary source]
CCER_SHARE = Fraction(5, 100)
#: period 2's borrowing: gap rate 10 % or more may borrow up to 50 % of the gap from 2023
#: allowances [secondary source: climatecooperation.cn, docs/rules.md §12]. The sources differ
#: on the comparison and the base: one source says "exceeds 10 %", climatecooperation.cn
#: "more than 10 % of the total allowances"; we take gap / verified emissions >= 10 %, the
#: reading of the brief and of the MEE notice as we recall it (配额缺口率在10%及以上)
#: [unverified as to >= and the base]
PERIOD_2_BORROWING = BorrowingRule(Fraction(10, 100), Fraction(50, 100), "2023")
#: 95 % of covered entities by the milestone date [secondary source: ICAP]
MILESTONE_SHARE = Fraction(95, 100)

#: Deadlines [secondary source: docs/rules.md §12]. "End-2024" and "end-2025" are read as
#: 31 December [our modelling choice]; 2023 and 2024 have no 95 % milestone in the sources.
#: Period 2 is one period over 2021 and 2022 together, with one obligation and one deadline
#: (the notice separated distribution and surrender by year: [our modelling choice]).
PERIODS: tuple[CompliancePeriod, ...] = (
    CompliancePeriod("2019-20", (2019, 2020), dt.date(2021, 12, 31), dt.date(2021, 12, 15),
                     MILESTONE_SHARE, COAL_GAP_CAP, True, CCER_SHARE, None),
    CompliancePeriod("2021-22", (2021, 2022), dt.date(2023, 12, 31), dt.date(2023, 11, 15),
                     MILESTONE_SHARE, COAL_GAP_CAP, True, CCER_SHARE, PERIOD_2_BORROWING),
    CompliancePeriod("2023", (2023,), dt.date(2024, 12, 31), None, MILESTONE_SHARE,
                     COAL_GAP_CAP, True, CCER_SHARE, None),
    CompliancePeriod("2024", (2024,), dt.date(2025, 12, 31), None, MILESTONE_SHARE,
                     COAL_GAP_CAP, True, CCER_SHARE, None),
)
KINDS = ("coal", "gas")


def compliance_period(name: str | CompliancePeriod) -> CompliancePeriod:
    """The period named ``name`` (``2019-20``, ``2021-22``, ``2023``, ``2024``).

    >>> compliance_period("2021-22").deadline
    datetime.date(2023, 12, 31)
    """
    if isinstance(name, CompliancePeriod):
        return name
    for p in PERIODS:
        if p.name == str(name).strip():
            return p
    raise ComplianceError(f"compliance period {name!r} is not one of "
                          f"{', '.join(p.name for p in PERIODS)}")


# ---------------------------------------------------------------------- obligations

@dataclass(frozen=True)
class UnitEmissions:
    """Verified emissions and free allocation (tonnes) of an entity's units of one kind:
    ``coal`` (every non-gas unit) or ``gas``."""

    kind: str
    verified_emissions: int
    allocation: int


@dataclass(frozen=True)
class UnitObligation:
    kind: str
    verified_emissions: int
    allocation: int
    obligation: int


@dataclass(frozen=True)
class Obligation:
    """One entity's obligation for one period. ``gap``: obligation - allocation, at least 0
    (the allowances it must get beyond its free ones); ``ccer_limit``: the most CCER tonnes it
    may surrender; ``borrow_limit``: the most it may borrow from ``borrow_from`` (0: none)."""

    entity: str
    period: str
    verified_emissions: int
    allocation: int
    obligation: int
    gap: int
    ccer_limit: int
    borrow_limit: int
    borrow_from: str | None
    units: tuple[UnitObligation, ...]


def _tonnes(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or not 0 <= int(value) <= MAX_BALANCE:
        raise ComplianceError(f"{what} must be whole tonnes 0..{MAX_BALANCE}, not {value!r}")
    return int(value)


def _floor(x: int, share: Fraction) -> int:
    """``floor(x * share)`` exactly."""
    return x * share.numerator // share.denominator


def unit_obligation(kind: str, verified_emissions: int, allocation: int,
                    period: str | CompliancePeriod) -> int:
    """What units of ``kind`` owe for ``period`` (tonnes).

    Gas units owe min(verified emissions, allocation) [secondary source: ICAP 804]. Non-gas
    ("coal") units owe their verified emissions, capped at allocation + 20 % of verified
    emissions [secondary source: ICAP 804, climatecooperation.cn]. Rounding: the rule says
    the obligation is at most (最高为) that sum, so the whole-tonne obligation is the largest
    integer not above it: allocation + floor(20 % x verified emissions) [our modelling
    choice, the only reading that never exceeds the cap].

    >>> unit_obligation("coal", 1_000_003, 700_000, "2019-20")  # 700,000 + floor(200,000.6)
    900000
    >>> unit_obligation("coal", 800_000, 700_000, "2019-20")  # under the cap: emissions
    800000
    >>> unit_obligation("gas", 500_000, 420_000, "2019-20")  # min(E, A)
    420000
    >>> unit_obligation("gas", 400_000, 420_000, "2023")
    400000
    """
    p = compliance_period(period)
    if kind not in KINDS:
        raise ComplianceError(f"unit kind {kind!r} is not one of {', '.join(KINDS)}")
    e = _tonnes(verified_emissions, "verified emissions")
    a = _tonnes(allocation, "allocation")
    if kind == "gas" and p.gas_capped:
        return min(e, a)
    if kind == "coal" and p.coal_gap_cap is not None:
        return min(e, a + _floor(e, p.coal_gap_cap))
    return e


def obligation(entity: str, period: str | CompliancePeriod,
               units: Iterable[UnitEmissions]) -> Obligation:
    """The entity's obligation for ``period`` over its units.

    Units of the same kind are summed first, then each kind's rule applies to its sums, and
    the entity owes the total [our modelling choice: the sources apply the 20 % cap to the
    entity and the gas rule to gas units; an entity with both kinds has the cap computed on
    its non-gas units]. ``gap`` = max(0, obligation - allocation). CCER limit: floor(5 % x
    obligation) [unverified number; floor: "up to" 5 %, our modelling choice]. Borrowing (where
    the period allows it): an entity whose gap / verified emissions is at least the threshold
    may borrow floor(50 % x gap) [secondary source; floor: "up to", our modelling choice].

    >>> ob = obligation("B", "2021-22", [UnitEmissions("coal", 600_000, 500_000),
    ...                                  UnitEmissions("gas", 100_000, 120_000)])
    >>> ob.obligation, ob.allocation, ob.gap, ob.borrow_limit  # 600,000 + 100,000; gap 80,000
    (700000, 620000, 80000, 40000)
    """
    p = compliance_period(period)
    if not isinstance(entity, str) or not entity.strip():
        raise ComplianceError(f"entity {entity!r}: a non-empty name")
    sums: dict[str, list[int]] = {}
    for u in units:
        if not isinstance(u, UnitEmissions):
            raise ComplianceError(f"not UnitEmissions: {u!r}")
        if u.kind not in KINDS:
            raise ComplianceError(f"{entity}: unit kind {u.kind!r} is not one of "
                                  f"{', '.join(KINDS)}")
        row = sums.setdefault(u.kind, [0, 0])
        row[0] += _tonnes(u.verified_emissions, f"{entity}: verified emissions")
        row[1] += _tonnes(u.allocation, f"{entity}: allocation")
    if not sums:
        raise ComplianceError(f"{entity}: no units")
    parts = tuple(UnitObligation(k, e, a, unit_obligation(k, e, a, p))
                  for k in KINDS if k in sums for e, a in [sums[k]])
    e = sum(u.verified_emissions for u in parts)
    a = sum(u.allocation for u in parts)
    owed = sum(u.obligation for u in parts)
    for total, what in ((e, "verified emissions"), (a, "allocation")):
        _tonnes(total, f"{entity}: total {what}")
    gap = max(0, owed - a)
    borrow, lender = 0, None
    rule = p.borrowing
    if rule is not None and e > 0 and Fraction(gap, e) >= rule.threshold:
        borrow, lender = _floor(gap, rule.share), rule.lender
    return Obligation(entity, p.name, e, a, owed, gap, _floor(owed, p.ccer_share), borrow,
                      lender, parts)


def recomputed(ob: Obligation) -> Obligation:
    """``ob`` computed again from its units: equal to ``ob`` when its figures follow the
    rules (``record_obligations`` records only such obligations)."""
    return obligation(ob.entity, ob.period, [UnitEmissions(u.kind, u.verified_emissions,
                                                           u.allocation) for u in ob.units])


# ---------------------------------------------------------------------- in the ledger

@dataclass(frozen=True, order=True)
class ObligationRecord:
    """An obligation as the ledger holds it (totals over the entity's unit kinds)."""

    entity: str
    period: str
    verified_emissions: int
    allocation: int
    obligation: int
    ccer_limit: int
    borrow_limit: int
    borrow_from: str | None


@dataclass(frozen=True)
class SurrenderRecord:
    entity: str
    period: str
    ref: str
    date: dt.date
    instrument: str  # the allowance instrument of the CEA leg
    cea: int
    ccer: int


@dataclass(frozen=True)
class BorrowingRecord:
    entity: str
    period: str  # the obligation it helps meet
    lender: str  # the period whose allocation it was issued from (to be netted there)
    ref: str
    date: dt.date
    instrument: str
    tonnes: int


def record_obligations(ledger: LedgerAccounts, obligations: Iterable[Obligation]) -> int:
    """Record entities' compliance obligations (``Obligation``, one per entity and period) in
    one transaction; return how many were new. An obligation recorded before with the same
    figures is skipped; with other figures it is refused (a recorded obligation is never
    changed: [our modelling choice]). ``surrender`` and ``borrow`` check against these
    records."""
    rows, seen = [], set()
    for ob in obligations:
        if not isinstance(ob, Obligation):
            raise LedgerError(f"not an Obligation: {ob!r}")
        if recomputed(ob) != ob:
            raise LedgerError(f"{ob.entity!r}: the obligation's figures do not follow "
                              f"from its units under the rules of period {ob.period}")
        key = (ledger.account_id(ob.entity), ob.period)
        if key in seen:
            raise LedgerError(f"{ob.entity!r} has two obligations for period {ob.period}")
        seen.add(key)
        rows.append((*key, ob.verified_emissions, ob.allocation, ob.obligation,
                     ob.ccer_limit, ob.borrow_limit, ob.borrow_from))
    new = 0
    with ledger.writing():
        for row in rows:
            have = ledger.store.query(
                "SELECT verified_emissions, allocation, obligation, ccer_limit, "
                "borrow_limit, borrow_from FROM obligation WHERE account = ? AND period = ?",
                row[:2])
            if not have:
                ledger.store.execute("INSERT INTO obligation VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                     row)
                new += 1
            elif tuple(have[0]) != row[2:]:
                raise LedgerError(
                    f"{ledger.account_names[row[0]]!r} already has an obligation for period "
                    f"{row[1]} (verified emissions, allocation, obligation, CCER limit, "
                    f"borrowing limit, lender: {tuple(have[0])}), not {row[2:]}; a recorded "
                    "obligation is not changed")
    return new


def _obligation_row(ledger: LedgerAccounts, account: int, period: str) -> tuple:
    rows = ledger.store.query(
        "SELECT obligation, ccer_limit, borrow_limit, borrow_from FROM obligation "
        "WHERE account = ? AND period = ?", (account, str(period)))
    if not rows:
        raise LedgerError(f"no obligation recorded for {ledger.account_names[account]!r} in "
                          f"period {period!r} (record it first: cea compliance obligations)")
    return rows[0]


def surrender(ledger: LedgerAccounts, name: str, period: str, cea: int = 0, ccer: int = 0, *,
              ref: str, day: int, instrument: str = "CEA") -> bool:
    """Surrender ``cea`` tonnes of allowances (of ``instrument``) and ``ccer`` tonnes of
    CCER offsets for ``name``'s obligation in ``period``: both move to ``@SURRENDERED``,
    one transaction with the surrender row, two operations (SURRENDER) and their
    postings and balances. Refused, with nothing written: an unknown account, no
    obligation recorded for the period, amounts that are not integers >= 0 (at least one
    positive), an instrument that is not an allowance, more than the account holds, CCER
    beyond the CCER limit (cumulated over the period's surrenders), and anything beyond
    what is still owed (obligation - surrendered so far: over-surrender is refused, [our
    modelling choice]). The same ``ref`` again for the same entity and period: no-op,
    returns False (idempotent, like operations); with other figures: refused."""
    account = ledger.account_id(name)
    if instrument not in ledger.assets or instrument in (CASH, CCER):
        raise LedgerError(f"{instrument!r} is not an allowance instrument of this ledger "
                          f"({', '.join(a for a in ledger.assets if a not in (CASH, CCER))})")
    cea = amount_or_zero(cea, "surrendered CEA")
    ccer = amount_or_zero(ccer, "surrendered CCER")
    if not cea and not ccer:
        raise LedgerError("a surrender needs a positive CEA or CCER quantity")
    if not isinstance(ref, str) or not ref:
        raise LedgerError("a surrender needs a non-empty ref (its idempotency key)")
    what = f"surrender by {name!r} for period {period}"
    with ledger.writing():
        q = ledger.store.query
        asset = ledger.assets[instrument]
        done = q("SELECT day, asset, allowances, ccer FROM surrender WHERE account = ? "
                 "AND period = ? AND ref = ?", (account, str(period), ref))
        if done:
            if tuple(done[0]) != (int(day), asset, cea, ccer):
                raise LedgerError(f"{what}: ref {ref!r} was used for another surrender "
                                  f"(day, asset, CEA, CCER: {tuple(done[0])})")
            return False
        owed, ccer_limit, _, _ = _obligation_row(ledger, account, period)
        have_cea, have_ccer = q("SELECT coalesce(sum(allowances), 0), coalesce(sum(ccer), "
                                "0) FROM surrender WHERE account = ? AND period = ?",
                                (account, str(period)))[0]
        still = owed - have_cea - have_ccer
        if cea + ccer > still:
            raise LedgerError(f"{what}: {cea + ccer} t is more than still owed ({still} t "
                              f"of an obligation of {owed} t)")
        if have_ccer + ccer > ccer_limit:
            raise LedgerError(f"{what}: CCER {ccer} t would bring the CCER surrendered to "
                              f"{have_ccer + ccer} t, above the CCER limit {ccer_limit} t")
        for asset_name, amount in ((instrument, cea), (CCER, ccer)):
            held = ledger.holding(account, asset_name)
            if amount > held:
                raise LedgerError(f"{what}: {amount} t {asset_name} is more than held "
                                  f"({held} t)")
        sid = (q("SELECT max(surrender_id) FROM surrender")[0][0] or 0) + 1
        ledger.store.execute("INSERT INTO surrender VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (sid, account, str(period), ref, int(day), asset, cea, ccer))
        for asset_name, amount in ((instrument, cea), (CCER, ccer)):
            if amount:
                ledger.write_operation("SURRENDER", account, ledger.assets[asset_name],
                                       amount, f"surrender#{sid}:{asset_name}", day,
                                       ledger.accounts[SURRENDERED],
                                       f"{what} of {amount} t {asset_name}")
    return True


def borrow(ledger: LedgerAccounts, name: str, period: str, tonnes: int, *, ref: str, day: int,
           instrument: str = "CEA") -> bool:
    """Borrowing: ``tonnes`` of the lending period's allowances issued early to ``name``
    for its obligation in ``period`` (a BORROW operation from ``@REGISTRY``, and a
    borrowing row naming the lending period, whose allocation is to be netted by it:
    ``net_allocation``). Refused, with nothing written: an unknown account, no obligation
    recorded, a period or entity without a borrowing limit, a total borrowed above the
    limit. The same ``ref`` again for the same entity and period: no-op, returns False; with
    other figures: refused."""
    account = ledger.account_id(name)
    if instrument not in ledger.assets or instrument in (CASH, CCER):
        raise LedgerError(f"{instrument!r} is not an allowance instrument of this ledger")
    tonnes = positive_amount(tonnes, "borrowed tonnes")
    if not isinstance(ref, str) or not ref:
        raise LedgerError("borrowing needs a non-empty ref (its idempotency key)")
    what = f"borrowing by {name!r} for period {period}"
    with ledger.writing():
        q = ledger.store.query
        asset = ledger.assets[instrument]
        done = q("SELECT day, asset, tonnes FROM borrowing WHERE account = ? AND period = ? "
                 "AND ref = ?", (account, str(period), ref))
        if done:
            if tuple(done[0]) != (int(day), asset, tonnes):
                raise LedgerError(f"{what}: ref {ref!r} was used for another borrowing "
                                  f"(day, asset, tonnes: {tuple(done[0])})")
            return False
        _, _, limit, lender = _obligation_row(ledger, account, period)
        if not limit:
            raise LedgerError(f"{what}: not allowed (no borrowing limit for this entity "
                              "and period)")
        before = q("SELECT coalesce(sum(tonnes), 0) FROM borrowing WHERE account = ? AND "
                   "period = ?", (account, str(period)))[0][0]
        if before + tonnes > limit:
            raise LedgerError(f"{what}: {tonnes} t would bring the borrowed total to "
                              f"{before + tonnes} t, above the limit {limit} t")
        bid = (q("SELECT max(borrowing_id) FROM borrowing")[0][0] or 0) + 1
        ledger.store.execute("INSERT INTO borrowing VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (bid, account, str(period), lender, ref, int(day), asset, tonnes))
        ledger.write_operation("BORROW", account, asset, tonnes, f"borrow#{bid}", day,
                               ledger.accounts[REGISTRY], what)
    return True


def recorded_obligations(ledger: LedgerAccounts, period: str) -> list[ObligationRecord]:
    """The obligations recorded for ``period``, by entity name (``Ledger.obligations``)."""
    return sorted(ObligationRecord(ledger.account_names[a], p, *rest)
                  for a, p, *rest in ledger.store.query(
                      "SELECT * FROM obligation WHERE period = ?", (str(period),)))


def surrenders(ledger: LedgerAccounts, period: str) -> list[SurrenderRecord]:
    """The surrenders for ``period``, in the order they were made."""
    return [SurrenderRecord(ledger.account_names[a], p, ref, date_of_day(d),
                            ledger.asset_names[asset], cea, ccer)
            for a, p, ref, d, asset, cea, ccer in ledger.store.query(
                "SELECT account, period, ref, day, asset, allowances, ccer FROM surrender "
                "WHERE period = ? ORDER BY surrender_id", (str(period),))]


def borrowings(ledger: LedgerAccounts, *, period: str | None = None,
               lender: str | None = None) -> list[BorrowingRecord]:
    """Borrowings for obligations of ``period`` and/or from ``lender``'s allocation, in
    the order they were made."""
    return [BorrowingRecord(ledger.account_names[a], p, lend, ref, date_of_day(d),
                            ledger.asset_names[asset], t)
            for a, p, lend, ref, d, asset, t in ledger.store.query(
                "SELECT account, period, borrow_from, ref, day, asset, tonnes FROM "
                "borrowing ORDER BY borrowing_id")
            if (period is None or p == period) and (lender is None or lend == lender)]


def net_allocation(ledger: LedgerAccounts, entity: str, period: str, allocation: int) -> int:
    """``allocation`` of ``entity`` for ``period`` less what it borrowed from that period
    (the borrowed allowances were issued early). Negative when it borrowed more than the
    allocation: the rest is still owed [our modelling choice].

    >>> from ledger import Ledger
    >>> led = Ledger.open(":memory:")
    >>> net_allocation(led, "A001", "2023", 10_000)
    10000
    """
    return allocation - sum(b.tonnes for b in borrowings(ledger, lender=period)
                            if b.entity == entity)


def read_emissions(path: str | Path, period: str | CompliancePeriod) -> list[Obligation]:
    """Obligations from a CSV ``entity,verified_emissions,allocation,kind`` (any column
    order, other columns ignored): one row per entity and unit kind (coal or gas; sum the
    units of a kind), whole tonnes. Errors name the file, line and value."""
    p = compliance_period(period)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ComplianceError(f"{path}: cannot read the emissions file: {e.strerror}") from None
    rows = list(csv.reader(text.splitlines()))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    need = ("entity", "verified_emissions", "allocation", "kind")
    missing = [c for c in need if c not in header]
    if missing:
        raise ComplianceError(f"{path}: the header needs the columns {','.join(need)} "
                              f"(missing {','.join(missing)})")
    col = {c: header.index(c) for c in need}
    units: dict[str, list[UnitEmissions]] = {}
    seen = set()
    for line, row in enumerate(rows[1:], start=2):
        if not any(f.strip() for f in row):
            continue
        where = f"{path}:{line}"
        if len(row) != len(header):
            raise ComplianceError(f"{where}: {len(row)} fields, the header has {len(header)}")
        entity, kind = row[col["entity"]].strip(), row[col["kind"]].strip().lower()
        if not entity:
            raise ComplianceError(f"{where}: empty entity")
        if kind not in KINDS:
            raise ComplianceError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
        if (entity, kind) in seen:
            raise ComplianceError(f"{where}: {entity} {kind} given twice (one row per entity "
                                  "and kind: sum the units)")
        seen.add((entity, kind))
        values = []
        for c in ("verified_emissions", "allocation"):
            v = row[col[c]].strip()
            if not v.isdigit() or int(v) > MAX_BALANCE:
                raise ComplianceError(f"{where}: {c} {v!r} is not whole tonnes 0..{MAX_BALANCE}")
            values.append(int(v))
        units.setdefault(entity, []).append(UnitEmissions(kind, *values))
    if not units:
        raise ComplianceError(f"{path}: no entities")
    return [obligation(name, p, units[name]) for name in sorted(units)]


# ---------------------------------------------------------------------- penalties

@dataclass(frozen=True)
class PenaltyRegime:
    """The penalty for a shortfall at the deadline: a fixed fine range (``fine``, fen) or a
    multiple of the average price times the shortfall (``price_multiple``), and the
    deduction of the uncorrected shortfall from the next allocation."""

    name: str
    citation: str
    in_force_from: dt.date
    fine: tuple[int, int] | None
    price_multiple: tuple[int, int] | None


#: 碳排放权交易管理办法（试行）(MEE Order No. 19, in force 2021-02-01) art. 40: a fine of
#: 20,000-30,000 CNY; the shortfall not made good in time deducted from next year's
#: allocation [unverified: our recollection]
MEASURES_2021 = PenaltyRegime(
    "Measures 2021", "碳排放权交易管理办法（试行） art. 40 [unverified]", dt.date(2021, 2, 1),
    (2_000_000, 3_000_000), None)
#: 碳排放权交易管理暂行条例 (in force 2024-05-01) art. 24: a fine of 5 to 10 times the average
#: market price in the month before the deadline x the unsurrendered quantity; if not
#: corrected, the quantity deducted from next year's allocation [unverified: our recollection]
REGULATIONS_2024 = PenaltyRegime(
    "Interim Regulations 2024", "碳排放权交易管理暂行条例 art. 24 [unverified]",
    dt.date(2024, 5, 1), None, (5, 10))
REGIMES = (MEASURES_2021, REGULATIONS_2024)


def penalty_regime(deadline: dt.date) -> PenaltyRegime:
    """The regime in force on the deadline (the later one supersedes the earlier) [our
    modelling choice].

    >>> penalty_regime(dt.date(2023, 12, 31)).name, penalty_regime(dt.date(2024, 12, 31)).name
    ('Measures 2021', 'Interim Regulations 2024')
    """
    regimes = [r for r in REGIMES if r.in_force_from <= deadline]
    if not regimes:
        raise ComplianceError(f"no penalty regime in force on {deadline}")
    return regimes[-1]


def penalty_range(regime: PenaltyRegime, shortfall: int,
                  average_price: int | None) -> tuple[int, int] | None:
    """(least, most) fine in fen for ``shortfall`` tonnes; None when the regime needs an
    average price (fen per tonne) and there is none. No shortfall: (0, 0).

    >>> penalty_range(REGULATIONS_2024, 1_000, 9_000)  # 5 x 90.00 x 1,000 .. 10 x
    (45000000, 90000000)
    >>> penalty_range(MEASURES_2021, 1, None)
    (2000000, 3000000)
    """
    shortfall = _tonnes(shortfall, "shortfall")
    if shortfall == 0:
        return (0, 0)
    if regime.fine is not None:
        return regime.fine
    if average_price is None:
        return None
    lo, hi = regime.price_multiple
    return (lo * average_price * shortfall, hi * average_price * shortfall)


def month_before(deadline: dt.date) -> tuple[dt.date, dt.date]:
    """The month before the deadline: from the same day of the previous month (the month's
    last day where it has no such day) to the day before the deadline [our modelling
    choice for 清缴时限前1个月].

    >>> month_before(dt.date(2024, 12, 31))
    (datetime.date(2024, 11, 30), datetime.date(2024, 12, 30))
    """
    year, month = (deadline.year, deadline.month - 1) if deadline.month > 1 \
        else (deadline.year - 1, 12)
    last = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(year, month, min(deadline.day, last)), deadline - dt.timedelta(days=1)


def average_price(ledger: LedgerAccounts, deadline: dt.date) -> int | None:
    """The volume-weighted average price (fen per tonne) of the ledger's listed and block
    trades in allowances over ``month_before(deadline)``, rounded half up to a whole fen; None
    without trades. One-way bidding (auction) trades are left out: they are primary sales, not
    market trading [our modelling choice]; all allowance instruments (vintages) are pooled."""
    first, last = month_before(deadline)
    allowances = [i for name, i in ledger.assets.items() if name not in (CASH, CCER)]
    if not allowances:
        return None
    marks = ", ".join("?" * len(allowances))
    num, den = ledger.store.query(
        "SELECT coalesce(sum(price * qty), 0), coalesce(sum(qty), 0) FROM trade WHERE day "
        f"BETWEEN ? AND ? AND segment <> ? AND asset IN ({marks})",
        (day_of_date(first), day_of_date(last), AUCTION, *allowances))[0]
    num, den = int(num), int(den)
    return (2 * num + den) // (2 * den) if den else None


# ---------------------------------------------------------------------- the report

STATUSES = ("COMPLIANT", "PARTIAL", "SHORT")


@dataclass(frozen=True)
class EntityCompliance:
    """One entity at the deadline. ``surrendered_*``: dated on or before the deadline;
    ``late``: surrendered after it (corrections); ``uncorrected``: shortfall - late, at least
    0, the tonnes to be deducted from the next allocation; ``by_milestone``: the obligation
    met by the 95 % milestone date (None: the period has none); penalties in fen (None:
    no average price)."""

    entity: str
    verified_emissions: int
    allocation: int
    obligation: int
    ccer_limit: int
    surrendered_cea: int
    surrendered_ccer: int
    borrowed: int
    late: int
    shortfall: int
    uncorrected: int
    by_milestone: bool | None
    status: str
    penalty_min: int | None
    penalty_max: int | None


@dataclass(frozen=True)
class Report:
    """The period's report: its dates, the penalty regime and the average price it used
    (with where the price came from), one row per entity by name, and how many entities met
    their obligation by the 95 % milestone (``milestone_met``: None without a milestone)."""

    period: str
    deadline: dt.date
    milestone: dt.date | None
    regime: PenaltyRegime
    average_price: int | None  # fen per tonne
    average_price_basis: str
    entities: tuple[EntityCompliance, ...]
    compliant_by_milestone: int
    milestone_met: bool | None


def _status(obligation_t: int, surrendered: int) -> str:
    """COMPLIANT: nothing short at the deadline; PARTIAL: short after surrendering part;
    SHORT: nothing surrendered. (The 95 % milestone is a share of entities, reported for the
    period as a whole and per entity as ``by_milestone``.)"""
    if surrendered >= obligation_t:
        return "COMPLIANT"
    return "PARTIAL" if surrendered else "SHORT"


def compliance_report(ledger: LedgerAccounts, period: str | CompliancePeriod,
                      obligations: Iterable[Obligation] | None = None, *,
                      average_price_fen: int | None = None) -> Report:
    """Per entity, at the deadline of ``period``: obligation, what was surrendered (CEA,
    CCER), borrowed, the shortfall, its status and penalty range.

    The entities are those with an obligation recorded in the ledger and those in
    ``obligations``; one given that differs from the ledger's record is refused. The penalty
    regime is the one in force on the deadline (``penalty_regime``); where it needs the
    average price, ``average_price_fen`` (fen per tonne) or else the ledger's trades
    (``average_price``). The period meets its milestone when at least 95 % of the entities met
    their obligation by the milestone date [secondary source].
    """
    p = compliance_period(period)
    recorded = {r.entity: r for r in recorded_obligations(ledger, p.name)}
    chosen: dict[str, object] = dict(recorded)
    given = set()
    for ob in obligations or ():
        if not isinstance(ob, Obligation) or ob.period != p.name:
            raise ComplianceError(f"not an obligation for period {p.name}: {ob!r}")
        if ob.entity in given:
            raise ComplianceError(f"{ob.entity!r} has two obligations for period {p.name}")
        given.add(ob.entity)
        rec = recorded.get(ob.entity)
        figures = (ob.verified_emissions, ob.allocation, ob.obligation, ob.ccer_limit,
                   ob.borrow_limit)
        if rec is not None and figures != (rec.verified_emissions, rec.allocation,
                                           rec.obligation, rec.ccer_limit, rec.borrow_limit):
            raise ComplianceError(
                f"{ob.entity!r}: the obligation given (verified emissions, allocation, "
                f"obligation, CCER limit, borrowing limit {figures}) differs from the one "
                f"recorded in the ledger ({rec.verified_emissions}, {rec.allocation}, "
                f"{rec.obligation}, {rec.ccer_limit}, {rec.borrow_limit})")
        chosen[ob.entity] = ob
    regime = penalty_regime(p.deadline)
    price, basis = None, "not needed: fixed fine"
    if regime.price_multiple is not None:
        if average_price_fen is not None:
            price = _tonnes(average_price_fen, "average price (fen)")
            if price == 0:
                raise ComplianceError("the average price must be positive")
            basis = "given"
        else:
            price = average_price(ledger, p.deadline)
            first, last = month_before(p.deadline)
            basis = (f"ledger trades {first}..{last}" if price is not None
                     else f"none: no trades {first}..{last} in the ledger; give one")
    surrendered: dict[str, list[int]] = {}  # cea, ccer by the deadline; late; by milestone
    for s in surrenders(ledger, p.name):
        row = surrendered.setdefault(s.entity, [0, 0, 0, 0])
        if s.date <= p.deadline:
            row[0] += s.cea
            row[1] += s.ccer
        else:
            row[2] += s.cea + s.ccer
        if p.milestone is not None and s.date <= p.milestone:
            row[3] += s.cea + s.ccer
    borrowed: dict[str, int] = {}
    for b in borrowings(ledger, period=p.name):
        borrowed[b.entity] = borrowed.get(b.entity, 0) + b.tonnes
    rows = []
    for name in sorted(chosen):
        ob = chosen[name]
        cea, ccer, late, early = surrendered.get(name, [0, 0, 0, 0])
        shortfall = max(0, ob.obligation - cea - ccer)
        pen = penalty_range(regime, shortfall, price)
        rows.append(EntityCompliance(
            name, ob.verified_emissions, ob.allocation, ob.obligation, ob.ccer_limit, cea, ccer,
            borrowed.get(name, 0), late, shortfall, max(0, shortfall - late),
            None if p.milestone is None else early >= ob.obligation,
            _status(ob.obligation, cea + ccer), *(pen if pen is not None else (None, None))))
    met = sum(1 for r in rows if r.by_milestone)
    milestone_met = None if p.milestone is None or not rows else \
        Fraction(met, len(rows)) >= p.milestone_share
    return Report(p.name, p.deadline, p.milestone, regime, price, basis, tuple(rows), met,
                  milestone_met)


REPORT_HEADER = ["entity", "verified_emissions", "allocation", "obligation", "ccer_limit",
                 "surrendered_cea", "surrendered_ccer", "borrowed", "late", "shortfall",
                 "uncorrected", "by_milestone", "status", "penalty_min", "penalty_max"]


def report_rows(report: Report) -> list[list[str]]:
    """The report as CSV rows: tonnes as integers, penalties in CNY with two decimals."""
    out = [list(REPORT_HEADER)]
    for r in report.entities:
        values = asdict(r)
        row = []
        for c in REPORT_HEADER:
            v = values[c]
            row.append(("" if v is None else money(v)) if c.startswith("penalty") else
                       "" if v is None else str(v).lower() if isinstance(v, bool) else str(v))
        out.append(row)
    return out


def report_json(report: Report) -> dict:
    """The report as JSON-ready data (integers: tonnes and fen; dates ISO)."""
    return {
        "period": report.period,
        "deadline": report.deadline.isoformat(),
        "milestone": report.milestone.isoformat() if report.milestone else None,
        "penalty_regime": report.regime.name,
        "penalty_citation": report.regime.citation,
        "average_price_fen": report.average_price,
        "average_price_basis": report.average_price_basis,
        "entities": [asdict(r) for r in report.entities],
        "compliant_by_milestone": report.compliant_by_milestone,
        "milestone_met": report.milestone_met,
        "units": {"tonnes": "t", "penalty_min": "fen", "penalty_max": "fen",
                  "average_price_fen": "fen/t"},
    }


def write_report(report: Report, directory: Path) -> list[Path]:
    """``compliance_<period>.csv`` and ``.json`` in ``directory``; return both paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"compliance_{report.period}"
    csv_path, json_path = Path(f"{stem}.csv"), Path(f"{stem}.json")
    write_csv(csv_path, report_rows(report))
    json_path.write_text(json.dumps(report_json(report), indent=1, ensure_ascii=False) + "\n",
                         encoding="utf-8")
    return [csv_path, json_path]


__all__ = ["BorrowingRecord", "BorrowingRule", "ComplianceError", "CompliancePeriod",
           "EntityCompliance", "KINDS", "MEASURES_2021", "Obligation", "ObligationRecord",
           "PERIODS", "PenaltyRegime", "REGULATIONS_2024", "Report", "SurrenderRecord",
           "UnitEmissions", "UnitObligation", "average_price", "borrow", "borrowings",
           "compliance_period", "compliance_report", "month_before", "net_allocation",
           "obligation", "penalty_range", "penalty_regime", "read_emissions", "recomputed",
           "record_obligations", "recorded_obligations", "report_json", "report_rows",
           "surrender", "surrenders", "unit_obligation", "write_report"]
