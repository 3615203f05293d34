"""The policy's view of one opportunity, before anything is locked or written: which agent
scores it and on what it learned, how fresh its prices are, what size the desk would
trade. `execution.deciding` runs these inside the transaction that stores the verdicts."""
from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from scanners import models as scan_models
from scanners.candidates import signal_bar_ms
from scanners.feeds.base import Feed
from scanners.models import Opportunity
from trifecta_site.currency import USD_LIKE, quote_currency, usd_rates

from .agents import GLOBAL, Agent, AgentVerdict, ArbitrageAgent, BinaryAgent, ForexAgent
from .governor import EXECUTE
from .models import Decision, RiskLimits

ONE, HUNDRED = Decimal(1), Decimal(100)
SIZE_QUANTUM = Decimal(10) ** -Decision._meta.get_field("size_usd").decimal_places
THRESHOLD_ROWS = {"arbitrage": scan_models.ArbitrageSettings, "forex": scan_models.ForexSettings,
                  "binary": scan_models.BinarySettings}


def agent_keys(opportunity: Opportunity) -> tuple[type[Agent], tuple[str, ...]]:
    """The agent of the opportunity's kind and the keys of what it learned that its verdict reads."""
    f = opportunity.figures
    if opportunity.kind == "arbitrage":
        return ArbitrageAgent, (opportunity.route,)
    if opportunity.kind == "forex":
        return ForexAgent, (*ForexAgent.keys(opportunity.symbol, f["signal"]), GLOBAL)
    return BinaryAgent, (BinaryAgent.key(opportunity.symbol, f["direction"], int(f["expiry_s"])), GLOBAL)


def evaluate_agent(opportunity: Opportunity, agent: Agent | None = None, *, horizon_ms: int | None = None) -> AgentVerdict:
    """The agent's verdict (`agent`: one that knows the states already, see `agent_keys`;
    `horizon_ms`: the longest a forex position is held)."""
    f = opportunity.figures
    agent = agent or agent_keys(opportunity)[0]()
    if opportunity.kind == "arbitrage":
        return agent.evaluate_opportunity(opportunity)
    if opportunity.kind == "forex":
        return agent.evaluate_signal(opportunity.symbol, f["signal"], Decimal(f["confidence"]), f, horizon_ms)
    payout = f.get("payout")
    return agent.evaluate(opportunity.symbol, f["direction"], int(f["expiry_s"]), Decimal(f["probability"]),
                          None if payout is None else Decimal(str(payout)))


def data_age_ms(opportunity: Opportunity, feed: Feed, now: int) -> int | None:
    """How far the oldest price behind the opportunity is past its allowance now (None: a leg has no price).

    Freshness follows the data's cadence: a bar is current until the next one is due. A
    price's allowance is the bar period when it is a bar's close (`feed.mark`) or when the
    signal is bar-based (forex, binaries on bars: `signal_bar_ms`); a quote behind an
    arbitrage has none. The governor allows `max_quote_age_ms` past it as the grace, so a
    1-minute signal's price 55 s old is fresh and one 130 s old is not.
    """
    cadence = signal_bar_ms(opportunity.figures)
    worst = None
    for venue, symbol in opportunity.legs():
        quote, bar_ms = feed.mark(venue, symbol)
        if quote is None:
            return None
        age = max(0, now - quote.ts) - max(bar_ms, cadence)
        worst = age if worst is None else max(worst, age)
    return worst


def usd_per_quote_unit(opportunity: Opportunity, feed: Feed) -> Decimal | None:
    f = opportunity.figures
    profit, profit_usd = f.get("expected_profit"), f.get("expected_profit_usd")
    if profit_usd is not None and profit and Decimal(profit):
        return Decimal(profit_usd) / Decimal(profit)
    currency = f.get("start_currency") or quote_currency(opportunity.symbol)
    if currency in USD_LIKE:
        return ONE
    return usd_rates(feed, {currency}).to_usd(ONE, currency)


def arbitrage_notional_usd(figures: dict, rate: Decimal) -> Decimal:
    """An arbitrage opportunity's full size in USD (`rate`: USD per unit of its quote or start currency)."""
    size = Decimal(str(figures["size"]))
    return size * rate if figures.get("type") == "triangular" else size * Decimal(str(figures["buy_price"])) * rate


def proposed_size_usd(opportunity: Opportunity, agent: AgentVerdict, *, feed: Feed, settings, limits: RiskLimits,
                      value: Decimal) -> Decimal | None:
    """The notional (stake for binaries) the desk would trade, in USD, before the risk manager's say."""
    f = opportunity.figures
    multiplier = agent.size_multiplier or ONE
    if opportunity.kind == "binary":
        return value * settings.binary_stake_pct / HUNDRED * multiplier
    rate = usd_per_quote_unit(opportunity, feed)
    if rate is None:
        return None
    if opportunity.kind == "arbitrage":
        return min(arbitrage_notional_usd(f, rate), settings.arbitrage_max_notional_usd) * multiplier
    entry, stop = Decimal(f["entry"]), Decimal(f["stop_loss"])
    distance = abs(entry - stop) * rate
    if not distance:
        return None
    units = value * settings.forex_risk_per_trade_pct / HUNDRED / distance
    return min(units * entry * rate, value * limits.max_position_pct / HUNDRED) * multiplier


BPS = Decimal("0.0001")


def max_loss_per_usd(opportunity: Opportunity, *, feed: Feed, adverse_move_bps: Decimal) -> Decimal:
    """A trade's worst-case loss per USD of its size (notional, or stake), the model behind `max_loss`:
    binary: the stake; forex: the stop distance from the entry on the side that fills (costs are
    in that entry); arbitrage: each leg's taker fee plus an adverse move of `adverse_move_bps`
    per leg during the fill latency (its expected edge is not counted: the worst case ignores it)."""
    if opportunity.kind == "binary":
        return ONE
    f = opportunity.figures
    if opportunity.kind == "forex":
        entry, stop = Decimal(str(f["entry"])), Decimal(str(f["stop_loss"]))
        return abs(entry - stop) / entry if entry else ONE
    legs = opportunity.legs()
    fees = sum((feed.taker_fee(venue, symbol) for venue, symbol in legs), Decimal(0))
    return fees + len(legs) * adverse_move_bps * BPS


def edge_per_usd(opportunity: Opportunity, agent: AgentVerdict, *, feed: Feed) -> Decimal | None:
    """Expected P&L per USD of size: the agent's calibrated figure for forex and binary; for
    arbitrage, the scanner's net edge after fees at the walked depth over its notional."""
    if agent.edge_per_usd is not None:
        return agent.edge_per_usd
    f = opportunity.figures
    if opportunity.kind != "arbitrage" or f.get("expected_profit_usd") is None:
        return None
    rate = usd_per_quote_unit(opportunity, feed)
    if rate is None:
        return None
    notional = arbitrage_notional_usd(f, rate)
    return Decimal(str(f["expected_profit_usd"])) / notional if notional else None


def as_stored_size(size: Decimal) -> Decimal:
    """A size as its `Decision` row keeps it (rounded half away from zero, as PostgreSQL rounds a
    numeric): the trade booked with its decision gets the size an executor reading the row gets."""
    return size.quantize(SIZE_QUANTUM, rounding=ROUND_HALF_UP)


def decision_event(decision: Decision) -> dict:
    return {"id": decision.pk, "opportunity": decision.opportunity_id, "layer": decision.layer,
            "verdict": decision.verdict, "reasons": decision.reasons, "level": decision.level,
            "score": None if decision.score is None else str(decision.score),
            "size_usd": None if decision.size_usd is None else str(decision.size_usd),
            "market_ts": decision.market_ts}


def pending_opportunity_ids(*, now, older_than_s: int, limit: int) -> set[int]:
    """Opportunities detected in the hour before `now` (wall clock, as `detected_at` is),
    older than `older_than_s`, still undecided or approved for execution without a trade:
    what a lost queue message left undone."""
    recent = Opportunity.objects.filter(detected_at__lt=now - timedelta(seconds=older_than_s),
                                        detected_at__gte=now - timedelta(hours=1)).order_by("detected_at")
    undecided = recent.filter(status=Opportunity.DETECTED)
    unexecuted = recent.filter(status=Opportunity.DECIDED, trade__isnull=True, decisions__layer=Decision.GOVERNOR,
                               decisions__verdict=EXECUTE)
    return {*undecided.values_list("pk", flat=True)[:limit], *unexecuted.values_list("pk", flat=True)[:limit]}
