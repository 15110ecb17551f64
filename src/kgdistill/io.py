"""Generic file I/O: atomic writes of text, JSON and safetensors files, and checked safetensors reads.

A leaf of the import graph: it imports nothing of kgdistill but :mod:`kgdistill.errors` (itself a leaf), so
checkpoints, caches, run folders and benchmarks can all write files without importing one another.

Every write goes to a temporary file in the target's folder (``.<name>.<random>.tmp``), is flushed and
``fsync``-ed, then renamed over the target: a kill at any moment leaves either the old or the new file, never a
torn one. A killed write can leave its temporary file behind; :func:`remove_stale_temporaries` clears them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from kgdistill.errors import CheckpointError

__all__ = [
    "atomic_save_tensors",
    "atomic_write_bytes",
    "atomic_write_text",
    "read_safetensors",
    "read_safetensors_header",
    "remove_stale_temporaries",
    "write_json",
]

_TMP_SUFFIX = ".tmp"


def _temporary(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
    os.close(fd)
    return tmp


def _publish(tmp: str, path: Path) -> None:
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file, ``fsync`` and a rename."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, ``fsync`` and a rename."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_text(Path(path), json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save_tensors(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]
) -> None:
    """Write a safetensors file (string ``metadata`` in its header) through a temporary file and a rename."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        save_file(tensors, tmp, metadata=metadata)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_safetensors_header(path: Path, what: str) -> dict[str, str]:
    """Only the header metadata of a safetensors file (no tensor is read).

    Raises:
        CheckpointError: the file is truncated, corrupt or not safetensors (names the file and ``what`` it is).
    """
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt {what} ({e})") from None


def read_safetensors(path: Path, what: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Header metadata and tensors of a safetensors file; a bad file is a :class:`CheckpointError`."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
        return header, load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt {what} ({e})") from None


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that killed atomic writes left in ``folder`` (not recursive).

    Only call this on a folder no other process is writing to (a locked run folder).

    Returns:
        The files removed.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.glob(f".*{_TMP_SUFFIX}"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
