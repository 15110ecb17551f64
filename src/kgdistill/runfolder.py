"""Claiming a run folder: one process at a time, never a silent overwrite, nothing left by a run that never started.

:func:`claim` is a context manager around everything a run does in its folder:

* **Lock.** An exclusive ``flock`` on ``<run>/.kgdistill.lock`` (holding the owner's pid) for as long as the
  run lives; a second process asking for the same folder fails at once with the first one's pid. The lock dies
  with its process, so a ``kill -9`` never leaves a stale lock. (On systems without ``fcntl`` there is no lock.)
* **No silent overwrite.** A fresh run refuses a folder that already holds a run (``metrics.json``: finished;
  ``last.safetensors`` / ``best.safetensors``: interrupted) unless ``overwrite`` is set, which removes that run's
  files first. Resuming is the way to continue one.
* **Clean up.** Temporary files left by writes that a kill interrupted are removed. A fresh run that fails
  before its first checkpoint (a bad teacher path, a config error found late, Ctrl-C in epoch 1) removes what
  it created, so failed starts leave no folder behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from kgdistill.errors import KGDistillError
from kgdistill.io import remove_stale_temporaries

__all__ = ["LOCK_NAME", "RUN_FILES", "claim", "holds_run"]

log = logging.getLogger(__name__)

LOCK_NAME = ".kgdistill.lock"
#: Files a run writes into its folder.
RUN_FILES = (
    "config.yaml",
    "log.jsonl",
    "metrics.json",
    "metrics.md",
    "curves.png",
    "best.safetensors",
    "last.safetensors",
)
_RUN_MARKERS = ("metrics.json", "last.safetensors", "best.safetensors")


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a finished or interrupted run (metrics or a checkpoint)."""
    return any((Path(folder) / name).is_file() for name in _RUN_MARKERS)


def _lock(folder: Path) -> int | None:
    """Take the folder's lock (non-blocking); its file descriptor, or ``None`` without ``fcntl``."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise KGDistillError(
            f"run folder {folder} is in use by another process (pid {owner}); "
            "wait for it to finish or choose another --out"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing releases the flock


@contextlib.contextmanager
def claim(folder: str | Path, *, fresh: bool, overwrite: bool = False) -> Iterator[Path]:
    """Own the run folder ``folder`` for the duration of the ``with`` block (see the module docstring).

    Args:
        fresh: a new run (``False``: resuming the run already there).
        overwrite: a fresh run may replace a run already in the folder.

    Raises:
        KGDistillError: the folder is locked by another process, or (fresh, without ``overwrite``) already
            holds a run.
    """
    folder = Path(folder)
    created = not folder.exists()
    if folder.exists() and not folder.is_dir():
        raise KGDistillError(f"run folder {folder} is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    fd = _lock(folder)
    started = ok = False  # cleaning up is armed only once the folder is ours to write
    try:
        if fresh and holds_run(folder):
            if not overwrite:
                state = "finished" if (folder / "metrics.json").is_file() else "interrupted"
                raise KGDistillError(
                    f"{folder} already holds a {state} run; continue it with --resume {folder}, "
                    "choose another --out, or pass --overwrite to replace it"
                )
            for name in RUN_FILES:
                (folder / name).unlink(missing_ok=True)
            log.info("overwriting the run in %s", folder)
        for path in remove_stale_temporaries(folder):
            log.info("removed %s, left by an interrupted write", path.name)
        started = True
        yield folder
        ok = True
    finally:
        _unlock(fd)
        if (
            fresh
            and not ok
            and (started or created)
            and not (folder / "last.safetensors").is_file()
        ):
            _remove_start(folder, created)


def _remove_start(folder: Path, created: bool) -> None:
    """Remove what a run that never checkpointed left: the whole folder if it made it, else its own files."""
    if created:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for name in (*RUN_FILES, LOCK_NAME):
        (folder / name).unlink(missing_ok=True)
