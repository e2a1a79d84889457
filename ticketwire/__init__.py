"""ticketwire: automation engine for helpdesk ticket webhooks."""
