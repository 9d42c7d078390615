"""A deterministic instrument universe and the random walk that moves its quotes."""

from __future__ import annotations

import bisect
import math
import random
import string
from dataclasses import dataclass
from itertools import accumulate

EXCHANGES = ("XNYS", "XNAS", "XLON")
TICK_SIZE = 0.01  # price increment, currency units
VOLATILITY = 0.0004  # standard deviation of the log-mid move per tick (4 bps)


@dataclass
class Instrument:
    """One listed symbol and its mutable market state."""

    symbol: str
    exchange: str
    weight: float  # activity weight, 1 / rank^zipf
    mid: float  # current mid price, currency units
    spread_bps: float  # typical quoted spread, basis points of mid
    seq: int = 0  # last sequence number handed out


def build_universe(count: int, zipf: float, seed: int) -> list[Instrument]:
    """`count` instruments with unique 2-5 letter tickers; the same seed always gives the same universe."""
    rng = random.Random(seed)
    seen: set[str] = set()
    universe: list[Instrument] = []
    while len(universe) < count:
        length = rng.choices((2, 3, 4, 5), weights=(1, 6, 8, 2))[0]
        symbol = "".join(rng.choices(string.ascii_uppercase, k=length))
        if symbol in seen:
            continue
        seen.add(symbol)
        rank = len(universe) + 1
        universe.append(Instrument(
            symbol=symbol,
            exchange=rng.choices(EXCHANGES, weights=(4, 4, 2))[0],
            weight=1.0 / rank**zipf,
            mid=round(math.exp(rng.uniform(math.log(3.0), math.log(900.0))), 2),
            # Busy names quote tight, the quiet tail wide: 1 bps at the top, ~15 bps at the bottom.
            spread_bps=1.0 + 14.0 * (rank - 1) / max(1, count - 1),
        ))
    return universe


class TickMaker:
    """Draws the next instrument by activity weight and moves its quote one step."""

    def __init__(self, universe: list[Instrument], seed: int) -> None:
        self.universe = universe
        self._cum = list(accumulate(ins.weight for ins in universe))
        self._rng = random.Random(seed ^ 0x5EED)

    def pick(self) -> int:
        """Index of the instrument that trades next (weighted by activity)."""
        return bisect.bisect_right(self._cum, self._rng.random() * self._cum[-1])

    def tick(self, index: int) -> dict[str, object]:
        """Advance instrument `index` by one tick and return the record (without `ts_ns`), seq from 1."""
        rng = self._rng
        ins = self.universe[index]
        ins.seq += 1
        ins.mid = max(TICK_SIZE * 10, ins.mid * math.exp(rng.gauss(0.0, VOLATILITY)))
        spread_ticks = max(1, round(ins.mid * ins.spread_bps * (0.7 + 0.6 * rng.random()) / 1e4 / TICK_SIZE))
        bid_ticks = math.floor(ins.mid / TICK_SIZE - spread_ticks / 2)
        ask_ticks = bid_ticks + spread_ticks
        # Most prints hit the bid or lift the offer; a few cross inside the spread.
        side = rng.random()
        last_ticks = bid_ticks if side < 0.45 else ask_ticks if side < 0.9 else rng.randint(bid_ticks, ask_ticks)
        # Round lots with a heavy tail, plus some odd lots.
        size = rng.randint(1, 99) if rng.random() < 0.1 else 100 * min(100, int(rng.paretovariate(1.6)))
        return {
            "symbol": ins.symbol,
            "seq": ins.seq,
            "exchange": ins.exchange,
            "bid": round(bid_ticks * TICK_SIZE, 2),
            "ask": round(ask_ticks * TICK_SIZE, 2),
            "last": round(last_ticks * TICK_SIZE, 2),
            "size": size,
        }
