"""Paper executors: fill an approved opportunity against the market at fill time and book it.

Each executor first *plans* (reads the feed after the configured latency and computes the
fills, no database writes), then *books* the plan in one transaction: the `Trade` row
(unique per opportunity: the idempotency key), its fills, the balance changes and the
position. A redelivered execution finds the trade, or collides with it and rolls back.
Where it can, the transaction that approves the opportunity books it (`draft_booking`).

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
from typing import Callable

from django.db import IntegrityError, transaction

from trifecta_site.currency import USD_STABLECOINS
from scanners.feeds.base import Feed, NotYetObserved
from scanners.models import Opportunity
from trifecta_site.clock import ms_to_datetime
from trifecta_site import events
from trifecta_site import statements as sql
from trifecta_site.models import configuration_version_statement, one_configuration_reading, version_from

from . import portfolio as book_keeping
from .fills import BUY, SELL, FillResult, MarketRules, fill_market_order, round_down
from .models import Balance, ExecutionSettings, Fill, Portfolio, Position, Trade, stored

ZERO, ONE = Decimal(0), Decimal(1)
USD_LIKE = USD_STABLECOINS | {"USD"}
INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"


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
        return self.symbol.split("/")[1].split(":")[0]


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


def _market(feed: Feed, venue: str, symbol: str, ts: int):
    book = feed.book_after(venue, symbol, ts)
    return (book, None) if book is not None and (book.bids or book.asks) else (None, feed.quote_after(venue, symbol, ts))


def _fill(feed: Feed, settings: ExecutionSettings, *, venue: str, symbol: str, side: str, ts: int, latency: int,
          quantity=None, spend=None) -> FillResult:
    book, quote = _market(feed, venue, symbol, ts)
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
        rates = book_keeping.usd_rates(feed, {base, quote})
        plan.seed_rates = {c: rates.to_usd(ONE, c) for c in (base, quote)}
        buy_price, opp_size = Decimal(figures["buy_price"]), Decimal(figures["size"])
        quantity = min(opp_size, plan.size_usd / (buy_price * _rate(rates, quote)))
        ts = decided_ts + latency
        buy = _fill(feed, settings, venue=figures["buy_venue"], symbol=symbol, side=BUY, ts=ts, latency=latency, quantity=quantity)
        sell = _fill(feed, settings, venue=figures["sell_venue"], symbol=symbol, side=SELL, ts=ts, latency=latency, quantity=quantity)
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
        rates = book_keeping.usd_rates(feed, currencies)
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
        quote = _entry_quote(feed, venue, symbol, ts)
        plan = Plan(opportunity, size_usd, ts)
        buy = signal == "BUY"
        entry = quote.ask if buy else quote.bid
        stop, target = Decimal(figures["stop_loss"]), Decimal(figures["take_profit"])
        if (buy and not stop < entry < target) or (not buy and not target < entry < stop):
            raise Rejected("PRICE_PAST_STOP_OR_TARGET", {"entry": str(entry), "stop_loss": str(stop), "take_profit": str(target)})
        quote_ccy = symbol.split("/")[1]
        rates = book_keeping.usd_rates(feed, {quote_ccy})
        units = round_down(size_usd / (entry * _rate(rates, quote_ccy)), _rules(feed, venue, symbol).amount_step or ONE)
        if units <= 0:
            raise Rejected("BELOW_AMOUNT_STEP", {"size_usd": str(size_usd)})
        notional_usd = units * entry * _rate(rates, quote_ccy)
        plan.size_usd = notional_usd
        plan.reserve_usd = notional_usd / settings.forex_leverage
        fill = FillResult(side=BUY if buy else SELL, requested=units, quantity=units, notional=units * entry,
                          top_price=entry, book_ts=quote.ts, filled_ts=ts, latency_ms=latency)
        fill.levels = [[str(entry), str(units)]]
        fill.depth_share = ONE
        plan.legs = [Leg(venue, symbol, fill.side, fill, Decimal(figures["entry"]))]
        spread = (quote.ask - quote.bid) if quote.ask is not None and quote.bid is not None else ZERO
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
        quote = _entry_quote(feed, venue, symbol, ts)
        entry = quote.mid
        plan = Plan(opportunity, size_usd, ts)
        plan.reserve_usd = size_usd
        fill = FillResult(side=BUY, requested=size_usd, quantity=size_usd, notional=size_usd, top_price=entry,
                          book_ts=quote.ts, filled_ts=ts, latency_ms=latency)
        plan.legs = [Leg(venue, symbol, BUY, fill, Decimal(figures["entry_price"]))]
        plan.position = {"kind": "binary", "venue": venue, "symbol": symbol, "direction": figures["direction"],
                         "quantity": size_usd, "entry_price": entry, "expiry_ts": ts + int(figures["expiry_s"]) * 1000,
                         "payout": Decimal(figures["payout"])}
        return plan


def _entry_quote(feed: Feed, venue: str, symbol: str, ts: int):
    quote = feed.quote_after(venue, symbol, ts)
    if quote is None or quote.bid is None or quote.ask is None:
        quote, _ = feed.mark(venue, symbol)
    if quote is None or quote.bid is None or quote.ask is None:
        raise Rejected("NO_QUOTE", {"venue": venue, "symbol": symbol})
    return quote


EXECUTORS = {"arbitrage": ArbitrageExecutor(), "forex": ForexExecutor(), "binary": BinaryExecutor()}


def execute_opportunity(*, opportunity_id: int, feed: Feed, size_usd: Decimal | None = None,
                        decided_ts: int | None = None) -> Trade:
    """Fill and book one approved opportunity, at most once whatever happens around it.

    Raises `NotYetObserved` when the fill time lies after the feed's clock (the task
    retries then). Size and decision time come from the stored decisions.
    """
    from decisions.models import RiskLimits

    found, verdicts, version, open_portfolio = sql.run(
        sql.get_statement(Opportunity, opportunity_id), _verdicts_statement(opportunity_id),
        configuration_version_statement(), book_keeping.open_portfolio_statement())
    opportunity = sql.instance_from(Opportunity, found)
    if opportunity is None:
        raise Opportunity.DoesNotExist(f"opportunity {opportunity_id} does not exist")
    if opportunity.status in (Opportunity.EXECUTED, Opportunity.REJECTED):  # booked before, or never to be
        existing = Trade.objects.filter(opportunity_id=opportunity_id).first()
        if existing is not None:
            return existing
    if size_usd is None or decided_ts is None:
        layers = {layer: (verdict, size, market_ts) for layer, verdict, size, market_ts in verdicts}
        governor, risk = layers.get("governor"), layers.get("risk")
        if governor is None or governor[0] != "execute":
            raise ValueError(f"opportunity {opportunity_id} is not approved for execution")
        size_usd, decided_ts = risk[1], governor[2]
    with one_configuration_reading(version_from(version)):
        settings, limits = ExecutionSettings.get_solo(), RiskLimits.get_solo()
    portfolio = sql.instance_from(Portfolio, open_portfolio) or book_keeping.current_portfolio()
    try:
        plan = EXECUTORS[opportunity.kind].plan(opportunity, feed=feed, settings=settings, size_usd=size_usd,
                                                decided_ts=decided_ts)
    except Rejected as rejection:
        plan = Plan(opportunity, size_usd, decided_ts + settings.fill_latency_ms(), rejected=rejection)
    try:
        with transaction.atomic():
            trade = _book(plan, portfolio, settings, limits, trade_id=sql.next_id(Trade))
    except IntegrityError:
        existing = Trade.objects.filter(opportunity_id=opportunity_id).first()
        if existing is None:
            raise
        return existing
    return trade


def _verdicts_statement(opportunity_id: int) -> sql.Statement:
    from decisions.models import Decision

    names = ("layer", "verdict", "size_usd", "market_ts")
    columns = ", ".join(sql.column(Decision, name) for name in names)
    return sql.Statement(f"SELECT {columns} FROM {sql.table(Decision)} WHERE {sql.column(Decision, 'opportunity')} = %s",
                         [opportunity_id], [Decision._meta.get_field(name) for name in names])


def _book(plan: Plan, portfolio: Portfolio, settings: ExecutionSettings, limits, *, trade_id: int | None) -> Trade:
    """Book the plan in the caller's transaction: lock the balances it moves (and the risk
    rows when the trade closes at once), then send the trade, its fills, balances, position
    or outcome and the opportunity's status together (the writes as one statement on
    PostgreSQL: they touch different rows). With its key taken in advance (`trade_id`,
    PostgreSQL) the trade goes with them; else its insert is a round trip of its own first."""
    from decisions.risk import locked_rows_from, locked_rows_statement, risk_day

    if plan.rejected is None:
        booking = Booking(plan, portfolio, trade_id)
        day = risk_day(booking.trade.opened_at, limits)
        try:
            writes, risk_rows = _move_balances(plan, portfolio, settings, booking.flows, booking.keys,
                                               also=[locked_rows_statement(day)] if booking.closes_now else [])
        except Rejected as rejection:
            plan.rejected = rejection
        else:
            risk_rows = locked_rows_from(risk_rows[0], day) if risk_rows is not None else None
            booking.booked(sql.run(*booking.statements(writes, risk_rows, limits, status=True), commit=True))
            return booking.trade
    trade = _new_trade(plan, portfolio, trade_id)
    trade.status, trade.reject_reason = Trade.REJECTED, plan.rejected.reason
    trade.edge = {"rejected": plan.rejected.reason, **plan.rejected.detail}
    trade.save(force_insert=True)
    Opportunity.objects.filter(pk=plan.opportunity.pk).update(status=Opportunity.REJECTED)
    from decisions.risk import release_trade_slot

    release_trade_slot(at=ms_to_datetime(plan.opened_ts))
    transaction.on_commit(lambda: events.publish("trade", trade_event(trade)))
    return trade


def _new_trade(plan: Plan, portfolio: Portfolio, trade_id: int | None) -> Trade:
    opportunity = plan.opportunity
    return Trade(
        pk=trade_id, portfolio=portfolio, opportunity=opportunity, kind=opportunity.kind, route=opportunity.route,
        symbol=opportunity.symbol, venues=opportunity.venues, direction=opportunity.direction,
        opened_ts=plan.opened_ts, opened_at=ms_to_datetime(plan.opened_ts), size_usd=plan.size_usd,
        fees_usd=plan.fees_usd, expected_pnl_usd=plan.expected_usd, edge=plan.edge,
    )


class Booking:
    """A filled plan's trade, fills and position (or the agent's learning, for a trade that
    closes at once), built before the balances and risk rows are locked: `statements` adds
    what the locked rows decide (the balance moves, the risk day's outcome), `booked` takes
    the rows they returned and announces the trade after commit."""

    def __init__(self, plan: Plan, portfolio: Portfolio, trade_id: int | None, size_usd: Decimal | None = None):
        from .monitor import learning_writes

        self.plan, self.size_usd, self.closes_now = plan, size_usd, plan.position is None
        self.flows, self.keys = _balance_moves(plan, portfolio)
        trade = self.trade = _new_trade(plan, portfolio, trade_id)
        self.spec = dict(plan.position or {})
        spread = self.spec.pop("spread", None)
        if spread is not None:
            trade.edge = {**trade.edge, "entry_spread": str(spread)}
        if self.closes_now:
            trade.status, trade.realized_pnl = Trade.CLOSED, stored(plan.realized_usd)
            trade.closed_ts, trade.closed_at = plan.opened_ts, trade.opened_at
        else:
            trade.status = Trade.OPEN
        self.learning = learning_writes(trade=trade, won=plan.realized_usd > 0) if self.closes_now else []
        self.inserts: list[list] = []
        self.position: Position | None = None
        self.prepared = None if trade.pk is None else (sql.insert_statement([trade]), self._dependents())

    def _dependents(self) -> list[sql.Statement]:
        """The fills and position, and their inserts (they need the trade's key)."""
        plan, trade = self.plan, self.trade
        fills = [
            Fill(trade=trade, leg=k, venue=leg.venue, symbol=leg.symbol, side=leg.side, requested=leg.fill.requested,
                 quantity=leg.fill.quantity, price=leg.fill.price, notional=leg.fill.notional, fee=leg.fill.fee,
                 fee_rate=leg.fill.fee_rate, filled_ts=leg.fill.filled_ts or plan.opened_ts,
                 evidence={**leg.fill.evidence(), "detected_price": None if leg.detected_price is None else str(leg.detected_price)})
            for k, leg in enumerate(plan.legs, start=1)
        ]
        self.position = None if self.closes_now else Position(
            trade=trade, opened_ts=plan.opened_ts, checked_ts=plan.opened_ts, reserved_usd=plan.reserve_usd, **self.spec)
        self.inserts = [objs for objs in (fills, [self.position] if self.position else []) if objs]
        return [sql.insert_statement(objs) for objs in self.inserts]

    def statements(self, balance_writes: list[sql.Statement], risk_rows, limits, *, status: bool) -> list[sql.Statement]:
        """Everything to send, given the balance writes and the locked risk state and day (a trade
        that closes at once); `status`: also mark the opportunity executed."""
        from decisions.risk import outcome_writes

        if self.prepared is None:  # no key taken in advance (SQLite): the insert gives it, before the fills need it
            sql.insert([self.trade])
            writes, dependents = [], self._dependents()
        else:
            trade_insert, dependents = self.prepared
            writes = [trade_insert]
        writes += balance_writes
        if status:
            writes.append(sql.update_statement(Opportunity, self.plan.opportunity.pk, status=Opportunity.EXECUTED))
        if self.closes_now:
            state, today = risk_rows
            writes += self.learning + outcome_writes(state, today, realized_pnl=self.trade.realized_pnl,
                                                     at=self.trade.closed_at, limits=limits)
        return ([sql.together(*writes)] if writes else []) + dependents

    def locked_statements(self, balances: list[tuple], risk_rows, limits) -> list[sql.Statement] | None:
        """`statements` for the balances the deciding transaction locked (rows of
        `locked_balances_statement`); None when the execution must be booked on its own
        (a balance row used for the first time, one that cannot fund the trade)."""
        locked = {(b.venue, b.currency): b for b in sql.instances_from(Balance, balances)}
        if self.keys - locked.keys():
            return None
        try:
            writes = _balance_writes(self.plan, self.trade.portfolio, self.flows, self.keys, locked)
        except Rejected:
            return None
        return self.statements(writes, risk_rows, limits, status=False)

    def booked(self, results: list[list[tuple]]) -> None:
        trade, position = self.trade, self.position
        if trade._state.adding:
            sql.inserted([trade], [(trade.pk,)])
        for objs, rows in zip(self.inserts, results[len(results) - len(self.inserts):]):
            sql.inserted(objs, rows)
        if position is not None:
            transaction.on_commit(lambda: events.publish("position", position_event(position)))
        transaction.on_commit(lambda: events.publish("trade", trade_event(trade)))


def balance_keys(opportunity: Opportunity, portfolio: Portfolio) -> set[tuple[str, str]]:
    """The balances an execution of the opportunity can move: the cash account, and each
    arbitrage leg's two currencies on its venue."""
    from decisions.pipeline import legs_of

    keys = {(Balance.DESK, portfolio.currency)}
    if opportunity.kind == "arbitrage":
        for venue, symbol in legs_of(opportunity):
            base, rest = symbol.split("/", 1)
            keys |= {(venue, base), (venue, rest.split(":")[0])}
    return keys


def locked_balances_statement(opportunity: Opportunity, portfolio: Portfolio) -> sql.Statement:
    """`balance_keys`' rows, locked (sent by the deciding transaction with its own locks)."""
    return _locked_balances(portfolio, balance_keys(opportunity, portfolio))


def draft_booking(*, opportunity: Opportunity, feed: Feed, settings: ExecutionSettings, limits, day, portfolio: Portfolio,
                  size_usd: Decimal, decided_ts: int, trade_id: int | None) -> Booking | None:
    """The execution of an opportunity about to be approved, planned before the deciding
    transaction takes its locks (`Booking.locked_statements` finishes it under them): one
    transaction and one commit for both, no second reading of what the decision read, and
    the locks held for the writes only (`make bench-execute`).

    None: book it on its own after the decision (`execute_opportunity`), which knows every
    other case: a fill time the feed has not reached, a rejected execution, a fill on
    another risk day than the decision's (`day`)."""
    from decisions.risk import risk_day

    try:
        plan = EXECUTORS[opportunity.kind].plan(opportunity, feed=feed, settings=settings, size_usd=size_usd,
                                                decided_ts=decided_ts)
    except (Rejected, NotYetObserved):
        return None
    if risk_day(ms_to_datetime(plan.opened_ts), limits) != day:
        return None
    return Booking(plan, portfolio, trade_id, size_usd)


def _move_balances(plan: Plan, portfolio: Portfolio, settings: ExecutionSettings, flows: dict, keys: set,
                   also: list[sql.Statement]) -> tuple[list[sql.Statement], list | None]:
    """The balance writes of the plan (`_balance_moves`), computed under row locks; refuse
    what the venue cannot fund (no transfers). The rows are locked by one statement, sent
    with `also` (statements that must run in the same round trip, after the lock); returns
    the writes and `also`'s rows."""
    if not keys:
        return [], (sql.run(*also) if also else None)
    found, *others = sql.run(_locked_balances(portfolio, keys), *also)
    balances = {(b.venue, b.currency): b for b in sql.instances_from(Balance, found)}
    if keys - balances.keys():
        if (Balance.DESK, portfolio.currency) not in balances:
            raise Balance.DoesNotExist(f"portfolio {portfolio.pk} has no cash account")
        _seed(portfolio, keys - balances.keys(), plan.seed_rates, settings)
        balances = {(b.venue, b.currency): b for b in sql.instances_from(Balance, sql.run(_locked_balances(portfolio, keys))[0])}
    return _balance_writes(plan, portfolio, flows, keys, balances), (others or None)


def _balance_moves(plan: Plan, portfolio: Portfolio) -> tuple[dict, set]:
    """The plan's flows per (venue, currency), as stored, and the balances it moves."""
    plan.reserve_usd = stored(plan.reserve_usd)
    flows = {key: stored(amount) for key, amount in sorted(plan.flows.items())}
    moves_cash = plan.reserve_usd or plan.position is None
    return flows, set(flows) | ({(Balance.DESK, portfolio.currency)} if moves_cash else set())


def _balance_writes(plan: Plan, portfolio: Portfolio, flows: dict, keys: set, balances: dict) -> list[sql.Statement]:
    """Move the locked balances: refuse what the venue cannot fund (no transfers). A trade
    that closes at once moves its realized P&L into the cash account; one that opens a
    position reserves its margin or stake there."""
    desk = (Balance.DESK, portfolio.currency)
    if plan.reserve_usd:
        cash = balances[desk]
        if cash.free < plan.reserve_usd:
            raise Rejected(INSUFFICIENT_BALANCE, {"venue": Balance.DESK, "needed": str(plan.reserve_usd), "free": str(cash.free)})
        cash.free -= plan.reserve_usd
        cash.reserved += plan.reserve_usd
    for key, amount in flows.items():
        balance = balances[key]
        if balance.free + amount < 0:
            raise Rejected(INSUFFICIENT_BALANCE, {"venue": key[0], "currency": key[1],
                                                  "needed": str(-amount), "free": str(balance.free)})
        balance.free += amount
        balance.total += amount
    if plan.position is None:  # Decimal arithmetic here: SQLite would add floats
        cash = balances[desk]
        cash.total += stored(plan.realized_usd)
        cash.free = cash.total - cash.reserved
    moved = {balances[key].pk: {"free": balances[key].free, "reserved": balances[key].reserved, "total": balances[key].total}
             for key in sorted(keys)}
    return [sql.update_many_statement(Balance, moved)] if moved else []


def _locked_balances(portfolio: Portfolio, keys) -> sql.Statement:
    venue, currency = sql.column(Balance, "venue"), sql.column(Balance, "currency")
    match = " OR ".join([f"({venue} = %s AND {currency} = %s)"] * len(keys))
    params = [portfolio.pk, *(value for key in sorted(keys) for value in key)]
    return sql.select_statement(Balance, f"{sql.column(Balance, 'portfolio')} = %s AND ({match})", params,
                                order_by=f"{venue}, {currency}", lock=True)


def _seed(portfolio: Portfolio, keys, usd_rates: dict, settings: ExecutionSettings) -> None:
    """Inventory rows used for the first time, each with `inventory_usd` worth."""
    for venue, currency in sorted(keys):
        rate = usd_rates.get(currency)
        amount = stored(settings.inventory_usd / rate) if rate else ZERO
        try:
            with transaction.atomic():
                Balance.objects.create(portfolio=portfolio, venue=venue, currency=currency, free=amount, total=amount,
                                       usd_at_seed=rate)
        except IntegrityError:
            pass  # another worker seeded it first


def trade_event(trade: Trade) -> dict:
    return {
        "id": trade.pk, "opportunity": trade.opportunity_id, "kind": trade.kind, "symbol": trade.symbol,
        "venues": trade.venues, "status": trade.status, "reject_reason": trade.reject_reason,
        "size_usd": str(trade.size_usd), "fees_usd": str(trade.fees_usd),
        "realized_pnl": None if trade.realized_pnl is None else str(trade.realized_pnl),
        "opened_ts": trade.opened_ts, "closed_ts": trade.closed_ts, "edge": trade.edge,
    }


def position_event(position: Position) -> dict:
    return {
        "id": position.pk, "trade": position.trade_id, "kind": position.kind, "venue": position.venue,
        "symbol": position.symbol, "direction": position.direction, "status": position.status,
        "quantity": str(position.quantity), "entry_price": str(position.entry_price),
        "stop_loss": None if position.stop_loss is None else str(position.stop_loss),
        "take_profit": None if position.take_profit is None else str(position.take_profit),
        "expiry_ts": position.expiry_ts, "close_reason": position.close_reason,
        "exit_price": None if position.exit_price is None else str(position.exit_price),
        "realized_pnl": None if position.realized_pnl is None else str(position.realized_pnl),
        "unrealized_pnl": str(position.unrealized_pnl),
    }
