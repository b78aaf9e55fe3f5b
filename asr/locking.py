"""One machine-wide exclusive lock, for one-time setup that several processes may reach at once."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Holds an flock on `path` (created if missing): whoever comes second waits, then sees the first one's work.

    The lock belongs to the open file, so it is released when the block ends or the process dies.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
