"""Traces: compact records of what every delivery did, kept in Redis for a while."""
