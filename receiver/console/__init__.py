"""The web console at `/console`: deliveries, traces, timelines, rules, dead letters, counters."""
