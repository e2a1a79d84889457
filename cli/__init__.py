"""The `ticketwire` command: run everything locally, check rules, run the simulator."""
