"""A ledger writer process for the kill test: settles a deterministic stream of trades in
batches, printing ``committed <last trade id>`` after each commit, from trade 1 every time it
starts (a restart republishes everything; the ledger must settle each trade once).

Run: ``python -m tests.ledger.crash_writer LEDGER_URL TRADES BATCH``
"""

from __future__ import annotations

import random
import sys

ACCOUNTS = [f"P{i}" for i in range(8)]
DAY = 19_786  # 2024-03-04


def trades(n: int, seed: int = 5):
    from ledger import Trade

    rnd = random.Random(seed)
    for tid in range(1, n + 1):
        buyer, seller = rnd.sample(ACCOUNTS, 2)
        yield Trade(tid, DAY, DAY * 86_400_000_000 + 36_000_000_000 + tid, "CEA",
                    0, rnd.randint(5400, 6600), rnd.randint(1, 2000), buyer, seller,
                    f"b{tid}", f"s{tid}")


def setup(led) -> None:
    for name in ACCOUNTS:
        led.open_account(name, "COVERED_ENTITY")
        led.deposit(name, 10**14, ref=f"open:{name}:cash", day=DAY - 1)
        led.allowance_in(name, "CEA", 10**11, ref=f"open:{name}:cea", day=DAY - 1)


def main(url: str, n: int, batch: int) -> None:
    from ledger import Ledger

    led = Ledger.open(url, ["CEA"], 3, 1)
    setup(led)
    print("ready", flush=True)
    buf = []
    for t in trades(n):
        buf.append(t)
        if len(buf) == batch:
            led.settle_trades(buf)
            print(f"committed {buf[-1].trade_id}", flush=True)
            buf = []
    if buf:
        led.settle_trades(buf)
        print(f"committed {buf[-1].trade_id}", flush=True)
    print("done", flush=True)
    led.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
