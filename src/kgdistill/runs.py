"""Run folders, the JSON-lines log, seeds and devices."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kgdistill.errors import ConfigError
from kgdistill.io import atomic_write_text, write_json

__all__ = ["JsonlLog", "finished", "new_run_dir", "resolve_device", "seed_everything", "write_json"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA). Called by the API only, never by library code."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
