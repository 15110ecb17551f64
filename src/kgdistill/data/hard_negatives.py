"""Hard negatives: sampled tails drawn from another model's top-k of each training query.

A re-ranker (a cross-encoder, a generative model) meets, at test time, a retriever's best candidates, not random
entities; trained on uniform negatives only, it learns an easier task than the one it is judged on. With
``train.negative_sampling: hard`` a share (``train.hard_fraction``) of each query's ``train.negatives`` tails is
drawn, without replacement, from a top-k teacher cache of the training queries (``kgdistill cache RETRIEVER
--out OUT -k 50``, :mod:`kgdistill.distill.cache`), leaving out every answer the training graph knows for the query; the
rest, and whatever a query's top-k cannot give (a query missing from the cache, too few unknown candidates), is
drawn uniformly. The draws come from the epoch's generator, so a resumed run draws the same negatives.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from kgdistill.data.batching import both_directions
from kgdistill.data.kg import KG
from kgdistill.errors import ConfigError
from kgdistill.types import TAIL, LongTensor

__all__ = ["HardNegatives"]


class HardNegatives:
    """Draws ``(B, 1 + n)`` candidates (the true tail, then ``n`` negatives) for training queries.

    Args:
        path: a top-k cache of ``kg``'s training queries (``train.hard_negatives``).
        kg: the training graph (the cache must be written for its ids).
        negatives: ``n``, negatives per query (``train.negatives``).
        fraction: the share of ``n`` drawn from the cache's top-k (``train.hard_fraction``, rounded up).
        device: where the cache's tables and the candidates live.
    """

    def __init__(
        self, path: str, kg: KG, *, negatives: int, fraction: float, device: torch.device
    ) -> None:
        from kgdistill.distill.cache import CachedTeacher, query_keys

        if not Path(path).expanduser().is_file():
            raise ConfigError(
                f"config key 'train.hard_negatives': no cache at {path} "
                "(write one with 'kgdistill cache RETRIEVER --out OUT -k 50')"
            )
        cache = CachedTeacher(path=path, kg=kg)
        if cache.full:
            raise ConfigError(
                f"config key 'train.hard_negatives': {path} holds full score rows; hard negatives read a "
                "top-k cache (kgdistill cache ... -k 50)"
            )
        self._keys_of = lambda q: query_keys(q, kg.num_relations, kg.num_times)
        self.keys = cache.keys.to(device)
        self.topk = cache.topk_ids.to(device)  # (N, k)
        self.num_entities = kg.num_entities
        self.negatives = negatives
        self.hard = min(math.ceil(negatives * fraction), self.topk.shape[1])
        train = both_directions(kg.splits["train"], kg.num_relations).to(device)
        codes = self._keys_of(train) * kg.num_entities + train[:, TAIL]
        self.known = torch.unique(codes)  # sorted (query key, answer) codes of the training graph

    def _is_known(self, codes: LongTensor) -> torch.Tensor:
        pos = torch.searchsorted(self.known, codes).clamp_max(len(self.known) - 1)
        return self.known[pos] == codes

    def __call__(self, queries: LongTensor, generator: torch.Generator) -> LongTensor:
        """``queries (B, 3|4)`` -> candidates ``(B, 1 + n)``: the true tail, ``ceil(n * fraction)`` draws from
        the query's top-k (unknown answers only; uniform where too few), then uniform draws."""
        b, dev = len(queries), queries.device
        key = self._keys_of(queries)
        pos = torch.searchsorted(self.keys, key).clamp_max(len(self.keys) - 1)
        found = self.keys[pos] == key  # (B,)
        ids = self.topk[pos]  # (B, k)
        usable = found[:, None] & ~self._is_known(key[:, None] * self.num_entities + ids)
        # without replacement among the usable columns: the hard largest of uniform keys (-1 elsewhere)
        draw = torch.rand(ids.shape, generator=generator).to(dev).masked_fill(~usable, -1.0)
        top = draw.topk(self.hard, dim=1)
        hard = ids.gather(1, top.indices)
        uniform = torch.randint(self.num_entities, (b, self.negatives), generator=generator).to(dev)
        hard = torch.where(top.values >= 0, hard, uniform[:, : self.hard])
        return torch.cat([queries[:, TAIL : TAIL + 1], hard, uniform[:, self.hard :]], dim=1)
