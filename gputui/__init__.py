"""gputui: a terminal fleet monitor for NVIDIA GPU hosts."""

__version__ = "0.1.0"
