"""Local simulators of the helpdesk vendor APIs ticketwire talks to, for tests, demos and benchmarks."""
