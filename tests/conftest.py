"""Shared test configuration.

Tests that drive real system programs (sshd, tmux, Slurm) skip with a reason on a machine
without them, but fail under GPUTUI_REQUIRE_SYSTEM=1 (set by .ci/run), so CI can never pass by
skipping them.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator

import pytest

REQUIRE_SYSTEM = os.environ.get("GPUTUI_REQUIRE_SYSTEM") == "1"


def need_program(name: str, *candidates: str, accept: Callable[[str], bool] | None = None) -> str:
    """The path of a system program, or skip (fail under GPUTUI_REQUIRE_SYSTEM=1).

    A program found but refused by `accept` counts as missing: a pyenv shim is on PATH for
    every version pyenv knows, and only runs the versions selected.
    """
    for cand in (name, *candidates):
        path = shutil.which(cand) or (
            cand if os.path.isabs(cand) and os.access(cand, os.X_OK) else None
        )
        if path and (accept is None or accept(path)):
            return path
    message = f"{name} is not installed (make sysdeps installs it)"
    if REQUIRE_SYSTEM:
        pytest.fail(message + " and GPUTUI_REQUIRE_SYSTEM=1 forbids skipping")
    pytest.skip(message)


@pytest.fixture
def utc() -> Iterator[None]:
    """Clock texts in UTC whatever the machine's zone (restored after the test)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


# The real Slurm cluster is one per test session, shared by every module that uses it: its
# fixtures are registered here once (imported into each module, each would start its own).
# Last, because tests.slurm imports this module's helpers.
from tests.slurm import running_job, slurm_cluster  # noqa: E402, F401
