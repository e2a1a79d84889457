"""The fault suite: does ticketwire lose events or repeat side effects when things fail?

Each scenario (`scenarios.py`) starts the real processes (embedded Valkey with `appendonly yes`,
the InboxOps simulator, `python -m receiver`, `arq workers.settings.WorkerSettings`), has an
agent create and edit tickets through the simulator while its fault happens, waits until
everything drained, then counts from the simulator's records and Redis (`measure.py`):

- **sent**: distinct event ids the simulator tried to deliver (`GET /_sim/deliveries`), the
  echoes of our own write-backs included; **accepted**: those answered 2xx at least once.
- **processed**: of the sent ids, those whose stream entry the workers' consumer group read and
  acknowledged (entry id at or below the group's last-delivered id, and not pending).
- **lost**: accepted but not processed.
- **duplicated write-backs**: each of our successful (2xx) write requests in the journal
  (`GET /_sim/journal`, ours by their `User-Agent`) is split into its effects per ticket: a
  field set to a value (a `PATCH` field), a bulk operation with its parameters (per ticket id),
  a note's text. Every successful write of an effect the ticket already got from an earlier
  write of ours counts once, whether or not it changed anything the second time.
- **final ticket states**: each ticket's priority, status, tag and number of our notes, from
  `GET /_sim/tickets` and the journal, against what the agent's edits and the rules in
  `rules/` make of it (`scenarios.expected`).
- **worst recovery**: per scenario, the longest time from a fault's end (for `sigkill`, the
  kill) until work goes on (the measure is named in the outcome's `recovery`), and **drained**:
  from the last fault's end until nothing is pending anywhere.

`python -m tests.faults [--full] [--scenario NAME ...] [--out FILE]` prints the table;
`test_faults.py` runs the short sizes under pytest (`TICKETWIRE_FAULTS=full`: the full ones).
"""
