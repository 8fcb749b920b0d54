"""Analytics over the synced data: date ranges, facts, KPIs, performance tables, forecasts."""
