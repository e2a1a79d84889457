"""InboxOps: webhook verification and parsing, API client, and the actions rules may take."""
