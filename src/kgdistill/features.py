"""Features: what a model needs from the data beyond ids, computed before the model is built.

A model builder never reads the graph, verbalises it or calls an encoder: the run computes the features the
registered model declares (:func:`kgdistill.models.zoo.model_features`) and hands them to the builder as
tensors. There are three kinds:

* ``text`` (:class:`TextFeatures`): frozen encodings of the text of every entity, relation (and its reciprocal)
  and time, from any encoder of :data:`kgdistill.llm.ENCODERS`, through the on-disk embedding cache. Its
  options are the config keys ``encoder``, ``text`` and ``cache_dir`` of the ``model`` section.
* ``plm`` (:class:`kgdistill.plm.PLMFeatures`): tokenised texts and the weights of a trainable encoder (the
  bi-encoder); options ``encoder``, ``text`` and ``max_length`` (:func:`kgdistill.plm.plm_features`).
* ``lm`` (:class:`kgdistill.plm.causal.LMFeatures`): prompt and answer-name token tables and the weights of a
  causal language model (the generative model); options ``lm``, ``text``, ``max_length`` and ``answer_length``
  (:func:`kgdistill.plm.causal.lm_features`).

A checkpoint carries the encodings (token tables) in its state dict and what else rebuilding the model needs in
its metadata (``meta()`` of the features), so loading one needs only that (:meth:`TextFeatures.placeholder`,
:meth:`kgdistill.plm.PLMFeatures.placeholder`), never the encoder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kgdistill.data.kg import KG
from kgdistill.types import FloatTensor

__all__ = ["TEXT_OPTIONS", "TextFeatures", "default_cache_dir", "text_features"]

#: Config keys of the ``model`` section that configure the text features, not the model.
TEXT_OPTIONS = frozenset({"encoder", "text", "cache_dir"})


@dataclass(frozen=True)
class TextFeatures:
    """Frozen text encodings of a graph's elements.

    Attributes:
        entities: ``(E, D)`` one row per entity.
        relations: ``(2R, D)`` relations, then their reciprocals (``r + R``).
        times: ``(T, D)`` one row per time id, or ``None`` for a static graph.
        report: where the texts came from (sources, fallbacks) and the encoder key.
    """

    entities: FloatTensor
    relations: FloatTensor
    times: FloatTensor | None = None
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """``D``, the encoder's width."""
        return int(self.entities.shape[1])

    def meta(self) -> dict[str, Any]:
        """What a checkpoint records about these features: their width and where the texts came from."""
        return {"dim": self.dim, "report": self.report}

    @classmethod
    def placeholder(
        cls, num_entities: int, num_relations: int, num_times: int, dim: int
    ) -> TextFeatures:
        """Zeros of the right shapes, for a model whose encodings come from a checkpoint's state dict.

        Args:
            num_relations: original relations (``2 * num_relations`` rows are made).
            num_times: time ids (0: static).
        """
        return cls(
            entities=torch.zeros(num_entities, dim),
            relations=torch.zeros(2 * num_relations, dim),
            times=torch.zeros(num_times, dim) if num_times else None,
        )


def default_cache_dir() -> str:
    """Where text encodings are cached: ``$KGDISTILL_CACHE/embeddings``, else the user cache folder."""
    root = os.environ.get("KGDISTILL_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kgdistill"
    )
    return str(Path(root) / "embeddings")


def text_features(
    kg: KG,
    *,
    encoder: dict[str, Any] | None = None,
    text: dict[str, Any] | None = None,
    cache_dir: str | None = None,
    progress: bool = True,
) -> TextFeatures:
    """Encode the text of every entity, relation (and reciprocal) and time of ``kg``, through the cache.

    Args:
        encoder: an encoder spec ``{"name": ..., **kwargs}`` of :data:`kgdistill.llm.ENCODERS`
            (default: the packaged all-MiniLM-L6-v2 through sentence-transformers).
        text: keyword arguments of :func:`kgdistill.text.kg_texts` (user text files, descriptions on/off).
        cache_dir: the embedding cache (default :func:`default_cache_dir`).

    Returns:
        :class:`TextFeatures` with ``entities (E, D)``, ``relations (2R, D)``, ``times (T, D)`` or ``None``.
    """
    from kgdistill.llm import ENCODERS, encode_cached
    from kgdistill.registry import check_kwargs
    from kgdistill.text import kg_texts

    text = check_kwargs(kg_texts, dict(text or {}), where="model.text", context={"kg": None})
    texts = kg_texts(kg, **text)
    enc = ENCODERS.build(encoder or {"name": "sentence_transformers"}, where="model.encoder")
    rel_texts = list(texts.relations) + [texts.inverse_relation(i) for i in range(kg.num_relations)]
    all_texts = list(texts.entities) + rel_texts + list(texts.times)
    vectors = encode_cached(enc, all_texts, cache_dir or default_cache_dir(), progress=progress)
    vectors = torch.as_tensor(vectors, dtype=torch.float32)
    e, r = kg.num_entities, 2 * kg.num_relations
    return TextFeatures(
        entities=vectors[:e],
        relations=vectors[e : e + r],
        times=vectors[e + r :] if texts.times else None,
        report={"encoder": enc.key, "dim": int(vectors.shape[1]), "texts": texts.report},
    )
