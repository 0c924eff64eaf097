"""`python -m gputui.collect.workers`: one collector worker (gputui/collect/workers/worker.py)."""

from gputui.collect.workers.worker import main

if __name__ == "__main__":
    raise SystemExit(main())
