"""Collection in worker processes: each owns a shard of the hosts and one event loop, runs an
ordinary FleetMonitor over them, and streams compact per-tick deltas to the monitor of the UI
process, which merges them (docs/architecture.md, "Worker processes")."""
