"""The starter hosts file, shipped inside the package (pip installs carry no sources).

`gputui init` writes it to the user's config dir; local.py is the Config it means, so bare
`gputui` shows the same before and after `gputui init`. hosts.example.toml in the sources
shows every key at once; this file is the short start, with the keys people change first.
"""

from __future__ import annotations

from importlib import resources

STARTER_NAME = "starter.toml"


def starter_text() -> str:
    """The starter hosts file, as `gputui init` writes it."""
    return (resources.files("gputui.config") / STARTER_NAME).read_text(encoding="utf-8")
