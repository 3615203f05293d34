"""Stand-ins for what cannot run here (the MetaTrader 5 terminal)."""
