"""numpy without the BLAS thread pool that gputui never uses.

As numpy is imported, its OpenBLAS starts a thread per core, and each thread spins a while
waiting for work before it sleeps: on a 2-core machine the import takes 0.13 s of wall and CPU
instead of 0.08 s with one thread, and the spinning grows with the cores (docs/benchmarks.md,
"Start-up"). gputui's numpy work (the history rings: copies, minima, maxima, means) calls no
BLAS routine, so numpy's first import runs with OPENBLAS_NUM_THREADS=1, unless the user set it;
OpenBLAS reads it once, as it loads. The variable is taken back as soon as numpy is loaded:
the processes gputui starts (agents, the operator's actions, a job an action submits) get the
environment as the user had it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import os
import sys
from collections.abc import Iterator, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

THREADS_VAR = "OPENBLAS_NUM_THREADS"


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """OPENBLAS_NUM_THREADS=1 inside, unless the user set it; as it was afterwards."""
    if THREADS_VAR in os.environ:
        yield
        return
    os.environ[THREADS_VAR] = "1"
    try:
        yield
    finally:
        os.environ.pop(THREADS_VAR, None)


class _NumpyWithOneBlasThread(importlib.abc.MetaPathFinder):
    """Finds numpy with the other finders, and runs its package's code (which loads OpenBLAS)
    inside one_blas_thread(). Leaves the meta path once numpy is found."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "numpy":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = next(
            (
                found
                for finder in sys.meta_path
                if (find := getattr(finder, "find_spec", None)) is not None
                and (found := find(fullname, path, target)) is not None
            ),
            None,
        )
        loader = None if spec is None else spec.loader
        run = getattr(loader, "exec_module", None)
        if run is None:
            return spec

        def exec_module(module: ModuleType) -> None:
            with one_blas_thread():
                run(module)

        # This spec's own loader object: numpy's package, nothing else.
        setattr(loader, "exec_module", exec_module)  # noqa: B010
        return spec


def numpy_without_blas_threads() -> None:
    """Make numpy's first import (wherever it happens) start OpenBLAS with one thread."""
    if "numpy" in sys.modules or any(isinstance(f, _NumpyWithOneBlasThread) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _NumpyWithOneBlasThread())
