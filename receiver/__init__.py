"""The web process: verify helpdesk webhooks, store them durably in Redis, then answer."""
