"""Writing a file for node_exporter's textfile collector: whole or not at all.

node_exporter reads every `*.prom` file of its directory at each scrape, whenever that comes;
a file written in place could be read half-written. The text goes to a hidden temporary file in
the same directory (same file system, so the rename is atomic; a name that does not end in
`.prom`, so the collector never reads it), is flushed to disk, and is renamed over the target.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

#: Readable by node_exporter, which runs as its own user; the text holds no secret.
TEXTFILE_MODE = 0o644


def write_atomic(path: Path, data: bytes, mode: int = TEXTFILE_MODE) -> None:
    """`data` to `path`, replacing it in one rename; OSError as the system says it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
