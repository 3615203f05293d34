"""Money in the reporting currency (USD): which coins count as dollars and what a unit of
any other currency is worth, from the quotes a feed holds now. Every layer above uses it."""
from __future__ import annotations

from decimal import Decimal

ONE = Decimal(1)
USD_STABLECOINS = frozenset({"USDT", "USDC", "BUSD", "DAI", "TUSD", "USDP"})
USD_LIKE = USD_STABLECOINS | {"USD"}


def quote_currency(symbol: str) -> str:
    """'BTC/USDT' -> 'USDT', 'BTC/USDT:USDT' (a settled contract) -> 'USDT'."""
    return symbol.split("/")[1].split(":")[0]


class UsdRates:
    """Converts an amount of a currency into USD from a set of quotes.

    X/USD pairs first (and USD/X inverted); then X/USDT-style pairs with the stablecoin
    at par.
    """

    def __init__(self, quotes):
        self.rates: dict[str, tuple[Decimal, str]] = {"USD": (ONE, "usd")}
        for quote in quotes:
            base, _, rest = quote.symbol.partition("/")
            counter = rest.split(":")[0]
            if quote.mid is None or quote.mid <= 0:
                continue
            if counter == "USD" and base not in self.rates:
                self.rates[base] = (quote.mid, f"{quote.venue}:{quote.symbol}")
            elif base == "USD" and counter not in self.rates:
                self.rates[counter] = (ONE / quote.mid, f"{quote.venue}:{quote.symbol}")
        for coin in USD_STABLECOINS:
            self.rates.setdefault(coin, (ONE, "stablecoin at par"))
        for quote in quotes:  # then X/USDT-style pairs, for what no USD pair priced
            base, _, rest = quote.symbol.partition("/")
            if rest.split(":")[0] in USD_STABLECOINS and base not in self.rates and quote.mid and quote.mid > 0:
                self.rates[base] = (quote.mid, f"{quote.venue}:{quote.symbol} (stablecoin at par)")

    def to_usd(self, amount: Decimal, currency: str) -> Decimal | None:
        rate = self.rates.get(currency)
        return None if rate is None else amount * rate[0]


def usd_rates(feed, currencies) -> UsdRates:
    """USD per unit of each currency from the feed's current quotes (stablecoins at par, as the scanner reports)."""
    wanted = set(currencies)
    quotes = []
    for instrument in feed.instruments():
        base, _, rest = instrument.symbol.partition("/")
        counter = rest.split(":")[0]
        if (base in wanted and counter in USD_LIKE) or (counter in wanted and base == "USD"):
            quote, _ = feed.mark(instrument.venue, instrument.symbol)
            if quote is not None:
                quotes.append(quote)
    return UsdRates(quotes)
