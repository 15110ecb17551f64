"""PLM features: the tokenised texts of a graph and the encoder's weights, computed before a bi-encoder is built.

:func:`plm_features` verbalises every entity, relation (and reciprocal) and time (:func:`kgdistill.text.kg_texts`),
tokenises the texts once with the encoder's tokenizer (no special tokens) and truncates them to the window:

* an entity's text: ``[CLS] name: description [SEP]`` in at most ``max_length`` tokens;
* a query's text: ``[CLS] head text [SEP] relation text [time text] [SEP]`` in at most ``max_length`` tokens.
  A relation text keeps at most a third of the window's free tokens and a time phrase half (time phrases are
  short, and a cut one loses the day or year that tells times apart); the head's text is cut to what is left
  (the model does that per query, from the tensors).

Every cut is counted in the report (entities, relations, times, training queries whose head text is cut) and
logged. A checkpoint carries the token tables in its state dict and the config in its metadata, so loading one
needs neither the tokenizer nor the weights (:meth:`PLMFeatures.placeholder`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import torch
from pydantic import Field

from kgdistill.data.kg import KG
from kgdistill.plm.contexts import (
    CONTEXT_FILLED,
    ContextTokens,
    check_context_window,
    context_tokens,
)
from kgdistill.plm.meta import TokenFeatures
from kgdistill.plm.tokens import TokenTable, tokenize

__all__ = [
    "PLM_OPTIONS",
    "PLMFeatures",
    "TokenTable",
    "plm_features",
    "tokenize_graph",
    "window_budgets",
]

log = logging.getLogger(__name__)

#: Config keys of the ``model`` section that configure the PLM features, not the model.
PLM_OPTIONS = frozenset({"encoder", "text", "max_length", "context"})


def window_budgets(max_length: int) -> dict[str, int]:
    """Tokens a text may keep in a window of ``max_length``: ``entity``, ``relation``, ``time`` (specials
    excluded; a query's head gets what its relation and time leave)."""
    free = max_length - 3
    return {"entity": max_length - 2, "relation": max(free // 3, 1), "time": max(free // 2, 1)}


@dataclass(frozen=True)
class PLMFeatures(TokenFeatures):
    """What a bi-encoder is built from.

    Attributes:
        config: the encoder's Hugging Face config (``PretrainedConfig.to_dict()``).
        state: the pre-trained weights, or ``None`` (random, or filled from a checkpoint's state dict).
        entities: ``(E, L_e)`` entity texts.
        relations: ``(2R, L_r)`` relation texts, then the reciprocals' (``r + R``).
        times: ``(T, L_t)`` time phrases, or ``None`` for a static graph.
        special: ``cls``, ``sep`` and ``pad`` token ids (and ``mask`` where the tokenizer has one).
        max_length: the window (tokens, specials included) of entity and query texts.
        contexts: the training triples' contexts for the ``reconstruction`` task, or ``None``.
        report: texts' sources and truncation counts.
    """

    TABLES: ClassVar[tuple[str, ...]] = ("entities", "relations")
    SIZES: ClassVar[tuple[str, ...]] = ("max_length",)

    config: dict[str, Any]
    entities: TokenTable
    relations: TokenTable
    times: TokenTable | None
    special: dict[str, int]
    max_length: int
    state: dict[str, torch.Tensor] | None = None
    contexts: ContextTokens | None = None
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Width of the encoder's hidden states."""
        return int(self.config["hidden_size"])

    def _extra_meta(self) -> dict[str, Any]:
        return {"dim": self.dim}


def _special(tokenizer: Any) -> dict[str, int]:
    cls_id = (
        tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    )
    sep_id = (
        tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if cls_id is None or sep_id is None:
        raise ValueError("the tokenizer has no CLS/BOS or SEP/EOS token")
    out = {"cls": int(cls_id), "sep": int(sep_id), "pad": int(pad_id)}
    if getattr(tokenizer, "mask_token_id", None) is not None:
        out["mask"] = int(tokenizer.mask_token_id)
    return out


def tokenize_graph(
    kg: KG, tokenizer: Any, config: dict[str, Any], *, texts: Any, max_length: int
) -> PLMFeatures:
    """Token tables of ``texts`` (a :class:`~kgdistill.text.KGTexts` of ``kg``) for a window of ``max_length``."""
    budget = window_budgets(max_length)
    special = _special(tokenizer)
    pad = special["pad"]
    entities = TokenTable.of(tokenize(tokenizer, texts.entities), budget["entity"], pad)
    relations = TokenTable.of(tokenize(tokenizer, texts.all_relations()), budget["relation"], pad)
    times = (
        TokenTable.of(tokenize(tokenizer, texts.times), budget["time"], pad)
        if texts.times
        else None
    )
    train = kg.splits["train"]
    r_len = relations.lengths[train[:, 1]] + (0 if times is None else times.lengths[train[:, 3]])
    head_room = max_length - 3 - r_len
    cut_heads = int((entities.lengths[train[:, 0]] > head_room).sum())
    inv = relations.lengths[train[:, 1] + kg.num_relations] + (
        0 if times is None else times.lengths[train[:, 3]]
    )
    cut_heads += int((entities.lengths[train[:, 2]] > max_length - 3 - inv).sum())
    truncated = {
        "entities": entities.truncated,
        "relations": relations.truncated,
        "times": 0 if times is None else times.truncated,
        "train_query_heads": cut_heads,
    }
    if any(truncated.values()):
        log.warning(
            "texts longer than the %d-token window were truncated: %s", max_length, truncated
        )
    report = {
        "max_length": max_length,
        "truncated": truncated,
        "mean_entity_tokens": round(float(entities.lengths.float().mean()), 2),
        "texts": texts.report,
    }
    return PLMFeatures(
        config=config,
        entities=entities,
        relations=relations,
        times=times,
        special=special,
        max_length=max_length,
        report=report,
    )


def plm_features(
    kg: KG,
    *,
    encoder: str | None = None,
    text: dict[str, Any] | None = None,
    max_length: Annotated[int, Field(ge=8, le=4096)] = 64,
    context: dict[str, Any] | None = None,
    progress: bool = True,
) -> PLMFeatures:
    """Tokenise ``kg``'s texts for the encoder in the local folder ``encoder`` and read its weights.

    Args:
        encoder: a local Hugging Face encoder folder; ``None`` = the packaged all-MiniLM-L6-v2.
        text: keyword arguments of :func:`kgdistill.text.kg_texts` (users' text files, descriptions on/off).
        max_length: the window, in tokens with the special ones, of entity texts and of query texts.
        context: keyword arguments of :func:`kgdistill.plm.contexts.context_tokens` (``store``, a context
            store, and its window and options): the contexts of the ``reconstruction`` task; ``None``: none.
        progress: unused (tokenising is fast); accepted like the other feature builders.

    Raises:
        ConfigError: a missing encoder folder, or a causal language model (names the folder).
    """
    from kgdistill.plm.encoders import load_encoder
    from kgdistill.registry import check_kwargs
    from kgdistill.text import kg_texts

    text = check_kwargs(kg_texts, dict(text or {}), where="model.text", context={"kg": None})
    loaded = load_encoder(encoder)
    limit = int(loaded.config.get("max_position_embeddings") or max_length)
    if max_length > limit:
        from kgdistill.errors import ConfigError

        raise ConfigError(
            f"config key 'model.max_length': {max_length} is more than the encoder's {limit} positions"
        )
    feats = tokenize_graph(
        kg, loaded.tokenizer, loaded.config, texts=kg_texts(kg, **text), max_length=max_length
    )
    report = {**feats.report, "encoder": str(loaded.folder.name)}
    contexts = None
    if context is not None:
        options = check_kwargs(
            context_tokens, dict(context), where="model.context", context=CONTEXT_FILLED
        )
        contexts = context_tokens(kg, loaded.tokenizer, pad=feats.special["pad"], **options)
        check_context_window(contexts, max_length, limit, "encoder")
        report["contexts"] = contexts.report
    return PLMFeatures(
        config=feats.config,
        entities=feats.entities,
        relations=feats.relations,
        times=feats.times,
        special=feats.special,
        max_length=max_length,
        state=loaded.state,
        contexts=contexts,
        report=report,
    )
