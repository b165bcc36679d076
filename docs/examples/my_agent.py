"""A 30-line agent: a mean-reverting quoter around a moving average of the last price.
Run it with

    cea simulate --days 20 --agent docs/examples/my_agent.py:MeanReverter
    cea agent docs/examples/my_agent.py:MeanReverter --account A001 --token ...
"""

from sim.agent import Agent


class MeanReverter(Agent):
    """Buys below a moving average of the last price, sells above it, within a position
    limit; one working order per side, replaced every step."""

    lot = 1_000  # t per order
    limit = 20_000  # t held above or below the opening position
    window = 12  # steps in the moving average
    edge = 5  # fen away from the average

    def on_start(self):
        self.prices = []

    def on_step(self, book):
        if book.last is None and book.mid is None:
            return
        self.prices = (self.prices + [book.last or book.mid])[-self.window:]
        average = sum(self.prices) // len(self.prices)
        self.cancel_all()
        low, high = book.band
        held = self.allowances - self.opening_allowances
        if held < self.limit and self.cash_available > self.lot * average:
            self.buy(self.lot, max(low, average - self.edge))
        if held > -self.limit and self.sellable >= self.lot:
            self.sell(self.lot, min(high, average + self.edge))

    def on_execution(self, fill):
        print(f"{self.account} {fill.side.name} {fill.qty} t at {fill.price / 100:.2f}")
