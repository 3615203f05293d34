"""What a decision reads of the book and of its agent before it locks anything: the open
portfolio, its value, open routes and exposure on the opportunity's instrument, and the
agent's learned states. One statement on PostgreSQL (`trifecta_site.sql`), the ORM's
selectors on SQLite; both give the same figures (`portfolio.desk_exposure`)."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from decisions.agents import Agent
from decisions.models import AgentState
from scanners.models import Opportunity
from trifecta_site import sql

from .models import Balance, Portfolio, Position, Trade
from .portfolio import asset_exposure, current_portfolio, desk_exposure, inventory

ZERO = Decimal(0)


@dataclass(frozen=True)
class BookSnapshot:
    portfolio: Portfolio
    value: Decimal  # equity, as `desk_exposure` values it
    open_routes: set[str]
    open_count: int
    asset_exposure: Decimal  # open notional on the opportunity's symbol (ZERO for arbitrage)


def read_before_deciding(opportunity: Opportunity, agent: Agent, keys: tuple[str, ...]) -> BookSnapshot:
    """The book's snapshot; `agent` knows the states of `keys` afterwards."""
    if sql.hand_written():
        found = _read_in_one_statement(opportunity, agent, keys)
        if found is not None:
            return found
    portfolio = current_portfolio()
    value, open_routes, open_count = desk_exposure(portfolio)
    exposure = asset_exposure(portfolio, opportunity.symbol) if opportunity.kind != "arbitrage" else ZERO
    agent.states(*keys)
    return BookSnapshot(portfolio, value, open_routes, open_count, exposure)


PORTFOLIO_FIELDS = ["id", "starting_value", "currency", "started_at", "reset_by"]
AGENT_FIELDS = ["id", "agent", "key", "wins", "losses", "expected_sum", "realized_sum", "updated_at"]


def _statement() -> str:
    """Rows tagged by what they are, in columns of shared types: (tag, text, text, numeric x4, bigint x3, timestamp)."""
    p, b, o, t, a = (sql.table(m) for m in (Portfolio, Balance, Position, Trade, AgentState))
    c = sql.column
    return f"""
WITH p AS (SELECT * FROM {p} WHERE {c(Portfolio, "ended_at")} IS NULL ORDER BY {c(Portfolio, "id")} DESC LIMIT 1)
SELECT 'portfolio', p.{c(Portfolio, "currency")}, NULL::text, p.{c(Portfolio, "starting_value")}, NULL::numeric,
       NULL::numeric, NULL::numeric, p.{c(Portfolio, "id")}, p.{c(Portfolio, "reset_by")}, NULL::bigint,
       p.{c(Portfolio, "started_at")} FROM p
UNION ALL
SELECT 'balance', b.{c(Balance, "venue")}, b.{c(Balance, "currency")}, b.{c(Balance, "total")}, b.{c(Balance, "seed_usd")},
       b.{c(Balance, "usd_mark")}, b.{c(Balance, "usd_at_seed")}, NULL, NULL, NULL, NULL
  FROM {b} b JOIN p ON b.{c(Balance, "portfolio")} = p.{c(Portfolio, "id")}
UNION ALL
SELECT 'position', t.{c(Trade, "route")}, o.{c(Position, "symbol")}, o.{c(Position, "unrealized_pnl")},
       t.{c(Trade, "size_usd")}, NULL, NULL, NULL, NULL, NULL, NULL
  FROM {o} o JOIN {t} t ON o.{c(Position, "trade")} = t.{c(Trade, "id")} JOIN p ON t.{c(Trade, "portfolio")} = p.{c(Portfolio, "id")}
 WHERE o.{c(Position, "status")} = %(open)s
UNION ALL
SELECT 'arbitrage_realized', NULL, NULL, SUM(t.{c(Trade, "realized_pnl")}), NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM {t} t JOIN p ON t.{c(Trade, "portfolio")} = p.{c(Portfolio, "id")}
 WHERE t.{c(Trade, "status")} = %(closed)s AND t.{c(Trade, "kind")} = 'arbitrage'
   AND EXISTS (SELECT 1 FROM {b} b WHERE b.{c(Balance, "portfolio")} = p.{c(Portfolio, "id")}
                                     AND b.{c(Balance, "venue")} <> %(desk)s)
UNION ALL
SELECT 'agent', a.{c(AgentState, "agent")}, a.{c(AgentState, "key")}, a.{c(AgentState, "expected_sum")},
       a.{c(AgentState, "realized_sum")}, NULL, NULL, a.{c(AgentState, "id")}, a.{c(AgentState, "wins")},
       a.{c(AgentState, "losses")}, a.{c(AgentState, "updated_at")}
  FROM {a} a WHERE a.{c(AgentState, "agent")} = %(agent)s AND a.{c(AgentState, "key")} = ANY(%(keys)s)
"""


_SQL: list[str] = []  # built once, on first use (the app registry is ready then)


def _read_in_one_statement(opportunity: Opportunity, agent: Agent, keys: tuple[str, ...]) -> BookSnapshot | None:
    if not _SQL:
        _SQL.append(_statement())
    rows = sql.fetch(_SQL[0], {"open": Position.OPEN, "closed": Trade.CLOSED, "desk": Balance.DESK,
                               "agent": agent.name, "keys": list(keys)})
    portfolio, balances, positions, arbitrage, states = None, [], [], ZERO, {}
    for tag, s1, s2, n1, n2, n3, n4, i1, i2, i3, at in rows:
        if tag == "portfolio":
            portfolio = sql.instance(Portfolio, PORTFOLIO_FIELDS + ["ended_at"], [i1, n1, s1, at, i2, None])
        elif tag == "balance":
            balances.append((s1, s2, n1, n2, n3, n4))
        elif tag == "position":
            positions.append((s1, s2, n1, n2))
        elif tag == "arbitrage_realized":
            arbitrage = n1 or ZERO
        else:
            states[s2] = sql.instance(AgentState, AGENT_FIELDS, [i1, s1, s2, i2, i3, n1, n2, at])
    agent.known.update({key: states.get(key) or AgentState(agent=agent.name, key=key) for key in keys})
    if portfolio is None:  # none open yet: the ORM's path opens one
        return None
    cash = next(total for venue, currency, total, *_ in balances if venue == Balance.DESK and currency == portfolio.currency)
    held = inventory(portfolio, rows=[row[2:] for row in balances if row[0] != Balance.DESK], arbitrage_realized=arbitrage)
    value = cash + sum((pnl for _, _, pnl, _ in positions), ZERO) + held.seed_value + held.revaluation
    exposure = ZERO
    if opportunity.kind != "arbitrage":
        exposure = sum((size for _, symbol, _, size in positions if symbol == opportunity.symbol), ZERO)
    return BookSnapshot(portfolio, value, {route for route, *_ in positions}, len(positions), exposure)
