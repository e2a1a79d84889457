"""Traces: what each event did, stored compactly in Redis and rendered when read."""
