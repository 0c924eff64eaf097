"""A host that could not be reached or could not run its agent: a code and a sentence.

Apart from ssh.py, which holds the SSH client, so that code that only names this error (the
operator's command runner, one-shot runs on `localhost`) starts without importing asyncssh.
"""

from __future__ import annotations


class HostError(Exception):
    """A connection failure, with a machine code and an operator-facing sentence."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
