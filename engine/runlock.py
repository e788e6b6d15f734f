"""One run per folder: an OS file lock (flock) on RUN/.lock, held for the run's life.

The kernel releases a flock when its process ends, however it ends (exit, exception, SIGKILL), so a lock
left by a killed run is not stale: the next run takes it at once. The file records the holder's PID so a
refusal can name it. POSIX only (fcntl); where fcntl is missing the lock is a no-op."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import RunLocked

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

LOCK = ".lock"


class RunLock:
    """`with RunLock(run_dir):` holds the run directory exclusively or raises RunLocked naming the holder."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if fcntl is None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLocked(f"run directory {self.path.parent} is in use by process {holder} (another unidistill "
                            "run); wait for it to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
