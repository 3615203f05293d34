"""Paper fills, planned: what an approved opportunity's execution would be at fill time,
read from the market data after the configured latency. Pure: no database writes (the
booking module books a plan).

- Arbitrage, cross-venue: both legs are sent at once (each venue holds inventory), so
  each fills `decision + latency` against its own book. Triangles are sequential on one
  venue (each leg spends the last one's proceeds): leg k fills at `decision + k × latency`.
  Whatever a leg leaves unmatched (a partial or failed leg) is leg risk: it stays in
  inventory and is valued at the mid less the taker fee (a shortfall at the mid plus the
  fee) in the trade's realized P&L, which may well be negative. Arbitrage trades close
  at once: their P&L is realized when booked.
- Forex opens a position at the ask (buy) or bid (sell) after latency, with the signal's
  stop-loss and take-profit; the margin (notional / leverage) is reserved in cash.
- Binary stakes at the price after latency and settle at expiry on the recorded price.

Expected vs realized edge (USD) is split per trade: `latency_move` (top of book at fill
against the detection price), `depth_slippage` (VWAP against the top), `fees`, and
`size_and_leg_risk` (the rest: unfilled size and unmatched legs), so they sum exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from scanners.feeds.base import Feed, Quote
from scanners.models import Opportunity
from trifecta_site.currency import quote_currency, usd_rates

from .fills import BUY, SELL, FillResult, MarketRules, fill_market_order, round_down
from .models import ExecutionSettings
from .prices import fresh_price_at, price_at

ZERO, ONE = Decimal(0), Decimal(1)


class Rejected(Exception):
    """The execution cannot happen; the trade is stored as rejected with this reason."""

    def __init__(self, reason: str, detail: dict | None = None):
        self.reason, self.detail = reason, detail or {}
        super().__init__(reason)


@dataclass
class Leg:
    venue: str
    symbol: str
    side: str
    fill: FillResult
    detected_price: Decimal | None

    @property
    def base(self) -> str:
        return self.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        return quote_currency(self.symbol)


@dataclass
class Plan:
    """What an execution will book: fills, balance moves, P&L or the position to open."""

    opportunity: Opportunity
    size_usd: Decimal
    opened_ts: int
    legs: list[Leg] = field(default_factory=list)
    flows: dict = field(default_factory=dict)  # (venue, currency) -> signed amount
    realized_usd: Decimal | None = None  # arbitrage: closes at once
    expected_usd: Decimal | None = None
    fees_usd: Decimal = ZERO
    edge: dict = field(default_factory=dict)
    position: dict | None = None
    reserve_usd: Decimal = ZERO
    rejected: Rejected | None = None
    seed_rates: dict = field(default_factory=dict)  # currency -> USD per unit, for inventory seeding

    def flow(self, venue: str, currency: str, amount: Decimal) -> None:
        self.flows[(venue, currency)] = self.flows.get((venue, currency), ZERO) + amount


def _rules(feed: Feed, venue: str, symbol: str) -> MarketRules:
    return MarketRules.from_dict(feed.market_rules(venue, symbol))


STALE_PRICE = "STALE_PRICE"


def _market(feed: Feed, venue: str, symbol: str, ts: int, max_age_ms: int):
    """The book in force at `ts`, else its top-of-book quote; refused when older than `max_age_ms`
    then (no fill on stale data: a venue's old book is not its market now)."""
    book = feed.book_after(venue, symbol, ts)
    if book is not None and (book.bids or book.asks):
        if ts - book.ts > max_age_ms:
            raise Rejected(STALE_PRICE, {"venue": venue, "symbol": symbol, "book_age_ms": ts - book.ts,
                                         "max_age_ms": max_age_ms})
        return book, None
    quote = feed.quote_after(venue, symbol, ts)
    if quote is not None and ts - quote.ts > max_age_ms:
        raise Rejected(STALE_PRICE, {"venue": venue, "symbol": symbol, "quote_age_ms": ts - quote.ts,
                                     "max_age_ms": max_age_ms})
    return None, quote


def _fill(feed: Feed, settings: ExecutionSettings, *, venue: str, symbol: str, side: str, ts: int, latency: int,
          quantity=None, spend=None, market=None) -> FillResult:
    book, quote = market or _market(feed, venue, symbol, ts, settings.max_quote_age_ms)
    return fill_market_order(side=side, book=book, quote=quote, quantity=quantity, spend=spend,
                             fee_rate=feed.taker_fee(venue, symbol), rules=_rules(feed, venue, symbol),
                             extra_slippage_bps=settings.extra_slippage_bps(), filled_ts=ts, latency_ms=latency)


def _rate(rates, currency: str) -> Decimal:
    rate = rates.to_usd(ONE, currency)
    if rate is None:
        raise Rejected("NO_USD_RATE", {"currency": currency})
    return rate


def _edge(plan: Plan, rates) -> None:
    """Split realized − expected into latency move, depth slippage, fees and the rest."""
    move = slip = ZERO
    for leg in plan.legs:
        f = leg.fill
        if not f.quantity or f.top_price is None:
            continue
        sign = ONE if leg.side == SELL else -ONE
        rate = _rate(rates, leg.quote)
        if leg.detected_price is not None:
            move += sign * f.quantity * (f.top_price - leg.detected_price) * rate
        slip += sign * (f.notional - f.quantity * f.top_price) * rate
    expected = plan.expected_usd or ZERO
    realized = plan.realized_usd or ZERO
    rest = realized - expected - move - slip + plan.fees_usd
    plan.edge = {"expected": str(expected), "latency_move": str(move), "depth_slippage": str(slip),
                 "fees": str(-plan.fees_usd), "size_and_leg_risk": str(rest), "realized": str(realized)}


def _value_leftovers(plan: Plan, rates, fee_rate: Decimal, exclude: set[str]) -> Decimal:
    """Unmatched inventory of a trade (leg risk), at the mid less the fee (a shortfall at the mid plus it)."""
    by_currency: dict[str, Decimal] = {}
    for (_, currency), amount in plan.flows.items():
        if currency not in exclude:
            by_currency[currency] = by_currency.get(currency, ZERO) + amount
    value = ZERO
    for currency, amount in by_currency.items():
        if amount:
            rate = _rate(rates, currency)
            value += amount * rate * (ONE - fee_rate if amount > 0 else ONE + fee_rate)
    return value


class ArbitrageExecutor:
    def plan(self, opportunity: Opportunity, *, feed: Feed, settings: ExecutionSettings, size_usd: Decimal,
             decided_ts: int) -> Plan:
        figures = opportunity.figures
        latency = settings.fill_latency_ms()
        plan = Plan(opportunity, size_usd, decided_ts + latency)
        if figures.get("type") == "triangular":
            return self._triangle(plan, figures, feed, settings, decided_ts, latency)
        return self._cross_venue(plan, figures, feed, settings, decided_ts, latency)

    def _cross_venue(self, plan, figures, feed, settings, decided_ts, latency) -> Plan:
        symbol = figures["symbol"]
        base, quote = symbol.split("/")[0], symbol.split("/")[1].split(":")[0]
        rates = usd_rates(feed, {base, quote})
        plan.seed_rates = {c: rates.to_usd(ONE, c) for c in (base, quote)}
        buy_price, opp_size = Decimal(figures["buy_price"]), Decimal(figures["size"])
        quantity = min(opp_size, plan.size_usd / (buy_price * _rate(rates, quote)))
        ts = decided_ts + latency
        markets = [_market(feed, venue, symbol, ts, settings.max_quote_age_ms)  # both legs fresh, or neither fills
                   for venue in (figures["buy_venue"], figures["sell_venue"])]
        buy = _fill(feed, settings, venue=figures["buy_venue"], symbol=symbol, side=BUY, ts=ts, latency=latency,
                    quantity=quantity, market=markets[0])
        sell = _fill(feed, settings, venue=figures["sell_venue"], symbol=symbol, side=SELL, ts=ts, latency=latency,
                     quantity=quantity, market=markets[1])
        plan.legs = [Leg(figures["buy_venue"], symbol, BUY, buy, buy_price),
                     Leg(figures["sell_venue"], symbol, SELL, sell, Decimal(figures["sell_price"]))]
        if buy.reject_reason and sell.reject_reason:
            raise Rejected(buy.reject_reason, {"buy": buy.evidence(), "sell": sell.evidence()})
        for leg in plan.legs:
            f = leg.fill
            plan.flow(leg.venue, base, f.quantity if leg.side == BUY else -f.quantity)
            plan.flow(leg.venue, quote, f.proceeds)
        quote_rate = _rate(rates, quote)
        plan.fees_usd = (buy.fee + sell.fee) * quote_rate
        cash = (buy.proceeds + sell.proceeds) * quote_rate
        plan.realized_usd = cash + _value_leftovers(plan, rates, max(buy.fee_rate, sell.fee_rate), exclude={quote})
        plan.expected_usd = self._expected(figures, quantity, opp_size)
        _edge(plan, rates)
        return plan

    def _triangle(self, plan, figures, feed, settings, decided_ts, latency) -> Plan:
        venue, start, path = figures["venue"], figures["start_currency"], figures["path"]
        currencies = {start} | {c for leg in path for c in (leg["symbol"].split("/")[0], leg["symbol"].split("/")[1])}
        rates = usd_rates(feed, currencies)
        plan.seed_rates = {c: rates.to_usd(ONE, c) for c in currencies}
        opp_size = Decimal(figures["size"])
        amount = min(opp_size, plan.size_usd / _rate(rates, start))
        holding, currency = amount, start
        for k, spec in enumerate(path, start=1):
            symbol, side = spec["symbol"], spec["side"]
            ts = decided_ts + k * latency
            if side == BUY:
                f = _fill(feed, settings, venue=venue, symbol=symbol, side=BUY, ts=ts, latency=k * latency, spend=holding)
            else:
                f = _fill(feed, settings, venue=venue, symbol=symbol, side=SELL, ts=ts, latency=k * latency, quantity=holding)
            leg = Leg(venue, symbol, side, f, Decimal(spec["price"]))
            plan.legs.append(leg)
            if k == 1 and f.reject_reason:
                raise Rejected(f.reject_reason, {"leg": 1, **f.evidence()})
            plan.flow(venue, leg.base, f.quantity if side == BUY else -f.quantity)
            plan.flow(venue, leg.quote, f.proceeds)
            plan.fees_usd += f.fee * _rate(rates, leg.quote)
            if f.reject_reason or not f.quantity:
                break  # the chain stops here; what is held is leg risk
            holding, currency = (f.quantity, leg.base) if side == BUY else (f.notional - f.fee, leg.quote)
        fee = feed.taker_fee(venue, path[0]["symbol"])
        start_flow = sum((amount for (v, c), amount in plan.flows.items() if c == start), ZERO)
        plan.realized_usd = start_flow * _rate(rates, start) + _value_leftovers(plan, rates, fee, exclude={start})
        plan.expected_usd = self._expected(figures, amount, opp_size)
        _edge(plan, rates)
        return plan

    @staticmethod
    def _expected(figures, size: Decimal, opp_size: Decimal) -> Decimal | None:
        expected = figures.get("expected_profit_usd")
        if expected is None or not opp_size:
            return None
        return Decimal(expected) * size / opp_size


class ForexExecutor:
    def plan(self, opportunity: Opportunity, *, feed: Feed, settings: ExecutionSettings, size_usd: Decimal,
             decided_ts: int) -> Plan:
        figures = opportunity.figures
        venue, symbol, signal = figures["venue"], figures["symbol"], figures["signal"]
        latency = settings.fill_latency_ms()
        ts = decided_ts + latency
        quote = _entry_quote(feed, venue, symbol, ts, settings)
        plan = Plan(opportunity, size_usd, ts)
        buy = signal == "BUY"
        bid, ask = quote.bid, quote.ask
        if ask <= bid and figures.get("spread"):  # a bar's close (bid bars), or a locked or crossed quote: no
            ask = bid + Decimal(str(figures["spread"]))  # price to trade at; the instrument's spread from settings
        entry = ask if buy else bid
        stop, target = Decimal(figures["stop_loss"]), Decimal(figures["take_profit"])
        if (buy and not stop < entry < target) or (not buy and not target < entry < stop):
            raise Rejected("PRICE_PAST_STOP_OR_TARGET", {"entry": str(entry), "stop_loss": str(stop), "take_profit": str(target)})
        quote_ccy = symbol.split("/")[1]
        rates = usd_rates(feed, {quote_ccy})
        units = round_down(size_usd / (entry * _rate(rates, quote_ccy)), _rules(feed, venue, symbol).amount_step or ONE)
        if units <= 0:
            raise Rejected("BELOW_AMOUNT_STEP", {"size_usd": str(size_usd)})
        notional_usd = units * entry * _rate(rates, quote_ccy)
        plan.size_usd = notional_usd
        plan.reserve_usd = notional_usd / settings.forex_leverage
        fill = FillResult(side=BUY if buy else SELL, requested=units, quantity=units, notional=units * entry,
                          top_price=entry, book_ts=quote.ts, filled_ts=ts, latency_ms=latency, from_book=False)
        fill.levels = [[str(entry), str(units)]]
        fill.depth_share = ONE
        plan.legs = [Leg(venue, symbol, fill.side, fill, Decimal(figures["entry"]))]
        spread = (ask - bid) if ask is not None and bid is not None else ZERO
        plan.position = {"kind": "forex", "venue": venue, "symbol": symbol, "direction": signal, "quantity": units,
                         "entry_price": entry, "stop_loss": stop, "take_profit": target, "spread": spread}
        return plan


class BinaryExecutor:
    def plan(self, opportunity: Opportunity, *, feed: Feed, settings: ExecutionSettings, size_usd: Decimal,
             decided_ts: int) -> Plan:
        figures = opportunity.figures
        venue, symbol = figures["venue"], figures["symbol"]
        latency = settings.fill_latency_ms()
        ts = decided_ts + latency
        quote = _entry_quote(feed, venue, symbol, ts, settings)
        entry = quote.mid
        plan = Plan(opportunity, size_usd, ts)
        plan.reserve_usd = size_usd
        fill = FillResult(side=BUY, requested=size_usd, quantity=size_usd, notional=size_usd, top_price=entry,
                          book_ts=quote.ts, filled_ts=ts, latency_ms=latency, from_book=False)
        plan.legs = [Leg(venue, symbol, BUY, fill, Decimal(figures["entry_price"]))]
        plan.position = {"kind": "binary", "venue": venue, "symbol": symbol, "direction": figures["direction"],
                         "quantity": size_usd, "entry_price": entry, "expiry_ts": ts + int(figures["expiry_s"]) * 1000,
                         "payout": Decimal(figures["payout"])}
        return plan


def _entry_quote(feed: Feed, venue: str, symbol: str, ts: int, settings: ExecutionSettings) -> Quote:
    """The quote in force at fill time `ts` (a bar's close where the data is bars), refused when
    older than the maximum quote age then (a bar: plus its period, as it stays current until the
    next is due): a forex or binary entry never fills on a stale price."""
    observed = fresh_price_at(feed, venue, symbol, ts, max_age_ms=settings.max_quote_age_ms,
                              latency_ms=settings.fill_latency_ms())
    if observed is None:
        last = price_at(feed, venue, symbol, ts, since=ts - 600_000)  # how old it was, for the record
        if last is None:
            raise Rejected("NO_QUOTE", {"venue": venue, "symbol": symbol})
        raise Rejected(STALE_PRICE, {"venue": venue, "symbol": symbol, "quote_age_ms": last.age_ms(ts),
                                     "max_age_ms": settings.max_quote_age_ms + last.bar_ms})
    return observed.quote


EXECUTORS = {"arbitrage": ArbitrageExecutor(), "forex": ForexExecutor(), "binary": BinaryExecutor()}


def plan_execution(opportunity: Opportunity, *, feed: Feed, settings: ExecutionSettings, size_usd: Decimal,
                   decided_ts: int) -> Plan:
    """The plan of the opportunity's execution, or a plan that carries why it cannot happen
    (`Plan.rejected`). Raises `NotYetObserved` when the fill time lies after the feed's clock."""
    try:
        return EXECUTORS[opportunity.kind].plan(opportunity, feed=feed, settings=settings, size_usd=size_usd,
                                                decided_ts=decided_ts)
    except Rejected as rejection:
        return Plan(opportunity, size_usd, decided_ts + settings.fill_latency_ms(), rejected=rejection)
