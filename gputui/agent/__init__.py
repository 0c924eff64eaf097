"""The host agent: runs on a GPU host and streams NVML readings as JSON lines (docs/protocol.md).

It imports only the standard library and pynvml, never gputui.* nor msgspec, and its modules
import each other only relatively: the collector ships this package as one in-memory bundle
(bundle.py) to hosts that have nothing of gputui installed.
"""

AGENT_VERSION = "0.1.0"
PROTOCOL_VERSION = 1
# Seconds between samples when no --interval is given. gputui's own default is
# gputui.config.DEFAULT_INTERVAL_S; the agent keeps this copy because it imports nothing of
# gputui, and a test keeps the two equal.
DEFAULT_INTERVAL_S = 1.0
