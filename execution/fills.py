"""Paper fills against the market as the feed shows it at fill time.

A market order walks the book level by level (its VWAP is what it really pays) where the
feed has depth; without depth it fills at the top of book up to the size shown there and
reports the rest unfilled (a quote without a size, as forex brokers show, fills whole at
the top). The taker fee is charged on the notional. The `conservative` preset also moves
every level against the order by extra basis points.

Venue rules are respected where the venue defines them: the quantity is rounded *down*
to the amount step, slipped prices are rounded to the tick against the order, and an
order below the minimum amount or cost is rejected with a reason, never rounded up.

Each result carries its own evidence: levels consumed, share of visible depth used, the
top of book it was measured against, quote age at fill and the latency applied.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal

from scanners.feeds.base import Book, Quote

ZERO, ONE = Decimal(0), Decimal(1)
BPS = Decimal("0.0001")
BUY, SELL = "buy", "sell"

BELOW_AMOUNT_STEP = "BELOW_AMOUNT_STEP"
BELOW_MIN_AMOUNT = "BELOW_MIN_AMOUNT"
BELOW_MIN_COST = "BELOW_MIN_COST"
NO_LIQUIDITY = "NO_LIQUIDITY"


@dataclass(frozen=True)
class MarketRules:
    """A venue's precision and minimums for one symbol; None where the venue does not say."""

    amount_step: Decimal | None = None
    price_tick: Decimal | None = None
    min_amount: Decimal | None = None
    min_cost: Decimal | None = None

    @classmethod
    def from_dict(cls, values: dict | None) -> MarketRules:
        values = values or {}
        return cls(*(values.get(name) for name in ("amount_step", "price_tick", "min_amount", "min_cost")))


@dataclass
class FillResult:
    side: str
    requested: Decimal  # base quantity asked for (after step rounding)
    quantity: Decimal = ZERO  # base filled
    notional: Decimal = ZERO  # quote currency paid (buy) or received (sell), before fees
    fee: Decimal = ZERO  # quote currency
    fee_rate: Decimal = ZERO
    top_price: Decimal | None = None  # best price on the side consumed, at fill time
    levels: list = field(default_factory=list)  # [[price, quantity], ...] consumed, as strings
    depth_share: Decimal = ZERO  # filled / visible depth on that side
    reject_reason: str = ""
    book_ts: int | None = None  # when the price filled against was observed
    filled_ts: int | None = None
    latency_ms: int = 0
    from_book: bool = True  # False: a top-of-book quote (no depth recorded)

    @property
    def price_age_ms(self) -> int | None:
        """How old the price filled against was at fill time (never negative: a live feed may
        have observed it after the nominal fill time, which is then when the fill happened)."""
        if self.book_ts is None or self.filled_ts is None:
            return None
        return max(0, self.filled_ts - self.book_ts)

    @property
    def price(self) -> Decimal | None:
        return self.notional / self.quantity if self.quantity else None

    @property
    def unfilled(self) -> Decimal:
        return self.requested - self.quantity

    @property
    def proceeds(self) -> Decimal:
        """Quote currency in (sell) or out (buy, negative), fees included."""
        return self.notional - self.fee if self.side == SELL else -(self.notional + self.fee)

    def evidence(self) -> dict:
        return {
            "levels": self.levels, "levels_used": len(self.levels), "depth_share": str(self.depth_share),
            "top_price": None if self.top_price is None else str(self.top_price),
            ("book_age_ms" if self.from_book else "quote_age_ms"): self.price_age_ms,
            "latency_ms": self.latency_ms, "unfilled": str(self.unfilled), "reject_reason": self.reject_reason,
        }


def round_down(value: Decimal, step: Decimal | None) -> Decimal:
    if not step:
        return value
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def _slipped(price: Decimal, side: str, bps: Decimal, tick: Decimal | None) -> Decimal:
    if not bps:
        return price
    moved = price * (ONE + bps * BPS) if side == BUY else price * (ONE - bps * BPS)
    if tick:
        rounding = ROUND_CEILING if side == BUY else ROUND_FLOOR
        moved = (moved / tick).to_integral_value(rounding=rounding) * tick
    return moved


def _levels(side: str, book: Book | None, quote: Quote | None) -> list[tuple[Decimal, Decimal | None]]:
    if book is not None:
        return list(book.asks if side == BUY else book.bids)
    if quote is None:
        return []
    price, size = (quote.ask, quote.ask_size) if side == BUY else (quote.bid, quote.bid_size)
    return [] if price is None else [(price, size)]


def fill_market_order(*, side: str, book: Book | None = None, quote: Quote | None = None,
                      quantity: Decimal | None = None, spend: Decimal | None = None, fee_rate: Decimal = ZERO,
                      rules: MarketRules = MarketRules(), extra_slippage_bps: Decimal = ZERO,
                      filled_ts: int | None = None, latency_ms: int = 0) -> FillResult:
    """Fill `quantity` base units (or, buying, as much as `spend` quote units pay for, fee included)."""
    source = book if book is not None else quote
    levels = _levels(side, book, quote)
    result = FillResult(side=side, requested=ZERO, fee_rate=fee_rate, latency_ms=latency_ms, filled_ts=filled_ts,
                        book_ts=None if source is None else source.ts, from_book=book is not None)
    if not levels:
        result.reject_reason = NO_LIQUIDITY
        return result
    prices = [(_slipped(price, side, extra_slippage_bps, rules.price_tick), size) for price, size in levels]
    result.top_price = prices[0][0]
    if quantity is None:
        quantity = _affordable(prices, spend / (ONE + fee_rate))
    wanted = round_down(quantity, rules.amount_step)
    result.requested = wanted
    if wanted <= 0:
        result.reject_reason = BELOW_AMOUNT_STEP
        return result
    if rules.min_amount is not None and wanted < rules.min_amount:
        result.reject_reason = BELOW_MIN_AMOUNT
        return result
    remaining, visible = wanted, ZERO
    for price, size in prices:
        visible += size or ZERO
        if remaining <= 0:
            continue
        take = remaining if size is None else min(remaining, size)
        if take <= 0:
            continue
        result.levels.append([str(price), str(take)])
        result.quantity += take
        result.notional += take * price
        remaining -= take
    if rules.amount_step and result.quantity != wanted:  # a partial fill is still a whole number of steps
        result.quantity = round_down(result.quantity, rules.amount_step)
        result.notional = _cost_of(prices, result.quantity)
    if rules.min_cost is not None and result.notional < rules.min_cost:
        return FillResult(side=side, requested=wanted, fee_rate=fee_rate, top_price=result.top_price,
                          reject_reason=BELOW_MIN_COST, book_ts=result.book_ts, filled_ts=filled_ts, latency_ms=latency_ms,
                          from_book=result.from_book)
    result.fee = result.notional * fee_rate
    result.depth_share = (result.quantity / visible) if visible else (ONE if result.quantity else ZERO)
    return result


def _affordable(prices, budget: Decimal) -> Decimal:
    """Base units `budget` quote units buy walking up the asks."""
    bought = ZERO
    for price, size in prices:
        if budget <= 0:
            break
        take = budget / price if size is None else min(size, budget / price)
        bought += take
        budget -= take * price
    return bought


def _cost_of(prices, quantity: Decimal) -> Decimal:
    cost, remaining = ZERO, quantity
    for price, size in prices:
        take = remaining if size is None else min(remaining, size)
        cost += take * price
        remaining -= take
        if remaining <= 0:
            break
    return cost
