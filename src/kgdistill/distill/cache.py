"""Teacher outputs cached on disk: written once by ``kgdistill cache``, read by :class:`CachedTeacher`.

File format (safetensors, one file): ``keys (N,)`` sorted query keys ``(h * 2R + r) * T + tau`` of every distinct
training query (reciprocals included), and either ``scores (N, E)`` (full rows, float16) or ``topk_ids (N, k)`` +
``topk_scores (N, k)``. The JSON header records the dataset, vocabulary sizes, the teacher it came from and ``k``.
Queries missing from the cache come back fully masked. A top-k cache answers 1-N steps with ``scores (B, k)``
and ``ids (B, k)`` (:attr:`~kgdistill.models.ModelOutput.ids`): ``kd_kl`` compares the distributions over the
teacher's k candidates at ``O(B k)``, and other terms see the rows expanded to all entities with the rest masked.
With sampled candidates, entries outside the top-k are masked.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from tqdm.auto import tqdm

from kgdistill.data.batching import both_directions
from kgdistill.data.kg import KG
from kgdistill.distill.base import ALL_FIELDS, TEACHERS, Teacher
from kgdistill.errors import CheckpointError, ConfigError
from kgdistill.io import atomic_save_tensors, read_safetensors
from kgdistill.models.base import ModelOutput
from kgdistill.types import HEAD, REL, TIME, LongTensor

__all__ = ["CachedTeacher", "query_keys", "save_topk", "vocab_digest", "write_cache"]

log = logging.getLogger(__name__)
_KIND = "kgdistill-teacher-cache"


def query_keys(queries: LongTensor, num_relations: int, num_times: int) -> LongTensor:
    """One int64 key per query ``(B, 3|4) -> (B,)``: ``(h * 2R + r) * max(T, 1) + tau``."""
    key = queries[:, HEAD] * (2 * num_relations) + queries[:, REL]
    key = key * max(num_times, 1)
    if queries.shape[1] > 3 and num_times:
        key = key + queries[:, TIME]
    return key


@torch.no_grad()
def write_cache(
    path: str | Path,
    teacher: Teacher,
    kg: KG,
    *,
    split: str = "train",
    k: int | None = 128,
    batch_size: int = 512,
    source: str = "",
    progress: bool = True,
    extra: dict[str, object] | None = None,
) -> Path:
    """Score every distinct query of ``split`` with ``teacher`` and write the cache file.

    Args:
        k: keep the top-``k`` scores per query; ``None`` keeps full rows (float16, ``N x E``).
        extra: further fields of the JSON header (e.g. the digest of the checkpoint the rows came from).
    """
    queries = both_directions(kg.splits[split], kg.num_relations)
    keys = query_keys(queries, kg.num_relations, kg.num_times)
    keys, first = _unique_first(keys)
    queries = queries[first]
    device = next(
        (p.device for p in getattr(teacher, "parameters", lambda: iter(()))()), torch.device("cpu")
    )
    # full rows go straight into one preallocated (N, E) table: batches gathered and then concatenated raised the
    # process's peak by about 3x the cache's size (WN18RR's 8.5 GB cache ran a 24 GB machine out of memory)
    full = torch.empty((len(queries), kg.num_entities), dtype=torch.float16) if k is None else None
    parts: dict[str, list[torch.Tensor]] = {"topk_ids": [], "topk_scores": []}
    for s in tqdm(
        range(0, len(queries), batch_size),
        desc="caching teacher",
        disable=None if progress else True,
    ):
        out = teacher(queries[s : s + batch_size].to(device), None, frozenset({"scores"}))
        scores = out.scores.float()
        if out.mask is not None:
            scores = scores.masked_fill(~out.mask, float("-inf"))
        if full is not None:
            full[s : s + len(scores)] = scores.half().cpu()
        else:
            top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
            parts["topk_ids"].append(top.indices.cpu())
            parts["topk_scores"].append(top.values.cpu())
    tensors = {"scores": full} if full is not None else {n: torch.cat(v) for n, v in parts.items()}
    del parts, full
    return _save(Path(path), kg, keys, tensors, split=split, k=k, source=source, extra=extra)


def save_topk(
    path: str | Path,
    kg: KG,
    queries: LongTensor,
    ids: LongTensor,
    scores: torch.Tensor,
    *,
    source: str,
) -> Path:
    """Write scores computed elsewhere as a top-k cache: ``queries (N, 3|4)`` (distinct), their entity ids
    ``(N, k)`` and scores ``(N, k)`` (``-inf`` pads a row with fewer than ``k``). :class:`CachedTeacher` reads it
    like one written by :func:`write_cache`; queries not in it come back fully masked.

    Raises:
        ConfigError: two rows of ``queries`` are the same query, or the shapes disagree.
    """
    if ids.shape != scores.shape or len(ids) != len(queries):
        raise ConfigError(
            f"top-k cache {path}: {len(queries)} queries, ids {tuple(ids.shape)}, "
            f"scores {tuple(scores.shape)}"
        )
    keys = query_keys(queries, kg.num_relations, kg.num_times)
    order = torch.argsort(keys)
    keys = keys[order]
    if len(keys) > 1 and bool((keys[1:] == keys[:-1]).any()):
        raise ConfigError(f"top-k cache {path}: a query appears twice")
    tensors = {"topk_ids": ids[order].long(), "topk_scores": scores[order].float()}
    return _save(Path(path), kg, keys, tensors, split="train", k=ids.shape[1], source=source)


def _save(
    path: Path,
    kg: KG,
    keys: LongTensor,
    tensors: dict[str, torch.Tensor],
    *,
    split: str,
    k: int | None,
    source: str,
    extra: dict[str, object] | None = None,
) -> Path:
    """The cache file: sorted ``keys`` and the score tensors, with the JSON header of the module docstring."""
    tensors = {"keys": keys.contiguous(), **{n: t.contiguous() for n, t in tensors.items()}}
    meta = {
        "kind": _KIND,
        "format": 1,
        "dataset": kg.name,
        "split": split,
        "num_entities": kg.num_entities,
        "num_relations": kg.num_relations,
        "num_times": kg.num_times,
        "vocab_sha256": vocab_digest(kg),
        "k": k,
        "source": source,
        "queries": len(keys),
        **(extra or {}),
    }
    atomic_save_tensors(path, tensors, {"kgdistill": json.dumps(meta)})
    log.info("wrote %d teacher rows (%s) to %s", len(keys), f"top-{k}" if k else "full", path)
    return path


def vocab_digest(kg: KG) -> str:
    """SHA-256 of the graph's entity, relation and time labels in id order (which ids a cache speaks)."""
    h = hashlib.sha256()
    for labels in (kg.entity_labels, kg.relation_labels, kg.time.labels if kg.temporal else ()):
        h.update("\n".join(labels).encode())
        h.update(b"\0")
    return h.hexdigest()


def _unique_first(keys: LongTensor) -> tuple[LongTensor, LongTensor]:
    """Sorted unique keys and the index of the first occurrence of each."""
    order = torch.argsort(keys, stable=True)
    sk = keys[order]
    new = torch.ones_like(sk, dtype=torch.bool)
    new[1:] = sk[1:] != sk[:-1]
    return sk[new], order[new]


@TEACHERS.register("cache")
class CachedTeacher(torch.nn.Module):
    """Scores read from a cache file written by :func:`write_cache` (scores only: no embeddings).

    Args:
        path: the cache file.
        kg: the student's graph; its vocabulary sizes must match the cache's.
    """

    def __init__(self, *, path: str, kg: KG) -> None:
        super().__init__()
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"teacher cache not found: {p} (write it with 'kgdistill cache')")
        header, tensors = read_safetensors(p, "teacher cache")
        meta = json.loads(header.get("kgdistill", "{}"))
        if meta.get("kind") != _KIND:
            raise CheckpointError(f"{p}: not a kgdistill teacher cache")
        for key, have in (
            ("num_entities", kg.num_entities),
            ("num_relations", kg.num_relations),
            ("num_times", kg.num_times),
        ):
            if meta[key] != have:
                raise ConfigError(
                    f"teacher cache {p} was written for {meta[key]} {key[4:]}, the student's dataset "
                    f"'{kg.name}' has {have}"
                )
        if meta.get("vocab_sha256") not in (None, vocab_digest(kg)):
            raise ConfigError(
                f"teacher cache {p} was written for other ids than those of the student's dataset "
                f"'{kg.name}' (same sizes, other labels: another graph or view); write it for this one"
            )
        self.meta = meta
        self.num_entities, self.num_relations, self.num_times = (
            kg.num_entities,
            kg.num_relations,
            kg.num_times,
        )
        self.register_buffer("keys", tensors["keys"], persistent=False)
        self.full = "scores" in tensors
        for name in ("scores", "topk_ids", "topk_scores"):
            if name in tensors:
                self.register_buffer(name, tensors[name], persistent=False)

    def lookup(self, queries: LongTensor) -> tuple[LongTensor, torch.Tensor]:
        """The cache row of each query ``(B, 3|4)`` and whether the cache holds it: ``(B,)``, ``(B,)`` bool."""
        key = query_keys(queries, self.num_relations, self.num_times)
        pos = torch.searchsorted(self.keys, key).clamp_max(len(self.keys) - 1)
        return pos, self.keys[pos] == key

    @torch.no_grad()
    def forward(
        self,
        queries: LongTensor,
        candidates: LongTensor | None = None,
        fields: frozenset[str] = ALL_FIELDS,
    ) -> ModelOutput:
        pos, found = self.lookup(queries)
        if self.full:
            rows = self.scores[pos].float()
        elif candidates is None:  # top-k as it is: (B, k) scores and their entity ids
            top = self.topk_scores[pos].float()
            mask = torch.isfinite(top) & found[:, None]
            return ModelOutput(
                scores=torch.where(mask, top, torch.zeros_like(top)),
                mask=mask,
                ids=self.topk_ids[pos],
            )
        else:
            rows = torch.full(
                (len(queries), self.num_entities), float("-inf"), device=queries.device
            )
            rows.scatter_(1, self.topk_ids[pos], self.topk_scores[pos].float())
        if candidates is not None:
            rows = rows.gather(1, candidates)
        finite = torch.isfinite(rows)
        # no mask when every row is there and finite (a full cache of a teacher that answers everything): each
        # term reading a (B, E) mask pays several more passes over (B, E) per step
        if self.full and bool(found.all()) and bool(finite.all()):
            return ModelOutput(scores=rows)
        mask = finite & found[:, None]
        return ModelOutput(scores=torch.where(mask, rows, torch.zeros_like(rows)), mask=mask)
