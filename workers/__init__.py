"""Worker processes: take stored deliveries out of Redis in per-ticket order and run them."""
