"""`python -m gputui.cli`."""

from gputui.cli import main

main()
