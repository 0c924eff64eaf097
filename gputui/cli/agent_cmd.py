"""`gputui agent`: run the host agent locally and print its stream."""
