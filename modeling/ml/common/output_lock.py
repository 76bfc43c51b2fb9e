"""One writer per output folder: a second run given a folder another run is writing stops at once, with a message
that says so, instead of both writing the same files (a study started twice by mistake)."""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class FolderInUse(RuntimeError):
    """Another process holds the folder's lock."""


@contextmanager
def output_lock(folder: Path) -> Iterator[None]:
    """Hold ``<folder>/.lock`` (an exclusive ``flock``, released when the process ends, however it ends) for the
    block; FolderInUse at once if another process holds it. The file stays: removing it would let a third run lock
    a new file while the second still holds the old one."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / ".lock", "a+")  # noqa: SIM115 - held open for the block, closed in both branches
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise FolderInUse(
            f"{folder} is being written by another run ({holder}): wait for it to end, or choose another --output"
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing the only descriptor releases the lock
