"""Run folders, the JSON-lines log, seeds and devices."""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import os
import platform
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kgdistill.errors import ConfigError
from kgdistill.io import atomic_write_text, write_json

__all__ = [
    "KEEP_SUBNORMALS_ENV",
    "JsonlLog",
    "finished",
    "flush_denormals",
    "flushes_denormals",
    "keep_freed_memory",
    "machine_info",
    "new_run_dir",
    "resolve_device",
    "seed_everything",
    "write_json",
]


def machine_info() -> dict[str, Any]:
    """What a measurement ran on (written next to its numbers): CPU, torch threads, CUDA device, versions, date."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "flush_denormal": flushes_denormals(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA). Called by the API only, never by library code."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed large blocks for reuse instead of unmapping them (Linux only).

    A 1-N training step allocates and frees score matrices of ``batch x entities`` floats (164 MB for a batch of
    1,000 on WN18RR). glibc serves blocks that large with ``mmap`` and unmaps them when freed, so every step
    page-faults them in again: measured on WN18RR, DistMult-32, one thread, a step took 1.13-1.17 s, and 0.61-0.64 s
    with this setting, with bit-identical losses. The cost: memory freed during the run is not returned to the
    operating system until the process ends. Process-wide; idempotent.

    Returns:
        Whether the allocator took the setting.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(
        libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 2**31 - 1)
    )


#: ``KGDISTILL_KEEP_SUBNORMALS=1``: :func:`flush_denormals` leaves the CPU's default (subnormals computed).
KEEP_SUBNORMALS_ENV = "KGDISTILL_KEEP_SUBNORMALS"


def flush_denormals() -> bool:
    """Make this process's CPU arithmetic flush subnormal floats (below 1.18e-38 in magnitude) to zero, unless
    ``$KGDISTILL_KEEP_SUBNORMALS`` is ``1`` or ``true``.

    x86 cores compute on subnormals in microcode, tens of times slower than on normal floats. Saturated units
    make them: a TA-DistMult (dim 256, YAGO11k) trained with Adam at lr 0.1 saturates its LSTM's gates within two
    epochs, and the relation vectors and gradients then hold subnormals (13,683 of 256,000 entries of a batch's
    relation vectors), which every matrix product meets: a training step took 4.3 s instead of 0.14 s on two
    threads (the subnormal_step benchmark). Flushing changes results only below 1.18e-38 (such values become
    0; the evaluator then counts two scores that differ only there as tied).

    The setting (the x86 control register's FTZ and DAZ bits, :func:`torch.set_flush_denormal`) belongs to each
    thread, and a thread copies it from the thread that starts it: called before PyTorch starts its pool of
    intra-op threads (before the first parallel operation), it covers every thread; called later, only the
    calling one (half of a two-thread step's work stays slow). The ``kgdistill`` command and each worker process
    of ``kgdistill serve --workers N`` call it first thing; a Python program calls it before its first tensor
    operation.

    Returns:
        Whether subnormals are now flushed (the CPU took the setting: x86 with SSE3).
    """
    if os.environ.get(KEEP_SUBNORMALS_ENV, "") in ("1", "true"):
        return False
    return bool(torch.set_flush_denormal(True))


def flushes_denormals() -> bool:
    """Whether this thread flushes subnormal floats to zero (:func:`flush_denormals`)."""
    return float((torch.tensor([1e-39]) * 1.0).item()) == 0.0


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"config key 'train.device': unknown device '{name}'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"config key 'train.device': '{name}' asked for, but no CUDA device is available"
        )
    return device


def new_run_dir(base: str | Path, name: str) -> Path:
    """``base/<YYYYmmdd-HHMMSS>-<name>``, made unique with a suffix if needed (not created: the run claims it,
    see :func:`kgdistill.runfolder.claim`)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(base) / f"{stamp}-{name}"
    i = 1
    while path.exists():
        path = Path(base) / f"{stamp}-{name}-{i}"
        i += 1
    return path


class JsonlLog:
    """Append-only ``log.jsonl``: one JSON object per epoch or validation, flushed and synced per record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = sum(1 for _ in path.open(encoding="utf-8")) if path.exists() else 0

    def truncate(self, lines: int) -> None:
        """Keep the first ``lines`` records (what the resumed checkpoint had seen)."""
        if not self.path.exists():
            self.lines = 0
            return
        kept = self.path.read_text(encoding="utf-8").splitlines(keepends=True)[:lines]
        atomic_write_text(self.path, "".join(kept))
        self.lines = len(kept)

    def write(self, **record: Any) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.lines += 1

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [
            json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line
        ]


def finished(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a finished run (its test metrics are written)."""
    return (run_dir / "metrics.json").is_file()
