"""On-disk embedding cache: every (encoder key, text) is encoded once, even across interrupted runs.

Layout of ``cache_dir``::

    cache_dir/<sha256(key)[:16]>/encoder.json                    {"format": 1, "key": ..., "dim": D}
    cache_dir/<sha256(key)[:16]>/shard-<time>-<rand>.safetensors  "ids" uint8 (n, 32), "embeddings" float32 (n, D)

One folder per encoder key, so keys never collide. A text's id is ``sha256(key + "\\0" + text)``; the texts
themselves are not stored. :func:`encode_cached` writes one shard per finished batch of new texts, atomically
(temporary file, fsync, rename; :func:`kgdistill.checkpoint.atomic_save_tensors`), before it encodes the next
batch: a run killed at any moment keeps every finished batch, and the rerun encodes only what is missing; a
second full run makes no encoder call. Shards of one folder may be written by several processes at once
(unique names; a text stored twice is harmless). When a folder holds more than ``max_shards`` shards they are
merged into one (:meth:`EmbeddingCache.compact`).

**Corrupt shards are skipped, not fatal**: a shard that cannot be read (truncated, not safetensors, wrong key,
wrong shapes) is renamed to ``<name>.corrupt`` with a warning naming the file, and its texts are encoded
again. The cache only holds derived data, so losing a shard costs time, never correctness.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from tqdm.auto import tqdm

from kgdistill.io import atomic_save_tensors, atomic_write_text
from kgdistill.llm.encoders import Encoder, LLMError, check_texts

__all__ = ["FORMAT", "EmbeddingCache", "encode_cached", "text_id"]

log = logging.getLogger(__name__)

FORMAT = 1
_META_KEY = "kgdistill_embedding_cache"
_MANIFEST = "encoder.json"
_DEFAULT_CHUNK = 256


def text_id(key: str, text: str) -> bytes:
    """The 32-byte cache id of ``text`` under encoder ``key``: ``sha256(key + "\\0" + text)``."""
    return hashlib.sha256(f"{key}\0{text}".encode()).digest()


class EmbeddingCache:
    """The cached vectors of one encoder ``key`` in ``cache_dir`` (see the module docstring for the layout).

    Attributes:
        key: the encoder key.
        folder: ``cache_dir/<sha256(key)[:16]>``.
        dim: the vector size ``D``, ``None`` while empty.
    """

    def __init__(self, cache_dir: str | Path, key: str) -> None:
        self.key = key
        self.folder = Path(cache_dir) / hashlib.sha256(key.encode()).hexdigest()[:16]
        self.dim: int | None = None
        self._shards: list[Path] = []
        self._index: dict[bytes, tuple[int, int]] = {}  # text id -> (shard number, row)
        self._read_manifest()
        self.reload()

    # -- reading -------------------------------------------------------------------------------------------

    def _read_manifest(self) -> None:
        path = self.folder / _MANIFEST
        if not path.is_file():
            return
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            key, dim = manifest["key"], manifest.get("dim")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise LLMError(
                f"{path}: corrupt embedding-cache manifest ({e}); delete the folder"
            ) from None
        if key != self.key:
            raise LLMError(f"{path}: cache folder belongs to encoder key {key!r}, not {self.key!r}")
        self.dim = int(dim) if dim is not None else None

    def reload(self) -> None:
        """Re-read the shard list (e.g. after another process added shards)."""
        self._shards, self._index = [], {}
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("shard-*.safetensors")):
            ids = self._read_ids(path)
            if ids is None:
                continue
            number = len(self._shards)
            self._shards.append(path)
            for row, tid in enumerate(ids):
                self._index.setdefault(tid, (number, row))

    def _read_ids(self, path: Path) -> list[bytes] | None:
        """The text ids of a shard after checking its header, or ``None`` (quarantined) when it is bad."""
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = json.loads((fh.metadata() or {})[_META_KEY])
                ids = fh.get_tensor("ids")
                shape = fh.get_slice("embeddings").get_shape()
                dtype = fh.get_slice("embeddings").get_dtype()
            problem = None
            if meta.get("format") != FORMAT or meta.get("key") != self.key:
                problem = f"format/key {meta.get('format')}/{meta.get('key')!r} do not match"
            elif ids.dtype != torch.uint8 or ids.ndim != 2 or ids.shape[1] != 32:
                problem = f"ids have shape {tuple(ids.shape)} and dtype {ids.dtype}"
            elif len(shape) != 2 or shape[0] != ids.shape[0] or dtype != "F32":
                problem = f"embeddings have shape {shape} and dtype {dtype} for {ids.shape[0]} ids"
            elif self.dim is not None and shape[1] != self.dim:
                problem = f"{shape[1]}-d vectors in a {self.dim}-d cache"
        except (SafetensorError, OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
            problem = f"{type(e).__name__}: {e}"
        if problem is not None:
            self._quarantine(path, problem)
            return None
        if self.dim is None:
            self.dim = int(shape[1])
        return [bytes(row) for row in ids.numpy()]

    def _quarantine(self, path: Path, problem: str) -> None:
        target = path.with_name(path.name + ".corrupt")
        try:
            os.replace(path, target)
            where = f"moved to {target.name}"
        except OSError:
            where = "left in place"
        msg = f"{path}: unreadable embedding-cache shard ({problem}); {where}, its texts will be re-encoded"
        log.warning(msg)
        warnings.warn(msg, stacklevel=3)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and text_id(self.key, text) in self._index

    @property
    def num_shards(self) -> int:
        return len(self._shards)

    def get(self, texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """Cached vectors of ``texts``: float32 ``(N, D)`` (zero rows where missing) and the missing indices."""
        ids = [text_id(self.key, t) for t in texts]
        out = np.zeros((len(texts), self.dim or 0), dtype=np.float32)
        missing = [i for i, tid in enumerate(ids) if tid not in self._index]
        wanted: dict[int, list[tuple[int, int]]] = {}  # shard -> [(output row, shard row)]
        for i, tid in enumerate(ids):
            if tid in self._index:
                shard, row = self._index[tid]
                wanted.setdefault(shard, []).append((i, row))
        for shard, pairs in wanted.items():
            vectors = self._load_vectors(self._shards[shard])
            dst, src = zip(*pairs, strict=True)
            out[list(dst)] = vectors[list(src)]
        return out, missing

    def _load_vectors(self, path: Path) -> np.ndarray:
        try:
            with safe_open(str(path), framework="np") as fh:
                vectors = fh.get_tensor("embeddings")
        except (SafetensorError, OSError) as e:
            raise LLMError(
                f"{path}: cannot read embedding-cache shard ({e}); delete the file"
            ) from None
        if not np.isfinite(vectors).all():
            raise LLMError(
                f"{path}: embedding-cache shard holds non-finite values; delete the file"
            )
        return vectors

    # -- writing -------------------------------------------------------------------------------------------

    def add(self, texts: Sequence[str], vectors: np.ndarray) -> Path:
        """Store ``vectors`` ``(n, D)`` of ``texts`` as one new shard, atomically; returns its path."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise LLMError(f"cannot cache an array of shape {vectors.shape} for {len(texts)} texts")
        if self.dim is not None and vectors.shape[1] != self.dim:
            raise LLMError(
                f"encoder {self.key!r} returned {vectors.shape[1]}-d vectors but its cache {self.folder} "
                f"holds {self.dim}-d ones (did the model change under the same key?); delete the folder"
            )
        ids = [text_id(self.key, t) for t in texts]
        path = self._write_shard(ids, vectors)
        number = len(self._shards)
        self._shards.append(path)
        for row, tid in enumerate(ids):
            self._index.setdefault(tid, (number, row))
        return path

    def _write_shard(self, ids: list[bytes], vectors: np.ndarray) -> Path:
        if self.dim is None or not (self.folder / _MANIFEST).is_file():
            self.dim = int(vectors.shape[1])
            manifest = {"format": FORMAT, "key": self.key, "dim": self.dim}
            atomic_write_text(self.folder / _MANIFEST, json.dumps(manifest, indent=2) + "\n")
        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.safetensors"
        path = self.folder / name
        id_tensor = torch.frombuffer(bytearray(b"".join(ids)), dtype=torch.uint8).reshape(-1, 32)
        meta = {"format": FORMAT, "key": self.key, "dim": self.dim, "count": len(ids)}
        atomic_save_tensors(
            path,
            {"ids": id_tensor, "embeddings": torch.from_numpy(vectors)},
            {_META_KEY: json.dumps(meta)},
        )
        return path

    def compact(self) -> None:
        """Merge all shards into one (written first, then the old ones deleted; a crash in between is harmless)."""
        if len(self._shards) <= 1:
            return
        ids = list(self._index)
        vectors = np.empty((len(ids), self.dim or 0), dtype=np.float32)
        by_shard: dict[int, list[tuple[int, int]]] = {}
        for i, tid in enumerate(ids):
            shard, row = self._index[tid]
            by_shard.setdefault(shard, []).append((i, row))
        for shard, pairs in by_shard.items():
            dst, src = zip(*pairs, strict=True)
            vectors[list(dst)] = self._load_vectors(self._shards[shard])[list(src)]
        old = list(self._shards)
        new = self._write_shard(ids, vectors)
        for path in old:
            path.unlink(missing_ok=True)
        self._shards = [new]
        self._index = {tid: (0, row) for row, tid in enumerate(ids)}
        log.info("compacted %d embedding-cache shards into %s", len(old), new)


def encode_cached(
    encoder: Encoder,
    texts: Sequence[str],
    cache_dir: str | Path,
    *,
    batch_size: int | None = None,
    progress: bool = True,
    max_shards: int | None = 64,
) -> torch.Tensor:
    """Vectors of ``texts`` ``(N, D)`` float32, encoding only the texts not already in ``cache_dir``.

    Texts are deduplicated; the missing ones are encoded ``batch_size`` at a time (default: the encoder's
    ``chunk_size``, else 256), and each batch is stored as a shard before the next one starts, so an
    interruption loses at most the batch in progress. Rows come back in the order of ``texts``.

    Args:
        encoder: any object with ``key``, ``dim`` and ``encode(list[str]) -> (n, D)``.
        texts: non-empty strings (an empty or blank one raises :class:`LLMError` with its index).
        cache_dir: the cache folder (created when missing); one sub-folder per encoder key.
        batch_size: new texts per encoder call and per shard.
        progress: show a tqdm progress bar while encoding.
        max_shards: merge the key's shards into one when a run leaves more than this many (``None``: never).
    """
    texts = check_texts(texts)
    cache = EmbeddingCache(cache_dir, encoder.key)
    unique = list(dict.fromkeys(texts))
    vectors, missing = cache.get(unique)
    if missing:
        chunk = batch_size or getattr(encoder, "chunk_size", None) or _DEFAULT_CHUNK
        if chunk < 1:
            raise LLMError(f"batch_size must be >= 1, got {chunk}")
        log.info(
            "encoding %d of %d unique texts (%d cached) with %s",
            len(missing),
            len(unique),
            len(unique) - len(missing),
            encoder.key,
        )
        new_rows: dict[int, np.ndarray] = {}
        with tqdm(
            total=len(missing), desc="encoding texts", unit="text", disable=not progress
        ) as bar:
            for start in range(0, len(missing), chunk):
                idx = missing[start : start + chunk]
                batch = [unique[i] for i in idx]
                out = _checked(encoder.encode(batch), len(batch), cache.dim, encoder.key)
                cache.add(batch, out)
                new_rows.update(zip(idx, out, strict=True))
                bar.update(len(batch))
        if vectors.shape[1] == 0:  # nothing was cached: the size comes from the first batch
            vectors = np.zeros((len(unique), cache.dim or 0), dtype=np.float32)
        for i, row in new_rows.items():
            vectors[i] = row
        if max_shards is not None and cache.num_shards > max_shards:
            cache.compact()
    position = {t: i for i, t in enumerate(unique)}
    rows = np.fromiter((position[t] for t in texts), dtype=np.int64, count=len(texts))
    dim = cache.dim if cache.dim is not None else (encoder.dim or 0)
    if not texts:
        return torch.zeros((0, dim), dtype=torch.float32)
    return torch.from_numpy(np.ascontiguousarray(vectors[rows]))


def _checked(out: object, n: int, dim: int | None, key: str) -> np.ndarray:
    arr = np.asarray(out, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise LLMError(f"encoder {key!r} returned an array of shape {arr.shape} for {n} texts")
    if dim is not None and arr.shape[1] != dim:
        raise LLMError(
            f"encoder {key!r} returned {arr.shape[1]}-d vectors, the cache holds {dim}-d"
        )
    if not np.isfinite(arr).all():
        raise LLMError(
            f"encoder {key!r} returned non-finite values; nothing of this batch was cached"
        )
    return arr
