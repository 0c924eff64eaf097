"""numpy imported by gputui's command line starts no BLAS thread pool, and leaves the
environment of the processes gputui starts as the user had it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# numpy imported in a fresh interpreter: the threads of the process, and the variable after.
PROBE = """
import json, os, sys
if sys.argv[1] == "hook":
    from gputui.cli.blas import numpy_without_blas_threads
    numpy_without_blas_threads()
import numpy
print(json.dumps([len(os.listdir("/proc/self/task")), os.environ.get("OPENBLAS_NUM_THREADS")]))
"""


def _numpy_threads(how: str, **env: str) -> tuple[int, str | None]:
    clean = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, how],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    threads, var = json.loads(out.stdout)
    return int(threads), var


@pytest.fixture
def pooled() -> int:
    """Threads numpy's import leaves without the hook: more than one where BLAS pools."""
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("counts threads in /proc (Linux)")
    threads, _ = _numpy_threads("plain")
    if threads < 2:
        pytest.skip("numpy's BLAS starts no pool here (one core, or a BLAS without threads)")
    return threads


def test_numpy_loads_its_blas_with_one_thread_and_the_variable_goes_back(pooled: int) -> None:
    assert _numpy_threads("hook") == (1, None)


def test_a_thread_count_the_user_set_is_kept(pooled: int) -> None:
    assert _numpy_threads("hook", OPENBLAS_NUM_THREADS="2") == (2, "2")
