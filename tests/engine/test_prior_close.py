"""``set_prior_close``: the operator's prior close for the next day, on both books alike."""

from __future__ import annotations

import pytest

from engine import ClockTick, Engine, EngineConfigError, NewOrder, Side, parse_time
from engine.codes import Reason


@pytest.mark.parametrize("impl", ["numba", "reference"])
def test_prior_close_set_between_days_moves_the_next_bands(impl):
    eng = Engine({"CEA": 6000}, impl=impl)
    day1 = parse_time("2024-03-04T10:00:00")
    eng.submit(NewOrder(day1, "A", "s1", Side.SELL, qty=10, price=6000))
    eng.submit(NewOrder(day1, "B", "b1", Side.BUY, qty=10, price=6000))
    with pytest.raises(EngineConfigError, match="while a trading day is open"):
        eng.set_prior_close("CEA", 7000)
    eng.end_day()
    with pytest.raises(EngineConfigError, match="outside"):
        eng.set_prior_close("CEA", 0)
    eng.set_prior_close("CEA", 7000)
    day2 = parse_time("2024-03-05T10:00:00")
    events = eng.submit(NewOrder(day2, "A", "s2", Side.SELL, qty=10, price=7700))
    assert type(events[0]).__name__ == "OrderAccepted"
    assert eng.band() == (6300, 7700) and eng.band(segment=1) == (4900, 9100)
    rejected = eng.submit(NewOrder(day2, "A", "s3", Side.SELL, qty=10, price=6000))[0]
    assert rejected.reason == Reason.PRICE_OUTSIDE_BAND
    closes = eng.end_day()
    assert closes[-1].prior_close == 7000 and closes[-1].close == 7000  # no trade on day 2


def test_both_books_agree_after_a_set_prior_close():
    runs = []
    for impl in ("numba", "reference"):
        eng = Engine({"CEA": 6000}, impl=impl)
        eng.submit(ClockTick(parse_time("2024-03-04T15:00:00")))
        eng.set_prior_close("CEA", 123_456)  # a much wider ladder than the first day's
        t = parse_time("2024-03-05T13:30:00")
        out = [eng.submit(NewOrder(t, "A", f"s{i}", Side.SELL, qty=100_000 + i, price=p))
               for i, p in enumerate((160_493, 86_419, 123_456, 160_494))]
        out.append(eng.submit(NewOrder(t, "B", "b", Side.BUY, qty=300_000, price=160_493)))
        runs.append((out, eng.state_hash()))
    assert runs[0] == runs[1]
