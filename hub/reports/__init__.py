"""Manager reports: SQL aggregates over a period (funnel, sources, response times, calls)."""
