"""gputui: a terminal fleet monitor for NVIDIA GPU hosts."""

import warnings

# asyncssh names cryptography's DSA types in its type aliases at import; cryptography 51 warns
# about each of them on stderr, on every command, though nothing has touched a DSA key. That
# text would land on the operator's terminal and in every script's stderr. Only that message
# is silenced: a DSA key actually offered still goes through asyncssh's own checks.
warnings.filterwarnings("ignore", message="DSA is deprecated", category=UserWarning)

__version__ = "0.1.0"
