"""What the helpdesk simulators share: clock, rate limit, app life cycle, controls, faults, webhooks."""
